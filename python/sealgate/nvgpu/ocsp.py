"""OCSP (RFC 6960) revocation checks for NVIDIA certificate chains (device identity and
RIM signer chains).

NVIDIA's OCSP responder answers without echoing a request nonce (RFC 6960 §4.4.1 makes the
nonce optional; RFC 8954), so freshness comes from the response's thisUpdate/nextUpdate
window at the verification time, never from a nonce. Responses are parsed with
``cryptography.x509.ocsp``; the signature, the responder's authority and the certID are
checked here because cryptography parses OCSP but does not validate it.

A response is accepted for a certificate when (RFC 6960 §3.2):
  1. it is ``successful`` and a BasicOCSPResponse with exactly one SingleResponse;
  2. the SingleResponse's CertID (hash of the issuer name and key, serial) is the
     certificate's under its issuer;
  3. it is signed by the issuer itself, or by a delegated responder certificate the issuer
     signed that carries id-kp-OCSPSigning and is valid at ``at`` (§4.2.2.2);
  4. ``thisUpdate <= at`` and, with nextUpdate, ``at <= nextUpdate`` (otherwise stale;
     a response without nextUpdate is accepted only within ``max_age`` of thisUpdate).
Status revoked is ``gpu.ocsp.revoked``; unknown fails closed (``gpu.ocsp.unknown``). When
several responses name one certificate, all must be authentic; an authentic revoked one
wins whatever its window (revocation is permanent), else one must be fresh and a fresh
unknown one wins over a good one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from .. import pki
from ..errors import ChainError

__all__ = [
    "MAX_RESPONSES",
    "MAX_RESPONSE_BYTES",
    "CertStatus",
    "RevocationResult",
    "check_chain",
    "responses_for",
]

MAX_RESPONSE_BYTES = 64 * 1024
MAX_RESPONSES = 16
#: A response without nextUpdate says "newer information is always available" (§2.4); it
#: is taken as fresh for this long after thisUpdate only.
DEFAULT_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class CertStatus:
    subject: str
    serial: str  # hex
    status: str  # "good"
    this_update: datetime
    next_update: datetime | None
    responder: str  # "issuer" | "delegated"

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "serial": self.serial,
            "status": self.status,
            "this_update": self.this_update.isoformat(),
            "next_update": self.next_update.isoformat() if self.next_update else None,
            "responder": self.responder,
        }


@dataclass(frozen=True)
class RevocationResult:
    """``checked`` False: no responses were given — the claims say revocation was not
    checked and policy decides. ``checked`` True: every non-anchor certificate has a good,
    fresh, authentic response (any failure raises instead)."""

    checked: bool
    statuses: tuple[CertStatus, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "status": "good" if self.checked else "not_checked",
            "certificates": [s.as_dict() for s in self.statuses],
        }


def _verify_sig(signer: x509.Certificate, resp: ocsp.OCSPResponse) -> bool:
    key = signer.public_key()
    alg = resp.signature_hash_algorithm
    if alg is None:
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(alg))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), alg)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _verify_cert_sig(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _responder_id_matches(resp: ocsp.OCSPResponse, cand: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return resp.responder_name == cand.subject
    if resp.responder_key_hash is not None:
        # KeyHash = SHA-1 of the subjectPublicKey BIT STRING value (RFC 6960 §4.2.1).
        ski = x509.SubjectKeyIdentifier.from_public_key(cand.public_key())
        return resp.responder_key_hash == ski.digest
    return False


def _responder(resp: ocsp.OCSPResponse, issuer: x509.Certificate, at: datetime) -> str | None:
    """'issuer' or 'delegated' when the response is signed by an authorised responder."""
    if _responder_id_matches(resp, issuer) and _verify_sig(issuer, resp):
        return "issuer"
    for c in resp.certificates[:4]:
        if not _responder_id_matches(resp, c) or c.issuer != issuer.subject:
            continue
        if not _verify_cert_sig(c, issuer):
            continue
        try:
            eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        if not c.not_valid_before_utc <= at <= c.not_valid_after_utc:
            continue
        if _verify_sig(c, resp):
            return "delegated"
    return None


def _cert_id_matches(
    single: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    if single.serial_number != cert.serial_number:
        return False
    alg = single.hash_algorithm
    if not isinstance(alg, (hashes.SHA1, hashes.SHA256, hashes.SHA384, hashes.SHA512)):
        return False
    # Issuer key hash / name hash as the responder computed them: rebuild the CertID.
    want = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, alg).build()
    return (
        want.issuer_key_hash == single.issuer_key_hash
        and want.issuer_name_hash == single.issuer_name_hash
    )


def _load(raw: bytes, i: int) -> ocsp.OCSPResponse:
    """One DER response, bounded and successful with exactly one SingleResponse."""
    if len(raw) > MAX_RESPONSE_BYTES:
        raise ChainError("gpu.ocsp.too_large", f"OCSP response {i} is {len(raw)} bytes")
    try:
        r = ocsp.load_der_ocsp_response(raw)
    except ValueError as e:
        raise ChainError("gpu.ocsp.malformed", f"OCSP response {i}: {e}") from None
    if r.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ChainError(
            "gpu.ocsp.malformed", f"OCSP response {i} status is {r.response_status.name}"
        )
    try:
        singles = list(r.responses)
    except ValueError as e:
        raise ChainError("gpu.ocsp.malformed", f"OCSP response {i}: {e}") from None
    if len(singles) != 1:
        raise ChainError(
            "gpu.ocsp.malformed", f"OCSP response {i} has {len(singles)} SingleResponses"
        )
    return r


def responses_for(
    chain_certs: Sequence[pki.Certificate], responses: Sequence[bytes]
) -> list[bytes]:
    """Of a pool of responses (the device chain's and the RIM signer chains' together, as a
    node or the collateral cache hands them over), those whose CertID names a non-anchor
    certificate of ``chain_certs`` under its issuer, in the order given. Every response is
    parsed, so a malformed one fails (``gpu.ocsp.malformed``) whichever chain it was meant
    for; a pool with none for this chain gives ``[]`` (revocation of this chain not
    checked)."""
    if not responses:
        return []  # the common case (no OCSP collateral): no certificate need be loaded
    if len(responses) > MAX_RESPONSES:
        raise ChainError("gpu.ocsp.too_large", f"more than {MAX_RESPONSES} OCSP responses")
    parsed = [(raw, _load(raw, i)) for i, raw in enumerate(responses)]
    xs = [x509.load_der_x509_certificate(c.der) for c in chain_certs]
    pairs = list(itertools.pairwise(xs))
    return [
        raw for raw, r in parsed if any(_cert_id_matches(r, cert, issuer) for cert, issuer in pairs)
    ]


def check_chain(
    chain_certs: Sequence[pki.Certificate],
    responses: Sequence[bytes],
    *,
    at: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> RevocationResult:
    """Revocation of ``chain_certs`` (leaf first, anchor last; already path-validated by
    the PKI layer) from OCSP ``responses``. Every certificate but the anchor needs a good
    response. No responses → ``checked=False``. Raises ChainError with a ``gpu.ocsp.*``
    code on any failure."""
    if not responses:
        return RevocationResult(False)
    if len(responses) > MAX_RESPONSES:
        raise ChainError("gpu.ocsp.too_large", f"more than {MAX_RESPONSES} OCSP responses")
    if len(chain_certs) < 2:
        raise ChainError("gpu.ocsp.missing", "a chain of one certificate has no issuer to ask")
    parsed = [_load(raw, i) for i, raw in enumerate(responses)]
    xs = [x509.load_der_x509_certificate(c.der) for c in chain_certs]
    out: list[CertStatus] = []
    for cert, issuer, pc in zip(xs, xs[1:], chain_certs, strict=False):
        match = [r for r in parsed if _cert_id_matches(r, cert, issuer)]
        if not match:
            raise ChainError(
                "gpu.ocsp.missing",
                f"no OCSP response for {pki.describe(pc)} (serial {cert.serial_number:x})",
            )
        # Several responses may name one certificate (the node's and the collateral cache's).
        # Every one must be authentic. An authentic "revoked" wins whatever its window:
        # revocation is permanent (RFC 5280 §3.3; a held certificate is not usable either),
        # so a hostile node cannot outvote the verifier's revocation news with an older
        # "good" still in window. Otherwise stale ones are set aside while a fresh one
        # exists, and a fresh "unknown" wins over a "good".
        authentic: list[ocsp.OCSPResponse] = []
        fresh: list[tuple[ocsp.OCSPResponse, str]] = []
        for r in match:
            who = _responder(r, issuer, at)
            if who is None:
                raise ChainError(
                    "gpu.ocsp.signature_invalid",
                    f"the OCSP response for {pki.describe(pc)} is not signed by its issuer or "
                    "a delegated OCSP responder",
                )
            authentic.append(r)
            this_u, next_u = r.this_update_utc, r.next_update_utc
            if not (
                at < this_u
                or (next_u is not None and at > next_u)
                or (next_u is None and at > this_u + max_age)
            ):
                fresh.append((r, who))
        for r in authentic:
            when = r.revocation_time_utc
            if r.certificate_status == ocsp.OCSPCertStatus.REVOKED and (when is None or when <= at):
                reason = r.revocation_reason
                raise ChainError(
                    "gpu.ocsp.revoked",
                    f"{pki.describe(pc)} is revoked"
                    + (f" since {when.isoformat()}" if when else "")
                    + (f" ({reason.name})" if reason else ""),
                )
        if not fresh:
            r = match[0]
            this_u, next_u = r.this_update_utc, r.next_update_utc
            raise ChainError(
                "gpu.ocsp.stale",
                f"the OCSP response for {pki.describe(pc)} covers {this_u.isoformat()}.."
                f"{next_u.isoformat() if next_u else '(no nextUpdate)'}, not {at.isoformat()}",
            )
        for r, _ in fresh:
            if r.certificate_status != ocsp.OCSPCertStatus.GOOD:
                raise ChainError(
                    "gpu.ocsp.unknown", f"the OCSP responder does not know {pki.describe(pc)}"
                )
        r, who = fresh[0]
        out.append(
            CertStatus(
                pc.subject_cn,
                f"{cert.serial_number:x}",
                "good",
                r.this_update_utc,
                r.next_update_utc,
                who,
            )
        )
    return RevocationResult(True, tuple(out))
