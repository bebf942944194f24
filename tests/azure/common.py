"""Shared helpers for the Azure CVM tests: the published vectors and ways to alter them."""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

from sealgate import azure
from sealgate.azure import AzureEvidence
from sealgate.result import VerifyResult

from tests.vectors import shared

#: Inside every published certificate's window (SNP VCEKs 2023-01-01/2025-01-28..2030+,
#: PCKs 2023-09/11..2030).
AT = datetime(2025, 6, 1, tzinfo=UTC)
CHALLENGE = b"challenge"
TDX_CHALLENGE = b"tdx challenge"
#: Runtime data in the HCL report (rust/formats/src/azure.rs).
RUNTIME_OFFSET = 1236


def az(*parts: str) -> Path:
    return shared("azure-cvm", *parts)


def read(*parts: str) -> bytes:
    return az(*parts).read_bytes()


def milan_chain() -> bytes:
    return shared("sev-snp", "roots", "go-sev-guest-kds-bundles", "ask_ark_milan.pem").read_bytes()


def milan_ark() -> bytes:
    return shared("sev-snp", "roots", "virtee-builtin", "milan_ark.pem").read_bytes()


def intel_root() -> bytes:
    return shared("tdx", "roots", "Intel_SGX_Root_CA.pem").read_bytes()


def verifier(trust_dir: Path) -> azure.AzureVerifier:
    """A verifier anchored at the published roots only (an empty trust directory)."""
    return azure.AzureVerifier(
        snp_roots=[milan_ark()], tdx_roots=[intel_root()], trust_dir=trust_dir
    )


def snp_v3() -> AzureEvidence:
    ev = azure.load_trustee_json(read("snp-milan-v3-vm26f8", "evidence-v1.json"))
    ev.cert_chain = milan_chain()
    return ev


def snp_v2() -> AzureEvidence:
    d = "snp-milan-v2-vmee96"
    sig, msg, pcrs = azure.parse_quote_bin(read(d, "quote.bin"))
    return AzureEvidence(
        hcl_report=read(d, "hcl-report.bin"),
        quote=msg,
        signature=sig,
        pcrs=pcrs,
        vcek=read(d, "vcek.pem"),
        cert_chain=milan_chain(),
    )


def tdx_bc4f() -> AzureEvidence:
    d = "tdx-vmbc4f"
    sig, msg, pcrs = azure.parse_quote_bin(read(d, "quote.bin"))
    return AzureEvidence(
        hcl_report=read(d, "hcl-report.bin"),
        quote=msg,
        signature=sig,
        pcrs=pcrs,
        td_quote=read(d, "td-quote.bin"),
    )


def tdx_2e7d() -> AzureEvidence:
    d = "tdx-vm2e7d"
    return AzureEvidence(
        hcl_report=read(d, "hcl-report.bin"),
        quote=read(d, "tpm-quote.msg"),
        signature=read(d, "tpm-quote.sig"),
        td_quote=read(d, "td-quote.bin"),
    )


def codes(res: VerifyResult) -> list[str]:
    return [f.code for f in res.errors]


def with_runtime(hcl: bytes, runtime: bytes, total: int | None = None) -> bytes:
    """``hcl`` with its runtime data replaced (sizes fixed up, zero padding to ``total``)."""
    total = total or len(hcl)
    head = bytearray(hcl[:RUNTIME_OFFSET])
    struct.pack_into("<I", head, 8, RUNTIME_OFFSET + len(runtime))  # header.report_size
    struct.pack_into("<I", head, 1216, 20 + len(runtime))  # request_data.data_size
    struct.pack_into("<I", head, 1216 + 16, len(runtime))  # variable_data_size
    out = bytes(head) + runtime
    assert len(out) <= total
    return out + bytes(total - len(out))


def runtime_of(hcl: bytes) -> bytes:
    (n,) = struct.unpack_from("<I", hcl, 1216 + 16)
    return hcl[RUNTIME_OFFSET : RUNTIME_OFFSET + n]


def edit_runtime(hcl: bytes, edit: dict[str, object]) -> bytes:
    doc = json.loads(runtime_of(hcl))
    doc.update(edit)
    return with_runtime(hcl, json.dumps(doc, separators=(",", ":")).encode())


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()
