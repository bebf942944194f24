"""The storage failing under a live server: UNAVAILABLE with ``storage.unavailable``, no key
released without its audit entry, readiness (gRPC health, /readyz) down and back without a
restart. In-process against a SQLite storage that can be made to fail; the same with real
processes and a PostgreSQL that is stopped is in ``test_replicas.py``."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sealgate._proto import admin_pb2, admin_pb2_grpc, attestation_pb2_grpc
from sealgate.node.agent import AgentError, NodeAgent, error_code
from sealgate.service.auth import mint_operator_token
from sealgate.service.config import ServiceConfig
from sealgate.service.server import create_server
from sealgate.storage import StorageUnavailable
from sealgate.storage.sqlite import SqliteStorage
from sealgate.testing import postgres as pgtest
from sealgate.testing.softnode import SoftwareCa, SoftwareTpm

from tests.service.conftest import TPM_POLICY, Env

#: Storage methods the wrapper lets through while "down" (the test's own bookkeeping).
_ALWAYS = {"close", "down", "fail_audit", "fail_release_audit"}


class FlakyStorage(SqliteStorage):
    """SQLite that answers StorageUnavailable like a lost database: every call while
    ``down``; only audit appends (``fail_audit``), or only the ``key.released`` append
    (``fail_release_audit``), otherwise."""

    down = False
    fail_audit = False
    fail_release_audit = False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if (
            not name.startswith("_")
            and name not in _ALWAYS
            and callable(attr)
            and super().__getattribute__("down")
        ):

            def unavailable(*_a: object, **_k: object) -> Any:
                raise StorageUnavailable("connection to server at db.internal:5432 lost")

            return unavailable
        return attr

    def append_audit(self, make_entry: Any, link: Any) -> Any:
        if self.fail_audit or (self.fail_release_audit and b"key.released" in make_entry(0)):
            raise StorageUnavailable("server closed the connection unexpectedly")
        return super().append_audit(make_entry, link)

    def complete_attestation(self, *args: Any, **kwargs: Any) -> bool:
        if self.fail_audit:
            raise StorageUnavailable("server closed the connection unexpectedly")
        return super().complete_attestation(*args, **kwargs)


def _reason(err: grpc.RpcError) -> str:
    """The ErrorInfo reason, as clients read it."""
    return error_code(err)


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[Env, FlakyStorage]]:
    """A live server (as ``make_env`` builds it) on a FlakyStorage."""
    ca = SoftwareCa()
    cfg = ServiceConfig(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        ek_ca_roots=[ca.write(tmp_path / "ek-ca.pem")],
    )
    st = FlakyStorage(str(tmp_path / "flaky.db"))
    srv = create_server(cfg, storage=st)
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    try:
        token = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "t", ["admin"])
        yield Env(srv, ch, admin_pb2_grpc.AdminStub(ch), token, ca, cfg), st
    finally:
        st.down = st.fail_audit = st.fail_release_audit = False
        ch.close()
        srv.stop(grace=1)


def _setup(env: Env) -> tuple[NodeAgent, SoftwareTpm]:
    tpm = SoftwareTpm(env.ca)
    env.golden(tpm)
    env.key("llama", b"L" * 32)
    env.policy("llama", TPM_POLICY)
    agent = NodeAgent(env.channel, "node-a", tpm)
    agent.enroll()
    return agent, tpm


def _audit_events(st: SqliteStorage) -> list[dict[str, Any]]:
    import cbor2

    out = []
    for page in st.iter_audit():
        out += [cbor2.loads(r.entry) for r in page]
    return out


def _http(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _health(env: Env, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(env.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_attest_without_its_audit_commit_releases_nothing(flaky: tuple[Env, FlakyStorage]) -> None:
    env, st = flaky
    agent, _tpm = _setup(env)
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    req = agent.build_attest(agent.challenge(), ["llama"])
    st.fail_audit = True
    with pytest.raises(grpc.RpcError) as e:
        stub.Attest(req, timeout=10)
    st.fail_audit = False
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _reason(e.value) == "storage.unavailable"
    # The driver's words (hosts, users) never reach the client.
    assert "db.internal" not in (e.value.details() or "")
    events = _audit_events(st)
    assert not [x for x in events if x["event"] == "attest.decided"]
    # Nothing was committed: the challenge is still good, and is decided once, now.
    resp = stub.Attest(req, timeout=10)
    assert resp.token and [g.key_id for g in resp.granted] == ["llama"]
    decided = [x for x in _audit_events(st) if x["event"] == "attest.decided"]
    assert len(decided) == 1 and decided[0]["details"]["challenge_id"] == req.challenge_id


def test_release_key_without_its_audit_entry_releases_nothing(
    flaky: tuple[Env, FlakyStorage],
) -> None:
    env, st = flaky
    agent, _tpm = _setup(env)
    res = agent.attest(["llama"], auto_enroll=False)
    assert res.keys == {"llama": (1, b"L" * 32)}
    st.fail_release_audit = True
    with pytest.raises(Exception) as e:
        agent.refetch(res.token, ["llama"])
    st.fail_release_audit = False
    assert getattr(e.value, "code", "") == "storage.unavailable"
    assert not [x for x in _audit_events(st) if x["event"] == "key.released"]
    assert agent.refetch(res.token, ["llama"]).keys == {"llama": (1, b"L" * 32)}
    assert len([x for x in _audit_events(st) if x["event"] == "key.released"]) == 1


def test_admin_change_needs_its_audit_entry(flaky: tuple[Env, FlakyStorage]) -> None:
    env, st = flaky
    st.fail_audit = True
    with pytest.raises(grpc.RpcError) as e:
        env.admin.GenerateModelKey(admin_pb2.GenerateModelKeyRequest(key_id="k"), metadata=env.md)
    st.fail_audit = False
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _reason(e.value) == "storage.unavailable"
    # Rolled back with its entry: the key does not exist.
    assert st.get_model_key("k") is None


def test_readiness_follows_the_storage(flaky: tuple[Env, FlakyStorage]) -> None:
    env, st = flaky
    agent, _tpm = _setup(env)
    http = env.server.http_port
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert _http(http, "/readyz") == (200, b"ready\n")
    assert _health(env) == serving
    pid_before = env.server.readiness
    st.down = True
    try:
        with pytest.raises(Exception) as e:
            agent.attest(["llama"], auto_enroll=False)
        assert getattr(e.value, "code", "") == "storage.unavailable"
        # The failed call flipped readiness at once, for every service name.
        for name in ("", "sealgate.v1.Attestation", "sealgate.v1.Admin"):
            assert _wait(lambda n=name: _health(env, n) == not_serving, 3)  # type: ignore[misc]
        assert _http(http, "/readyz") == (503, b"storage unavailable\n")
        assert _http(http, "/healthz") == (200, b"ok\n")  # alive all the same
        assert _http(http, "/.well-known/jwks.json")[0] == 503
    finally:
        st.down = False
    # Back by itself (the probe), same server object and process.
    assert _wait(lambda: _health(env) == serving, 5)
    assert _http(http, "/readyz") == (200, b"ready\n")
    assert env.server.readiness is pid_before
    assert agent.attest(["llama"], auto_enroll=False).keys == {"llama": (1, b"L" * 32)}


def test_probe_alone_notices_an_outage(flaky: tuple[Env, FlakyStorage]) -> None:
    env, st = flaky
    http = env.server.http_port
    st.down = True
    try:
        # No call fails here: the background probe finds it within a few seconds.
        assert _wait(lambda: _http(http, "/readyz")[0] == 503, 5)
        assert _health(env) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        st.down = False
    assert _wait(lambda: _http(http, "/readyz")[0] == 200, 5)


def test_a_hung_probe_counts_as_a_failure() -> None:
    import threading

    from sealgate.service.readiness import Readiness

    release = threading.Event()
    changes: list[bool] = []
    r = Readiness(lambda: release.wait(5), changes.append, every=0.05, timeout=0.2)
    t0 = time.monotonic()
    assert r.check() is False and time.monotonic() - t0 < 1.0
    assert not r.ready and changes == [False]
    # The stuck probe is not doubled: the next check waits for the same one.
    release.set()
    assert r.check() is True and r.ready and changes == [False, True]
    r.stop()


# -- real processes on a PostgreSQL that goes away ---------------------------------------


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[pgtest.PostgresServer]:
    """A PostgreSQL of this test's own (it is stopped and started again mid-test)."""
    pytest.importorskip("sealgate.storage.postgres")
    if not pgtest.available():
        pytest.skip(f"PostgreSQL server binaries not in {pgtest.PG_BIN}")
    server = pgtest.PostgresServer(tmp_path / "pg")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def test_postgres_stopped_under_load_and_back(
    own_postgres: pgtest.PostgresServer, tmp_path: Path
) -> None:
    from sealgate._proto import attestation_pb2, common_pb2

    from tests.service.replicas import Cluster, free_port, wait_for

    pg = own_postgres
    url = pg.create_database("sealgate")
    c = Cluster(tmp_path / "cluster", url, env=pg.env())
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        a, b = c.start(2)
        # And one replica of two worker processes: each worker probes for itself.
        w = c.add(listen=f"127.0.0.1:{free_port()}", workers=2)
        c.spawn(w)
        c.wait_serving(w)
        pids = [a.pid, b.pid, w.pid]
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
        agents = []
        for i in range(4):
            ag = NodeAgent(a.channel(), f"out-{i}", SoftwareTpm(c.ca), timeout=20)
            ag.enroll()
            agents.append(ag)
        got: list[str] = []  # jti of every token that came with a key
        errors: list[tuple[str, float]] = []
        lock = threading.Lock()
        stop = threading.Event()
        deadline = time.monotonic() + 90

        def hammer(i: int) -> None:
            r = (a, b)[i % 2]
            agent = NodeAgent(r.channel(), agents[i].node_id, agents[i].collector, timeout=20)
            for _ in range(2000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                t0 = time.monotonic()
                try:
                    req = agent.build_attest(agent.challenge(), ["m"])
                    resp = agent.stub.Attest(req, timeout=20)
                except (grpc.RpcError, AgentError) as e:
                    code = e.code if isinstance(e, AgentError) else error_code(e)
                    with lock:
                        errors.append((code, time.monotonic() - t0))
                    time.sleep(0.05)
                    continue
                if resp.granted:
                    claims = jwt.decode(resp.token, options={"verify_signature": False})
                    with lock:
                        got.append(claims["jti"])

        with futures.ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(hammer, i) for i in range(4)]
            assert wait_for(lambda: len(got) >= 20, 40), "no load got through"
            pg.stop()
            down_at = time.monotonic()
            # Both replicas notice within a few seconds: health and /readyz.
            for r in (a, b):
                for name in ("", "sealgate.v1.Attestation", "sealgate.v1.Admin"):
                    assert wait_for(lambda r=r, n=name: r.health(n) == not_serving, 8), r.name
                assert wait_for(lambda r=r: r.http("/readyz") == (503, b"storage unavailable\n"), 8)
                assert r.http("/healthz") == (200, b"ok\n")
            assert time.monotonic() - down_at < 10
            # Every worker of ``w``: fresh connections land on either (SO_REUSEPORT).
            assert wait_for(lambda: all(w.health() == not_serving for _ in range(8)), 8)
            time.sleep(1.0)  # load keeps coming during the outage
            with lock:
                n_errors = len(errors)
            assert n_errors > 0
            # Direct calls answer UNAVAILABLE with the stable code, quickly.
            for r in (a, b):
                t0 = time.monotonic()
                with pytest.raises(grpc.RpcError) as e:
                    r.attestation().Challenge(
                        attestation_pb2.ChallengeRequest(
                            platform=common_pb2.PLATFORM_TPM, node_id="x"
                        ),
                        timeout=10,
                    )
                assert e.value.code() == grpc.StatusCode.UNAVAILABLE
                assert error_code(e.value) == "storage.unavailable"
                assert time.monotonic() - t0 < 5
            pg.start()
            # Back by themselves, same processes.
            for r in (a, b, w):
                assert wait_for(lambda r=r: r.health() == serving, 20), r.output()[-1500:]
                assert wait_for(lambda r=r: r.http("/readyz") == (200, b"ready\n"), 10)
            assert wait_for(lambda: all(w.health() == serving for _ in range(8)), 10)
            stop.set()
            for j in jobs:
                j.result(60)
        assert [r.pid for r in (a, b, w)] == pids and a.alive and b.alive and w.alive
        # Every failure was the stable code (none an internal error or a hang).
        assert {code for code, _ in errors} == {"storage.unavailable"}, errors[:20]
        assert max(t for _, t in errors) < 10
        for r in (a, b):
            x = NodeAgent(r.channel(), agents[0].node_id, agents[0].collector, timeout=20)
            assert x.attest(["m"], auto_enroll=False).keys == {"m": (1, b"M" * 32)}
        # No key without its audit entry: every token a client got a key with is decided.
        decided = set()
        after = 0
        for _ in range(1000):
            page = adm.ListAudit(
                admin_pb2.ListAuditRequest(after_seq=after, limit=1000), metadata=c.md
            ).entries
            if not page:
                break
            decided |= {
                json.loads(e.details_json)["jti"] for e in page if e.event == "attest.decided"
            }
            after = page[-1].seq
        assert set(got) <= decided
        for r in (a, b):
            v = r.admin().VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=c.md, timeout=60)
            assert v.ok, v.message
    finally:
        c.close()
