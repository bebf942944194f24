"""Composite evidence over gRPC: a synthetic SNP node with GPU evidence bound into its report.

The GPU reports here are not genuine NVIDIA reports (no synthetic NVIDIA hierarchy is wired
in yet): they exercise the binding and the policy path, and each must fail GPU verification.
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


def _env(make_env: Callable[..., Env], tmp_path: Path) -> tuple[Env, SoftwareSnp]:
    from sealgate.testing import snp

    node = SoftwareSnp()
    env = make_env(collateral_dir=tmp_path / "collateral", **node.write_trust(tmp_path))
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
