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

Certificates and CRLs go through ``sealgate.pki`` with Intel's profile (``tdx.pck``).
Signature and chain checks run once per collateral (by digest) and trusted-root set and are
cached by the TDX verifier object that ran them (``sealgate.tdx.TdxVerifier``); per quote
only windows, FMSPC and revocation are compared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sealgate import _core, pki
from sealgate.documents import load_document
from sealgate.errors import ChainError, CollateralError, ParseError, VerificationError
from sealgate.tdx.pck import (
    CN_TCB_SIGNING,
    check_crl,
    check_roles,
    load_pem_chain,
    revokes,
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


def _sig_ok(cert: pki.Certificate, data: bytes, rs: bytes) -> bool:
    """ECDSA P-256 / SHA-256 signature ``rs`` (r ‖ s, as Intel PCS serves it) by ``cert``."""
    point = cert.public_key_bits
    if cert.key_type != ("ec", 256, pki.OID_P256) or len(point) != 65 or len(rs) != 64:
        return False
    try:
        key = _core.TdxPckKey(point[1:33], point[33:])
    except VerificationError:
        return False
    return bool(key.verify(data, rs))


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


def crl_window(crl: pki.Crl, what: str) -> Window:
    """thisUpdate..nextUpdate of a CRL ``check_crl`` accepted (it has a nextUpdate)."""
    if crl.next_update is None:
        raise _coll("tdx.collateral.invalid", f"{what} has no nextUpdate")
    return Window(what, crl.this_update, crl.next_update)


@dataclass(frozen=True)
class CheckedCrl:
    """A CRL verified against its issuer, with its window."""

    crl: pki.Crl
    window: Window

    @classmethod
    def check(
        cls, verifier: pki.ChainVerifier, data: bytes, issuer: pki.Certificate, what: str
    ) -> CheckedCrl:
        """``tdx.pck.check_crl``: ``data`` is ``issuer``'s CRL."""
        crl = check_crl(verifier, data, issuer, what)
        return cls(crl, crl_window(crl, what))

    def revokes(self, cert: pki.Certificate) -> bool:
        return revokes(self.crl, cert)


@dataclass(frozen=True)
class VerifiedCollateral:
    """Collateral whose signatures and chains were checked against one root set."""

    tcb_info: dict[str, Any]
    qe_identity: dict[str, Any]
    fmspc: bytes
    pce_id: bytes
    windows: tuple[Window, ...]
    tcb_chain: pki.Path
    qe_chain: pki.Path
    root_crl: CheckedCrl | None
    #: (latest issue date, earliest next update) over ``windows`` and the TCB chain.
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class TdxCollateral:
    """Raw TDX collateral as supplied; ``verify()`` checks it (a TDX verifier caches the
    outcome by ``digest`` and root set)."""

    tcb_info_json: str
    tcb_info_signature: bytes
    qe_identity_json: str
    qe_identity_signature: bytes
    tcb_info_issuer_chain: bytes
    qe_identity_issuer_chain: bytes
    pck_crl: bytes | None = None
    root_crl: bytes | None = None
    source: str = ""

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 over every signed part (what verification results are cached by)."""
        return _memo_key(
            [
                self.tcb_info_json.encode(),
                self.tcb_info_signature,
                self.qe_identity_json.encode(),
                self.qe_identity_signature,
                self.tcb_info_issuer_chain,
                self.qe_identity_issuer_chain,
                b"-" if self.pck_crl is None else b"+" + self.pck_crl,
                b"-" if self.root_crl is None else b"+" + self.root_crl,
            ]
        )

    @property
    def size(self) -> int:
        """Bytes held (cache accounting)."""
        return (
            len(self.tcb_info_json)
            + len(self.qe_identity_json)
            + len(self.tcb_info_issuer_chain)
            + len(self.qe_identity_issuer_chain)
            + len(self.pck_crl or b"")
            + len(self.root_crl or b"")
            + 256
        )

    @property
    def fmspc(self) -> str:
        """FMSPC the TCB info is for (uppercase hex as Intel writes it), unverified."""
        try:
            doc = json.loads(self.tcb_info_json)
        except (ValueError, RecursionError):
            return ""
        return str(doc.get("fmspc", "")) if isinstance(doc, dict) else ""

    def verify(
        self, verifier: pki.ChainVerifier, roots: list[pki.Certificate]
    ) -> VerifiedCollateral:
        """Issuer chains (Intel's TCB Signing role), signatures, documents, Root CA CRL."""
        code = "tdx.collateral.chain_invalid"
        try:
            tcb_chain = verify_chain(
                verifier,
                load_pem_chain(self.tcb_info_issuer_chain, "TCB info issuer chain", code),
                roots,
                code,
            )
            check_roles(tcb_chain, ((CN_TCB_SIGNING,),), code)
            qe_chain = tcb_chain
            if self.qe_identity_issuer_chain != self.tcb_info_issuer_chain:
                qe_chain = verify_chain(
                    verifier,
                    load_pem_chain(self.qe_identity_issuer_chain, "QE identity issuer chain", code),
                    roots,
                    code,
                )
                check_roles(qe_chain, ((CN_TCB_SIGNING,),), code)
        except ChainError as e:
            raise _coll(
                e.code if e.code.startswith("tdx.collateral") else code, e.message
            ) from None
        if not _sig_ok(tcb_chain.leaf, self.tcb_info_json.encode(), self.tcb_info_signature):
            raise _coll(
                "tdx.collateral.signature_invalid",
                "TCB info signature does not verify with the TCB signing certificate",
            )
        if not _sig_ok(qe_chain.leaf, self.qe_identity_json.encode(), self.qe_identity_signature):
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
            root_crl = CheckedCrl.check(verifier, self.root_crl, tcb_chain.anchor, "Root CA CRL")
            windows.append(root_crl.window)
        return VerifiedCollateral(
            tcb_info=tcb,
            qe_identity=qe,
            fmspc=_hex(tcb.get("fmspc"), "tcbInfo.fmspc", 6),
            pce_id=_hex(tcb.get("pceId"), "tcbInfo.pceId", 2),
            windows=tuple(windows),
            tcb_chain=tcb_chain,
            qe_chain=qe_chain,
            root_crl=root_crl,
            valid_from=max([w.issued for w in windows] + [tcb_chain.not_before]),
            valid_until=min([w.next_update for w in windows] + [tcb_chain.not_after]),
        )


def _memo_key(key_parts: list[bytes]) -> bytes:
    h = hashlib.sha256()
    for p in key_parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.digest()


def json_key(data: bytes) -> bytes:
    """Cache key of a collateral JSON body (``TdxVerifier.load_collateral_json``)."""
    return _memo_key([b"json", data])


def files_key(parts: list[bytes | None]) -> bytes:
    """Cache key of individual PCS responses (``TdxVerifier.load_collateral_files``)."""
    return _memo_key([b"files", *(p if p is not None else b"-" for p in parts)])


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
            qe_identity_signature=_hex(doc["qe_identity_signature"], "qe_identity_signature", 64),
            tcb_info_issuer_chain=tcb_chain.encode(),
            qe_identity_issuer_chain=text("qe_identity_issuer_chain", tcb_chain).encode(),
            pck_crl=_crl_bytes(doc.get("pck_crl"), "pck_crl"),
            root_crl=_crl_bytes(doc.get("root_ca_crl"), "root_ca_crl"),
            source="dcap-qvl json",
        )
    except KeyError as e:
        raise _coll("tdx.collateral.invalid", f"collateral JSON lacks {e}") from None


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
