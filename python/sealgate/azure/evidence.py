"""Azure CVM evidence: the parts, and the interop serialisations they arrive in.

``AzureEvidence`` holds the plain parts (HCL report, vTPM quote TPMS_ATTEST + signature +
PCR values, event log, VCEK and chain, TD quote, TDX collateral). Two producers' formats
load into it: Confidential Containers trustee's evidence JSON (the ``az-snp-vtpm`` and
``az-tdx-vtpm`` attesters: v0 with byte arrays, v1/v2 with base64url and hex fields) and
the bincode ``quote.bin`` of the vTPM tooling (rust/formats/src/azure.rs).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from sealgate import _core
from sealgate.documents import load_document
from sealgate.errors import ParseError
from sealgate.tdx.collateral import TdxCollateral
from sealgate.tpm import BANK_SIZES, PcrMap, load_pcrs

__all__ = [
    "AzureEvidence",
    "load_pcrs_json",
    "load_trustee_json",
    "parse_quote_bin",
    "pcrs_from_list",
    "tpmt_signature",
]

#: Trustee evidence JSON: v0 spells every byte as a JSON number (the HCL report alone is
#: ~10 KiB of text per KiB); a TDX v0 document with its 5 KiB TD quote stays far below this.
MAX_EVIDENCE_JSON = 1 << 20
#: Largest byte string one field may decode to (the TD quote with its PCK chain: ~5 KiB).
MAX_FIELD_BYTES = 64 << 10

_HEX = re.compile(r"[0-9a-fA-F]*")


@dataclass
class AzureEvidence:
    """The parts of one Azure CVM attestation (see the module docstring).

    ``quote``: TPMS_ATTEST; ``signature``: TPMT_SIGNATURE or the raw RSA signature;
    ``pcrs``: the quoted PCR values (``sealgate.tpm.PcrMap``); ``vcek``: DER, PEM, or the
    PEM bundle VCEK+ASK+ARK; ``cert_chain``: more chain certificates (PEM);
    ``td_quote``: the TD quote of a TDX CVM; ``collateral``: TDX DCAP collateral as
    ``verify tdx`` takes it."""

    hcl_report: bytes
    quote: bytes | None = None
    signature: bytes | None = None
    pcrs: PcrMap | None = None
    eventlog: bytes | None = None
    vcek: bytes | None = None
    cert_chain: bytes | None = None
    td_quote: bytes | None = None
    collateral: TdxCollateral | None = None


def _bad(message: str) -> ParseError:
    return ParseError("azure.evidence.invalid", message, "evidence", 0)


def tpmt_signature(signature: bytes, modulus_len: int) -> bytes:
    """A quote signature as TPMT_SIGNATURE: given as one already, or as the raw RSASSA
    signature the vTPM APIs and trustee's JSON carry (exactly the modulus' length: a
    TPMT_SIGNATURE of that key is 6 bytes longer, so the two never collide). The raw form
    is RSASSA-PKCS1-v1_5 with SHA-256 (the HCL AK's scheme); wrapping it as
    TPMT_SIGNATURE{RSASSA, SHA-256, TPM2B} (TPM 2.0 Part 2 §11.3.4) lets the one TPM
    verifier check it (``sealgate_verify::azure::tpmt_signature``)."""
    return _core.tpmt_signature(signature, modulus_len)


def pcrs_from_list(message: bytes, values: list[bytes]) -> PcrMap:
    """PCR values given as a list (quote.bin, trustee JSON) in the order of the quote's
    selection: the selected SHA-256 PCRs in ascending index order, which is the order a
    TPM2_PCR_Read/TPM2_Quote lists them (TPM 2.0 Part 1 §17.5 "PCR selection")."""
    q = _core.TpmQuote.parse(message)
    sel = [(bank, idx) for bank, idx in q.pcr_selection if idx]
    if len(sel) != 1 or sel[0][0] != "sha256":
        banks = ", ".join(b for b, _ in sel) or "none"
        raise ParseError(
            "azure.evidence.pcr_count_mismatch",
            f"the quote selects banks {banks}; a PCR list is SHA-256 PCRs of one bank",
            "pcrs",
            0,
        )
    idxs = sorted(sel[0][1])
    if len(values) != len(idxs):
        raise ParseError(
            "azure.evidence.pcr_count_mismatch",
            f"{len(values)} PCR values for the {len(idxs)} PCRs the quote selects",
            "pcrs",
            0,
        )
    for v in values:
        if len(v) != BANK_SIZES["sha256"]:
            raise ParseError(
                "azure.evidence.invalid", f"a SHA-256 PCR value of {len(v)} bytes", "pcrs", 0
            )
    return {"sha256": dict(zip(idxs, values, strict=True))}


def parse_quote_bin(data: bytes) -> tuple[bytes, bytes, PcrMap]:
    """``quote.bin`` (either bincode layout) → (signature, TPMS_ATTEST, PCRs)."""
    signature, message, pcrs, _legacy = _core.parse_quote_bin(data)
    return signature, message, pcrs_from_list(message, pcrs)


def load_pcrs_json(data: bytes) -> PcrMap:
    """PCR values as ``verify tpm`` takes them, or ``{"bank": "sha256", "pcrs": {"0": hex}}``
    (the shape the derived vectors and Azure tooling write)."""
    doc_head = data.lstrip()[:1]
    if doc_head == b"{":
        doc = load_document(
            data, code="cli.input.bad_json", what="PCR file", yaml_ok=False, max_bytes=1 << 20
        )
        if isinstance(doc, dict) and set(doc) == {"bank", "pcrs"}:
            bank = doc["bank"]
            if not isinstance(bank, str) or bank not in BANK_SIZES:
                raise ParseError("azure.evidence.invalid", f"PCR bank {str(bank)[:20]!r}")
            import json

            return load_pcrs(json.dumps({bank: doc["pcrs"]}).encode())
    return load_pcrs(data)


# --- trustee evidence JSON ------------------------------------------------------------


def _byte_array(v: Any, what: str) -> bytes:
    if not isinstance(v, list) or len(v) > MAX_FIELD_BYTES:
        raise _bad(f"{what} is not a byte array")
    if not all(type(x) is int and 0 <= x <= 255 for x in v):
        raise _bad(f"{what} holds a value that is not a byte")
    return bytes(v)


def _hex(v: Any, what: str) -> bytes:
    if not isinstance(v, str) or len(v) > 2 * MAX_FIELD_BYTES or not _HEX.fullmatch(v):
        raise _bad(f"{what} is not hex")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise _bad(f"{what} is not hex") from None


def _b64(v: Any, what: str, *, url: bool) -> bytes:
    """base64url (RFC 4648 §5) or standard base64, padding optional; strict alphabet."""
    if not isinstance(v, str) or not v.isascii() or len(v) > 2 * MAX_FIELD_BYTES:
        raise _bad(f"{what} is not base64")
    s = v.rstrip("=")
    if url:
        s = s.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} is not {'base64url' if url else 'base64'}") from None


def _quote_parts(q: Any, decode: Any) -> tuple[bytes, bytes, PcrMap]:
    if not isinstance(q, dict):
        raise _bad("the TPM quote is not an object")
    for k in ("signature", "message", "pcrs"):
        if k not in q:
            raise _bad(f"the TPM quote has no {k}")
    sig = decode(q["signature"], "quote.signature")
    msg = decode(q["message"], "quote.message")
    raw_pcrs = q["pcrs"]
    if not isinstance(raw_pcrs, list) or len(raw_pcrs) > 32:
        raise _bad("quote.pcrs is not a list of at most 32 values")
    values = [decode(p, f"quote.pcrs[{i}]") for i, p in enumerate(raw_pcrs)]
    return sig, msg, pcrs_from_list(msg, values)


def load_trustee_json(data: bytes) -> AzureEvidence:
    """Trustee's ``az-snp-vtpm`` / ``az-tdx-vtpm`` evidence JSON.

    v0 (no ``version``): ``quote`` or ``tpm_quote`` {signature, message, pcrs} and
    ``report`` or ``hcl_report`` as byte arrays, ``vcek`` PEM, ``td_quote`` byte array.
    v1/v2 (``version`` 1 or 2): ``hcl_report`` and ``td_quote`` base64url, ``tpm_quote``
    fields hex, ``vcek`` base64 DER. Members other than these are ignored (what is not
    read is not trusted). ``ParseError`` ``azure.evidence.*`` (or the TPM parser's code
    for a quote message that does not parse) for anything else."""
    doc = load_document(
        data,
        code="azure.evidence.invalid",
        what="Azure evidence JSON",
        yaml_ok=False,
        max_bytes=MAX_EVIDENCE_JSON,
        error=lambda c, m: ParseError(c, m, "evidence", 0),
    )
    if not isinstance(doc, dict):
        raise _bad("the evidence is not a JSON object")
    version = doc.get("version", 0)
    if type(version) is not int or version not in (0, 1, 2):
        raise _bad(f"evidence version {str(version)[:20]!r}; supported 0, 1 and 2")
    if version == 0:
        report = doc.get("report", doc.get("hcl_report"))
        quote = doc.get("quote", doc.get("tpm_quote"))
        hcl = _byte_array(report, "report")
        sig, msg, pcrs = _quote_parts(quote, _byte_array)
        vcek_v = doc.get("vcek")
        vcek: bytes | None = None
        if vcek_v is not None:
            if not isinstance(vcek_v, str) or len(vcek_v) > MAX_FIELD_BYTES:
                raise _bad("vcek is not a PEM string")
            vcek = vcek_v.encode()
        tdq = doc.get("td_quote")
        td_quote = _byte_array(tdq, "td_quote") if tdq is not None else None
    else:
        hcl = _b64(doc.get("hcl_report"), "hcl_report", url=True)
        sig, msg, pcrs = _quote_parts(doc.get("tpm_quote"), _hex)
        vcek_v = doc.get("vcek")
        # DER, base64url in the published v1 (either alphabet is accepted).
        vcek = _b64(vcek_v, "vcek", url=True) if vcek_v is not None else None
        tdq = doc.get("td_quote")
        td_quote = _b64(tdq, "td_quote", url=True) if tdq is not None else None
    return AzureEvidence(
        hcl_report=hcl, quote=msg, signature=sig, pcrs=pcrs, vcek=vcek, td_quote=td_quote
    )
