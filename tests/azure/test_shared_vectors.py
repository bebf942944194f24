"""Every published Azure CVM vector gives the verdict its provenance states
(../shared/vectors/PROVENANCE.md, "Azure confidential VMs")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sealgate import azure, tpm
from sealgate.azure import AzureEvidence

from tests.azure.common import (
    AT,
    CHALLENGE,
    TDX_CHALLENGE,
    codes,
    read,
    runtime_of,
    sha256,
    snp_v2,
    snp_v3,
    tdx_2e7d,
    tdx_bc4f,
    verifier,
)


@pytest.mark.parametrize("form", ["evidence-v1.json", "evidence-v0.json"])
def test_snp_v3_valid_for_challenge(tmp_path: Path, form: str) -> None:
    ev = azure.load_trustee_json(read("snp-milan-v3-vm26f8", form))
    ev.cert_chain = snp_v3().cert_chain
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert res.verified, res.errors
    assert res.platform == "azure-snp"
    c = res.claims
    assert c["hcl"]["report_type"] == "snp" and c["hcl"]["version"] == 1
    assert c["hcl"]["runtime_data_sha256"] == (
        "af2910341dd8108360e485f1b72494255190b9cdd5ccb44b73b883037cf99f21"
    )
    assert c["snp"]["measurement"] == (
        "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6"
        "c79b75a5eb77fc769959f4aeb2f9401e"
    )
    assert c["snp"]["vmpl"] == 0 and c["snp"]["version"] == 3
    assert c["snp"]["chip_id"].startswith("66a5a7b4403a3006ca734aa3")
    assert c["tpm"]["quote_checked"] is True
    assert c["tpm"]["nonce"] == CHALLENGE.hex()
    assert c["tpm"]["pcr_digest"] == (
        "cfa3a9112493e8c8741c1d895ced6d05a9ea19a24a02a44a8b02eaf22a1b143f"
    )
    pcrs = c["tpm"]["pcrs"]["sha256"]
    assert pcrs["0"] == "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    assert pcrs["7"] == "3b20e022416fdf61d72e4da32b4354781be3de0608116976d28ffdad8c341d2a"
    rd = c["runtime_data"]
    assert rd["vm_configuration"]["vmUniqueId"] == "26F8BC30-774E-4290-8E7A-535F3B672AEE"
    assert rd["vm_configuration"]["secure-boot"] is True
    assert rd["user_data"] == "00" * 64
    assert rd["ak_bits"] == 2048


@pytest.mark.parametrize("nonce", [b"challenge!", b"", b"\x01\x02\x03\x04"])
def test_snp_v3_any_other_nonce_fails(tmp_path: Path, nonce: bytes) -> None:
    res = verifier(tmp_path).verify(snp_v3(), nonce=nonce, at=AT)
    assert codes(res) == ["tpm.quote.nonce_mismatch"]


def test_snp_v3_captures_share_pcrs() -> None:
    v0 = azure.load_trustee_json(read("snp-milan-v3-vm26f8", "evidence-v0.json"))
    v1 = azure.load_trustee_json(read("snp-milan-v3-vm26f8", "evidence-v1.json"))
    assert v0.pcrs == v1.pcrs
    assert v0.hcl_report != v1.hcl_report  # two captures of the same VM


def test_snp_v2_valid_for_challenge(tmp_path: Path) -> None:
    res = verifier(tmp_path).verify(snp_v2(), nonce=CHALLENGE, at=AT)
    assert res.verified, res.errors
    c = res.claims
    assert c["snp"]["version"] == 2
    assert c["snp"]["chip_id"].startswith("3a754596b2b80f2e")
    assert c["snp"]["measurement"].startswith("9ac48fcac8a2d88aeeff8d427ad4f2be")
    assert c["hcl"]["runtime_data_sha256"].startswith("b044f0108ab52768")
    assert c["tpm"]["pcr_digest"] == (
        "07ec9a0c6cd4678cb38ed598b7711b62df6efd1aab02489fbd5252484857c629"
    )


def test_tdx_bc4f_valid_signature_and_chain_only(tmp_path: Path) -> None:
    res = verifier(tmp_path).verify(tdx_bc4f(), nonce=CHALLENGE, at=AT)
    assert res.verified, res.errors
    assert res.platform == "azure-tdx"
    c = res.claims
    assert c["hcl"]["version"] == 2 and c["hcl"]["report_type"] == "tdx"
    assert c["hcl"]["runtime_data_sha256"].startswith("77ee89b2e2b86f3c")
    # No DCAP collateral is published for these quotes: the claims say the TCB status
    # was not evaluated, and no status is claimed.
    assert c["tdx"]["tcb_evaluated"] is False
    assert c["tdx"].get("tcb_status") is None
    assert c["tdx"]["mr_td"].startswith("024a32b070383331181619fa387cb4d5")
    assert c["tdx"]["report_data"].startswith("77ee89b2e2b86f3c")
    assert all(c["tdx"][f"rtmr{i}"] == "00" * 48 for i in range(4))
    assert c["tdx"]["xfam"] == "e718060000000000"
    assert c["tpm"]["pcr_digest"] == (
        "97e4ce1c02ee61b813770c0d0a88e9dfb3a3f4f89c9fc698e0d6594a754333c3"
    )
    assert c["runtime_data"]["vm_configuration"]["tpm-persisted"] is True


def test_tdx_2e7d_without_pcr_values(tmp_path: Path) -> None:
    """Only TPMS_ATTEST and signature are published: the quote's signature and nonce check,
    its pcrDigest cannot be re-checked, so the full evidence fails as `verify tpm` does
    (tpm.quote.pcr_missing) — the verdict is not "valid" because that part is unchecked."""
    v = verifier(tmp_path)
    res = v.verify(tdx_2e7d(), nonce=TDX_CHALLENGE, at=AT)
    assert codes(res) == ["tpm.quote.pcr_missing"]
    assert res.claims["tpm"]["pcr_digest"] == (
        "bd2fe19f7f572bb521f25c428fd73d2240c916afd4faf38d0742b82980d293c1"
    )
    assert res.claims["tpm"]["nonce"] == TDX_CHALLENGE.hex()
    # Another nonce adds its failure (the signature over the message still verifies).
    assert codes(v.verify(tdx_2e7d(), nonce=CHALLENGE, at=AT)) == [
        "tpm.quote.nonce_mismatch",
        "tpm.quote.pcr_missing",
    ]


def test_tdx_2e7d_hardware_part_only(tmp_path: Path) -> None:
    """Asked without the vTPM quote: HCL report, runtime data and TD quote verify, and the
    claims say the vTPM quote was not checked."""
    ev = tdx_2e7d()
    ev.quote = ev.signature = None
    res = verifier(tmp_path).verify(ev, at=AT)
    assert res.verified, res.errors
    assert res.claims["tpm"] == {"quote_checked": False}
    assert res.claims["tdx"]["mr_td"].startswith("75f3acc2e1dfc3acf404d7eaa69a2eef")
    assert res.claims["hcl"]["runtime_data_sha256"].startswith("8ea6825991d303fb")
    assert res.claims["runtime_data"]["vm_configuration"]["secure-boot"] is False
    # A nonce cannot be checked without the quote that carries it.
    assert codes(verifier(tmp_path).verify(ev, nonce=TDX_CHALLENGE, at=AT)) == [
        "azure.vtpm.quote_missing"
    ]


def test_kinvolk_tdx_hcl_parses_but_is_not_attested(tmp_path: Path) -> None:
    hcl_bytes = read("kinvolk-tdx-hcl", "hcl-report-tdx.bin")
    hcl = azure.parse_hcl_report(hcl_bytes)
    assert hcl.kind == "tdx" and hcl.report_type == 4 and len(hcl.runtime_data) == 1202
    digest = "e8f0796193ba21d6d43d2ea4bb6e4081ce4920729b348f39099cd2f65ecb6170"
    assert sha256(hcl.runtime_data) == digest
    assert hcl.report_data[:32].hex() == digest
    assert hcl.runtime_data == read("kinvolk-tdx-hcl", "derived", "runtime-data.json")
    assert hcl.hardware_report == read("kinvolk-tdx-hcl", "derived", "td-report.bin")
    rt = azure.RuntimeData.parse(hcl.runtime_data)
    assert rt.ak.bits == 2048
    # The TDREPORT's MAC cannot be checked off the platform: without a TD quote the
    # evidence must not be accepted.
    res = verifier(tmp_path).verify(AzureEvidence(hcl_report=hcl_bytes), at=AT)
    assert not res.verified
    assert codes(res) == ["azure.hcl.td_quote_missing"]
    assert res.claims["tdx"]["tcb_evaluated"] is False


def test_kinvolk_vtpm_quote_with_its_ak() -> None:
    sig, msg, pcrs = azure.parse_quote_bin(read("kinvolk-vtpm-quote", "quote.bin"))
    ak = read("kinvolk-vtpm-quote", "akpub.pem")
    raw = azure.tpmt_signature(sig, 256)
    res = tpm.verify_quote(ak, msg, raw, pcrs=pcrs, nonce=CHALLENGE)
    assert res.verified, res.errors
    assert res.claims["pcr_digest"] == (
        "04fabd988106412e438c1b93ad3b4b046c760f8f99ec557d87adf2ab02b7a4a0"
    )
    assert res.claims["pcrs"]["sha256"]["17"] == "ff" * 32
    assert res.claims["pcrs"]["sha256"]["0"].startswith("f3a7e99a")
    reversed_sig = azure.tpmt_signature(sig[::-1], 256)
    assert [
        f.code for f in tpm.verify_quote(ak, msg, reversed_sig, pcrs, nonce=CHALLENGE).errors
    ] == ["tpm.quote.signature_invalid"]
    assert [
        f.code for f in tpm.verify_quote(ak, msg, raw, pcrs, nonce=bytes([1, 2, 3, 4])).errors
    ] == ["tpm.quote.nonce_mismatch"]


@pytest.mark.parametrize(
    ("vector", "hcl_name"),
    [
        ("snp-milan-v3-vm26f8", "derived/hcl-report.bin"),
        ("snp-milan-v2-vmee96", "hcl-report.bin"),
        ("tdx-vmbc4f", "hcl-report.bin"),
        ("tdx-vm2e7d", "hcl-report.bin"),
        ("kinvolk-tdx-hcl", "hcl-report-tdx.bin"),
    ],
)
def test_hcl_parts_match_the_derived_files(vector: str, hcl_name: str) -> None:
    data = read(vector, *hcl_name.split("/"))
    hcl = azure.parse_hcl_report(data)
    assert hcl.length == 2600 and len(data) == 2600
    assert hcl.runtime_data == read(vector, "derived", "runtime-data.json") == runtime_of(data)
    hw = "snp-report.bin" if hcl.kind == "snp" else "td-report.bin"
    assert hcl.hardware_report == read(vector, "derived", hw)
    assert hcl.report_data == bytes.fromhex(sha256(hcl.runtime_data)) + bytes(32)


def test_trustee_v1_parts_match_the_derived_files() -> None:
    d = "snp-milan-v3-vm26f8"
    ev = azure.load_trustee_json(read(d, "evidence-v1.json"))
    assert ev.hcl_report == read(d, "derived", "hcl-report.bin")
    assert ev.quote == read(d, "derived", "tpm-quote.tpms_attest")
    assert ev.signature == read(d, "derived", "tpm-quote.sig")
    assert ev.vcek == read(d, "derived", "vcek.der")
    assert ev.pcrs == azure.load_pcrs_json(read(d, "derived", "pcrs-sha256.json"))


def _v0_of(ev: AzureEvidence) -> bytes:
    assert ev.pcrs is not None and ev.quote is not None and ev.signature is not None
    pcrs = [list(v) for _, v in sorted(ev.pcrs["sha256"].items())]
    doc = {
        "quote": {"signature": list(ev.signature), "message": list(ev.quote), "pcrs": pcrs},
        "report": list(ev.hcl_report),
        "vcek": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    }
    return json.dumps(doc).encode()


def _v2_of(ev: AzureEvidence, version: int) -> bytes:
    import base64

    assert ev.pcrs is not None and ev.quote is not None and ev.signature is not None
    doc = {
        "version": version,
        "hcl_report": base64.urlsafe_b64encode(ev.hcl_report).rstrip(b"=").decode(),
        "tpm_quote": {
            "signature": ev.signature.hex(),
            "message": ev.quote.hex(),
            "pcrs": [v.hex() for _, v in sorted(ev.pcrs["sha256"].items())],
        },
        "td_quote": base64.urlsafe_b64encode(b"td quote bytes").rstrip(b"=").decode(),
    }
    return json.dumps(doc).encode()


def test_trustee_forms_parse_to_identical_parts() -> None:
    v1 = azure.load_trustee_json(read("snp-milan-v3-vm26f8", "evidence-v1.json"))
    v0 = azure.load_trustee_json(_v0_of(v1))
    assert (v0.hcl_report, v0.quote, v0.signature, v0.pcrs) == (
        v1.hcl_report,
        v1.quote,
        v1.signature,
        v1.pcrs,
    )
    for version in (1, 2):
        vn = azure.load_trustee_json(_v2_of(v1, version))
        assert (vn.hcl_report, vn.quote, vn.signature, vn.pcrs) == (
            v1.hcl_report,
            v1.quote,
            v1.signature,
            v1.pcrs,
        )
        assert vn.td_quote == b"td quote bytes"


def _current_layout(sig: bytes, msg: bytes, pcrs: list[bytes]) -> bytes:
    import struct

    out = struct.pack("<Q", len(sig)) + sig + struct.pack("<Q", len(msg)) + msg
    return out + struct.pack("<Q", len(pcrs)) + b"".join(pcrs)


@pytest.mark.parametrize("vector", ["snp-milan-v2-vmee96", "tdx-vmbc4f", "kinvolk-vtpm-quote"])
def test_quote_bin_layouts_parse_to_identical_parts(vector: str) -> None:
    data = read(vector, "quote.bin")
    sig, msg, pcrs = azure.parse_quote_bin(data)
    assert sig == read(vector, "derived", "tpm-quote.sig")
    assert msg == read(vector, "derived", "tpm-quote.tpms_attest")
    assert pcrs == azure.load_pcrs_json(read(vector, "derived", "pcrs-sha256.json"))
    assert len(data) == (1170 if vector == "kinvolk-vtpm-quote" else 1362)
    # The same parts in the current layout read back the same.
    values = [v for _, v in sorted(pcrs["sha256"].items())]
    again = azure.parse_quote_bin(_current_layout(sig, msg, values))
    assert again == (sig, msg, pcrs)
