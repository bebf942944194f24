"""GPU evidence through NVML (``nvidia-ml-py``, the ``pynvml`` module NVIDIA maintains).

For each GPU: ``nvmlDeviceGetConfComputeGpuAttestationReport`` with the SPDM requester nonce
the composite binding gives it (``sealgate.protocol.gpu_binding``) returns the signed
attestation report; ``nvmlDeviceGetConfComputeGpuCertificate`` returns its
``attestationCertChain`` (PEM, leaf first: the device identity chain that signs the report).
The NVML library is loaded only when a collector is made, so nodes without GPUs never need it.
With ``collateral`` (a directory in the collateral cache layout, ``sealgate.node.gpu_collateral``)
each GPU's evidence also carries its RIMs and OCSP responses, for an air-gapped node.

GPUs only: NVML (and nvidia-ml-py) has no NVSwitch attestation call. On a protected-PCIe
board the switches' SPDM reports come through NVIDIA's NSCQ library (what nvtrust's PPCIe
verifier uses), which this collector does not drive; such a node needs a collector that
appends the switch evidence after the GPUs (``sealgate.testing.nvgpu.SyntheticCollector`` is
the test stand-in), and a key with ``ppcie: required`` is denied without it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sealgate._proto import attestation_pb2
from sealgate.errors import SealgateError
from sealgate.protocol.gpu_binding import GPU_NONCE_SIZE, MAX_GPUS


class NvmlError(SealgateError):
    """NVML failed or returned something out of bounds."""


def _bounded(buf: Any, size: int, what: str) -> bytes:
    # The driver reports the used size next to a fixed array; never trust it past the array.
    cap = len(buf)
    if not 0 < size <= cap:
        raise NvmlError("node.gpu.nvml_failed", f"NVML {what} size {size} outside 1..{cap}")
    return bytes(buf[:size])


class NvmlGpus:
    """The node's confidential GPUs in NVML index order (``sealgate.node.agent.GpuCollector``)."""

    def __init__(
        self, nvml: Any = None, *, count: int | None = None, collateral: Path | None = None
    ) -> None:
        if nvml is None:
            import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no types

            nvml = pynvml
        self.nvml = nvml
        try:
            nvml.nvmlInit()
            n = int(nvml.nvmlDeviceGetCount())
        except Exception as e:  # pynvml raises NVMLError subclasses per return code
            raise NvmlError("node.gpu.nvml_failed", f"NVML: {e}") from None
        self._count = n if count is None else count
        from sealgate.node.gpu_collateral import LocalGpuCollateral

        self.collateral = LocalGpuCollateral(collateral) if collateral is not None else None
        if not 0 < self._count <= min(n, MAX_GPUS):
            raise NvmlError("node.gpu.nvml_failed", f"{self._count} GPUs requested, NVML sees {n}")

    def count(self) -> int:
        return self._count

    def collect(self, nonces: list[bytes]) -> list[attestation_pb2.GpuEvidence]:
        out: list[attestation_pb2.GpuEvidence] = []
        for i, nonce in enumerate(nonces):
            if len(nonce) != GPU_NONCE_SIZE:
                raise NvmlError("node.gpu.nvml_failed", "SPDM nonce must be 32 bytes")
            try:
                h = self.nvml.nvmlDeviceGetHandleByIndex(i)
                rep = self.nvml.nvmlDeviceGetConfComputeGpuAttestationReport(h, nonce)
                cert = self.nvml.nvmlDeviceGetConfComputeGpuCertificate(h)
            except Exception as e:
                raise NvmlError("node.gpu.nvml_failed", f"NVML GPU {i}: {e}") from None
            ev = attestation_pb2.GpuEvidence(
                report=_bounded(rep.attestationReport, rep.attestationReportSize, "report"),
                cert_chain=_bounded(
                    cert.attestationCertChain, cert.attestationCertChainSize, "cert chain"
                ),
            )
            if self.collateral is not None:
                self.collateral.attach(ev)
            out.append(ev)
        return out

    def close(self) -> None:
        # Best effort at exit: a failing shutdown leaves nothing to undo.
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()
