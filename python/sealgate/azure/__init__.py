"""Azure confidential VM evidence (SEV-SNP and TDX behind the paravisor, via the vTPM).

The paravisor (HCL) owns the hardware report and publishes an **HCL report** in vTPM NV
index 0x01400001: the SNP report or TDREPORT whose report_data is SHA-256 of the
**runtime data** JSON, which carries the vTPM attestation key ``HCLAkPub``; a **vTPM
quote** signed by that AK then attests the PCRs. Layers as for the other platforms: the
containers parse in Rust (``sealgate._core``), the hardware report, TD quote and TPM quote
verify through ``sealgate.snp`` / ``sealgate.tdx`` / ``sealgate.tpm``; this package holds
the glue: ``hcl`` (HCL report, runtime data), ``evidence`` (the parts and the trustee JSON
/ ``quote.bin`` loaders), ``verifier`` (the chain of checks).
"""

from __future__ import annotations

from sealgate.azure.evidence import (
    AzureEvidence,
    load_pcrs_json,
    load_trustee_json,
    parse_quote_bin,
    pcrs_from_list,
    tpmt_signature,
)
from sealgate.azure.hcl import HclReport, Jwk, RuntimeData, parse_hcl_report
from sealgate.azure.verifier import TD_BINDING_FIELDS, AzureVerifier, verify_evidence

__all__ = [
    "TD_BINDING_FIELDS",
    "AzureEvidence",
    "AzureVerifier",
    "HclReport",
    "Jwk",
    "RuntimeData",
    "load_pcrs_json",
    "load_trustee_json",
    "parse_hcl_report",
    "parse_quote_bin",
    "pcrs_from_list",
    "tpmt_signature",
    "verify_evidence",
]
