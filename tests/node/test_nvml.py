"""The NVML GPU collector against the fake NVML backed by synthetic GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sealgate import nvgpu
from sealgate.node.nvml import NvmlError, NvmlGpus
from sealgate.protocol import runtime_binding
from sealgate.protocol.gpu_binding import gpu_nonces
from sealgate.testing.fake_nvml import FakeNvml
from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticGpu


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
