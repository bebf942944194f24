"""Altered Azure evidence fails, each alteration with a named code."""

from __future__ import annotations

from pathlib import Path

from sealgate import azure

from tests.azure.common import (
    AT,
    CHALLENGE,
    codes,
    edit_runtime,
    read,
    snp_v2,
    snp_v3,
    tdx_2e7d,
    tdx_bc4f,
    verifier,
)

SNP_REPORT = 32  # the hardware report's offset in the HCL report
MEASUREMENT = 0x90  # SNP ATTESTATION_REPORT.MEASUREMENT (AMD 56860 Table 23)


def flip(b: bytes, at: int) -> bytes:
    return b[:at] + bytes([b[at] ^ 0x01]) + b[at + 1 :]


def test_runtime_data_altered(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.hcl_report = edit_runtime(ev.hcl_report, {"vm-configuration": {"secure-boot": True}})
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    # The SNP report itself still verifies; its report_data no longer matches.
    assert codes(res) == ["azure.hcl.report_data_mismatch"]


def test_runtime_data_ak_swapped_for_another_vms(tmp_path: Path) -> None:
    """The AK of another VM in this VM's runtime data: the binding fails (and the quote,
    signed by this VM's AK, no longer verifies with it)."""
    other = azure.parse_hcl_report(snp_v2().hcl_report).runtime_data
    import json

    ev = snp_v3()
    ev.hcl_report = edit_runtime(ev.hcl_report, {"keys": json.loads(other)["keys"]})
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["azure.hcl.report_data_mismatch", "tpm.quote.signature_invalid"]


def test_user_data_expected_but_other(tmp_path: Path) -> None:
    v = verifier(tmp_path)
    assert v.verify(snp_v3(), nonce=CHALLENGE, user_data=bytes(64), at=AT).verified
    assert v.verify(snp_v3(), nonce=CHALLENGE, user_data=b"", at=AT).verified  # zero-padded
    res = v.verify(snp_v3(), nonce=CHALLENGE, user_data=b"\x01" * 64, at=AT)
    assert codes(res) == ["azure.runtime_data.user_data_mismatch"]


def test_user_data_rewritten_in_runtime_data(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.hcl_report = edit_runtime(ev.hcl_report, {"user-data": "01" * 64})
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, user_data=b"\x01" * 64, at=AT)
    assert codes(res) == ["azure.hcl.report_data_mismatch"]


def test_quote_signature_altered(tmp_path: Path) -> None:
    ev = snp_v3()
    assert ev.signature is not None
    ev.signature = flip(ev.signature, 100)
    assert codes(verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)) == [
        "tpm.quote.signature_invalid"
    ]


def test_a_pcr_altered(tmp_path: Path) -> None:
    ev = snp_v3()
    assert ev.pcrs is not None
    ev.pcrs["sha256"][7] = bytes(32)
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["tpm.quote.pcr_digest_mismatch"]


def test_pcr_missing_from_the_supplied_values(tmp_path: Path) -> None:
    ev = snp_v3()
    assert ev.pcrs is not None
    del ev.pcrs["sha256"][23]
    assert codes(verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)) == ["tpm.quote.pcr_missing"]


def test_snp_measurement_altered(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.hcl_report = flip(ev.hcl_report, SNP_REPORT + MEASUREMENT)
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["snp.report.signature_invalid"]


def test_snp_report_data_altered(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.hcl_report = flip(ev.hcl_report, SNP_REPORT + 0x50 + 40)
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["snp.report.signature_invalid", "azure.hcl.report_data_mismatch"]


def test_vtpm_quote_from_another_vm(tmp_path: Path) -> None:
    """VM ee96's quote (valid, nonce "challenge") inside VM 26f8's evidence: signed by
    another AK than this runtime data's HCLAkPub."""
    ev, other = snp_v3(), snp_v2()
    ev.quote, ev.signature, ev.pcrs = other.quote, other.signature, other.pcrs
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["tpm.quote.signature_invalid"]


def test_vcek_of_another_chip(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.vcek = snp_v2().vcek
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == [
        "snp.report.signature_invalid",
        "snp.vcek.chip_id_mismatch",
        "snp.vcek.tcb_mismatch",
    ]


def test_td_quote_altered(tmp_path: Path) -> None:
    ev = tdx_bc4f()
    assert ev.td_quote is not None
    ev.td_quote = flip(ev.td_quote, 48 + 136)  # TD quote body: MR_TD (header 48, body +136)
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["tdx.quote.signature_invalid", "azure.hcl.td_quote_mismatch"]
    assert "mr_td" in res.errors[1].message


def test_td_quote_of_another_vm(tmp_path: Path) -> None:
    """VM 2e7d's (valid) TD quote with VM bc4f's HCL report."""
    ev = tdx_bc4f()
    ev.td_quote = tdx_2e7d().td_quote
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["azure.hcl.td_quote_mismatch"]
    msg = res.errors[0].message
    assert "report_data" in msg and "mr_td" in msg


def test_tdx_td_report_altered(tmp_path: Path) -> None:
    ev = tdx_bc4f()
    ev.hcl_report = flip(ev.hcl_report, 32 + 528)  # TDREPORT TDINFO_STRUCT.MRTD
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["azure.hcl.td_quote_mismatch"]


def test_snp_evidence_without_a_vcek_or_cache(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.vcek = None
    v = azure.AzureVerifier(snp_roots=[], trust_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert codes(v.verify(ev, nonce=CHALLENGE, at=AT)) == ["snp.collateral.vcek_missing"]


def test_signature_missing(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.signature = None
    assert codes(verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)) == [
        "azure.vtpm.signature_missing"
    ]


def test_vcek_not_yet_valid_at_verification_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    res = verifier(tmp_path).verify(snp_v3(), nonce=CHALLENGE, at=datetime(2024, 1, 1, tzinfo=UTC))
    assert codes(res) == ["snp.chain.not_yet_valid"]


def test_tdx_hcl_report_with_snp_chain_inputs_ignored(tmp_path: Path) -> None:
    """A VCEK given with TDX evidence plays no part (the TD quote decides)."""
    ev = tdx_bc4f()
    ev.vcek = read("snp-milan-v2-vmee96", "vcek.pem")
    assert verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT).verified
