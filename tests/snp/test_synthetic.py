"""Synthetic SEV-SNP vectors (vectors/sev-snp, scripts/gen_snp_vectors.py): accept and reject."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sealgate.result import VerifyResult
from sealgate.snp import SnpVerifier, verify_report
from sealgate.testing.snp import VALID_AT, SyntheticNode

from tests.vectors import project

NO_TRUST_DIR = Path("/nonexistent/sealgate-trust")


def v(name: str) -> bytes:
    return project("sev-snp", name).read_bytes()


def run(
    report: str | bytes,
    vcek: str = "vcek-milan.der",
    chain: str | None = "cert_chain-milan.pem",
    roots: list[str] | None = None,
    at: datetime | None = VALID_AT,
    **kw: Any,
) -> VerifyResult:
    return verify_report(
        v(report) if isinstance(report, str) else report,
        vcek=v(vcek),
        cert_chain=v(chain) if chain else None,
        roots=[v(r) for r in (roots if roots is not None else ["ark-milan.pem"])],
        at=at,
        trust_dir=NO_TRUST_DIR,
        **kw,
    )


def codes(res: VerifyResult) -> list[str]:
    return [e.code for e in res.errors]


EXPECTED: dict[str, dict[str, Any]] = json.loads(v("expected.json"))


@pytest.mark.parametrize(
    ("report", "vcek", "chain", "roots"),
    [
        ("report-v2.bin", "vcek-milan.der", "cert_chain-milan.pem", ["ark-milan.pem"]),
        ("report-v5.bin", "vcek-milan.der", "cert_chain-milan.pem", ["ark-milan.pem"]),
        ("report-v5-debug.bin", "vcek-milan.der", "cert_chain-milan.pem", ["ark-milan.pem"]),
        ("report-v3-vlek.bin", "vlek-milan.der", "vlek_cert_chain-milan.pem", ["ark-milan.pem"]),
        ("report-turin-v5.bin", "vcek-turin.der", "cert_chain-turin.pem", ["ark-turin.pem"]),
    ],
)
def test_synthetic_reports_verify(report: str, vcek: str, chain: str, roots: list[str]) -> None:
    res = run(report, vcek, chain, roots)
    assert res.verified, res.errors
    for k, want in EXPECTED[report].items():
        got = res.claims[k]["value"] if k == "policy" else res.claims[k]
        assert got == want, k


def test_claims_shape_and_values() -> None:
    c = run("report-v5-debug.bin").claims
    assert c["policy"]["debug"] is True and c["guest_svn"] == 3
    assert c["host_data"] == "11" * 32
    assert c["reported_tcb"] == {"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213}
    assert c["signing_key"] == "vcek" and c["product"] == "Milan"
    assert c["endorsement_key"]["root_pinned"] is False
    for k in ("family_id", "image_id", "id_key_digest", "author_key_digest", "platform_info"):
        assert k in c
    turin = run("report-turin-v5.bin", "vcek-turin.der", "cert_chain-turin.pem", ["ark-turin.pem"])
    assert turin.claims["reported_tcb"] == {
        "fmc": 1,
        "bootloader": 3,
        "tee": 2,
        "snp": 5,
        "microcode": 97,
    }
    vlek = run("report-v3-vlek.bin", "vlek-milan.der", "vlek_cert_chain-milan.pem")
    assert vlek.claims["csp_id"] == "CN=sealgate-test-csp.example"
    assert vlek.claims["vmpl"] == 1 and vlek.claims["signing_key"] == "vlek"


def test_unpinned_root_needs_roots() -> None:
    assert codes(run("report-v5.bin", roots=[])) == ["snp.chain.untrusted_root"]


def test_report_data_expectation() -> None:
    good = bytes.fromhex(EXPECTED["report-v5.bin"]["report_data"])
    assert run("report-v5.bin", report_data=good).verified
    res = run("report-v5.bin", report_data=b"\x00" * 64)
    assert codes(res) == ["snp.report.report_data_mismatch"]


# Rejections: (report, vcek, chain, roots, crl, at) -> the exact error codes.
REJECT: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "expired VCEK",
        {"report": "report-v5-expired-vcek.bin", "vcek": "vcek-milan-expired.der"},
        ["snp.chain.expired"],
    ),
    (
        "VCEK not yet valid",
        {"report": "report-v5.bin", "at": datetime(2024, 1, 1, tzinfo=UTC)},
        ["snp.chain.not_yet_valid"],
    ),
    (
        "VLEK expired",
        {
            "report": "report-v3-vlek.bin",
            "vcek": "vlek-milan.der",
            "chain": "vlek_cert_chain-milan.pem",
            "at": datetime(2036, 1, 1, tzinfo=UTC),
        },
        ["snp.chain.expired"],
    ),
    (
        "revoked VCEK",
        {
            "report": "report-v5-revoked-vcek.bin",
            "vcek": "vcek-milan-revoked.der",
            "crl": "crl-milan.der",
        },
        ["snp.chain.revoked"],
    ),
    (
        "revoked ASK",
        {"report": "report-v5.bin", "crl": "crl-milan-ask-revoked.der"},
        ["snp.chain.revoked"],
    ),
    ("stale CRL", {"report": "report-v5.bin", "crl": "crl-milan-expired.der"}, ["snp.crl.expired"]),
    (
        "CRL of another product",
        {
            "report": "report-turin-v5.bin",
            "vcek": "vcek-turin.der",
            "chain": "cert_chain-turin.pem",
            "roots": ["ark-turin.pem"],
            "crl": "crl-milan.der",
        },
        ["snp.crl.wrong_issuer"],
    ),
    (
        "wrong product chain",
        {"report": "report-v5.bin", "chain": "cert_chain-genoa.pem", "roots": ["ark-genoa.pem"]},
        ["snp.chain.wrong_product"],
    ),
    (
        "another chip's VCEK",
        {"report": "report-v5.bin", "vcek": "vcek-milan-chip-b.der"},
        ["snp.report.signature_invalid", "snp.vcek.chip_id_mismatch"],
    ),
    ("TCB mismatch", {"report": "report-v5-tcb-mismatch.bin"}, ["snp.vcek.tcb_mismatch"]),
    (
        "VCEK for a VLEK report",
        {"report": "report-v3-vlek.bin"},
        ["snp.report.signature_invalid", "snp.vcek.kind_mismatch", "snp.vcek.chip_id_mismatch"],
    ),
    (
        "unsigned",
        {"report": "malformed-unsigned.bin"},
        ["snp.report.unsigned", "snp.vcek.kind_mismatch", "snp.vcek.chip_id_mismatch"],
    ),
    ("truncated", {"report": "malformed-truncated.bin"}, ["snp.format.truncated"]),
    ("empty", {"report": "malformed-empty.bin"}, ["snp.format.truncated"]),
    ("trailing", {"report": "malformed-trailing.bin"}, ["snp.format.trailing_bytes"]),
    ("version 4", {"report": "malformed-v4.bin"}, ["snp.report.unsupported_version"]),
    ("reserved", {"report": "malformed-reserved.bin"}, ["snp.format.reserved_nonzero"]),
]


@pytest.mark.parametrize(("case", "args", "want"), REJECT, ids=[r[0] for r in REJECT])
def test_rejections(case: str, args: dict[str, Any], want: list[str]) -> None:
    a = dict(args)
    crl = a.pop("crl", None)
    res = run(a.pop("report"), crl=v(crl) if crl else None, **a)
    assert codes(res) == want


def _expected_flip_code(off: int) -> str:
    """What flipping bit 0 of byte ``off`` in a v5 VCEK report must produce."""
    if off < 4:
        return "snp.report.unsupported_version"
    if 0x34 <= off < 0x38:
        return "snp.report.unsupported_signature_algorithm"
    reserved = [(0x49, 0x50), (0x18B, 0x1A0), (0x1EB, 0x1EC), (0x1EF, 0x1F0), (0x208, 0x2A0)]
    if any(a <= off < b for a, b in reserved):
        return "snp.format.reserved_nonzero"
    return "snp.report.signature_invalid"


def test_every_flipped_byte_of_the_signed_area_is_rejected() -> None:
    good = v("report-v5.bin")
    assert run(good).verified
    for off in range(0x2A0):
        b = bytearray(good)
        b[off] ^= 0x01
        res = run(bytes(b))
        assert not res.verified, hex(off)
        assert _expected_flip_code(off) in codes(res), (hex(off), codes(res))


def test_flipped_signature_bytes_are_rejected() -> None:
    good = v("report-v5.bin")
    for off in list(range(0x2A0, 0x2A0 + 48)) + list(range(0x2E8, 0x2E8 + 48)):
        b = bytearray(good)
        b[off] ^= 0x80
        assert codes(run(bytes(b))) == ["snp.report.signature_invalid"], hex(off)


def test_synthetic_node_signs_fresh_reports() -> None:
    node = SyntheticNode.load()
    rd = bytes(range(64))
    res = verify_report(
        node.report(rd, vmpl=2),
        vcek=node.vcek_der,
        cert_chain=node.cert_chain,
        roots=[node.ark_pem],
        report_data=rd,
        trust_dir=NO_TRUST_DIR,
    )
    assert res.verified, res.errors
    assert res.claims["vmpl"] == 2


def test_chain_cache_respects_verification_time() -> None:
    verifier = SnpVerifier()
    assert run("report-v5.bin", verifier=verifier).verified  # cached now
    res = run("report-v5.bin", at=datetime(2033, 1, 1, tzinfo=UTC), verifier=verifier)
    assert codes(res) == ["snp.chain.expired"]
    assert run("report-v5.bin", verifier=verifier).verified


def test_committed_vectors_match_the_seeded_keys() -> None:
    """The seed-derived keys (sealgate.testing.snp) are the ones in the committed certs, so
    SyntheticNode and the vectors cannot drift apart (full regeneration: gen --check)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from sealgate.pki import load_certificate
    from sealgate.testing.snp import ec_key

    for name, seed in [
        ("vcek-milan.der", "vcek-milan-chip-a"),
        ("vlek-milan.der", "vlek-milan"),
        ("vcek-turin.der", "vcek-turin"),
    ]:
        cert = load_certificate(v(name))
        point = (
            ec_key(seed).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        assert cert.public_key_bits == point, name
        assert cert.serial == 0


def test_one_bundle_with_ask_ark_and_asvk_serves_both_keys() -> None:
    bundle = v("ask-milan.pem") + v("ark-milan.pem") + v("asvk-milan.pem")
    for report, vcek in (
        ("report-v5.bin", "vcek-milan.der"),
        ("report-v3-vlek.bin", "vlek-milan.der"),
    ):
        res = verify_report(
            v(report), vcek=v(vcek), cert_chain=bundle, roots=[v("ark-milan.pem")],
            at=VALID_AT, trust_dir=NO_TRUST_DIR,
        )  # fmt: skip
        assert res.verified, (report, res.errors)


def test_pem_vcek_is_accepted() -> None:
    from sealgate.pki import to_pem

    res = verify_report(
        v("report-v5.bin"), vcek=to_pem(v("vcek-milan.der")), cert_chain=v("cert_chain-milan.pem"),
        roots=[v("ark-milan.pem")], at=VALID_AT, trust_dir=NO_TRUST_DIR,
    )  # fmt: skip
    assert res.verified, res.errors


def test_impostor_intermediate_does_not_hide_the_genuine_one() -> None:
    from sealgate.pki import to_pem

    ask = bytearray(load_ask_der())
    ask[-1] ^= 0x01  # same name and key, broken signature by the ARK
    impostor = to_pem(bytes(ask))
    res = run("report-v5.bin", chain=None)
    assert codes(res) == ["snp.chain.missing_intermediate"]
    alone = verify_report(
        v("report-v5.bin"), vcek=v("vcek-milan.der"), cert_chain=impostor,
        roots=[v("ark-milan.pem")], at=VALID_AT, trust_dir=NO_TRUST_DIR,
    )  # fmt: skip
    assert codes(alone) == ["snp.chain.signature_invalid"]
    bundle = impostor + v("cert_chain-milan.pem")
    both = verify_report(
        v("report-v5.bin"), vcek=v("vcek-milan.der"), cert_chain=bundle,
        roots=[v("ark-milan.pem")], at=VALID_AT, trust_dir=NO_TRUST_DIR,
    )  # fmt: skip
    assert both.verified, both.errors


def load_ask_der() -> bytes:
    from sealgate.pki import load_certificates

    return load_certificates(v("ask-milan.pem"))[0].der
