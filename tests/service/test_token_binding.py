"""ReleaseKey is never wider than its token: only the keys granted at Attest, only for the
token issued for the stored record (a leaked signing key forges nothing useful), and a
signing-key rotation reaches every process sharing the database."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate._proto import admin_pb2, admin_pb2_grpc, attestation_pb2, attestation_pb2_grpc
from sealgate.broker.kek import LocalKeyFileProvider
from sealgate.broker.tokens import _aad
from sealgate.node.agent import AgentError, NodeAgent
from sealgate.protocol.hpke import jwk, jwk_thumbprint
from sealgate.service.auth import mint_operator_token
from sealgate.service.server import create_server
from sealgate.storage.sqlite import SqliteStorage
from sealgate.testing.softnode import SoftwareCa, SoftwareTpm

from tests.service.conftest import TPM_POLICY, Env


def _agent(
    env: Env, name: str, channel: grpc.Channel | None = None
) -> tuple[NodeAgent, SoftwareTpm]:
    tpm = SoftwareTpm(env.ca)
    return NodeAgent(channel or env.channel, name, tpm), tpm


def _keys(env: Env, tpm: SoftwareTpm, *key_ids: str) -> None:
    env.golden(tpm)
    for k in key_ids:
        env.key(k, k.encode().ljust(32, b"."))
        env.policy(k, TPM_POLICY)


def _codes(res: Any) -> dict[str, list[str]]:
    return {d.key_id: [f.code for f in d.failures] for d in res.denied}


def _refused(agent: NodeAgent, token: str, key_ids: list[str]) -> str:
    with pytest.raises(AgentError) as e:
        agent.refetch(token, key_ids)
    assert e.value.status == grpc.StatusCode.PERMISSION_DENIED
    return e.value.code


def _audit(env: Env, event: str) -> list[dict[str, Any]]:
    entries = env.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1000), metadata=env.md).entries
    return [json.loads(e.details_json) for e in entries if e.event == event]


def _signing_key(env: Env, kid: str) -> ec.EllipticCurvePrivateKey:
    """What an attacker holding the database and the KEK file (or one leaked key) has."""
    db = sqlite3.connect(env.cfg.db_path)
    (wrapped,) = db.execute(
        "SELECT wrapped_private FROM signing_keys WHERE kid = ?", (kid,)
    ).fetchone()
    db.close()
    der = LocalKeyFileProvider(env.cfg.kek_path).unwrap(bytes(wrapped), _aad(kid))
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _forge(
    key: ec.EllipticCurvePrivateKey, kid: str, claims: dict[str, Any], **changes: Any
) -> str:
    return jwt.encode({**claims, **changes}, key, algorithm="ES256", headers={"kid": kid})


def test_release_serves_only_the_keys_granted_at_attest(env: Env) -> None:
    agent, tpm = _agent(env, "node-a")
    _keys(env, tpm, "llama", "mistral")
    res = agent.attest(["llama"])
    assert set(res.keys) == {"llama"}
    again = agent.refetch(res.token, ["llama", "mistral"])
    assert set(again.keys) == {"llama"}
    assert _codes(again) == {"mistral": ["broker.key.not_granted"]}
    assert _audit(env, "key.released")[-1]["denied"] == {"mistral": ["broker.key.not_granted"]}


def test_a_fully_denied_token_gets_nothing_when_the_policy_loosens(env: Env) -> None:
    agent, tpm = _agent(env, "node-a")
    _keys(env, tpm, "llama")
    tpm.extend(4, b"unexpected bootloader")
    res = agent.attest(["llama"])
    assert res.token and not res.keys
    assert _codes(res) == {"llama": ["policy.tpm.pcr_mismatch"]}
    # The operator accepts the new measurement: the next Attest gets the key, the old
    # (fully denied) token still does not.
    env.golden(tpm, "golden-2")
    env.policy("llama", {"platforms": {"tpm": {"reference_sets": ["golden-2"]}}})
    runtime = agent.runtime
    assert set(agent.attest(["llama"]).keys) == {"llama"}
    agent.runtime = runtime
    denied = agent.refetch(res.token, ["llama"])
    assert not denied.keys and _codes(denied) == {"llama": ["broker.key.not_granted"]}


def test_forged_tokens_from_a_leaked_signing_key_are_refused(env: Env) -> None:
    agent, tpm = _agent(env, "node-a")
    _keys(env, tpm, "llama")
    res = agent.attest(["llama"])
    kid = jwt.get_unverified_header(res.token)["kid"]
    claims = jwt.decode(res.token, options={"verify_signature": False})
    (decided,) = _audit(env, "attest.decided")
    assert decided["jti"] == claims["jti"]  # what the attacker reads in the audit log
    thief, _ = _agent(env, "thief")
    thief.build_attest(thief.challenge(), ["llama"])  # the thief's own runtime key
    assert thief.runtime is not None
    thief_jkt = jwk_thumbprint(jwk(thief.suite, thief.runtime.public_bytes))
    leaked = _signing_key(env, kid)
    # The active key, the real jti, the thief's runtime key: the record's binding differs.
    forged = _forge(leaked, kid, claims, cnf={"jkt": thief_jkt})
    assert _refused(thief, forged, ["llama"]) == "broker.token.record_mismatch"
    # The real runtime key but a longer life: the record's expiry differs.
    assert _refused(agent, _forge(leaked, kid, claims, exp=claims["exp"] + 60), ["llama"]) == (
        "broker.token.record_mismatch"
    )
    # Ten years: no token lives longer than the maximum lifetime.
    decade = claims["iat"] + 10 * 365 * 86400
    assert _refused(agent, _forge(leaked, kid, claims, exp=decade), ["llama"]) == (
        "broker.token.invalid"
    )
    assert [d["code"] for d in _audit(env, "key.refused")] == ["broker.token.record_mismatch"] * 2
    # After a rotation: the retired key dates a token now (within the rotation grace,
    # so only the record stops it; later dates are refused as broker.token.key_retired,
    # tests/broker/test_broker.py) or for ten years.
    env.admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=env.md)
    now = int(time.time())
    late = {"iat": now, "exp": now + 300, "cnf": {"jkt": thief_jkt}}
    assert _refused(thief, _forge(leaked, kid, claims, **late), ["llama"]) == (
        "broker.token.record_mismatch"
    )
    ten_years = {"iat": now, "exp": now + 10 * 365 * 86400}
    assert _refused(agent, _forge(leaked, kid, claims, **ten_years), ["llama"]) == (
        "broker.token.invalid"
    )
    # The genuine token, issued before the rotation, still works until it expires.
    assert agent.refetch(res.token, ["llama"]).keys["llama"][1] == b"llama".ljust(32, b".")


def test_a_key_retired_longer_than_the_token_lifetime_verifies_nothing(
    make_env: Callable[..., Env],
) -> None:
    env = make_env(token_ttl=1)
    agent, tpm = _agent(env, "node-a")
    _keys(env, tpm, "llama")
    res = agent.attest(["llama"])
    kid = jwt.get_unverified_header(res.token)["kid"]
    claims = jwt.decode(res.token, options={"verify_signature": False})
    leaked = _signing_key(env, kid)
    env.admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=env.md)
    time.sleep(2.1)
    # Dated before the retirement, alive for five more minutes: the key is out of service.
    forged = _forge(leaked, kid, claims, exp=int(time.time()) + 300)
    assert _refused(agent, forged, ["llama"]) == "broker.token.key_retired"


def test_a_purged_record_is_a_clean_denial(env: Env) -> None:
    agent, tpm = _agent(env, "node-a")
    _keys(env, tpm, "llama")
    res = agent.attest(["llama"])
    st = SqliteStorage(env.cfg.db_path)
    # As housekeeping does once the token has expired (here: its clock is ahead).
    assert st.purge_expired(res.expires_at + 1) >= 1
    assert (
        st.get_attestation(jwt.decode(res.token, options={"verify_signature": False})["jti"])
        is None
    )
    st.close()
    assert _refused(agent, res.token, ["llama"]) == "broker.token.unknown"


def test_signing_key_rotation_reaches_another_process(env: Env) -> None:
    """Two servers on one database, as with ``--workers 2``: after RotateSigningKey on one,
    the other signs its next token with the new key (and publishes it)."""
    other = create_server(env.cfg, http=False)
    channel = grpc.insecure_channel(f"127.0.0.1:{other.port}")
    try:
        agent, tpm = _agent(env, "node-a", channel)
        _keys(env, tpm, "llama")
        first = agent.attest(["llama"])  # the other server has loaded its keys
        old_kid = jwt.get_unverified_header(first.token)["kid"]
        rot = env.admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=env.md)
        assert rot.kid != old_kid
        for _ in range(2):
            res = agent.attest(["llama"])
            assert jwt.get_unverified_header(res.token)["kid"] == rot.kid
            assert set(res.keys) == {"llama"}
        jwks = attestation_pb2_grpc.AttestationStub(channel).GetJwks(
            attestation_pb2.GetJwksRequest()
        )
        assert {old_kid, rot.kid} <= {k["kid"] for k in json.loads(jwks.jwks_json)["keys"]}
        # The first server honours the other's tokens, old and new.
        agent.stub = attestation_pb2_grpc.AttestationStub(env.channel)
        assert set(agent.refetch(res.token, ["llama"]).keys) == {"llama"}
    finally:
        channel.close()
        other.stop(grace=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_signing_key_rotation_reaches_every_worker_of_serve(tmp_path: Path) -> None:
    """``sealgate serve --workers 2``: after RotateSigningKey, every token either process
    issues is signed with the new key (a connection per Attest, so SO_REUSEPORT spreads
    them over both workers; before, about half still carried the retired kid)."""
    ca = SoftwareCa()
    conf = tmp_path / "sealgate.json"
    conf.write_text(json.dumps({"ek_ca_roots": [str(ca.write(tmp_path / "ek-ca.pem"))]}))
    port, data = _free_port(), tmp_path / "data"
    bin_ = str(Path(sys.executable).parent / "sealgate")
    proc = subprocess.Popen(
        [bin_, "serve", "--config", str(conf), "--listen", f"127.0.0.1:{port}",
         "--http-listen", f"127.0.0.1:{_free_port()}", "--data-dir", str(data), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if "serving gRPC" not in first:
            proc.kill()
            pytest.fail(f"serve did not start:\n{first}{proc.communicate(timeout=30)[0]}")
        op = mint_operator_token((data / "operator-key.pem").read_bytes(), "t", ["admin"])
        md = (("authorization", f"Bearer {op}"),)
        tpm = SoftwareTpm(ca)
        opts = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
            admin = admin_pb2_grpc.AdminStub(ch)
            doc = {"platform": "tpm", "set_name": "golden", "values": tpm.pcr_reference_values()}
            admin.BulkAddReferenceValues(
                admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(doc)), metadata=md
            )
            admin.ImportModelKey(
                admin_pb2.ImportModelKeyRequest(key_id="m", key=b"M" * 32), metadata=md
            )
            admin.PutPolicy(
                admin_pb2.PutPolicyRequest(key_id="m", json=json.dumps(TPM_POLICY)), metadata=md
            )
            NodeAgent(ch, "node-a", tpm).enroll()
            kid = admin.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=md).kid
        kids = []
        for _ in range(12):
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
                res = NodeAgent(ch, "node-a", tpm).attest(["m"], auto_enroll=False)
                assert res.keys["m"] == (1, b"M" * 32)
                kids.append(jwt.get_unverified_header(res.token)["kid"])
        assert kids == [kid] * 12
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
