"""A fake of the ``pynvml`` calls ``sealgate.node.nvml`` makes, backed by synthetic GPUs
(``sealgate.testing.nvgpu``): the same function names and the same result field names
(fixed-size arrays plus a used size) as nvidia-ml-py's ctypes structures."""

from __future__ import annotations

from dataclasses import dataclass, field

from sealgate.testing.nvgpu import MODE_OFF, SyntheticGpu

#: nvidia-ml-py's NVML_CC_GPU_ATTESTATION_REPORT_SIZE and NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE.
REPORT_ARRAY = 0x2000
CERT_ARRAY = 0x1400


@dataclass
class _Report:
    attestationReport: bytes
    attestationReportSize: int


@dataclass
class _Cert:
    attestationCertChain: bytes
    attestationCertChainSize: int


@dataclass
class FakeNvml:
    gpus: list[SyntheticGpu]
    initialised: bool = False
    calls: list[tuple[str, int]] = field(default_factory=list)
    #: Override the reported report size (a driver bug or a hostile host).
    report_size: int | None = None

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if not self.initialised or not 0 <= i < len(self.gpus):
            raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
        return i

    def nvmlDeviceGetConfComputeGpuAttestationReport(self, h: int, nonce: bytes) -> _Report:
        self.calls.append(("report", h))
        if self.gpus[h].mode == MODE_OFF:
            # NVML answers NVML_ERROR_NOT_SUPPORTED outside confidential-computing mode.
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        rep = self.gpus[h].report(bytes(nonce))
        size = len(rep) if self.report_size is None else self.report_size
        return _Report(rep.ljust(REPORT_ARRAY, b"\0"), size)

    def nvmlDeviceGetConfComputeGpuCertificate(self, h: int) -> _Cert:
        self.calls.append(("cert", h))
        chain = self.gpus[h].cert_chain()
        return _Cert(chain.ljust(CERT_ARRAY, b"\0"), len(chain))
