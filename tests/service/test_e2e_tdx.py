"""TDX end to end over gRPC with the fake Intel DCAP hierarchy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from sealgate._proto import attestation_pb2_grpc
from sealgate.node.agent import NodeAgent, explain
from sealgate.testing.softnode import SoftwareTdx
from sealgate.testing.tdx import DEFAULT_FMSPC, FakeIntel, Platform

from tests.service.conftest import Env

MR_TD = (b"\x5a" * 48).hex()
PCK_SERIAL = Platform().serial


def _env(make_env: Callable[..., Env], tmp_path: Path) -> tuple[Env, SoftwareTdx]:
    node = SoftwareTdx()
    roots = tmp_path / "intel-root.pem"
    roots.write_bytes(node.root_pem())
    env = make_env(tdx_roots=[roots], collateral_dir=tmp_path / "collateral")
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


def _intel(days_old: int, revoked: tuple[int, ...] = ()) -> FakeIntel:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return FakeIntel(issue_date=day - timedelta(days=days_old), revoked_serials=revoked)


def _codes(env: Env, node: SoftwareTdx, name: str = "td-1") -> tuple[bool, list[str]]:
    res = NodeAgent(env.channel, name, node).attest(["tdx-model"])
    return bool(res.keys), sorted({f.code for d in res.denied for f in d.failures})


def test_tdx_old_collateral_predating_a_revocation_is_refused(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    env, _ = _env(make_env, tmp_path)
    # Validly signed, still before its nextUpdate, but issued before the PCK (serial
    # 0x1001) was revoked: replaying it must not pass.
    ok, codes = _codes(env, SoftwareTdx(_intel(20)))
    assert not ok and codes == ["tdx.collateral.stale"]
    assert _codes(env, SoftwareTdx(_intel(1)), "td-2") == (True, [])


def test_tdx_verifier_collateral_wins_and_node_crls_only_add(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.tdx.fetch import store

    env, node = _env(make_env, tmp_path)
    cache = tmp_path / "collateral"
    fresh_revoking = _intel(0, (PCK_SERIAL,))
    store(fresh_revoking.collateral(), DEFAULT_FMSPC, cache)
    # The node sends yesterday's collateral, which does not list its PCK: the verifier's
    # own (newer) collateral does.
    assert _codes(env, node) == (False, ["tdx.pck.revoked"])
    # The verifier's collateral lacks the revocation, the node's (genuine) has it.
    store(_intel(0).collateral(), DEFAULT_FMSPC, cache)
    revoking_node = SoftwareTdx(_intel(1, (PCK_SERIAL,)))
    assert _codes(env, revoking_node, "td-2") == (False, ["tdx.pck.revoked"])
    assert _codes(env, SoftwareTdx(_intel(1)), "td-3") == (True, [])
