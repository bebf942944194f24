"""Intel's DCAP certificate hierarchy as a vendor profile on ``sealgate.pki``.

"Intel SGX PCK Certificate and Certificate Revocation List Profile Specification": every
certificate and CRL is ECDSA P-256 with SHA-256 under the Intel SGX Root CA; a PCK
certificate is issued by the PCK Platform CA or the PCK Processor CA, the TCB info and QE
identity are signed by the TCB Signing certificate, which the root issues directly. Each
role is pinned to its subject common name (QVL checks the same names), so that, e.g., a PCK
certificate (whose key lives in a platform) can never pass as the TCB signing certificate.

Parsing, signatures, basic constraints, key usage and the algorithm profile are the PKI
layer's (``sealgate.pki``); this module adds Intel's names, the exact chain shapes and the
mapping of the layer's ``x509.*`` codes to the stable ``tdx.*`` ones. Chains are verified
without a time (signatures and shape do not depend on it); validity windows are compared
per call (``check_time``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sealgate import _core, pki
from sealgate.errors import ChainError, CollateralError, ParseError, VerificationError

#: Intel SGX Root CA (CN=Intel SGX Root CA, ECDSA P-256, valid 2018-05-21..2049-12-31), SHA-256
#: of the DER certificate: what Intel PCS serves at the end of /sgx/certification/v4/... issuer
#: chains and what Phala's dcap-qvl ships as its trusted root.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

CN_PCK = "Intel SGX PCK Certificate"
CN_PCK_CAS = ("Intel SGX PCK Platform CA", "Intel SGX PCK Processor CA")
CN_TCB_SIGNING = "Intel SGX TCB Signing"

#: The profile's one signature algorithm (certificates and CRLs).
ALGORITHMS = ("ecdsa-sha256",)
#: A PCK chain is three certificates; more than this is not Intel's.
MAX_CHAIN_CERTS = 4
#: Entries kept in the verified-chain cache (one per platform the verifier has seen).
CHAIN_CACHE_SIZE = 4096
#: Bytes the verified-chain cache may hold (an entry is a few KiB of parsed certificates).
CHAIN_CACHE_BYTES = 64 << 20

#: The PCK leaf: ECDSA on P-256 (the QE report signature is verified with it).
_P256 = ("ec", 256, pki.OID_P256)
#: CRL failures of the PKI layer under the collateral codes; anything else is "invalid".
_CRL_CODES = {
    "x509.crl.wrong_issuer": "tdx.collateral.crl_issuer_mismatch",
    "x509.crl.key_usage": "tdx.collateral.crl_issuer_mismatch",
    "x509.crl.signature_invalid": "tdx.collateral.signature_invalid",
    "x509.crl.algorithm_not_allowed": "tdx.collateral.signature_invalid",
    "x509.crl.unsupported_algorithm": "tdx.collateral.signature_invalid",
}


def chain_verifier() -> pki.ChainVerifier:
    """Intel's profile for the PKI layer's chain builder (one per TDX verifier: it keeps
    the memo of signatures verified)."""
    return pki.ChainVerifier(ALGORITHMS, max_depth=MAX_CHAIN_CERTS)


def _pem_ders(data: bytes, what: str) -> list[bytes]:
    """The DER blocks of a PEM chain (a trailing NUL, as quotes carry, is ignored): at most
    ``MAX_CHAIN_CERTS`` blocks and nothing but whitespace outside them, so that a garbled
    block is refused, never skipped, and padding never rides along."""
    body = data.rstrip(b"\x00 \r\n\t")
    if body.count(b"-----BEGIN") > MAX_CHAIN_CERTS:
        raise ChainError(
            "tdx.pck.chain_invalid", f"{what} holds more than {MAX_CHAIN_CERTS} PEM blocks"
        )
    return pki.pem_blocks(body, strict=True)


def load_pem_chain(
    data: bytes, what: str, code: str = "tdx.pck.chain_invalid"
) -> list[pki.Certificate]:
    """Certificates from concatenated PEM; every block must be a certificate that parses.
    Any defect is ``code`` (a ChainError)."""
    try:
        ders = _pem_ders(data, what)
    except ParseError as e:
        raise ChainError(code, f"{what} is not a PEM chain: {e.message}") from None
    except ChainError as e:
        raise ChainError(code, e.message) from None
    if not ders:
        raise ChainError(code, f"{what} holds no certificate")
    certs = []
    for i, der in enumerate(ders):
        try:
            certs.append(pki.load_certificate(der))
        except ParseError as e:
            raise ChainError(
                code, f"{what}: certificate #{i} does not parse: {e.message}"
            ) from None
    return certs


def load_root(data: bytes) -> pki.Certificate:
    """One trusted root certificate, PEM or DER, with a usable public key
    (``tdx.root.invalid`` otherwise)."""
    try:
        certs = pki.load_certificates(data, "root certificate")
        if len(certs) != 1:
            raise ParseError(
                "x509.format.invalid", f"{len(certs)} certificates where one was expected"
            )
        certs[0].public_key()
    except ParseError as e:
        raise ChainError("tdx.root.invalid", f"not a certificate: {e.message}") from None
    return certs[0]


def load_roots(blobs: list[bytes]) -> tuple[list[pki.Certificate], tuple[str, ...]]:
    """Trusted roots from PEM/DER blobs (one certificate each, or a PEM bundle):
    (certificates, sorted fingerprints, the key of everything verified under them).

    Caller-supplied roots are trusted as given (tests with a synthetic hierarchy rely on
    it); roots from the trust directory are pinned by ``sealgate.trust``.
    """
    certs: list[pki.Certificate] = []
    for blob in blobs:
        if blob.count(b"-----BEGIN CERTIFICATE-----") > 1:
            certs.extend(load_pem_chain(blob, "roots"))
        else:
            certs.append(load_root(blob))
    return certs, tuple(sorted(c.fingerprint for c in certs))


def verify_chain(
    verifier: pki.ChainVerifier,
    certs: list[pki.Certificate],
    roots: list[pki.Certificate],
    code: str,
) -> pki.Path:
    """Link ``certs`` (leaf first, in order, each one used) to one of ``roots``.

    The chain may or may not include the root; when it does, the included root must be
    byte-identical to a trusted one: a look-alike self-signed root is refused even when the
    certificates below it also verify under the trusted one.
    """
    if not roots:
        raise ChainError(
            code,
            "no trusted Intel SGX Root CA is configured (run `sealgate trust fetch tdx` or "
            "`sealgate trust import FILE`, or pass roots)",
        )
    if not certs:
        raise ChainError(code, "empty chain")
    body = list(certs)
    top = body[-1]
    if len(body) > 1 and top.subject == top.issuer:
        if top not in roots:
            raise ChainError(
                code, f"chain root {top.fingerprint} is not a trusted Intel SGX Root CA"
            )
        body.pop()
    try:
        path = verifier.build(body[0], body[1:], roots)
    except ChainError as e:
        raise pki.remap(e, {}, code) from None
    # The chain as sent is the path (RFC 5280 §6.1 processes a path in order): no certificate
    # unused, none out of order.
    if path.certs[:-1] != tuple(body):
        raise ChainError(code, "the chain's certificates are not one path, leaf first")
    return path


def check_roles(path: pki.Path, names: tuple[tuple[str, ...], ...], code: str) -> None:
    """``path`` (leaf … root) has exactly ``len(names) + 1`` certificates whose subject CNs
    are, in order, one of ``names[i]`` (the root was already matched to a trusted one)."""
    if len(path.certs) != len(names) + 1:
        raise ChainError(
            code, f"chain of {len(path.certs)} certificates, expected {len(names) + 1}"
        )
    for cert, allowed in zip(path.certs, names, strict=False):
        if cert.subject_cn not in allowed:
            raise ChainError(
                code, f"certificate {cert.subject_cn!r} where {' or '.join(allowed)} belongs"
            )


def check_time(path: pki.Path, at: datetime, code: str) -> None:
    """Every certificate of ``path`` is valid at ``at`` (two comparisons in the common case)."""
    bad = path.invalid_at(at)
    if bad is not None:
        cert, _ = bad
        raise ChainError(
            code,
            f"{pki.describe(cert)} is valid {cert.not_before.isoformat()}.."
            f"{cert.not_after.isoformat()}, not at {at.isoformat()}",
        )


def check_crl(
    verifier: pki.ChainVerifier, data: bytes, issuer: pki.Certificate, what: str
) -> pki.Crl:
    """A CRL (PEM or DER) issued and signed by ``issuer``, with a nextUpdate (Intel's CRLs
    carry one; its window is compared per call). Failures are ``tdx.collateral.*``."""
    try:
        crl = pki.load_crl(data, what)
    except ParseError as e:
        raise CollateralError(
            "tdx.collateral.invalid", f"{what} is not a CRL: {e.message}"
        ) from None
    try:
        verifier.check_crl(crl, issuer)
    except ChainError as e:
        r = pki.remap(e, _CRL_CODES, "tdx.collateral.invalid")
        raise CollateralError(r.code, f"{what}: {r.message}") from None
    if crl.next_update is None:
        raise CollateralError("tdx.collateral.invalid", f"{what} has no nextUpdate")
    return crl


def revokes(crl: pki.Crl, cert: pki.Certificate) -> bool:
    """``crl`` lists ``cert`` (its issuer's CRL: same issuer name, RFC 5280 §5.3.3). The
    serial set is the CRL's, decoded once: per quote this is a set look-up."""
    return cert.serial in crl.revoked and cert.issuer == crl.issuer


@dataclass(frozen=True)
class PckInfo:
    chain: pki.Path  # PCK, PCK CA, root
    key: _core.TdxPckKey
    ext: pki.SgxExtension
    ca_kind: str  # "platform" | "processor"
    ca_fp: str  # fingerprint of the issuing PCK CA (CRL cache key)
    #: The PCK claims (fmspc, pce_id, pcesvn, cpusvn, pck_ca), built once.
    claims: dict[str, Any] = field(default_factory=dict)


def chain_key(chain_pem: bytes) -> tuple[bytes, ...]:
    """SHA-256 of each certificate's DER in a PEM chain from a quote, checked for shape
    without parsing: at most ``MAX_CHAIN_CERTS`` blocks and nothing but whitespace (and
    the NUL terminator quotes carry) outside them."""
    try:
        ders = _pem_ders(chain_pem, "PCK chain")
    except ParseError as e:
        if e.code == "x509.format.trailing_bytes":
            raise ParseError("tdx.format.trailing_bytes", f"PCK chain: {e.message}") from None
        raise ChainError("tdx.pck.chain_invalid", f"PCK chain: {e.message}") from None
    return tuple(hashlib.sha256(d).digest() for d in ders)


def ca_kind(cert: pki.Certificate) -> str:
    """ "processor" or "platform": which PCK CA issued ``cert`` (by the issuer's CN)."""
    return "processor" if "Processor" in cert.issuer_cn else "platform"


def sgx_extension(leaf: pki.Certificate) -> pki.SgxExtension:
    ext = leaf.sgx_extension()
    if ext is None:
        raise ChainError("tdx.pck.chain_invalid", "PCK certificate has no SGX extension")
    return ext


def build_pck_info(
    verifier: pki.ChainVerifier, chain_pem: bytes, roots: list[pki.Certificate]
) -> PckInfo:
    """The quote's PCK chain verified under ``roots`` with Intel's roles, its key and SGX
    extension read."""
    certs = load_pem_chain(chain_pem, "PCK certificate chain")
    chain = verify_chain(verifier, certs, roots, "tdx.pck.chain_invalid")
    check_roles(chain, ((CN_PCK,), CN_PCK_CAS), "tdx.pck.chain_invalid")
    leaf = chain.leaf
    point = leaf.public_key_bits
    if leaf.key_type != _P256 or len(point) != 65 or point[0] != 4:
        raise ChainError("tdx.pck.chain_invalid", "PCK key is not ECDSA P-256")
    try:
        key = _core.TdxPckKey(point[1:33], point[33:])
    except VerificationError as e:
        raise ChainError("tdx.pck.chain_invalid", e.message) from None
    ext = sgx_extension(leaf)
    kind = ca_kind(leaf)
    return PckInfo(
        chain=chain,
        key=key,
        ext=ext,
        ca_kind=kind,
        ca_fp=chain.certs[1].fingerprint,
        claims={
            "fmspc": ext.fmspc.hex(),
            "pce_id": ext.pceid.hex(),
            "pcesvn": ext.pcesvn,
            "cpusvn": ext.cpusvn.hex(),
            "pck_ca": kind,
            # The platform's identity for revocation (stable across TCB recovery).
            "ppid": ext.ppid.hex(),
            # Platform CA certificates only (multi-package platforms); the OCTET STRING as
            # the certificate carries it (CoCo trustee prints it byte-reversed).
            "platform_instance_id": (
                ext.platform_instance_id.hex() if ext.platform_instance_id is not None else None
            ),
        },
    )
