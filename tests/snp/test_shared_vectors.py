"""Published SEV-SNP vectors (tests/vectors.py ``shared``) verify to their documented claims."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sealgate.result import VerifyResult
from sealgate.snp import verify_report

from tests.vectors import shared

BUNDLES = ("sev-snp", "roots", "go-sev-guest-kds-bundles")
NO_TRUST_DIR = Path("/nonexistent/sealgate-trust")  # pins come from code, certs from bundles
TURIN_AT = datetime(2026, 7, 1, tzinfo=UTC)  # Turin VCEK notBefore 2026-06-28T08:56:51Z
VLEK_AT = datetime(2025, 6, 1, tzinfo=UTC)  # inside 2024-12-10..2025-12-10


def run(report: str, vcek: str, bundle: str, at: datetime | None = None, **kw: Any) -> VerifyResult:
    return verify_report(
        shared("sev-snp", *report.split("/")).read_bytes(),
        vcek=shared("sev-snp", *vcek.split("/")).read_bytes(),
        cert_chain=shared(*BUNDLES, bundle).read_bytes(),
        at=at,
        trust_dir=NO_TRUST_DIR,
        **kw,
    )


GSG_CHIP = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
    "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)
GCP_CHIP = (
    "980cf7b61876cb37fd517cd44ce11c72d43c5408e66ab39138370ec59bc195e0"
    "63254cb501d87d82f0b8b8dc774bcfe28019447711598f007390e4accc405361"
)
GCP_MEASUREMENT = (
    "b747d55452e0b9e9079770a49e397c5e6d9573581e246da7"
    "baac4f28b5cdc5b1b6d19251b8ee600fd16a3708f58406f3"
)

CASES: list[tuple[str, str, str, datetime | None, dict[str, Any]]] = [
    (
        "gsg-milan-v2/attestation.bin",
        "gsg-milan-v2/vcek.der",
        "ask_ark_milan.pem",
        None,
        {
            "version": 2,
            "product": "Milan",
            "vmpl": 0,
            "signing_key": "vcek",
            "chip_id": GSG_CHIP,
            "measurement": "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
            "6bdf8a9ece31a5a608eb0cf2e4872b01",
            "report_data": "0102030405" + "00" * 59,
            "reported_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "current_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "committed_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "launch_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68},
            "current_firmware": {"major": 1, "minor": 49, "build": 3},
        },
    ),
    (
        "virtee-milan-v2/report_milan.bin",
        "virtee-milan-v2/vcek_milan.der",
        "ask_ark_milan.pem",
        None,
        {
            "version": 2,
            "vmpl": 0,
            "chip_id": "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc"
            "15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6",
            "measurement": "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d"
            "3e1a0dc39b2c60bd95b9c480cd81841f",
            "report_data": "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c64581"
            "0b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
            "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            "current_firmware": {"major": 1, "minor": 52, "build": 4},
        },
    ),
    (
        "gcp-milan-v5/sev-gcp.bin",
        "gcp-milan-v5/sev-gcp-vcek.pem",
        "ask_ark_milan.pem",
        None,
        {
            "version": 5,
            "product": "Milan",
            "vmpl": 0,
            "guest_svn": 0,
            "chip_id": GCP_CHIP,
            "measurement": GCP_MEASUREMENT,
            "report_data": "00" * 64,
            "reported_tcb": {"bootloader": 4, "tee": 0, "snp": 27, "microcode": 222},
            "cpuid": {"family": 0x19, "model": 0x01, "stepping": 1},
            "current_firmware": {"major": 1, "minor": 55, "build": 35},
            "launch_mit_vector": 0x0B,
            "current_mit_vector": 0x0B,
            "signature_algo": 1,
        },
    ),
    (
        "gcp-milan-v5/sev-gcp-reportdata.bin",
        "gcp-milan-v5/sev-gcp-vcek.pem",
        "ask_ark_milan.pem",
        None,
        {
            "version": 5,
            "vmpl": 1,
            "chip_id": GCP_CHIP,
            "measurement": GCP_MEASUREMENT,
            "report_data": "32fc4f6c1971cbf91566231f8d6153eeb9d093aa94306cb48d39bcc4861a3d39"
            "5f149876a37bc91332fe493f46294fd135d5b95d363ae96352b8c45f906079f5",
        },
    ),
    (
        "openanolis-turin-v5/turin-report.bin",
        "openanolis-turin-v5/turin-vcek.der",
        "ask_ark_turin_vcek.pem",
        TURIN_AT,
        {
            "version": 5,
            "product": "Turin",
            "chip_id": "0910b4f884ff4ba9" + "00" * 56,
            "measurement": "a13039badd60b0854bea169b58fd6fe1773981aefbfee98bf32d6cbe7521e5f2"
            "81c1dd1fa8a44be828e6cf4804871091",
            "report_data": "fce1e3d9c061b186e7a0e2780331b48afffd94e0384802241cae37b37e1ab53d"
            "c81636c2aabbd6d5b3ccf4b83d02c40a71312b95388c154bc5ab4708fdce12c1",
            "reported_tcb": {"fmc": 1, "bootloader": 3, "tee": 2, "snp": 5, "microcode": 97},
            "cpuid": {"family": 0x1A, "model": 0x02, "stepping": 1},
            "current_firmware": {"major": 1, "minor": 58, "build": 3},
        },
    ),
    (
        "trustee-vlek-milan-v3/test-vlek-report.bin",
        "trustee-vlek-milan-v3/test-vlek.der",
        "ask_ark_milan_vlek.pem",
        VLEK_AT,
        {
            "version": 3,
            "product": "Milan",
            "vmpl": 1,
            "signing_key": "vlek",
            "chip_id": "00" * 64,
            "csp_id": "CN=cc-us-east-2.amazonaws.com",
            "measurement": "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4"
            "e8c9af857f5ceeb5a493df2a570d7bf0",
            "reported_tcb": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 217},
            "current_tcb": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 220},
            "committed_tcb": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219},
            "launch_tcb": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219},
        },
    ),
]


@pytest.mark.parametrize(
    ("report", "vcek", "bundle", "at", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_shared_vector_verifies(
    report: str, vcek: str, bundle: str, at: datetime | None, want: dict[str, Any]
) -> None:
    res = run(report, vcek, bundle, at)
    assert res.verified, res.errors
    for k, v in want.items():
        assert res.claims[k] == v, k
    assert res.claims["endorsement_key"]["root_pinned"] is True


def test_gsg_policy_and_platform_info() -> None:
    c = run(CASES[0][0], CASES[0][1], "ask_ark_milan.pem").claims
    assert c["policy"]["value"] == 0xB0000
    assert c["policy"]["debug"] is True and c["policy"]["smt"] is True
    assert c["platform_info"]["value"] == 1 and c["platform_info"]["smt_enabled"] is True


def test_gcp_platform_info_decoded() -> None:
    c = run(CASES[2][0], CASES[2][1], "ask_ark_milan.pem").claims
    pi = c["platform_info"]
    assert pi["value"] == 0x25
    assert (pi["smt_enabled"], pi["tsme_enabled"], pi["ecc_enabled"]) == (True, False, True)
    assert pi["alias_check_complete"] is True
    assert c["policy"]["debug"] is False


def test_vlek_is_expired_now() -> None:
    res = run(CASES[5][0], CASES[5][1], "ask_ark_milan_vlek.pem")
    assert [e.code for e in res.errors] == ["snp.chain.expired"]


def test_turin_vcek_not_yet_valid_before_its_not_before() -> None:
    res = run(CASES[4][0], CASES[4][1], "ask_ark_turin_vcek.pem", datetime(2026, 6, 1, tzinfo=UTC))
    assert [e.code for e in res.errors] == ["snp.chain.not_yet_valid"]


def test_turin_with_milan_layout_gets_tcb_wrong() -> None:
    """Forcing the Milan layout on the Turin report is detected, not silently accepted."""
    res = run(CASES[4][0], CASES[4][1], "ask_ark_turin_vcek.pem", TURIN_AT, product="Milan")
    assert not res.verified


def _mutate(path: tuple[str, ...], pos: int, op: str) -> bytes:
    b = bytearray(shared(*path).read_bytes())
    b[pos] = (b[pos] + 1) & 0xFF if op == "+1" else b[pos] ^ int(op, 16)
    return bytes(b)


@pytest.mark.parametrize(
    ("case", "pos", "op", "codes"),
    [
        (0, 21, "0x80", {"snp.report.signature_invalid"}),  # go-sev-guest
        (1, 21, "0x80", {"snp.report.signature_invalid"}),  # virtee
        (4, 0x90, "0x01", {"snp.report.signature_invalid"}),  # openanolis
        (5, 42, "+1", {"snp.report.signature_invalid"}),  # trustee
        (5, 384, "+1", {"snp.report.signature_invalid", "snp.vcek.tcb_mismatch"}),  # trustee
    ],
)
def test_source_negative_cases(case: int, pos: int, op: str, codes: set[str]) -> None:
    report, vcek, bundle, at, _ = CASES[case]
    res = verify_report(
        _mutate(("sev-snp", *report.split("/")), pos, op),
        vcek=shared("sev-snp", *vcek.split("/")).read_bytes(),
        cert_chain=shared(*BUNDLES, bundle).read_bytes(),
        at=at,
        trust_dir=NO_TRUST_DIR,
    )
    assert {e.code for e in res.errors} == codes


def test_virtee_vcek_byte_40_flipped_breaks_the_chain() -> None:
    vcek = bytearray(shared("sev-snp", "virtee-milan-v2", "vcek_milan.der").read_bytes())
    vcek[40] ^= 0xFF
    res = verify_report(
        shared("sev-snp", "virtee-milan-v2", "report_milan.bin").read_bytes(),
        vcek=bytes(vcek),
        cert_chain=shared(*BUNDLES, "ask_ark_milan.pem").read_bytes(),
        trust_dir=NO_TRUST_DIR,
    )
    assert not res.verified
    assert res.errors[0].code.startswith(("snp.chain.", "x509.format."))


def test_wrong_product_chain() -> None:
    res = run(CASES[0][0], CASES[0][1], "ask_ark_genoa.pem")
    assert [e.code for e in res.errors] == ["snp.chain.wrong_product"]


def test_another_chips_vcek() -> None:
    res = verify_report(
        shared("sev-snp", "gsg-milan-v2", "attestation.bin").read_bytes(),
        vcek=shared("sev-snp", "virtee-milan-v2", "vcek_milan.der").read_bytes(),
        cert_chain=shared(*BUNDLES, "ask_ark_milan.pem").read_bytes(),
        trust_dir=NO_TRUST_DIR,
    )
    codes = {e.code for e in res.errors}
    assert {"snp.vcek.chip_id_mismatch", "snp.vcek.tcb_mismatch"} <= codes
    assert "snp.report.signature_invalid" in codes


def test_chain_bundle_order_does_not_matter() -> None:
    pem = shared(*BUNDLES, "ask_ark_milan.pem").read_bytes()
    i = pem.index(b"-----BEGIN", 10)
    res = verify_report(
        shared("sev-snp", "gsg-milan-v2", "attestation.bin").read_bytes(),
        vcek=shared("sev-snp", "gsg-milan-v2", "vcek.der").read_bytes(),
        cert_chain=pem[i:] + pem[:i],
        trust_dir=NO_TRUST_DIR,
    )
    assert res.verified, res.errors


def test_roots_from_trust_directory(tmp_path: Path) -> None:
    from sealgate.trust import import_file

    import_file(shared("sev-snp", "roots", "virtee-builtin", "milan_ark.pem"), tmp_path)
    import_file(shared("sev-snp", "roots", "virtee-builtin", "milan_ask.pem"), tmp_path)
    res = verify_report(
        shared("sev-snp", "gsg-milan-v2", "attestation.bin").read_bytes(),
        vcek=shared("sev-snp", "gsg-milan-v2", "vcek.der").read_bytes(),
        trust_dir=tmp_path,
    )
    assert res.verified, res.errors
    assert res.claims["endorsement_key"]["intermediate"] == "SEV-Milan"


def test_missing_intermediate() -> None:
    res = verify_report(
        shared("sev-snp", "gsg-milan-v2", "attestation.bin").read_bytes(),
        vcek=shared("sev-snp", "gsg-milan-v2", "vcek.der").read_bytes(),
        trust_dir=NO_TRUST_DIR,
    )
    assert [e.code for e in res.errors] == ["snp.chain.missing_intermediate"]
