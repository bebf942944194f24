"""Replicas: several ``sealgate serve`` processes sharing one database are interchangeable.

Real processes (``tests.service.replicas.Cluster``), each with its own data directory and
ports, on one database: a SQLite file (several processes on one host: the same semantics,
serialized by its write lock) and a PostgreSQL database (the production shape). What one
replica does, every other sees at its next call: challenges are consumed once by any of
them, admin changes apply at the next attestation, tokens and JWKS are shared, and the
audit log stays one linear chain that every replica verifies. Every loop is bounded in
count and time; every process is stopped by pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from sealgate._proto import admin_pb2, attestation_pb2, common_pb2
from sealgate.node.agent import AgentError, NodeAgent, error_code
from sealgate.storage.sqlite import SqliteStorage
from sealgate.testing import postgres as pgtest
from sealgate.testing.softnode import SoftwareTpm

from tests.service.conftest import TPM_POLICY
from tests.service.replicas import SEALGATE, Cluster, Replica, wait_for

BACKENDS = ["sqlite", "postgresql"]


def _database(request: pytest.FixtureRequest, backend: str, base: Path) -> Iterator[str]:
    """A fresh database URL for ``backend`` (its PostgreSQL database dropped afterwards)."""
    if backend == "sqlite":
        # Created (schema, WAL mode) before the replicas race on it: SqliteStorage switches
        # a new file to WAL before it sets its busy timeout, so processes opening a brand-new
        # file at the same instant can fail with "database is locked". Its tables are empty:
        # the first-start race (signing key) still happens among the replicas.
        SqliteStorage(base / "shared.db").close()
        yield f"sqlite://{base / 'shared.db'}"
        return
    pytest.importorskip("sealgate.storage.postgres")
    server: pgtest.PostgresServer = request.getfixturevalue("postgres_server")
    if not server.running:
        server.start()
    name = f"rep{os.getpid()}_{abs(hash(str(base))) % 10**8}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        if not server.running:
            server.start()
        server.drop_database(name)


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three replicas started together on an empty database; a TPM key ``m`` set up through
    the first. Shared by the tests of this module (each uses its own nodes and keys)."""
    base = tmp_path_factory.mktemp(f"replicas-{request.param}")
    gen = _database(request, request.param, base)
    url = next(gen)
    c = Cluster(base, url)
    try:
        c.start(3, together=True)
        a = c.replicas[0].admin()
        tpm = SoftwareTpm(c.ca)
        doc = {"platform": "tpm", "set_name": "golden", "values": tpm.pcr_reference_values()}
        a.BulkAddReferenceValues(
            admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(doc)), metadata=c.md
        )
        a.ImportModelKey(admin_pb2.ImportModelKeyRequest(key_id="m", key=b"M" * 32), metadata=c.md)
        a.PutPolicy(
            admin_pb2.PutPolicyRequest(key_id="m", json=json.dumps(TPM_POLICY)), metadata=c.md
        )
        yield c
    finally:
        c.close()
        for _ in gen:
            pass


def _node(c: Cluster, r: Replica, name: str, enroll: bool = True) -> tuple[NodeAgent, SoftwareTpm]:
    tpm = SoftwareTpm(c.ca)
    agent = NodeAgent(r.channel(), name, tpm, timeout=20)
    if enroll:
        agent.enroll()
    return agent, tpm


def _on(agent: NodeAgent, r: Replica) -> NodeAgent:
    """The same node (TPM, runtime key) talking to another replica."""
    other = NodeAgent(r.channel(), agent.node_id, agent.collector, agent.suite, agent.timeout)
    other.runtime = agent.runtime
    return other


def _audit(c: Cluster, r: Replica) -> list[admin_pb2.AuditEntry]:
    stub = r.admin()
    out: list[admin_pb2.AuditEntry] = []
    after = 0
    for _ in range(10_000):  # bounded: 10 million entries
        page = stub.ListAudit(
            admin_pb2.ListAuditRequest(after_seq=after, limit=1000), metadata=c.md, timeout=30
        ).entries
        if not page:
            break
        out += page
        after = page[-1].seq
    return out


def _verify_everywhere(c: Cluster, replicas: list[Replica]) -> int:
    """AuditVerify from each replica (chain, MACs, that replica's checkpoints): all agree."""
    counts = set()
    for r in replicas:
        v = r.admin().VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=c.md, timeout=60)
        assert v.ok, f"{r.name}: {v.message}"
        counts.add(v.entries)
    return max(counts)


def test_replicas_started_together_agree_on_one_signing_key(cluster: Cluster) -> None:
    c = cluster
    jwks = [
        r.attestation().GetJwks(attestation_pb2.GetJwksRequest(), timeout=10).jwks_json
        for r in c.replicas
    ]
    assert len(set(jwks)) == 1, "replicas publish different JWKS"
    # One key: the racing first starts did not each make (and retire) one.
    assert len(json.loads(jwks[0])["keys"]) == 1
    http = [r.http("/.well-known/jwks.json") for r in c.replicas]
    assert {h[0] for h in http} == {200}
    assert len({h[1] for h in http}) == 1 and http[0][1].decode() == jwks[0]
    created = [e for e in _audit(c, c.replicas[0]) if e.event == "signing_key.created"]
    assert len(created) == 1


def test_a_challenge_is_consumed_once_by_any_replica(cluster: Cluster) -> None:
    c = cluster
    a, b, cc = c.replicas
    agent, _ = _node(c, b, "chal-node")  # enrolled through B
    # Issued by A, consumed by B; then neither A nor C accepts it again.
    req = agent.build_attest(_on(agent, a).challenge(), ["m"])
    resp = b.attestation().Attest(req, timeout=20)
    assert [g.key_id for g in resp.granted] == ["m"]
    for r in (a, cc):
        with pytest.raises(grpc.RpcError) as e:
            r.attestation().Attest(req, timeout=20)
        assert error_code(e.value) == "attest.challenge.invalid"
    # The same request at the same moment to all three: exactly one decision.
    stubs = [r.attestation() for r in c.replicas]
    for _round in range(5):
        req = agent.build_attest(_on(agent, a).challenge(), ["m"])
        barrier = threading.Barrier(3, timeout=20)

        def send(
            i: int, req: attestation_pb2.AttestRequest = req, barrier: threading.Barrier = barrier
        ) -> str:
            barrier.wait()
            try:
                out = stubs[i].Attest(req, timeout=20)
                return "granted" if out.granted else "decided"
            except grpc.RpcError as err:
                return error_code(err)

        with futures.ThreadPoolExecutor(3) as pool:
            results = sorted(pool.map(send, range(3)))
        assert results == ["attest.challenge.invalid", "attest.challenge.invalid", "granted"]
    decided = [
        json.loads(e.details_json)["challenge_id"]
        for e in _audit(c, cc)
        if e.event == "attest.decided"
    ]
    assert len(decided) == len(set(decided)), "a challenge was decided twice"


def test_admin_changes_through_one_replica_apply_on_the_others(cluster: Cluster) -> None:
    c = cluster
    a, b, cc = c.replicas
    adm = a.admin()
    agent, tpm = _node(c, a, "admin-node")
    on_b, on_c = _on(agent, b), _on(agent, cc)
    key = admin_pb2.ImportModelKeyRequest(key_id="adm", key=b"A" * 32)
    adm.ImportModelKey(key, metadata=c.md)
    # A policy that asks for a reference set nobody has yet: denied on B and C.
    strict = {"platforms": {"tpm": {"reference_sets": ["admin-set"],
                                    "required_selection": "sha256:0,1,2,3,4,5,6,7"}}}  # fmt: skip
    adm.PutPolicy(admin_pb2.PutPolicyRequest(key_id="adm", json=json.dumps(strict)), metadata=c.md)
    for x in (on_b, on_c):
        res = x.attest(["adm"], auto_enroll=False)
        assert not res.keys and res.denied
    # The reference values arrive through A: granted on B and C at their next attestation.
    doc = {"platform": "tpm", "set_name": "admin-set", "values": tpm.pcr_reference_values()}
    adm.BulkAddReferenceValues(
        admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(doc)), metadata=c.md
    )
    for x in (on_b, on_c):
        assert x.attest(["adm"], auto_enroll=False).keys == {"adm": (1, b"A" * 32)}
    # Key rotation through A: B and C release the new version.
    adm.RotateModelKey(admin_pb2.RotateModelKeyRequest(key_id="adm", key=b"B" * 32), metadata=c.md)
    for x in (on_b, on_c):
        assert x.attest(["adm"], auto_enroll=False).keys == {"adm": (2, b"B" * 32)}
    # A policy removed through A: no policy on B and C.
    adm.DeletePolicy(admin_pb2.DeletePolicyRequest(key_id="adm"), metadata=c.md)
    res = on_b.attest(["adm"], auto_enroll=False)
    assert [f.code for f in res.denied[0].failures] == ["policy.key.no_policy"]
    # Node revocation through A: refused on B and C, and its token dies on both.
    held = on_c.attest(["m"], auto_enroll=False)
    assert held.keys == {"m": (1, b"M" * 32)}
    holder = _on(on_c, b)  # the runtime key the token is bound to
    adm.RevokeNode(admin_pb2.RevokeNodeRequest(node_id="admin-node"), metadata=c.md)
    for x in (on_b, on_c):
        with pytest.raises(AgentError) as e:
            x.attest(["m"], auto_enroll=False)
        assert e.value.code == "tpm.ak.revoked"
    with pytest.raises(AgentError) as e:
        holder.refetch(held.token, ["m"])
    assert e.value.code == "tpm.ak.revoked"
    # Identity revocation through A, of another node's EK: refused on B and C.
    other, other_tpm = _node(c, b, "ident-node")
    assert _on(other, cc).attest(["m"], auto_enroll=False).keys
    nodes = b.admin().ListNodes(admin_pb2.ListNodesRequest(), metadata=c.md).nodes
    ek = next(n.ek_fingerprint for n in nodes if n.node_id == "ident-node")
    adm.RevokeIdentity(
        admin_pb2.RevokeIdentityRequest(platform=common_pb2.PLATFORM_TPM, identity=f"ek:{ek}"),
        metadata=c.md,
    )
    for r in (b, cc):
        with pytest.raises(AgentError) as e:
            _on(other, r).attest(["m"], auto_enroll=False)
        assert e.value.code == "tpm.ak.revoked"
    del other_tpm


def test_tokens_and_signing_keys_are_shared(cluster: Cluster) -> None:
    c = cluster
    a, b, cc = c.replicas
    agent, _ = _node(c, a, "token-node")
    res = agent.attest(["m"], auto_enroll=False)
    # A token from A is good on B and C.
    for r in (b, cc):
        assert _on(agent, r).refetch(res.token, ["m"]).keys == {"m": (1, b"M" * 32)}
    old_kid = jwt.get_unverified_header(res.token)["kid"]
    rot = a.admin().RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=c.md)
    assert rot.kid != old_kid
    # B and C sign with the new key from their next token on, and publish the same JWKS.
    for r in (b, cc):
        t = _on(agent, r).attest(["m"], auto_enroll=False).token
        assert jwt.get_unverified_header(t)["kid"] == rot.kid
    jwks = {r.attestation().GetJwks(attestation_pb2.GetJwksRequest()).jwks_json for r in c.replicas}
    assert len(jwks) == 1
    kids = {k["kid"] for k in json.loads(jwks.pop())["keys"]}
    assert {old_kid, rot.kid} <= kids
    assert len({r.http("/.well-known/jwks.json")[1] for r in c.replicas}) == 1
    # The token signed by the retired key still releases on every replica.
    for r in (b, cc):
        assert _on(agent, r).refetch(res.token, ["m"]).keys == {"m": (1, b"M" * 32)}
    # Two rotations at the same moment on two replicas: one key stays active.
    barrier = threading.Barrier(2, timeout=20)

    def rotate(r: Replica) -> str:
        stub = r.admin()
        barrier.wait()
        return str(stub.RotateSigningKey(admin_pb2.RotateSigningKeyRequest(), metadata=c.md).kid)

    with futures.ThreadPoolExecutor(2) as pool:
        new = set(pool.map(rotate, (b, cc)))
    assert len(new) == 2
    last = [
        json.loads(e.details_json)["kid"]
        for e in _audit(c, a)
        if e.event == "admin.signing_key.rotated"
    ][-1]
    for r in c.replicas:
        t = _on(agent, r).attest(["m"], auto_enroll=False).token
        assert jwt.get_unverified_header(t)["kid"] == last, "another key is still active"


def _attest_burst(
    c: Cluster, replicas: list[Replica], agents: list[NodeAgent], per_thread: int, budget: float
) -> list[dict[str, Any]]:
    """Each agent attests ``per_thread`` times on each replica in turn, in parallel, within
    ``budget`` seconds; one record per attempt."""
    deadline = time.monotonic() + budget
    out: list[dict[str, Any]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        agent = agents[i]
        for n in range(per_thread):
            if time.monotonic() > deadline:
                return
            r = replicas[(i + n) % len(replicas)]
            x = _on(agent, r)
            rec: dict[str, Any] = {"replica": r.name}
            try:
                req = x.build_attest(x.challenge(), ["m"])
                rec["challenge_id"] = req.challenge_id
                resp = x.stub.Attest(req, timeout=20)
                rec["keys"] = len(resp.granted)
                rec["jti"] = jwt.decode(resp.token, options={"verify_signature": False})["jti"]
            except grpc.RpcError as e:
                rec["error"] = error_code(e)
            with lock:
                out.append(rec)

    with futures.ThreadPoolExecutor(len(agents)) as pool:
        list(pool.map(run, range(len(agents))))
    return out


def test_concurrent_attests_on_every_replica_make_one_chain(cluster: Cluster) -> None:
    c = cluster
    agents = [_node(c, c.replicas[i % 3], f"burst-{i}")[0] for i in range(6)]
    before = _verify_everywhere(c, c.replicas)
    recs = _attest_burst(c, c.replicas, agents, per_thread=8, budget=60)
    assert recs and all("error" not in r and r["keys"] == 1 for r in recs), recs
    entries = _audit(c, c.replicas[1])
    seqs = [e.seq for e in entries]
    assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate sequence number"
    jtis = {json.loads(e.details_json).get("jti") for e in entries if e.event == "attest.decided"}
    assert {r["jti"] for r in recs} <= jtis
    # Every replica anchors the head it sees (a checkpoint every 2 s) and verifies the
    # whole chain against its own checkpoints, entries of the others included.
    time.sleep(2.5)
    after = _verify_everywhere(c, c.replicas)
    assert after >= before + 2 * len(recs)
    for r in c.replicas:
        status, note = r.http("/audit/checkpoint")
        assert status == 200 and int(note.split(b"\n")[1]) > before
    _offline_verify(c)


def _offline_verify(c: Cluster) -> None:
    """``sealgate audit verify --database URL`` on each replica's data directory (its KEK,
    its checkpoints), while the replicas keep running."""
    env = c.env
    helptext = subprocess.run(
        [SEALGATE, "audit", "verify", "--help"], capture_output=True, text=True, env=env,
        timeout=60, check=False,
    ).stdout  # fmt: skip
    if "--database" not in helptext:
        return  # offline verification of a shared database comes with audit verify --database
    for r in c.replicas:
        out = subprocess.run(
            [SEALGATE, "audit", "verify", "--data-dir", str(r.data_dir),
             "--database", c.database, "--json"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        doc = json.loads(out.stdout)
        assert doc["ok"] and doc["anchored"] > 0, doc


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_of_a_replica_mid_burst(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    gen = _database(request, backend, tmp_path)
    url = next(gen)
    c = Cluster(tmp_path, url)
    try:
        c.start(3, together=True)
        a, b, victim = c.replicas
        adm = a.admin()
        tpm = SoftwareTpm(c.ca)
        doc = {"platform": "tpm", "set_name": "golden", "values": tpm.pcr_reference_values()}
        adm.BulkAddReferenceValues(
            admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(doc)), metadata=c.md
        )
        adm.ImportModelKey(
            admin_pb2.ImportModelKeyRequest(key_id="m", key=b"M" * 32), metadata=c.md
        )
        adm.PutPolicy(
            admin_pb2.PutPolicyRequest(key_id="m", json=json.dumps(TPM_POLICY)), metadata=c.md
        )
        agents = [_node(c, a, f"kill-{i}")[0] for i in range(6)]
        # In-flight requests on the victim: built, sent, and kept to re-send elsewhere.
        inflight: list[attestation_pb2.AttestRequest] = []
        got: list[dict[str, Any]] = []
        lock = threading.Lock()
        stop = threading.Event()
        deadline = time.monotonic() + 60

        def hammer(i: int) -> None:
            agent = _on(agents[i], victim)
            for _ in range(200):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    req = agent.build_attest(agent.challenge(), ["m"])
                except AgentError:
                    return  # the victim is gone
                with lock:
                    inflight.append(req)
                try:
                    resp = agent.stub.Attest(req, timeout=20)
                except grpc.RpcError:
                    continue
                claims = jwt.decode(resp.token, options={"verify_signature": False})
                with lock:
                    got.append({"challenge_id": req.challenge_id, "granted": len(resp.granted),
                                "jti": claims["jti"]})  # fmt: skip

        with futures.ThreadPoolExecutor(6) as pool:
            jobs = [pool.submit(hammer, i) for i in range(6)]
            assert wait_for(lambda: len(got) >= 10, 30), "no Attest got through"
            c.kill(victim)
            stop.set()
            for j in jobs:
                j.result(60)
        assert not victim.alive
        # Every key a client got is in the log, with its challenge decided once.
        entries = _audit(c, a)
        seqs = [e.seq for e in entries]
        assert seqs == list(range(1, len(seqs) + 1))
        decided: dict[str, int] = {}
        jtis = set()
        for e in entries:
            if e.event == "attest.decided":
                d = json.loads(e.details_json)
                decided[d["challenge_id"]] = decided.get(d["challenge_id"], 0) + 1
                jtis.add(d["jti"])
        assert all(n == 1 for n in decided.values())
        assert {g["jti"] for g in got if g["granted"]} <= jtis
        # Every challenge the victim had in hand, re-sent to a survivor: refused when it was
        # decided (or refused) there; decided now, once, when the kill came first.
        stub = b.attestation()
        for req in inflight:
            try:
                stub.Attest(req, timeout=20)
                assert req.challenge_id not in decided, "a decided challenge was used twice"
            except grpc.RpcError as err:
                assert error_code(err) == "attest.challenge.invalid"
        # The chain verifies from the survivors, and from the victim restarted on its
        # data directory (its checkpoints from before the kill still hold).
        _verify_everywhere(c, [a, b])
        c.spawn(victim)
        c.wait_serving(victim)
        _verify_everywhere(c, [victim])
    finally:
        c.close()
        for _ in gen:
            pass
