"""SEV-SNP end to end over gRPC with the synthetic AMD hierarchy."""

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


def _env(make_env: Callable[..., Env], tmp_path: Path, **cfg: object) -> tuple[Env, SoftwareSnp]:
    node = SoftwareSnp()
    trust = node.write_trust(tmp_path)
    return make_env(**{"collateral_dir": tmp_path / "collateral", **trust, **cfg}), node


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


MEASURED = {"platforms": {"snp": {"products": ["Milan"], "vmpl": [0]}}}


def _measured(env: Env) -> None:
    from sealgate.testing import snp

    want = {**MEASURED["platforms"]["snp"], "measurement": [snp.ReportFields().measurement.hex()]}
    doc = {"platforms": {"snp": want}}
    env.key("m", b"S" * 32)
    env.policy("m", doc)


def _attest(
    env: Env, node: SoftwareSnp, name: str = "cvm-1"
) -> tuple[dict[str, object], list[str]]:
    from sealgate.node.agent import NodeAgent

    res = NodeAgent(env.channel, name, node).attest(["m"])
    return dict(res.keys), sorted({f.code for d in res.denied for f in d.failures})


def test_snp_revoked_vcek_denied_when_the_node_sends_no_crl(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.testing import snp

    env, node = _env(make_env, tmp_path)
    _measured(env)
    keys, codes = _attest(env, node)
    assert keys == {"m": (1, b"S" * 32)}, codes
    revoked = SoftwareSnp()
    revoked.vcek = snp.world().vcek_revoked
    # The evidence carries no CRL; the verifier's own CRL revokes this VCEK.
    keys, codes = _attest(env, revoked, "cvm-2")
    assert keys == {} and codes == ["snp.chain.revoked"]


def test_snp_chain_cache_decides_where_verification_runs(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.testing import snp

    env, node = _env(make_env, tmp_path)
    _measured(env)
    verifier = env.server.core.platforms.get("snp")
    assert verifier is not None
    assert not verifier.warm(node.collect(bytes(32), bytes(64)).snp)  # first time: the pool
    assert _attest(env, node)[0] == {"m": (1, b"S" * 32)}
    # The verifier has the chain now: the next report runs on the event loop, another
    # VCEK (a cache miss) does not.
    assert verifier.warm(node.collect(bytes(32), bytes(64)).snp)
    other = SoftwareSnp()
    other.vcek = snp.world().vcek_chip_b
    assert not verifier.warm(other.collect(bytes(32), bytes(64)).snp)


def test_snp_missing_or_stale_crl_denied_unless_allowed(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.testing import snp

    stale = tmp_path / "stale.crl"
    stale.write_bytes(snp.world().crl_expired)
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"snp_crls": [stale]}, ["snp.crl.expired"]),
        ({"snp_crls": []}, ["snp.crl.missing"]),  # and nothing in the collateral cache
        ({"snp_crls": [stale], "snp_allow_missing_crl": True}, []),
        ({"snp_crls": [], "snp_allow_missing_crl": True}, []),
    ]
    for i, (cfg, want) in enumerate(cases):
        d = tmp_path / f"case{i}"
        d.mkdir()
        env, node = _env(make_env, d, **cfg)
        _measured(env)
        keys, codes = _attest(env, node)
        assert codes == want, (cfg, codes)
        assert bool(keys) == (not want)


def test_snp_crl_from_the_collateral_cache(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.testing import snp

    cache = tmp_path / "collateral"
    (cache / "snp" / "Milan").mkdir(parents=True)
    (cache / "snp" / "Milan" / "crl.der").write_bytes(snp.world().crl)
    env, node = _env(make_env, tmp_path, snp_crls=[])
    _measured(env)
    assert _attest(env, node)[0] == {"m": (1, b"S" * 32)}
    revoked = SoftwareSnp()
    revoked.vcek = snp.world().vcek_revoked
    assert _attest(env, revoked, "cvm-2") == ({}, ["snp.chain.revoked"])
