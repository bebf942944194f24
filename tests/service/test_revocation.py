"""Revocation sticks to the hardware identity, for every platform; node ids cannot be taken
over; every Attest outcome after the challenge lookup is audited; small-order runtime keys
are refused at the door."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sealgate._proto import admin_pb2, attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.broker.audit import decode_entry
from sealgate.node.agent import AgentError, NodeAgent, explain
from sealgate.protocol import SUITE_ENUM, runtime_binding
from sealgate.service.auth import mint_operator_token
from sealgate.testing.softnode import SoftwareSnp, SoftwareTdx, SoftwareTpm
from sealgate.tpm.enroll import load_certificates

from tests.service.conftest import TPM_POLICY, Env

TPM = common_pb2.PLATFORM_TPM
SNP = common_pb2.PLATFORM_SNP
TDX = common_pb2.PLATFORM_TDX


def _entries(env: Env, event: str) -> list[dict[str, Any]]:
    rows = env.server.core.st.list_audit(0, 10_000)
    return [d for d in map(decode_entry, (r.entry for r in rows)) if d["event"] == event]


def _tpm_env(env: Env) -> tuple[NodeAgent, SoftwareTpm]:
    tpm = SoftwareTpm(env.ca)
    env.golden(tpm)
    env.key("llama", b"K" * 32)
    env.policy("llama", TPM_POLICY)
    return NodeAgent(env.channel, "node-a", tpm), tpm


def _ek(tpm: SoftwareTpm) -> str:
    return "ek:" + load_certificates(tpm.ek_cert)[0].fingerprint


def _code(fn: Callable[[], object]) -> tuple[str, grpc.StatusCode | None]:
    with pytest.raises(AgentError) as e:
        fn()
    return e.value.code, e.value.status


def _rpc_code(fn: Callable[[], object]) -> tuple[str, grpc.StatusCode]:
    from sealgate.node.agent import error_code

    with pytest.raises(grpc.RpcError) as e:
        fn()
    return error_code(e.value), e.value.code()


# -- TPM ------------------------------------------------------------------------------------


def test_revoked_tpm_cannot_reenroll_under_any_node_id(env: Env) -> None:
    agent, tpm = _tpm_env(env)
    res = agent.attest(["llama"])
    runtime = agent.runtime
    assert res.keys == {"llama": (1, b"K" * 32)}
    env.admin.RevokeNode(
        admin_pb2.RevokeNodeRequest(node_id="node-a", reason="stolen"), metadata=env.md
    )
    # Same TPM, same node id: enrolling again no longer resets the revocation.
    assert _code(agent.enroll) == ("tpm.enroll.revoked", grpc.StatusCode.PERMISSION_DENIED)
    assert _code(lambda: agent.attest(["llama"])) == (
        "tpm.ak.revoked",
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Same TPM under a fresh node id (auto-enrolls on tpm.ak.unenrolled).
    fresh = NodeAgent(env.channel, "node-z", tpm)
    assert _code(lambda: fresh.attest(["llama"]))[0] == "tpm.enroll.revoked"
    # The same EK with a new AK is the same TPM.
    tpm2 = SoftwareTpm(env.ca)
    tpm2.ek, tpm2.ek_cert = tpm.ek, tpm.ek_cert
    assert _code(NodeAgent(env.channel, "node-y", tpm2).enroll)[0] == "tpm.enroll.revoked"
    # Its pre-revocation token stays dead.
    agent.runtime = runtime
    assert _code(lambda: agent.refetch(res.token, ["llama"]))[0] == "tpm.ak.revoked"
    refused = _entries(env, "enroll.refused")
    assert [e["details"]["code"] for e in refused] == ["tpm.enroll.revoked"] * 3
    assert {e["actor"] for e in refused} == {"node-a", "node-z", "node-y"}
    nodes = env.admin.ListNodes(admin_pb2.ListNodesRequest(), metadata=env.md).nodes
    assert [(n.node_id, n.revoked) for n in nodes] == [("node-a", True)]
    revs = env.admin.ListRevocations(admin_pb2.ListRevocationsRequest(), metadata=env.md)
    assert {(r.platform, r.identity) for r in revs.revocations} == {
        (TPM, _ek(tpm)),
        (TPM, f"ak:{tpm.ak_name.hex()}"),
    }
    assert {r.reason for r in revs.revocations} == {"stolen"}


def test_lift_lets_the_tpm_back_but_old_tokens_stay_dead(env: Env) -> None:
    agent, tpm = _tpm_env(env)
    res = agent.attest(["llama"])
    old_runtime = agent.runtime
    env.admin.RevokeNode(admin_pb2.RevokeNodeRequest(node_id="node-a"), metadata=env.md)
    ek, ak = _ek(tpm), f"ak:{tpm.ak_name.hex()}"
    # Lifting is admin-only.
    op = mint_operator_token(env.cfg.bootstrap_operator_key.read_bytes(), "op", ["operator"])
    with pytest.raises(grpc.RpcError) as e:
        env.admin.LiftRevocation(
            admin_pb2.LiftRevocationRequest(platform=TPM, identity=ek),
            metadata=(("authorization", f"Bearer {op}"),),
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    env.admin.LiftRevocation(
        admin_pb2.LiftRevocationRequest(platform=TPM, identity=ek.upper().replace("EK:", "ek:")),
        metadata=env.md,
    )
    # The AK is still revoked: the node stays out.
    assert _code(lambda: agent.attest(["llama"]))[0] == "tpm.ak.revoked"
    lifted = env.admin.LiftRevocation(
        admin_pb2.LiftRevocationRequest(platform=TPM, identity=ak), metadata=env.md
    )
    assert lifted.lifted_at and lifted.lifted_by == "test@bootstrap"
    new = agent.attest(["llama"])
    assert new.keys == {"llama": (1, b"K" * 32)}, explain(new)
    assert agent.refetch(new.token, ["llama"]).keys["llama"][1] == b"K" * 32
    # The token from before the revocation does not come back with the lift.
    agent.runtime = old_runtime
    assert _code(lambda: agent.refetch(res.token, ["llama"]))[0] == "tpm.ak.revoked"
    with pytest.raises(grpc.RpcError) as e:
        env.admin.LiftRevocation(
            admin_pb2.LiftRevocationRequest(platform=TPM, identity=ak), metadata=env.md
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    events = [e["event"] for e in _entries(env, "admin.identity.lifted")]
    assert events == ["admin.identity.lifted"] * 2
    everything = env.admin.ListRevocations(
        admin_pb2.ListRevocationsRequest(include_lifted=True), metadata=env.md
    ).revocations
    assert len(everything) == 2 and all(r.lifted_at for r in everything)
    assert not env.admin.ListRevocations(
        admin_pb2.ListRevocationsRequest(), metadata=env.md
    ).revocations


def test_second_tpm_cannot_take_an_existing_node_id(env: Env) -> None:
    agent, tpm = _tpm_env(env)
    res = agent.attest(["llama"])
    runtime = agent.runtime
    thief_tpm = SoftwareTpm(env.ca)  # genuine, trusted EK: just another machine
    thief = NodeAgent(env.channel, "node-a", thief_tpm)
    assert _code(thief.enroll) == ("tpm.enroll.node_id_taken", grpc.StatusCode.ALREADY_EXISTS)
    refused = _entries(env, "enroll.refused")
    assert refused[-1]["details"]["code"] == "tpm.enroll.node_id_taken"
    assert refused[-1]["details"]["bound_ek"] == _ek(tpm)[3:]
    # The real node is not locked out.
    assert agent.attest(["llama"]).keys
    # Both start enrolling a free id; the second to activate loses (checked at activation).
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    pending = []
    for t in (SoftwareTpm(env.ca), thief_tpm):
        ek_cert, chain, ak_pub = t.enrollment_material()
        r = stub.EnrollTpm(
            attestation_pb2.EnrollTpmRequest(
                node_id="free", ek_certificate=ek_cert, ek_chain=chain, ak_public=ak_pub
            )
        )
        pending.append((r.enrollment_id, t.activate(r.credential_blob, r.encrypted_secret)))
    stub.ActivateTpm(
        attestation_pb2.ActivateTpmRequest(enrollment_id=pending[0][0], secret=pending[0][1])
    )
    code, status = _rpc_code(
        lambda: stub.ActivateTpm(
            attestation_pb2.ActivateTpmRequest(enrollment_id=pending[1][0], secret=pending[1][1])
        )
    )
    assert (code, status) == ("tpm.enroll.node_id_taken", grpc.StatusCode.ALREADY_EXISTS)
    # The operator re-binds explicitly: forget, then the other TPM may enroll.
    gone = env.admin.ForgetNode(admin_pb2.ForgetNodeRequest(node_id="node-a"), metadata=env.md)
    assert gone.node_id == "node-a"
    assert thief.attest(["llama"]).keys
    forgotten = _entries(env, "admin.node.forgotten")
    assert [e["details"]["node_id"] for e in forgotten] == ["node-a"]
    # The old TPM's token under that id does not pass for the new TPM's node.
    agent.runtime = runtime
    assert _code(lambda: agent.refetch(res.token, ["llama"]))[0] == "tpm.ak.revoked"
    with pytest.raises(grpc.RpcError) as e:
        env.admin.ForgetNode(admin_pb2.ForgetNodeRequest(node_id="nope"), metadata=env.md)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_tpm_revoked_by_identity_before_it_activates(env: Env) -> None:
    _agent, tpm = _tpm_env(env)
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    ek_cert, chain, ak_pub = tpm.enrollment_material()
    r = stub.EnrollTpm(
        attestation_pb2.EnrollTpmRequest(
            node_id="node-a", ek_certificate=ek_cert, ek_chain=chain, ak_public=ak_pub
        )
    )
    secret = tpm.activate(r.credential_blob, r.encrypted_secret)
    env.admin.RevokeIdentity(
        admin_pb2.RevokeIdentityRequest(platform=TPM, identity=_ek(tpm)), metadata=env.md
    )
    code, status = _rpc_code(
        lambda: stub.ActivateTpm(
            attestation_pb2.ActivateTpmRequest(enrollment_id=r.enrollment_id, secret=secret)
        )
    )
    assert (code, status) == ("tpm.enroll.revoked", grpc.StatusCode.PERMISSION_DENIED)
    assert not env.admin.ListNodes(admin_pb2.ListNodesRequest(), metadata=env.md).nodes


@pytest.mark.parametrize(
    ("platform", "identity"),
    [
        (TPM, "ek:12"),
        (TPM, "chip_id:" + "00" * 64),
        (SNP, "ppid:" + "11" * 16),
        (TDX, "ppid:" + "1" * 31),
        (TDX, "ppid:" + "zz" * 16),
        (common_pb2.PLATFORM_UNSPECIFIED, "ek:" + "00" * 32),
    ],
)
def test_revoke_identity_checks_the_identity(
    env: Env, platform: common_pb2.Platform.ValueType, identity: str
) -> None:
    code, status = _rpc_code(
        lambda: env.admin.RevokeIdentity(
            admin_pb2.RevokeIdentityRequest(platform=platform, identity=identity),
            metadata=env.md,
        )
    )
    assert (code, status) == ("admin.revocation.bad_identity", grpc.StatusCode.INVALID_ARGUMENT)


# -- SNP and TDX ----------------------------------------------------------------------------


def _revoke_then_lift(
    env: Env,
    agent: NodeAgent,
    other: NodeAgent,
    platform: common_pb2.Platform.ValueType,
    kind: str,
    key_id: str,
) -> None:
    res = agent.attest([key_id])
    assert res.keys, explain(res)
    runtime = agent.runtime
    decided = _entries(env, "attest.decided")[-1]["details"]
    identity = next(i for i in decided["identities"] if i.startswith(kind + ":"))
    rev = env.admin.RevokeIdentity(
        admin_pb2.RevokeIdentityRequest(platform=platform, identity=identity, reason="rma"),
        metadata=env.md,
    )
    assert rev.identity == identity and rev.revoked_by == "test@bootstrap"
    assert _code(lambda: agent.attest([key_id])) == (
        "attest.identity.revoked",
        grpc.StatusCode.PERMISSION_DENIED,
    )
    refused = _entries(env, "attest.refused")[-1]["details"]
    assert refused["code"] == "attest.identity.revoked" and refused["revoked"] == [identity]
    agent.runtime = runtime
    assert _code(lambda: agent.refetch(res.token, [key_id]))[0] == "attest.identity.revoked"
    # Another machine is unaffected.
    assert other.attest([key_id]).keys
    env.admin.LiftRevocation(
        admin_pb2.LiftRevocationRequest(platform=platform, identity=identity), metadata=env.md
    )
    new = agent.attest([key_id])
    assert new.keys, explain(new)
    assert agent.refetch(new.token, [key_id]).keys
    agent.runtime = runtime
    assert _code(lambda: agent.refetch(res.token, [key_id]))[0] == "attest.identity.revoked"


def test_snp_chip_revoked_then_lifted(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.testing import snp

    node = SoftwareSnp()
    env = make_env(collateral_dir=tmp_path / "collateral", **node.write_trust(tmp_path))
    env.key("m", b"S" * 32)
    env.policy("m", {"platforms": {"snp": {"measurement": [snp.ReportFields().measurement.hex()]}}})
    chip_b = SoftwareSnp()
    chip_b.vcek = snp.world().vcek_chip_b
    _revoke_then_lift(
        env, NodeAgent(env.channel, "cvm-1", node), NodeAgent(env.channel, "cvm-2", chip_b),
        SNP, "chip_id", "m",
    )  # fmt: skip
    decided = _entries(env, "attest.decided")[0]["details"]["identities"]
    assert decided == [
        "chip_id:" + snp.world().vcek.chip_id.hex(),
        "vcek:" + hashlib.sha256(snp.world().vcek.der).hexdigest(),
    ]


def test_tdx_platform_revoked_then_lifted(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.testing import tdx

    node = SoftwareTdx()
    roots = tmp_path / "intel-root.pem"
    roots.write_bytes(node.root_pem())
    env = make_env(tdx_roots=[roots])
    env.key("t", b"T" * 32)
    env.policy("t", {"platforms": {"tdx": {"mr_td": [(b"\x5a" * 48).hex()]}}})
    other = SoftwareTdx(node.intel, platform=tdx.Platform(ppid=b"\x22" * 16, serial=0x1002))
    _revoke_then_lift(
        env, NodeAgent(env.channel, "td-1", node), NodeAgent(env.channel, "td-2", other),
        TDX, "ppid", "t",
    )  # fmt: skip
    ids = {e["details"]["identities"][0] for e in _entries(env, "attest.decided")}
    assert ids == {"ppid:" + "11" * 16, "ppid:" + "22" * 16}


# -- Every outcome after the challenge lookup is audited ------------------------------------


def test_platform_and_node_mismatch_consume_and_audit(env: Env) -> None:
    agent, _tpm = _tpm_env(env)
    agent.enroll()
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    # A TPM challenge answered with TDX evidence.
    ch = agent.challenge()
    req = agent.build_attest(ch, ["llama"])
    req.evidence.CopyFrom(SoftwareTdx().collect(ch.nonce, b"\x00" * 64))
    assert _rpc_code(lambda: stub.Attest(req)) == (
        "attest.challenge.platform_mismatch",
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # A challenge issued to node-a answered as another node.
    ch2 = agent.challenge()
    req2 = agent.build_attest(ch2, ["llama"])
    req2.node_id = "node-b"
    assert _rpc_code(lambda: stub.Attest(req2))[0] == "attest.challenge.node_mismatch"
    refused = [e["details"] for e in _entries(env, "attest.refused")]
    assert [(d["challenge_id"], d["code"]) for d in refused] == [
        (ch.challenge_id, "attest.challenge.platform_mismatch"),
        (ch2.challenge_id, "attest.challenge.node_mismatch"),
    ]
    # Both challenges are used up.
    req2.node_id = "node-a"
    assert _rpc_code(lambda: stub.Attest(req2))[0] == "attest.challenge.invalid"


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_zero_x25519_runtime_key_is_invalid_argument(env: Env, suite: str) -> None:
    from sealgate.protocol.hpke import RuntimeKeyPair

    agent, tpm = _tpm_env(env)
    agent.suite = suite
    res = agent.attest(["llama"])
    good = RuntimeKeyPair.generate(suite).public_bytes
    zero = good[:-32] + bytes(32)  # the hybrid: its X25519 half
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    ch = agent.challenge()
    # Evidence honestly bound to the zero key: the refusal must not depend on the binding.
    evidence = tpm.collect(ch.nonce, runtime_binding(ch.nonce, zero))
    req = attestation_pb2.AttestRequest(
        challenge_id=ch.challenge_id,
        node_id="node-a",
        evidence=evidence,
        runtime_public_key=zero,
        suite=SUITE_ENUM[suite],
        key_ids=["llama"],
    )
    assert _rpc_code(lambda: stub.Attest(req)) == (
        "broker.hpke.low_order_key",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    rel = attestation_pb2.ReleaseKeyRequest(
        token=res.token, runtime_public_key=zero, suite=req.suite, key_ids=["llama"]
    )
    assert _rpc_code(lambda: stub.ReleaseKey(rel)) == (
        "broker.hpke.low_order_key",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    # Refused before any work: the challenge is still live, nothing was audited for it.
    assert env.server.core.st.get_challenge(ch.challenge_id, 0) is not None
    assert not any(
        ch.challenge_id == d["details"].get("challenge_id")
        for event in ("attest.refused", "attest.denied", "attest.decided")
        for d in _entries(env, event)
    )


def test_revocation_entries_are_audited_and_atomic(env: Env) -> None:
    core = env.server.core
    ident = "chip_id:" + "ab" * 64
    rev = core.revoke_identity("op", "snp", ident, "x")
    again = core.revoke_identity("op", "snp", ident.upper().replace("CHIP_ID", "chip_id"), "y")
    assert again == rev  # still the first revocation; no second entry
    assert [e["details"]["identity"] for e in _entries(env, "admin.identity.revoked")] == [ident]
    assert (
        json.loads(json.dumps(_entries(env, "admin.identity.revoked")[0]["details"]))["seq"]
        == rev.seq
    )


def test_identities_from_verified_claims() -> None:
    from sealgate.service.platforms import identities, parse_identity

    chip = "ab" * 64
    ek = {"kind": "vlek", "sha256": "cd" * 32}
    assert identities("snp", {"chip_id": chip, "endorsement_key": ek}) == [
        f"chip_id:{chip}",
        f"vlek:{'cd' * 32}",
    ]
    # A masked CHIP_ID (all zero) names no chip; the VLEK is all that is left.
    assert identities("snp", {"chip_id": "00" * 64, "endorsement_key": ek}) == [f"vlek:{'cd' * 32}"]
    assert identities("tdx", {"ppid": "11" * 16, "platform_instance_id": None}) == [
        "ppid:" + "11" * 16
    ]
    assert identities("tpm", {"ek_fingerprint": "ee" * 32, "ak_name": "000b" + "aa" * 32}) == [
        "ek:" + "ee" * 32,
        "ak:000b" + "aa" * 32,
    ]
    assert identities("tdx", {}) == [] and identities("other", {"ppid": "11"}) == []
    assert parse_identity("snp", " CHIP_ID:" + "AB" * 64) == f"chip_id:{chip}"
    with pytest.raises(ValueError):
        parse_identity("snp", "ppid:" + "11" * 16)


def test_verified_evidence_without_identity_is_refused(env: Env) -> None:
    """Fail closed: a platform verifier whose verified claims name no hardware identity
    cannot be revoked, so it gets no key."""
    from sealgate.result import VerifyResult
    from sealgate.service.platforms import PlatformVerifier, VerifyContext

    class Anonymous(PlatformVerifier):
        name = "tdx"

        def available(self) -> bool:
            return True

        def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
            return VerifyResult("tdx", {"mr_td": "5a" * 48})

    env.server.core.platforms.register(Anonymous())
    env.key("t", b"T" * 32)
    env.policy("t", {"platforms": {"tdx": {"mr_td": ["5a" * 48]}}})
    agent = NodeAgent(env.channel, "td-1", SoftwareTdx())
    assert _code(lambda: agent.attest(["t"])) == (
        "attest.identity.missing",
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert _entries(env, "attest.refused")[-1]["details"]["code"] == "attest.identity.missing"


def test_cli_revoke_list_lift_forget(env: Env) -> None:
    import os
    import subprocess
    import sys

    agent, _tpm = _tpm_env(env)
    agent.enroll()
    bin_ = str(Path(sys.executable).parent / "sealgate")
    cli_env = dict(
        os.environ, SEALGATE_SERVER=f"127.0.0.1:{env.server.port}", SEALGATE_TOKEN=env.token
    )

    def cli(*args: str) -> tuple[int, Any, str]:
        r = subprocess.run(
            [bin_, "admin", *args], capture_output=True, timeout=60, env=cli_env, check=False
        )
        out = r.stdout.decode()
        return r.returncode, json.loads(out) if "--json" in args else out, r.stderr.decode()

    chip = "chip_id:" + "ab" * 64
    rc, doc, _ = cli("revoke", "--platform", "snp", chip, "--reason", "rma", "--json")
    assert rc == 0 and doc["identity"] == chip and doc["reason"] == "rma"
    rc, doc, _ = cli("revocation-list", "--json")
    assert rc == 0 and [r["identity"] for r in doc["revocations"]] == [chip]
    rc, doc, _ = cli("revocation-lift", "--platform", "snp", chip, "--json")
    assert rc == 0 and int(doc["lifted_at"]) > 0
    rc, doc, _ = cli("revocation-list", "--json")
    assert rc == 0 and doc["revocations"] == []
    rc, doc, _ = cli("revocation-list", "--all", "--json")
    assert [r["identity"] for r in doc["revocations"]] == [chip]
    rc, _, err = cli("revoke", "--platform", "tdx", chip)
    assert rc != 0 and "admin.revocation.bad_identity" in err and "Traceback" not in err
    assert cli("node-revoke", "node-a", "--reason", "gone")[0] == 0
    rc, doc, _ = cli("revocation-list", "--json")
    assert {r["identity"].split(":")[0] for r in doc["revocations"]} == {"ek", "ak"}
    assert cli("node-forget", "node-a")[0] == 0
    rc, _, err = cli("node-forget", "node-a")
    assert rc != 0 and "admin.node.not_found" in err


def test_unexpected_failure_after_lookup_consumes_and_audits(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _tpm = _tpm_env(env)
    agent.enroll()

    def broken(*_: object) -> bytes:
        raise RuntimeError("KEK unavailable")

    monkeypatch.setattr(env.server.core.keys, "unwrap", broken)
    ch = agent.challenge()
    req = agent.build_attest(ch, ["llama"])
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    assert _rpc_code(lambda: stub.Attest(req)) == (
        "service.internal.error",
        grpc.StatusCode.INTERNAL,
    )
    refused = _entries(env, "attest.refused")[-1]["details"]
    assert refused == {"challenge_id": ch.challenge_id, "code": "service.internal.error"}
    monkeypatch.undo()
    assert _rpc_code(lambda: stub.Attest(req))[0] == "attest.challenge.invalid"


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("auditor", {"ListRevocations"}),
        ("operator", {"ListRevocations", "RevokeIdentity", "ForgetNode"}),
        ("admin", {"ListRevocations", "RevokeIdentity", "ForgetNode", "LiftRevocation"}),
    ],
)
def test_revocation_rbac(env: Env, role: str, allowed: set[str]) -> None:
    tok = mint_operator_token(env.cfg.bootstrap_operator_key.read_bytes(), "r", [role])
    md = (("authorization", f"Bearer {tok}"),)
    ident = "chip_id:" + "cd" * 64
    calls: dict[str, Callable[[], object]] = {
        "ListRevocations": lambda: env.admin.ListRevocations(
            admin_pb2.ListRevocationsRequest(), metadata=md
        ),
        "RevokeIdentity": lambda: env.admin.RevokeIdentity(
            admin_pb2.RevokeIdentityRequest(platform=SNP, identity=ident), metadata=md
        ),
        "ForgetNode": lambda: env.admin.ForgetNode(
            admin_pb2.ForgetNodeRequest(node_id="none"), metadata=md
        ),
        "LiftRevocation": lambda: env.admin.LiftRevocation(
            admin_pb2.LiftRevocationRequest(platform=SNP, identity=ident), metadata=md
        ),
    }
    for name, call in calls.items():
        try:
            call()
            status = grpc.StatusCode.OK
        except grpc.RpcError as e:
            status = e.code()
        if name in allowed:
            assert status != grpc.StatusCode.PERMISSION_DENIED, name
        else:
            assert status == grpc.StatusCode.PERMISSION_DENIED, name
    events = [e["event"] for e in _entries(env, "admin.identity.revoked")]
    assert len(events) == (1 if "RevokeIdentity" in allowed else 0)
