"""SEV-SNP end to end over gRPC with the synthetic AMD hierarchy (issue #5 §8)."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from sealgate.testing.softnode import SoftwareSnp

from tests.service.conftest import Env

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sealgate.snp") is None, reason="SNP platform not built in"
)


def _env(make_env: Callable[..., Env], tmp_path: Path) -> tuple[Env, SoftwareSnp]:
    node = SoftwareSnp()
    roots = tmp_path / "amd-roots.pem"
    roots.write_bytes(node.root_pem())
    return make_env(snp_roots=[roots]), node


def test_snp_node_attests_and_policy_decides(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.testing import snp

    env, node = _env(make_env, tmp_path)
    measurement = snp.ReportFields().measurement.hex()
    env.key("snp-model", b"S" * 32)
    env.policy(
        "snp-model",
        {
            "platforms": {
                "snp": {
                    "measurement": [measurement],
                    "vmpl": [0],
                    "products": ["Milan"],
                    "min_reported_tcb": {"snp": 0},
                }
            }
        },
    )
    agent = NodeAgent(env.channel, "cvm-1", node)
    res = agent.attest(["snp-model"])
    assert res.keys == {"snp-model": (1, b"S" * 32)}, explain(res)
    import jwt

    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"]["snp"]["ear.status"] == "affirming"
    assert claims["submods"]["snp"]["ear.trustworthiness-vector"]["runtime_opaque"] == 2
    # Another launch digest, and a debug-enabled guest: denied, with codes.
    other = SoftwareSnp(
        dataclasses.replace(
            snp.ReportFields(), measurement=b"\x01" * 48, policy=0x30000 | (1 << 19)
        )
    )
    res = NodeAgent(env.channel, "cvm-2", other).attest(["snp-model"])
    codes = sorted(f.code for f in res.denied[0].failures)
    assert codes == ["policy.snp.debug_enabled", "policy.snp.measurement_mismatch"]


def test_snp_wrong_report_data_refused(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate._proto import attestation_pb2_grpc
    from sealgate.node.agent import NodeAgent
    from sealgate.testing import snp

    env, node = _env(make_env, tmp_path)
    env.key("m", b"S" * 32)
    measurement = snp.ReportFields().measurement.hex()
    env.policy("m", {"platforms": {"snp": {"products": ["Milan"], "measurement": [measurement]}}})
    agent = NodeAgent(env.channel, "cvm-1", node)
    req = agent.build_attest(agent.challenge(), ["m"])
    other = NodeAgent(env.channel, "x", node)
    other.build_attest(other.challenge(), ["m"])
    assert other.runtime is not None
    req.runtime_public_key = other.runtime.public_bytes
    resp = attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert not resp.granted and not resp.token
    assert any("report_data" in f.code for f in resp.evidence_failures), [
        f.code for f in resp.evidence_failures
    ]
