"""End to end over real gRPC on loopback, with software TPM nodes."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sealgate._proto import admin_pb2, attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.node.agent import AgentError, NodeAgent, explain
from sealgate.protocol.hpke import MLKEM768_X25519
from sealgate.service.auth import generate_operator_key, mint_operator_token
from sealgate.service.config import OperatorKey
from sealgate.testing.softnode import SoftwareTpm

from tests.service.conftest import TPM_POLICY, Env
from tests.service.promtext import has_sample


def _md(token: str) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Bearer {token}"),)


def _node(env: Env, name: str = "node-a", suite: str = "x25519") -> tuple[NodeAgent, SoftwareTpm]:
    tpm = SoftwareTpm(env.ca)
    return NodeAgent(env.channel, name, tpm, suite=suite), tpm


def _setup_key(env: Env, tpm: SoftwareTpm, key: bytes = b"K" * 32) -> None:
    env.golden(tpm)
    env.key("llama", key)
    env.policy("llama", TPM_POLICY)


@pytest.mark.parametrize("suite", ["x25519", MLKEM768_X25519])
def test_enroll_attest_release_and_refetch(env: Env, suite: str) -> None:
    agent, tpm = _node(env, suite=suite)
    _setup_key(env, tpm)
    res = agent.attest(["llama"])  # enrolls on first contact
    assert res.keys == {"llama": (1, b"K" * 32)} and not res.denied
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"]["tpm"]["ear.status"] == "affirming"
    assert claims["cnf"]["jkt"] and claims["exp"] - claims["iat"] == 300
    # The token verifies with the published JWKS, and its kid is there.
    jwks = json.loads(
        attestation_pb2_grpc.AttestationStub(env.channel)
        .GetJwks(attestation_pb2.GetJwksRequest())
        .jwks_json
    )
    kid = jwt.get_unverified_header(res.token)["kid"]
    key = jwt.PyJWK({k: v for k, v in next(k for k in jwks["keys"] if k["kid"] == kid).items()})
    assert jwt.decode(res.token, key.key, algorithms=["ES256"])["jti"] == claims["jti"]
    again = agent.refetch(res.token, ["llama"])
    assert again.keys == {"llama": (1, b"K" * 32)}
    # Rotating the signing key keeps unexpired tokens valid; new tokens use the new kid.
    rot = env.admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=env.md)
    assert rot.kid != kid and {kid, rot.kid} <= set(rot.published_kids)
    assert agent.refetch(res.token, ["llama"]).keys["llama"][1] == b"K" * 32
    # The token is bound to its runtime key: a stolen token is useless with another key.
    thief, _ = _node(env, "thief", suite=suite)
    thief.build_attest(thief.challenge(), ["llama"])
    with pytest.raises(AgentError) as e:
        thief.refetch(res.token, ["llama"])
    assert e.value.code == "broker.token.key_mismatch"
    nodes = env.admin.ListNodes(admin_pb2.ListNodesRequest(), metadata=env.md).nodes
    assert [n.node_id for n in nodes] == ["node-a"] and nodes[0].ak_name == tpm.ak_name


def test_extra_pcr_extension_denied_with_pcr_named(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    tpm.extend(4, b"unexpected bootloader")
    res = agent.attest(["llama"])
    assert not res.keys and res.token
    codes = [f.code for f in res.denied[0].failures]
    assert codes == ["policy.tpm.pcr_mismatch"]
    text = "\n".join(explain(res))
    assert "sha256:4" in text and tpm.pcrs[4].hex() in text
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"]["tpm"]["ear.status"] == "warning"


def test_replayed_challenge_refused(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    agent.enroll()
    req = agent.build_attest(agent.challenge(), ["llama"])
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    assert stub.Attest(req).granted
    with pytest.raises(grpc.RpcError) as e:
        stub.Attest(req)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "attest.challenge.invalid" in (e.value.details() or "")


def test_wrong_runtime_key_refused(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    agent.enroll()
    req = agent.build_attest(agent.challenge(), ["llama"])
    other, _ = _node(env, "other")
    req.runtime_public_key = other.build_attest(other.challenge(), ["llama"]).runtime_public_key
    resp = attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert not resp.granted and not resp.token
    assert [f.code for f in resp.evidence_failures] == ["tpm.quote.nonce_mismatch"]


def test_unenrolled_and_revoked_nodes_refused(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    with pytest.raises(AgentError) as e:
        agent.attest(["llama"], auto_enroll=False)
    assert e.value.code == "tpm.ak.unenrolled"
    res = agent.attest(["llama"])
    runtime = agent.runtime
    env.admin.RevokeNode(admin_pb2.RevokeNodeRequest(node_id="node-a"), metadata=env.md)
    with pytest.raises(AgentError) as e:
        agent.attest(["llama"], auto_enroll=False)
    assert e.value.code == "tpm.ak.revoked"
    agent.runtime = runtime  # the key the token is bound to
    with pytest.raises(AgentError) as e:
        agent.refetch(res.token, ["llama"])
    assert e.value.code == "tpm.ak.revoked"


def test_enrollment_needs_the_right_tpm(env: Env, make_env: Callable[..., Env]) -> None:
    _agent, tpm = _node(env)
    stranger = make_env()  # another CA: its EK certificate is not trusted here
    alien = SoftwareTpm(stranger.ca)
    with pytest.raises(AgentError) as e:
        NodeAgent(env.channel, "alien", alien).enroll()
    # Same CA name, other key: the signature link is what fails.
    assert e.value.code == "tpm.ek.signature_invalid"
    # A node that cannot activate (another TPM's EK key) never becomes trusted.
    impostor = SoftwareTpm(env.ca)
    impostor.ek = SoftwareTpm(env.ca).ek
    with pytest.raises(AgentError):
        NodeAgent(env.channel, "impostor", impostor).enroll()
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    ek_cert, _, ak_pub = tpm.enrollment_material()
    enr = stub.EnrollTpm(
        attestation_pb2.EnrollTpmRequest(node_id="x", ek_certificate=ek_cert, ak_public=ak_pub)
    )
    with pytest.raises(grpc.RpcError) as e2:
        stub.ActivateTpm(
            attestation_pb2.ActivateTpmRequest(enrollment_id=enr.enrollment_id, secret=b"guess")
        )
    assert e2.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert env.admin.ListNodes(admin_pb2.ListNodesRequest(), metadata=env.md).nodes == []


def test_policy_change_takes_effect_on_refetch(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    res = agent.attest(["llama"])
    assert "llama" in res.keys
    strict = {"platforms": {"tpm": {"pcrs": {"sha256": {"0": ["11" * 32]}}}}}
    env.policy("llama", strict)
    again = agent.refetch(res.token, ["llama"])
    assert not again.keys and again.denied[0].failures[0].code == "policy.tpm.pcr_mismatch"


def test_rotation_releases_new_version(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    env.admin.RotateModelKey(admin_pb2.RotateModelKeyRequest(key_id="llama"), metadata=env.md)
    res = agent.attest(["llama", "missing"])
    assert res.keys["llama"][0] == 2 and res.keys["llama"][1] != b"K" * 32
    assert [f.code for f in res.denied[0].failures] == ["policy.key.no_policy"]


def test_token_expiry(make_env: Callable[..., Env]) -> None:
    env = make_env(token_ttl=1)
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    res = agent.attest(["llama"])
    time.sleep(2.1)
    with pytest.raises(AgentError) as e:
        agent.refetch(res.token, ["llama"])
    assert e.value.code == "broker.token.expired"


def test_admin_requires_auth_and_role(env: Env, tmp_path: object) -> None:
    with pytest.raises(grpc.RpcError) as e:
        env.admin.ListNodes(admin_pb2.ListNodesRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        env.admin.ListNodes(
            admin_pb2.ListNodesRequest(), metadata=(("authorization", "Bearer not.a.jwt"),)
        )
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    priv, _ = generate_operator_key()  # a key the server does not trust
    rogue = mint_operator_token(priv, "mallory", ["admin"])
    with pytest.raises(grpc.RpcError) as e:
        env.admin.ListNodes(admin_pb2.ListNodesRequest(), metadata=_md(rogue))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    boot = env.cfg.bootstrap_operator_key.read_bytes()
    auditor = mint_operator_token(boot, "aud", ["auditor"])
    md = _md(auditor)
    assert env.admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=md).ok
    calls: list[Callable[[], object]] = [
        lambda: env.admin.GenerateModelKey(
            admin_pb2.GenerateModelKeyRequest(key_id="k"), metadata=md
        ),
        lambda: env.admin.PutPolicy(admin_pb2.PutPolicyRequest(key_id="k", json="{}"), metadata=md),
        lambda: env.admin.RevokeNode(admin_pb2.RevokeNodeRequest(node_id="n"), metadata=md),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    expired = mint_operator_token(boot, "late", ["admin"], ttl=1, now=int(time.time()) - 100)
    with pytest.raises(grpc.RpcError) as e:
        env.admin.ListNodes(admin_pb2.ListNodesRequest(), metadata=_md(expired))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_configured_operator_roles_cap_token_roles(
    make_env: Callable[..., Env], tmp_path: object
) -> None:
    from pathlib import Path

    priv, pub = generate_operator_key()
    p = Path(str(tmp_path)) / "op.pub"
    p.write_bytes(pub)
    env = make_env(operators=[OperatorKey("ops", p, ["operator"])])
    tok = mint_operator_token(priv, "olivia", ["admin", "operator"])  # claims more than allowed
    md = _md(tok)
    env.admin.PutPolicy(
        admin_pb2.PutPolicyRequest(key_id="k", json=json.dumps(TPM_POLICY)), metadata=md
    )
    with pytest.raises(grpc.RpcError) as e:
        env.admin.GenerateModelKey(admin_pb2.GenerateModelKeyRequest(key_id="k"), metadata=md)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_audit_chain_verifies_and_tamper_is_found(env: Env) -> None:
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    agent.attest(["llama"])
    v = env.admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=env.md)
    assert v.ok and v.entries > 5
    events = [
        e.event
        for e in env.admin.ListAudit(admin_pb2.ListAuditRequest(limit=100), metadata=env.md).entries
    ]
    for wanted in ("enroll.completed", "challenge.issued", "attest.decided", "admin.policy.put"):
        assert wanted in events
    db = sqlite3.connect(env.cfg.db_path)
    row = db.execute("SELECT seq, entry FROM audit WHERE seq = 3").fetchone()
    db.execute("UPDATE audit SET entry = ? WHERE seq = 3", (bytes(row[1]) + b"\x00",))
    db.commit()
    db.close()
    v = env.admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=env.md)
    assert not v.ok and v.first_bad_seq == 3


def test_malformed_and_oversized_requests(make_env: Callable[..., Env]) -> None:
    env = make_env()
    env.cfg.limits.max_evidence_bytes = 4096
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    agent, tpm = _node(env)
    _setup_key(env, tpm)
    agent.enroll()
    cases: list[tuple[attestation_pb2.AttestRequest, grpc.StatusCode, str]] = []
    good = agent.build_attest(agent.challenge(), ["llama"])
    no_ev = attestation_pb2.AttestRequest()
    no_ev.CopyFrom(good)
    no_ev.ClearField("evidence")
    cases.append((no_ev, grpc.StatusCode.INVALID_ARGUMENT, "service.request.no_evidence"))
    big = attestation_pb2.AttestRequest()
    big.CopyFrom(good)
    big.evidence.tpm.quote = b"\x00" * 5000
    cases.append((big, grpc.StatusCode.INVALID_ARGUMENT, "service.limits.evidence_too_large"))
    badkey = attestation_pb2.AttestRequest()
    badkey.CopyFrom(good)
    badkey.runtime_public_key = b"short"
    cases.append((badkey, grpc.StatusCode.INVALID_ARGUMENT, "broker.hpke.bad_public_key"))
    snp = attestation_pb2.AttestRequest(
        challenge_id="x",
        node_id="n",
        key_ids=["llama"],
        evidence=attestation_pb2.Evidence(snp=attestation_pb2.SnpEvidence(report=b"r")),
    )
    snp.runtime_public_key = good.runtime_public_key
    if "snp" not in env.server.core.platforms.available():
        cases.append((snp, grpc.StatusCode.UNIMPLEMENTED, "service.platform.unavailable"))
    for req, status, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            stub.Attest(req)
        assert e.value.code() == status, code
        assert code in (e.value.details() or "")
    # Garbage evidence after a valid challenge: a clean denial with parse codes.
    garbage = agent.build_attest(agent.challenge(), ["llama"])
    garbage.evidence.tpm.quote = b"\xff" * 40
    resp = stub.Attest(garbage)
    assert not resp.granted and resp.evidence_failures[0].code.startswith("tpm.format.")
    # Raw bytes that are not a protobuf message at all.
    raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = env.channel.unary_unary(
        "/sealgate.v1.Attestation/Attest"
    )
    with pytest.raises(grpc.RpcError) as e:
        raw(b"\xff\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "service.request.malformed" in (e.value.details() or "")
    # Oversized message: refused by the transport limit.
    with pytest.raises(grpc.RpcError) as e:
        raw(b"\x0a" + b"\x80\x80\x80\x04" + b"\x00" * (5 << 20))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Unknown platform value → UNIMPLEMENTED (SNP unless its verifier is built in).
    with pytest.raises(grpc.RpcError) as e:
        stub.Challenge(attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_UNSPECIFIED))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_rate_limit_per_node(make_env: Callable[..., Env]) -> None:
    from sealgate.service.config import RateLimit

    env = make_env(rate_limit=RateLimit(per_node_rps=0.001, burst=3))
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    req = attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TPM, node_id="busy")
    for _ in range(3):
        stub.Challenge(req)
    with pytest.raises(grpc.RpcError) as e:
        stub.Challenge(req)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    stub.Challenge(
        attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TPM, node_id="calm")
    )


def test_rate_limit_per_peer_when_node_ids_rotate(make_env: Callable[..., Env]) -> None:
    """Node ids come from the client: a caller inventing a new one per request is still
    limited by its address."""
    from sealgate.service.config import RateLimit

    env = make_env(
        rate_limit=RateLimit(per_node_rps=1000, burst=1000, per_peer_rps=0.001, peer_burst=3)
    )
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    for i in range(3):
        stub.Challenge(
            attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TPM, node_id=f"n{i}")
        )
    with pytest.raises(grpc.RpcError) as e:
        stub.Challenge(
            attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TPM, node_id="n9")
        )
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "service.rate_limited" in (e.value.details() or "")


def test_http_side_port_health_and_reflection(env: Env) -> None:
    base = f"http://127.0.0.1:{env.server.http_port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as r:  # noqa: S310 - loopback
        assert r.status == 200
    with urllib.request.urlopen(base + "/.well-known/jwks.json", timeout=5) as r:  # noqa: S310
        assert json.loads(r.read())["keys"][0]["alg"] == "ES256"
    attestation_pb2_grpc.AttestationStub(env.channel).Challenge(
        attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TPM, node_id="m")
    )
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:  # noqa: S310
        text = r.read().decode()
    assert has_sample(text, 'sealgate_rpc_total{method="Challenge",code="OK"} 1')
    hs = health_pb2_grpc.HealthStub(env.channel)
    st = hs.Check(health_pb2.HealthCheckRequest(service="sealgate.v1.Attestation"))
    assert st.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    refl = reflection_pb2_grpc.ServerReflectionStub(env.channel)
    resp = next(
        iter(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
    )
    names = {s.name for s in resp.list_services_response.service}
    assert {"sealgate.v1.Attestation", "sealgate.v1.Admin"} <= names
