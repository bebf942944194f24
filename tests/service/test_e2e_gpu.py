"""Composite evidence over gRPC: a synthetic SNP node with GPU evidence bound into its report.

``_FakeGpus`` sends non-genuine reports (binding and policy path); ``_SyntheticGpus`` sends
reports signed by synthetic GPUs (``sealgate.testing.nvgpu``) whose root the service trusts
through ``nvgpu_roots``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sealgate.testing.softnode import SoftwareSnp

from tests.service.conftest import Env

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sealgate.snp") is None, reason="SNP platform not built in"
)


class _FakeGpus:
    """Reports that carry the nonce they were asked for but no valid signature."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.asked: list[list[bytes]] = []

    def count(self) -> int:
        return self.n

    def collect(self, nonces: list[bytes]) -> list[Any]:
        from sealgate._proto import attestation_pb2

        self.asked.append(nonces)
        return [
            attestation_pb2.GpuEvidence(report=b"not an spdm report " + n, cert_chain=b"")
            for n in nonces
        ]


class _SyntheticGpus:
    def __init__(self, gpus: list[Any]) -> None:
        self.gpus = gpus
        #: index → a report to send instead of a fresh one (a hostile node's replay).
        self.replace: dict[int, bytes] = {}

    def count(self) -> int:
        return len(self.gpus)

    def collect(self, nonces: list[bytes]) -> list[Any]:
        from sealgate._proto import attestation_pb2

        return [
            attestation_pb2.GpuEvidence(
                report=self.replace.get(i) or g.report(n), cert_chain=g.cert_chain()
            )
            for i, (g, n) in enumerate(zip(self.gpus, nonces, strict=True))
        ]


def _env(make_env: Callable[..., Env], tmp_path: Path, **cfg: object) -> tuple[Env, SoftwareSnp]:
    from sealgate.testing import snp

    node = SoftwareSnp()
    env = make_env(collateral_dir=tmp_path / "collateral", **node.write_trust(tmp_path), **cfg)
    snp_req = {"products": ["Milan"], "measurement": [snp.ReportFields().measurement.hex()]}
    env.key("cpu-only", b"C" * 32)
    env.policy("cpu-only", {"platforms": {"snp": snp_req}})
    env.key("gpu-model", b"G" * 32)
    env.policy(
        "gpu-model",
        {
            "platforms": {"snp": snp_req},
            "gpu": {"min_count": 2, "driver_versions": ["550.54.15"], "allow_any_vbios": True},
        },
    )
    return env, node


def test_gpu_policy_needs_gpus(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.node.agent import NodeAgent, explain

    env, node = _env(make_env, tmp_path)
    res = NodeAgent(env.channel, "cvm-1", node).attest(["cpu-only", "gpu-model"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    codes = [f.code for d in res.denied for f in d.failures]
    assert codes == ["policy.gpu.too_few"]


def test_gpus_bound_and_appraised_per_index(make_env: Callable[..., Env], tmp_path: Path) -> None:
    import jwt
    from sealgate.node.agent import NodeAgent, explain

    env, node = _env(make_env, tmp_path)
    gpus = _FakeGpus(2)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["cpu-only", "gpu-model"])
    # The CPU binding covered the GPU set (else nothing at all would be granted) ...
    assert set(res.keys) == {"cpu-only"}, explain(res)
    # ... and each GPU is appraised by index: these reports are not genuine.
    msgs = sorted(f.message.split(":")[0] for d in res.denied for f in d.failures)
    assert msgs == ["gpu0", "gpu1"]
    assert {f.code for d in res.denied for f in d.failures} == {"policy.gpu.not_verified"}
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert {"snp/gpu0", "snp/gpu1"} <= set(claims["submods"])
    assert len(set(gpus.asked[0])) == 2 and all(len(n) == 32 for n in gpus.asked[0])


@pytest.mark.parametrize("attack", ["splice", "reorder", "drop"])
def test_tampered_gpu_set_breaks_the_cpu_binding(
    make_env: Callable[..., Env], tmp_path: Path, attack: str
) -> None:
    from sealgate._proto import attestation_pb2, attestation_pb2_grpc
    from sealgate.node.agent import NodeAgent

    env, node = _env(make_env, tmp_path)
    agent = NodeAgent(env.channel, "cvm-1", node, gpus=_FakeGpus(2))
    req = agent.build_attest(agent.challenge(), ["cpu-only"])
    reports = list(req.gpus)
    if attack == "splice":
        # A report made for another challenge (another node's session).
        other = NodeAgent(env.channel, "cvm-2", node, gpus=_FakeGpus(2))
        reports[1] = other.build_attest(other.challenge(), ["cpu-only"]).gpus[1]
    elif attack == "reorder":
        reports.reverse()
    else:
        reports = reports[:1]
    del req.gpus[:]
    req.gpus.extend(
        attestation_pb2.GpuEvidence(report=g.report, cert_chain=g.cert_chain) for g in reports
    )
    resp = attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert not resp.granted and not resp.token
    assert any("report_data" in f.code for f in resp.evidence_failures), [
        f.code for f in resp.evidence_failures
    ]


def _synthetic(tmp_path: Path, n: int = 2) -> tuple[dict[str, object], _SyntheticGpus]:
    from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticGpu

    h = NvidiaHierarchy()
    root = tmp_path / "nvgpu-root.pem"
    root.write_bytes(h.root_pem())
    return {"nvgpu_roots": [root]}, _SyntheticGpus([SyntheticGpu(h, i) for i in range(n)])


def test_synthetic_gpus_verify_and_a_replayed_report_is_caught(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _synthetic(tmp_path)
    env, node = _env(make_env, tmp_path, **cfg)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["cpu-only", "gpu-model"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    # Genuine and fresh: the objections left are that no RIM was compared and no OCSP
    # response checked (collateral is not wired into the service yet), for each GPU.
    fails = sorted((f.message.split(":")[0], f.code) for d in res.denied for f in d.failures)
    assert fails == [
        (f"gpu{i}", c)
        for i in (0, 1)
        for c in ("policy.gpu.not_compared", "policy.gpu.revocation_unchecked")
    ]
    # A hostile node replays GPU 1's report from an earlier challenge and binds its CPU
    # report to it: the binding holds, the GPU's own nonce does not.
    old = gpus.gpus[1].report(b"\x00" * 32)
    gpus.replace[1] = old
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["cpu-only", "gpu-model"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    bad = [f for d in res.denied for f in d.failures if f.code == "policy.gpu.not_verified"]
    assert [f.message.split(":")[0] for f in bad] == ["gpu1"]
    assert "gpu.report.nonce_mismatch" in bad[0].actual


def test_untrusted_gpu_root_is_not_verified(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.node.agent import NodeAgent

    _, gpus = _synthetic(tmp_path)
    # The service trusts another synthetic root with the same name but another key.
    (tmp_path / "other").mkdir()
    cfg, _ = _synthetic(tmp_path / "other")
    env, node = _env(make_env, tmp_path, **cfg)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-model"])
    actual = [
        f.actual for d in res.denied for f in d.failures if f.code == "policy.gpu.not_verified"
    ]
    assert len(actual) == 2 and all(a.startswith("gpu.chain.") for a in actual), actual
