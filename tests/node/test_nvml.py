"""The NVML GPU collector against the fake NVML backed by synthetic GPUs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate import nvgpu, pki
from sealgate.node.nvml import NvmlError, NvmlGpus
from sealgate.protocol import runtime_binding
from sealgate.protocol.gpu_binding import gpu_nonces
from sealgate.testing.fake_nvml import FakeNvml
from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticGpu
from sealgate.testing.nvgpu_rim import RimHierarchy, ocsp_good


def test_collects_verifiable_reports_for_each_nonce() -> None:
    h = NvidiaHierarchy()
    fake = FakeNvml([SyntheticGpu(h, 0), SyntheticGpu(h, 1)])
    col = NvmlGpus(fake)
    assert col.count() == 2
    nonces = gpu_nonces(runtime_binding(b"n" * 32, b"k" * 32), 2)
    evs = col.collect(nonces)
    v = nvgpu.GpuVerifier(roots=[h.root_pem()])
    for ev, n in zip(evs, nonces, strict=True):
        r = v.verify(nvgpu.GpuEvidence(ev.report, ev.cert_chain), nonce=n)
        assert r.verified, r.errors
    # Reports are not interchangeable between slots.
    r = v.verify(nvgpu.GpuEvidence(evs[0].report, evs[0].cert_chain), nonce=nonces[1])
    assert [e.code for e in r.errors] == ["gpu.report.nonce_mismatch"]
    col.close()
    assert not fake.initialised


@pytest.mark.parametrize("size", [0, -1, 0x2001])
def test_out_of_bounds_size_refused(size: int) -> None:
    fake = FakeNvml([SyntheticGpu(NvidiaHierarchy())], report_size=size)
    with pytest.raises(NvmlError) as e:
        NvmlGpus(fake).collect([b"\0" * 32])
    assert e.value.code == "node.gpu.nvml_failed"


def test_count_and_nonce_checked() -> None:
    fake = FakeNvml([SyntheticGpu(NvidiaHierarchy())])
    with pytest.raises(NvmlError):
        NvmlGpus(fake, count=2)
    with pytest.raises(NvmlError):
        NvmlGpus(FakeNvml([]))
    with pytest.raises(NvmlError):
        NvmlGpus(fake).collect([b"short"])


def test_cli_without_nvml_fails_with_a_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pynvml  # type: ignore[import-untyped]
    from sealgate.cli import main

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML")
    argv = ["node", "request-keys", "--server", "127.0.0.1:1", "--platform", "snp"]
    argv += ["--tsm-dir", str(tmp_path), "--key-id", "m", "--out", "-", "--gpus", "1"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "node.gpu.nvml_failed" in err and "Traceback" not in err


# -- collateral carried by the node (air-gapped) ------------------------------------------

AT = datetime(2024, 6, 1, tzinfo=UTC)


def _good_ocsp(
    cert: x509.Certificate, issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> bytes:
    return ocsp_good(cert, issuer, key, at=AT)


def _collateral_dir(tmp_path: Path, gpus: list[SyntheticGpu]) -> tuple[Path, RimHierarchy]:
    """What `sealgate collateral fetch nvidia --cache-dir` leaves: RIMs named as it names
    them, OCSP responses per certificate (device chains and the RIM signer chain)."""
    from sealgate.collateral import CollateralCache
    from sealgate.nvgpu.fetch import ocsp_cache_parts
    from sealgate.testing.nvgpu_rim import make_hierarchy, matching_rims

    rh = make_hierarchy("node-collateral")
    g = gpus[0]
    drv, vb = matching_rims(
        rh, g.measurements, driver_version=g.driver_version, vbios_version="96.00.5E.00.01"
    )
    cache = CollateralCache(tmp_path / "coll")
    cache.put("nvidia", "rims", f"driver_{g.driver_version}_fetched.swidtag", data=drv)
    name = f"{g.project}_{g.project_sku}_{g.chip_sku}_96005E0001_fetched.swidtag"
    cache.put("nvidia", "rims", name, data=vb)
    # Not carried: a VBIOS RIM for another project, a file that is no RIM, an oversized one.
    cache.put("nvidia", "rims", "1010_0200_882_96005E0001_fetched.swidtag", data=vb)
    cache.put("nvidia", "rims", "junk.swidtag", data=b"<not-a-rim/>")
    cache.put("nvidia", "rims", "huge.swidtag", data=b" " * ((1 << 20) + 1))

    def der(c: x509.Certificate) -> pki.Certificate:
        return pki.load_certificate(c.public_bytes(serialization.Encoding.DER))

    pairs = [(rh.signer, rh.ca, rh.ca_key), (rh.ca, rh.root, rh.root_key)]
    for s in gpus:
        h = s.hierarchy
        pairs += [(s.leaf, h.ica, h.ica_key), (h.ica, h.root, h.root_key)]
    for cert, issuer, key in pairs:
        cache.put("nvidia", *ocsp_cache_parts(der(cert)), data=_good_ocsp(cert, issuer, key))
    return cache.root, rh


def test_node_attaches_rims_and_ocsp_from_its_collateral_dir(tmp_path: Path) -> None:
    from sealgate.nvgpu.rim import RimSource

    h = NvidiaHierarchy()
    gpus = [SyntheticGpu(h, 0), SyntheticGpu(h, 1)]
    root, rh = _collateral_dir(tmp_path, gpus)
    col = NvmlGpus(FakeNvml(gpus), collateral=root)
    nonces = gpu_nonces(runtime_binding(b"n" * 32, b"k" * 32), 2)
    evs = col.collect(nonces)
    v = nvgpu.GpuVerifier(roots=[h.root_pem()])
    for ev, n in zip(evs, nonces, strict=True):
        # Exactly the driver and the matching VBIOS RIM; device + RIM chain responses.
        assert len(ev.rims) == 2 and len(ev.ocsp_responses) == 4
        # The service's view: only what the node sent (no RIM dir, no cache).
        src = RimSource(roots=[rh.root_cert], blobs=[("sent", bytes(r)) for r in ev.rims])
        r = v.verify(
            nvgpu.GpuEvidence(ev.report, ev.cert_chain),
            nonce=n,
            at=AT,
            rims=src,
            ocsp=[bytes(x) for x in ev.ocsp_responses],
        )
        assert r.verified, r.errors
        assert r.claims["measurements_compared"] is True
        assert r.claims["revocation"]["checked"] is True


def test_node_collateral_is_bounded_and_optional(tmp_path: Path) -> None:
    from sealgate.node import gpu_collateral
    from sealgate.service import gpus as service_gpus

    # The node never sends more than the service accepts.
    assert gpu_collateral.MAX_RIMS_PER_GPU == service_gpus.MAX_RIMS_PER_GPU
    assert gpu_collateral.MAX_OCSP_PER_GPU == service_gpus.MAX_OCSP_PER_GPU
    h = NvidiaHierarchy()
    g = SyntheticGpu(h, 0)
    # No directory, or an empty one: nothing attached, no error.
    for d in (tmp_path / "absent", tmp_path):
        (ev,) = NvmlGpus(FakeNvml([g]), collateral=d).collect([b"\x01" * 32])
        assert list(ev.rims) == [] and list(ev.ocsp_responses) == []
    # A directory of many RIMs for the same versions still yields one of each kind.
    root, _ = _collateral_dir(tmp_path / "many", [g])
    rims = root / "nvidia" / "rims"
    drv = (rims / f"driver_{g.driver_version}_fetched.swidtag").read_bytes()
    for i in range(10):
        (rims / f"driver_copy{i}.swidtag").write_bytes(drv)
    (ev,) = NvmlGpus(FakeNvml([g]), collateral=root).collect([b"\x01" * 32])
    assert len(ev.rims) == 2
    assert len(ev.ocsp_responses) <= gpu_collateral.MAX_OCSP_PER_GPU
    # A report that does not parse gets nothing attached (the service reports it).
    from sealgate._proto import attestation_pb2

    bad = attestation_pb2.GpuEvidence(report=b"junk", cert_chain=b"")
    gpu_collateral.LocalGpuCollateral(root).attach(bad)
    assert list(bad.rims) == [] and list(bad.ocsp_responses) == []
