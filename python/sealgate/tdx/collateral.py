"""TDX collateral: TCB info v3, TD_QE identity, TCB signing chain, PCK CRL, Root CA CRL.

Two input forms (README "Intel TDX"): the JSON Phala's dcap-qvl writes (``QuoteCollateralV3``:
``tcb_info`` holds the exact signed text of the ``tcbInfo`` value, signatures are hex
r ‖ s, CRLs are hex DER), and the individual Intel PCS v4 responses (TCB info body
``{"tcbInfo": ..., "signature": ...}``, QE identity body ``{"enclaveIdentity": ...,
"signature": ...}``, the TCB signing chain PEM from the ``TCB-Info-Issuer-Chain`` header,
PCK CRL and Root CA CRL as DER or PEM).

The JSON signatures cover the exact bytes of the ``tcbInfo`` / ``enclaveIdentity`` value as
served (Intel PCS API v4, "Get TDX TCB Info": "signature calculated over tcbInfo body"), so
the value's substring is extracted from the body, never re-serialised.

Signature and chain checks run once per collateral object and trusted-root set, then are
cached on the object; per quote only windows, FMSPC and revocation are compared.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealgate.documents import load_document
from sealgate.errors import ChainError, CollateralError, ParseError
from sealgate.lru import BoundedCache
from sealgate.tdx.pck import (
    CN_TCB_SIGNING,
    VerifiedChain,
    check_roles,
    load_pem_chain,
    verify_chain,
)

#: Collateral documents larger than this are refused (TCB info is ~10 KiB, PCK CRLs tens of
#: KiB; PCS bodies are far below 1 MiB).
MAX_COLLATERAL_LEN = 4 << 20
#: TCB levels / identities per document; Intel's hold a few dozen.
MAX_TCB_LEVELS = 256


def _coll(code: str, msg: str) -> CollateralError:
    return CollateralError(code, msg)


def extract_json_member(text: str, key: str) -> tuple[str, Any]:
    """(exact source text, parsed value) of top-level member ``key`` of a JSON object."""
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    pos = 0
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p] in ws:
            p += 1
        return p

    pos = skip(pos)
    if pos >= n or text[pos] != "{":
        raise _coll("tdx.collateral.invalid", "collateral body is not a JSON object")
    pos = skip(pos + 1)
    found: tuple[str, Any] | None = None
    seen: set[str] = set()
    while pos < n and text[pos] != "}":
        if text[pos] != '"':
            raise _coll("tdx.collateral.invalid", f"expected a member name at {pos}")
        try:
            name, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
            pos = skip(pos)
            if pos >= n or text[pos] != ":":
                raise ValueError("expected ':'")
            start = skip(pos + 1)
            value, end = dec.raw_decode(text, start)
        except (ValueError, RecursionError) as e:
            raise _coll("tdx.collateral.invalid", f"malformed JSON: {e}") from None
        if name in seen:
            # Duplicate keys make "the signed value" ambiguous: refuse.
            raise _coll("tdx.collateral.invalid", f"duplicate member {name!r}")
        seen.add(name)
        if name == key:
            found = (text[start:end], value)
        pos = skip(end)
        if pos < n and text[pos] == ",":
            pos = skip(pos + 1)
    if pos >= n or skip(pos + 1) != n:
        raise _coll("tdx.collateral.invalid", "trailing or truncated JSON")
    if found is None:
        raise _coll("tdx.collateral.invalid", f"collateral body has no {key!r} member")
    return found


def _parse_time(s: Any, what: str) -> datetime:
    if not isinstance(s, str):
        raise _coll("tdx.collateral.invalid", f"{what} is not a string")
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise _coll("tdx.collateral.invalid", f"{what} {s!r} is not RFC 3339") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t


def _hex(s: Any, what: str, size: int | None = None) -> bytes:
    try:
        b = bytes.fromhex(s) if isinstance(s, str) else b""
    except ValueError:
        b = b""
    if not b or (size is not None and len(b) != size):
        raise _coll("tdx.collateral.invalid", f"{what} is not {size or 'some'} bytes of hex")
    return b


def _signed_json(text: str, what: str) -> Any:
    """A signed body's JSON (after its signature verified): the shared loader's rules, so
    a repeated member cannot make "the signed value" ambiguous."""
    return load_document(
        text,
        code="tdx.collateral.invalid",
        what=what,
        yaml_ok=False,
        max_bytes=MAX_COLLATERAL_LEN,
        error=CollateralError,
    )


def _load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (ValueError, x509.InvalidVersion) as e:
        # InvalidVersion: RFC 5280 §5.1.2.1 knows v1 and v2 CRLs only.
        raise _coll("tdx.collateral.invalid", f"{what} is not a CRL: {e}") from None


def _sig_ok(key: Any, data: bytes, rs: bytes) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(rs) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Window:
    what: str
    issued: datetime
    next_update: datetime

    def check(self, at: datetime) -> None:
        if at < self.issued:
            raise _coll(
                "tdx.collateral.not_yet_valid",
                f"{self.what} issued {self.issued.isoformat()} is later than {at.isoformat()}",
            )
        if at > self.next_update:
            raise _coll(
                "tdx.collateral.expired",
                f"{self.what} expired at {self.next_update.isoformat()} "
                f"(verification time {at.isoformat()})",
            )


@dataclass(frozen=True)
class Crl:
    crl: x509.CertificateRevocationList
    window: Window
    revoked: frozenset[int]
    issuer_der: bytes = b""

    def revokes(self, issuer_der: bytes, serial: int) -> bool:
        return serial in self.revoked and issuer_der == self.issuer_der


@dataclass
class VerifiedCollateral:
    """Collateral whose signatures and chains were checked against one root set."""

    tcb_info: dict[str, Any]
    qe_identity: dict[str, Any]
    fmspc: bytes
    pce_id: bytes
    windows: list[Window]
    tcb_chain: VerifiedChain
    qe_chain: VerifiedChain
    root_crl: Crl | None
    #: TCB signing chain certificates (issuer DER, serial) below the root.
    tcb_serials: tuple[tuple[bytes, int], ...] = ()
    #: PCK CRL checked per issuing CA (fingerprint) the first time a quote needs it.
    pck_crls: dict[str, Crl] = field(default_factory=dict)
    #: TCB evaluation results by platform/QE identity tuple (see tcb.evaluate).
    tcb_cache: dict[Any, Any] = field(default_factory=dict)

    def valid_span(self) -> tuple[datetime, datetime]:
        """(latest issue date, earliest next update) over `windows` and the TCB chain."""
        lo = max([w.issued for w in self.windows] + [self.tcb_chain.not_before])
        hi = min([w.next_update for w in self.windows] + [self.tcb_chain.not_after])
        return lo, hi


@dataclass
class TdxCollateral:
    """Raw TDX collateral as supplied; `verified()` checks it (cached per root set)."""

    tcb_info_json: str
    tcb_info_signature: bytes
    qe_identity_json: str
    qe_identity_signature: bytes
    tcb_info_issuer_chain: bytes
    qe_identity_issuer_chain: bytes
    pck_crl: bytes | None = None
    root_crl: bytes | None = None
    source: str = ""
    _verified: dict[tuple[str, ...], VerifiedCollateral] = field(
        default_factory=dict, repr=False, compare=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def fmspc(self) -> str:
        """FMSPC the TCB info is for (uppercase hex as Intel writes it), unverified."""
        try:
            doc = json.loads(self.tcb_info_json)
        except (ValueError, RecursionError):
            return ""
        return str(doc.get("fmspc", "")) if isinstance(doc, dict) else ""

    def verified(
        self, roots: list[x509.Certificate], roots_key: tuple[str, ...]
    ) -> VerifiedCollateral:
        hit = self._verified.get(roots_key)
        if hit is not None:
            return hit
        v = self._verify(roots)
        with self._lock:
            self._verified[roots_key] = v
        return v

    def _verify(self, roots: list[x509.Certificate]) -> VerifiedCollateral:
        try:
            tcb_chain = verify_chain(
                load_pem_chain(self.tcb_info_issuer_chain, "TCB info issuer chain"),
                roots,
                "tdx.collateral.chain_invalid",
            )
            check_roles(tcb_chain, ((CN_TCB_SIGNING,),), "tdx.collateral.chain_invalid")
            qe_chain = tcb_chain
            if self.qe_identity_issuer_chain != self.tcb_info_issuer_chain:
                qe_chain = verify_chain(
                    load_pem_chain(self.qe_identity_issuer_chain, "QE identity issuer chain"),
                    roots,
                    "tdx.collateral.chain_invalid",
                )
                check_roles(qe_chain, ((CN_TCB_SIGNING,),), "tdx.collateral.chain_invalid")
        except ChainError as e:
            code = e.code if e.code.startswith("tdx.collateral") else "tdx.collateral.chain_invalid"
            raise _coll(code, e.message) from None
        if not _sig_ok(
            tcb_chain.leaf.public_key(), self.tcb_info_json.encode(), self.tcb_info_signature
        ):
            raise _coll(
                "tdx.collateral.signature_invalid",
                "TCB info signature does not verify with the TCB signing certificate",
            )
        if not _sig_ok(
            qe_chain.leaf.public_key(), self.qe_identity_json.encode(), self.qe_identity_signature
        ):
            raise _coll(
                "tdx.collateral.signature_invalid",
                "QE identity signature does not verify with the TCB signing certificate",
            )
        tcb = _signed_json(self.tcb_info_json, "tcbInfo")
        qe = _signed_json(self.qe_identity_json, "enclaveIdentity")
        if not isinstance(tcb, dict) or not isinstance(qe, dict):
            raise _coll("tdx.collateral.invalid", "tcbInfo / enclaveIdentity must be objects")
        if tcb.get("id") != "TDX" or tcb.get("version") != 3:
            raise _coll(
                "tdx.collateral.unsupported",
                f"TCB info id {tcb.get('id')!r} version {tcb.get('version')!r}; "
                "expected TDX TCB info version 3",
            )
        if qe.get("id") != "TD_QE":
            raise _coll(
                "tdx.collateral.unsupported", f"QE identity id {qe.get('id')!r}, expected TD_QE"
            )
        levels = tcb.get("tcbLevels")
        if not isinstance(levels, list) or not levels or len(levels) > MAX_TCB_LEVELS:
            raise _coll("tdx.collateral.invalid", "TCB info tcbLevels missing or oversized")
        windows = [
            Window(
                "TCB info",
                _parse_time(tcb.get("issueDate"), "tcbInfo.issueDate"),
                _parse_time(tcb.get("nextUpdate"), "tcbInfo.nextUpdate"),
            ),
            Window(
                "QE identity",
                _parse_time(qe.get("issueDate"), "enclaveIdentity.issueDate"),
                _parse_time(qe.get("nextUpdate"), "enclaveIdentity.nextUpdate"),
            ),
        ]
        root_crl = None
        if self.root_crl is not None:
            root_crl = _checked_crl(self.root_crl, tcb_chain.certs[-1], "Root CA CRL")
            windows.append(root_crl.window)
        return VerifiedCollateral(
            tcb_info=tcb,
            qe_identity=qe,
            fmspc=_hex(tcb.get("fmspc"), "tcbInfo.fmspc", 6),
            pce_id=_hex(tcb.get("pceId"), "tcbInfo.pceId", 2),
            windows=windows,
            tcb_chain=tcb_chain,
            qe_chain=qe_chain,
            root_crl=root_crl,
            tcb_serials=tuple(
                (c.issuer.public_bytes(), c.serial_number) for c in tcb_chain.certs[:-1]
            ),
        )

    def pck_crl_for(self, v: VerifiedCollateral, ca: x509.Certificate, ca_fp: str) -> Crl | None:
        """The PCK CRL checked against the quote's (verified) PCK CA, cached per CA."""
        if self.pck_crl is None:
            return None
        hit = v.pck_crls.get(ca_fp)
        if hit is None:
            hit = _checked_crl(self.pck_crl, ca, "PCK CRL")
            with self._lock:
                v.pck_crls[ca_fp] = hit
        return hit


def _checked_crl(data: bytes, issuer: x509.Certificate, what: str) -> Crl:
    crl = _load_crl(data, what)
    try:
        return _check_crl(crl, issuer, what)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # cryptography reads names, revoked entries and the signature algorithm lazily.
        raise _coll("tdx.collateral.invalid", f"{what} unreadable: {e}") from None


def _check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, what: str) -> Crl:
    if crl.issuer != issuer.subject:
        raise _coll(
            "tdx.collateral.crl_issuer_mismatch",
            f"{what} is issued by {crl.issuer.rfc4514_string()}, "
            f"expected {issuer.subject.rfc4514_string()}",
        )
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise _coll("tdx.collateral.signature_invalid", f"{what} signature does not verify")
    nu = crl.next_update_utc
    if nu is None:
        raise _coll("tdx.collateral.invalid", f"{what} has no nextUpdate")
    return Crl(
        crl=crl,
        window=Window(what, crl.last_update_utc, nu),
        revoked=frozenset(r.serial_number for r in crl),
        issuer_der=crl.issuer.public_bytes(),
    )


#: Loaded-collateral objects kept for reuse (so repeated loads share verification caches),
#: keyed by a digest of the input; bounded by count and by the bytes they hold (a node
#: chooses what collateral it sends, and each distinct body would otherwise stay).
LOADED_CACHE_SIZE = 256
LOADED_CACHE_BYTES = 64 << 20
_LOADED: BoundedCache[bytes, TdxCollateral] = BoundedCache(LOADED_CACHE_SIZE, LOADED_CACHE_BYTES)


def _memo_key(key_parts: list[bytes]) -> bytes:
    h = hashlib.sha256()
    for p in key_parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.digest()


def loaded(data: bytes) -> TdxCollateral | None:
    """The collateral ``load_collateral_json(data)`` returned before, if still cached."""
    return _LOADED.get(_memo_key([b"json", data]))


def _memo(key_parts: list[bytes], build: Any) -> TdxCollateral:
    key = _memo_key(key_parts)
    hit = _LOADED.get(key)
    if hit is not None:
        return hit
    c: TdxCollateral = build()
    _LOADED.put(key, c, sum(len(p) for p in key_parts))
    return c


def _crl_bytes(v: Any, what: str) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, str):
        return _hex(v, what)
    if isinstance(v, list) and all(isinstance(x, int) and 0 <= x < 256 for x in v):
        return bytes(v)
    raise _coll("tdx.collateral.invalid", f"{what} must be hex or a byte list")


def load_collateral_json(data: bytes) -> TdxCollateral:
    """dcap-qvl's ``QuoteCollateralV3`` JSON (e.g. ``tdx_quote_collateral.json``)."""
    if len(data) > MAX_COLLATERAL_LEN:
        raise _coll("tdx.collateral.invalid", "collateral JSON too large")

    def build() -> TdxCollateral:
        # The shared loader also refuses strings with lone surrogates ("\ud800"), which
        # could not be encoded back to the UTF-8 bytes the signatures cover.
        doc = load_document(
            data,
            code="tdx.collateral.invalid",
            what="collateral JSON",
            yaml_ok=False,
            max_bytes=MAX_COLLATERAL_LEN,
            error=CollateralError,
        )
        if not isinstance(doc, dict):
            raise _coll("tdx.collateral.invalid", "collateral JSON must be an object")

        def text(name: str, default: str | None = None) -> str:
            v = doc.get(name) or default
            if not isinstance(v, str):
                raise _coll("tdx.collateral.invalid", f"collateral JSON {name} must be a string")
            return v

        try:
            tcb_chain = text("tcb_info_issuer_chain")
            return TdxCollateral(
                tcb_info_json=text("tcb_info"),
                tcb_info_signature=_hex(doc["tcb_info_signature"], "tcb_info_signature", 64),
                qe_identity_json=text("qe_identity"),
                qe_identity_signature=_hex(
                    doc["qe_identity_signature"], "qe_identity_signature", 64
                ),
                tcb_info_issuer_chain=tcb_chain.encode(),
                qe_identity_issuer_chain=text("qe_identity_issuer_chain", tcb_chain).encode(),
                pck_crl=_crl_bytes(doc.get("pck_crl"), "pck_crl"),
                root_crl=_crl_bytes(doc.get("root_ca_crl"), "root_ca_crl"),
                source="dcap-qvl json",
            )
        except KeyError as e:
            raise _coll("tdx.collateral.invalid", f"collateral JSON lacks {e}") from None

    return _memo([b"json", data], build)


def load_collateral_files(
    tcb_info: bytes,
    qe_identity: bytes,
    tcb_signing_chain: bytes,
    pck_crl: bytes | None = None,
    root_crl: bytes | None = None,
) -> TdxCollateral:
    """Individual Intel PCS v4 responses (bodies as served, chain PEM, CRLs DER or PEM)."""
    for what, d in (("TCB info", tcb_info), ("QE identity", qe_identity)):
        if len(d) > MAX_COLLATERAL_LEN:
            raise _coll("tdx.collateral.invalid", f"{what} too large")

    def build() -> TdxCollateral:
        try:
            tcb_text = tcb_info.decode("utf-8")
            qe_text = qe_identity.decode("utf-8")
        except UnicodeDecodeError:
            raise _coll("tdx.collateral.invalid", "collateral body is not UTF-8") from None
        tcb_raw, _ = extract_json_member(tcb_text, "tcbInfo")
        _, tcb_sig = extract_json_member(tcb_text, "signature")
        qe_raw, _ = extract_json_member(qe_text, "enclaveIdentity")
        _, qe_sig = extract_json_member(qe_text, "signature")
        return TdxCollateral(
            tcb_info_json=tcb_raw,
            tcb_info_signature=_hex(tcb_sig, "tcbInfo signature", 64),
            qe_identity_json=qe_raw,
            qe_identity_signature=_hex(qe_sig, "enclaveIdentity signature", 64),
            tcb_info_issuer_chain=tcb_signing_chain,
            qe_identity_issuer_chain=tcb_signing_chain,
            pck_crl=pck_crl,
            root_crl=root_crl,
            source="pcs files",
        )

    return _memo(
        [b"files", tcb_info, qe_identity, tcb_signing_chain, pck_crl or b"-", root_crl or b"-"],
        build,
    )


def to_json(c: TdxCollateral) -> bytes:
    """Write collateral in the dcap-qvl JSON layout (what the cache stores)."""
    doc: dict[str, Any] = {
        "pck_crl_issuer_chain": "",
        "root_ca_crl": c.root_crl.hex() if c.root_crl is not None else None,
        "pck_crl": c.pck_crl.hex() if c.pck_crl is not None else None,
        "tcb_info_issuer_chain": c.tcb_info_issuer_chain.decode(),
        "tcb_info": c.tcb_info_json,
        "tcb_info_signature": c.tcb_info_signature.hex(),
        "qe_identity_issuer_chain": c.qe_identity_issuer_chain.decode(),
        "qe_identity": c.qe_identity_json,
        "qe_identity_signature": c.qe_identity_signature.hex(),
    }
    return json.dumps(doc, indent=1).encode()


__all__ = [
    "ParseError",
    "TdxCollateral",
    "VerifiedCollateral",
    "load_collateral_files",
    "load_collateral_json",
    "to_json",
]
