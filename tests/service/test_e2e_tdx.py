"""TDX end to end over gRPC with the fake Intel DCAP hierarchy (issue #5 §8)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jwt
from sealgate._proto import attestation_pb2_grpc
from sealgate.node.agent import NodeAgent, explain
from sealgate.testing.softnode import SoftwareTdx

from tests.service.conftest import Env

MR_TD = (b"\x5a" * 48).hex()


def _env(make_env: Callable[..., Env], tmp_path: Path) -> tuple[Env, SoftwareTdx]:
    node = SoftwareTdx()
    roots = tmp_path / "intel-root.pem"
    roots.write_bytes(node.root_pem())
    env = make_env(tdx_roots=[roots])
    env.key("tdx-model", b"T" * 32)
    env.policy("tdx-model", {"platforms": {"tdx": {
        "mr_td": [MR_TD], "tcb_statuses": ["UpToDate"]}}})  # fmt: skip
    return env, node


def test_tdx_node_attests_and_policy_decides(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env, node = _env(make_env, tmp_path)
    res = NodeAgent(env.channel, "td-1", node).attest(["tdx-model"])
    assert res.keys == {"tdx-model": (1, b"T" * 32)}, explain(res)
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"]["tdx"]["ear.status"] == "affirming"
    other = SoftwareTdx(mr_td=b"\x01" * 48, td_attributes=bytes.fromhex("0100001000000000"))
    res = NodeAgent(env.channel, "td-2", other).attest(["tdx-model"])
    codes = sorted(f.code for f in res.denied[0].failures)
    assert codes == ["policy.tdx.debug_enabled", "policy.tdx.mr_td_mismatch"], explain(res)


def test_tdx_wrong_report_data_refused(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env, node = _env(make_env, tmp_path)
    agent = NodeAgent(env.channel, "td-1", node)
    req = agent.build_attest(agent.challenge(), ["tdx-model"])
    other = NodeAgent(env.channel, "x", node)
    other.build_attest(other.challenge(), ["tdx-model"])
    assert other.runtime is not None
    req.runtime_public_key = other.runtime.public_bytes
    resp = attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert not resp.granted and not resp.token
    assert any("report_data" in f.code for f in resp.evidence_failures), [
        f.code for f in resp.evidence_failures
    ]
