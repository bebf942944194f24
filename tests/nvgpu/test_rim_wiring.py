"""GpuVerifier with RIMs and OCSP (sealgate.nvgpu.rim / .ocsp) on the published vectors:
PROVENANCE "NVIDIA GPU confidential computing" verdicts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sealgate import nvgpu, pki
from sealgate.nvgpu import rim

from tests.vectors import shared

NONCE_545 = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
NONCE_550 = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
IN_WINDOW = datetime(2024, 6, 1, tzinfo=UTC)  # both test RIM chains valid (..2025-06-22)
AFTER = datetime(2026, 12, 1, tzinfo=UTC)  # every RIM signer expired


def _b(*parts: str) -> bytes:
    return shared("nvidia-gpu", *parts).read_bytes()


@pytest.fixture(scope="module")
def verifier() -> nvgpu.GpuVerifier:
    return nvgpu.GpuVerifier(roots=[_b("roots", "verifier_device_root.pem")])


def _source(*names: str) -> rim.RimSource:
    roots = pki.load_certificates(_b("roots", "verifier_RIM_root.pem"))
    blobs = [(n, _b("h100-drv545-testrims", n)) for n in names]
    return rim.RimSource(roots=roots, blobs=blobs)


def _ev545() -> nvgpu.GpuEvidence:
    return nvgpu.GpuEvidence(
        _b("h100-drv545-testrims", "attestationReport.txt"),
        _b("h100-drv545-testrims", "gpuAkCertChain.txt"),
    )


DRIVER = "Driver_RIM_test_no_gpu.swidtag"
VBIOS_TEST = "1010_0200_882_96005E0001_test_no_gpu.swidtag"
VBIOS_PROD = "1010_0200_882_96005E0001_PROD.swidtag"


def test_drv545_all_measurements_match(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev545(), nonce=NONCE_545, at=IN_WINDOW, rims=_source(DRIVER, VBIOS_TEST))
    assert res.verified, res.errors
    c = res.claims
    assert c["measurements_compared"] is True and c["mismatched_indices"] == []
    assert c["rim"]["driver"]["version"] == "545.00" and c["rim"]["driver"]["status"] == "valid"
    assert c["rim"]["vbios"]["id"].startswith("560b6686b372407d")


def test_drv545_prod_vbios_mismatch(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev545(), nonce=NONCE_545, at=IN_WINDOW, rims=_source(DRIVER, VBIOS_PROD))
    assert [f.code for f in res.errors] == ["gpu.rim.mismatch"]
    mism = res.claims["mismatched_indices"]
    assert [m["index"] for m in mism] == [1, 2, 3, 9]
    assert all(m["actual"] and m["expected"] for m in mism)


def test_drv545_rims_expired_now(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev545(), nonce=NONCE_545, at=AFTER, rims=_source(DRIVER, VBIOS_TEST))
    assert {f.code for f in res.errors} == {"gpu.rim.not_valid_at"}


def test_drv550_rim_not_found_not_mismatch(verifier: nvgpu.GpuVerifier) -> None:
    roots = pki.load_certificates(_b("roots", "verifier_RIM_root.pem"))
    src = rim.RimSource(
        roots=roots,
        dirs=[shared("nvidia-gpu", "rims")],
        blobs=[(DRIVER, _b("h100-drv545-testrims", DRIVER))],
    )
    ev = nvgpu.GpuEvidence(
        _b("h100-drv550", "hopperAttestationReport.txt"), _b("h100-drv550", "hopperCertChain.txt")
    )
    res = verifier.verify(ev, nonce=NONCE_550, at=IN_WINDOW, rims=src)
    assert [f.code for f in res.errors] == ["gpu.rim.not_found", "gpu.rim.not_found"]
    assert res.claims["measurements_compared"] is False
    assert res.claims["mismatched_indices"] == []


def test_rim_root_cannot_anchor_devices() -> None:
    v = nvgpu.GpuVerifier(roots=[_b("roots", "verifier_RIM_root.pem")])
    res = v.verify(_ev545(), nonce=NONCE_545, at=AFTER)
    assert [f.code for f in res.errors] == ["gpu.chain.untrusted_root"]


def test_ocsp_garbage_fails_closed(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev545(), nonce=NONCE_545, at=AFTER, ocsp=[b"\x30\x03\x0a\x01\x00"])
    assert not res.verified
    assert all(f.code.startswith("gpu.ocsp.") for f in res.errors)
    assert res.claims["revocation"]["checked"] is False
