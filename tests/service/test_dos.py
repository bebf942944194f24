"""Denial of service over real loopback sockets: calls that never send their request, idle
HTTP connections. Each attacker runs from its own 127/8 address (a distinct peer)."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sealgate._proto import attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.node.agent import NodeAgent
from sealgate.service.config import Limits
from sealgate.testing.softnode import SoftwareTpm

from tests.service.conftest import TPM_POLICY, Env
from tests.service.h2raw import SETTINGS_MAX_CONCURRENT_STREAMS, SlowClient, pump

TIMEOUT = 2.0  # limits.request_timeout / limits.http_timeout in these tests


def _limits(**kw: float) -> Limits:
    lim = Limits()
    for k, v in {"request_timeout": TIMEOUT, **kw}.items():
        setattr(lim, k, v)
    return lim


def _challenge(env: Env, node_id: str = "honest") -> attestation_pb2.ChallengeResponse:
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    req = attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TPM, node_id=node_id)
    resp: attestation_pb2.ChallengeResponse = stub.Challenge(req, timeout=5)
    return resp


class _Churn:
    """Attackers in a thread: keep every connection at ``per_conn`` open slow calls,
    re-opening each one the server ends (bounded: at most ``budget`` calls in all)."""

    def __init__(self, clients: list[SlowClient], per_conn: int, budget: int) -> None:
        self.clients = clients
        self.per_conn = per_conn
        self.budget = budget
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for c in self.clients:
                want = self.per_conn - c.open_streams
                if want > 0 and self.budget > 0 and not c.closed:
                    n = min(want, self.budget)
                    c.open(n)
                    self.budget -= n
            pump(self.clients, self._stop.is_set, 0.05)

    def __enter__(self) -> _Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_calls_that_never_send_their_request_do_not_starve_others(
    make_env: Callable[..., Env],
) -> None:
    """480 calls from five addresses that send headers and never a message: more than the
    global cap (256). An honest node still enrolls, gets its challenge and its key in
    bounded time, and every slow call is ended once it has waited ``request_timeout``."""
    env = make_env(limits=_limits())
    tpm = SoftwareTpm(env.ca)
    env.golden(tpm)
    env.key("llama", b"K" * 32)
    env.policy("llama", TPM_POLICY)
    attackers = [
        SlowClient(env.server.port, f"127.0.0.{2 + i // 3}") for i in range(15)
    ]  # 5 addresses, 3 connections each, 32 calls each
    try:
        for c in attackers:
            c.open(32)
        pump(attackers, timeout=0.5)  # let the server take them all in
        with _Churn(attackers, 32, budget=3000):
            time.sleep(0.3)
            for i in range(3):
                t0 = time.monotonic()
                agent = NodeAgent(env.channel, f"node-{i}", SoftwareTpm(env.ca) if i else tpm)
                agent.timeout = 5
                if i == 0:
                    assert agent.attest(["llama"]).keys == {"llama": (1, b"K" * 32)}
                else:
                    assert _challenge(env, f"node-{i}").challenge_id
                assert time.monotonic() - t0 < 4.0
        # Once the attack stops, every call it opened has been ended, none later than the
        # bound (plus scheduling slack), and nothing is left open.
        assert pump(attackers, lambda: all(c.open_streams == 0 for c in attackers), TIMEOUT + 3)
        waits = [c.ended[s] - c.opened[s] for c in attackers for s in c.opened]
        assert max(waits) < TIMEOUT + 2, max(waits)
        # Each connection was held to its stream limit by the HTTP/2 layer itself.
        assert all(c.settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == 32 for c in attackers)
    finally:
        for c in attackers:
            c.close()


def test_one_address_holds_at_most_its_share(make_env: Callable[..., Env]) -> None:
    """Per peer before the global cap: an address at ``max_rpcs_per_peer`` has its next call
    refused at once (RESOURCE_EXHAUSTED, ``service.limits.peer_busy``), while other
    addresses are served."""
    env = make_env(limits=_limits(max_rpcs_per_peer=8))
    other = SlowClient(env.server.port, "127.0.0.9")
    mine = SlowClient(env.server.port, "127.0.0.1")
    try:
        other.open(12)
        assert pump([other], lambda: len(other.ended) >= 4, 1.0)  # the 4 beyond 8, at once
        assert other.open_streams == 8
        assert _challenge(env).challenge_id  # 127.0.0.1 is another peer
        mine.open(8)
        pump([mine], timeout=0.3)
        with pytest.raises(grpc.RpcError) as e:
            _challenge(env)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "service.limits.peer_busy" in (e.value.details() or "")
        # After the bound the slow calls are ended and the address is served again.
        assert pump([mine, other], lambda: mine.open_streams + other.open_streams == 0, 4)
        assert _challenge(env).challenge_id
    finally:
        other.close()
        mine.close()


def test_a_late_request_ends_deadline_exceeded_with_a_code(make_env: Callable[..., Env]) -> None:
    env = make_env(limits=_limits())
    call = env.channel.stream_unary(
        "/sealgate.v1.Attestation/Challenge",
        request_serializer=attestation_pb2.ChallengeRequest.SerializeToString,
        response_deserializer=attestation_pb2.ChallengeResponse.FromString,
    )
    release = threading.Event()

    def never() -> Iterator[attestation_pb2.ChallengeRequest]:
        release.wait(10)
        yield from ()

    t0 = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as e:
            call(never(), timeout=10)
    finally:
        release.set()
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "service.limits.request_timeout" in (e.value.details() or "")
    assert TIMEOUT - 0.1 < time.monotonic() - t0 < TIMEOUT + 2


def test_an_idle_client_stream_is_ended(make_env: Callable[..., Env]) -> None:
    """Streams too: reflection answers, then a client that stays silent is cut off."""
    env = make_env(limits=_limits())
    release = threading.Event()

    def requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        release.wait(10)

    stub = reflection_pb2_grpc.ServerReflectionStub(env.channel)
    t0 = time.monotonic()
    responses = stub.ServerReflectionInfo(requests(), timeout=10)
    try:
        assert next(responses).list_services_response.service
        with pytest.raises(grpc.RpcError) as e:
            next(responses)
    finally:
        release.set()
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "service.limits.request_timeout" in (e.value.details() or "")
    assert time.monotonic() - t0 < TIMEOUT + 2


def test_idle_grpc_connections_are_closed(make_env: Callable[..., Env]) -> None:
    """Connections that never finish the HTTP/2 handshake are closed after
    ``request_timeout``, those that open no call after ``connection_idle_timeout``; calls
    are served meanwhile."""
    env = make_env(limits=_limits(connection_idle_timeout=3.0))
    silent = [socket.create_connection(("127.0.0.1", env.server.port)) for _ in range(100)]
    quiet = [SlowClient(env.server.port, "127.0.0.10") for _ in range(20)]  # preface only
    try:
        assert _challenge(env).challenge_id
        t0 = time.monotonic()
        with selectors.DefaultSelector() as sel:
            for s in silent:
                sel.register(s, selectors.EVENT_READ)
            while sel.get_map() and time.monotonic() < t0 + TIMEOUT + 3:
                for key, _ in sel.select(0.1):
                    with contextlib.suppress(OSError):
                        if key.fileobj.recv(4096):  # type: ignore[union-attr]
                            continue  # the server's SETTINGS, then its GOAWAY
                    sel.unregister(key.fileobj)
            assert not sel.get_map(), f"{len(sel.get_map())} silent connections still open"
        assert pump(quiet, lambda: all(c.closed for c in quiet), 3.0 + 3)
        assert _challenge(env).challenge_id
    finally:
        for s in silent:
            s.close()
        for c in quiet:
            c.close()


# -- HTTP side port -----------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_http_connections_stay_bounded(make_env: Callable[..., Env]) -> None:
    """500 connections that send nothing (or half a request head): no thread per connection,
    at most ``http_max_connections`` held by the server, /healthz still answers, gRPC still
    serves, and the idle ones are closed after ``http_timeout``."""
    env = make_env(limits=_limits(http_timeout=TIMEOUT, http_max_connections=64))
    port = env.server.http_port
    base_threads, base_fds = threading.active_count(), _fds()
    idle: list[socket.socket] = []
    try:
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 5 == 0:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            idle.append(s)
        time.sleep(0.5)
        assert threading.active_count() <= base_threads + 2  # the side port's threads
        # 500 client sockets are ours; the server holds at most its 64 on top.
        assert _fds() <= base_fds + 500 + 64 + 16
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200 and r.read() == b"ok\n"
        assert time.monotonic() - t0 < 3
        assert _challenge(env).challenge_id
        # Every idle connection is closed by the server (evicted or timed out).
        deadline = time.monotonic() + TIMEOUT + 3
        with selectors.DefaultSelector() as sel:
            for s in idle:
                sel.register(s, selectors.EVENT_READ)
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(0.1):
                    with contextlib.suppress(OSError):
                        if key.fileobj.recv(100):  # type: ignore[union-attr]
                            continue  # an answer (none expected); wait for the close
                    sel.unregister(key.fileobj)
            assert not sel.get_map(), f"{len(sel.get_map())} idle connections still open"
        assert env.server._http is not None and env.server._http.connections == 0
    finally:
        for s in idle:
            s.close()


def test_http_keep_alive_and_errors() -> None:
    """Keep-alive on one connection; unknown paths 404, other methods 501, bodies refused,
    oversized heads 431 — every answer with a Content-Length and nothing from the routes'
    internals."""
    import asyncio
    import http.client

    from sealgate.service.sideport import SidePort

    def boom() -> tuple[int, bytes, str]:
        raise RuntimeError("secret detail")

    routes = {"/a": lambda: (200, b"A", "text/plain"), "/boom": boom}
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    side = SidePort(routes, timeout=TIMEOUT, max_connections=8)
    port = asyncio.run_coroutine_threadsafe(side.start("127.0.0.1", 0), loop).result(5)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for path, want in (("/a", 200), ("/a?x=1", 200), ("/nope", 404), ("/boom", 500)):
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            assert r.status == want, path
            assert b"secret" not in body
        conn.request("POST", "/a")
        assert conn.getresponse().status == 501
        conn.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            assert s.recv(100).startswith(b"HTTP/1.1 413")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 431")
    finally:
        asyncio.run_coroutine_threadsafe(side.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)


def test_peer_key_groups_by_address() -> None:
    from sealgate.service.admission import peer_key

    assert peer_key("ipv4:10.0.0.7:51234") == peer_key("ipv4:10.0.0.7:1") == "10.0.0.7"
    # One host usually holds a whole /64: rotating the interface id is the same peer.
    assert peer_key("ipv6:[2001:db8:1:2::5]:443") == peer_key("ipv6:[2001:db8:1:2:ffff::1]:9")
    assert peer_key("ipv6:[2001:db8:1:2::5]:443") != peer_key("ipv6:[2001:db8:1:3::5]:443")
    assert peer_key("ipv6:[::ffff:10.0.0.7]:5") == "10.0.0.7"
    assert peer_key("unix:/run/sealgate.sock") == "unix"


def test_limits_must_be_positive_numbers(tmp_path: Path) -> None:
    from sealgate.errors import UsageError
    from sealgate.service.config import load_config

    for bad in ('{"request_timeout": 0}', '{"request_timeout": "5"}',
                '{"max_rpcs_per_peer": true}', '{"max_connections": 2.5}',
                '{"http_timeout": Infinity}'):  # fmt: skip
        (tmp_path / "c.json").write_text(f'{{"limits": {bad}}}')
        with pytest.raises(UsageError) as e:
            load_config(tmp_path / "c.json")
        assert e.value.code == "config.invalid", bad
    (tmp_path / "c.json").write_text('{"limits": {"request_timeout": 2.5, "http_timeout": 3}}')
    lim = load_config(tmp_path / "c.json").limits
    assert (lim.request_timeout, lim.http_timeout) == (2.5, 3)


def test_descriptor_limit_raised_to_fit_the_connection_caps() -> None:
    """Run in a child: it lowers its own soft limit, then asks for the default caps."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from sealgate.service.admission import ensure_descriptors\n"
        "from sealgate.service.config import Limits\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))\n"
        "ensure_descriptors(Limits())\n"
        "want = 1000 + 128 + 256\n"
        "if hard != resource.RLIM_INFINITY: want = min(want, hard)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == want)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out


def test_admission_evicts_the_longest_waiter_and_caps_streams() -> None:
    import asyncio

    from sealgate.service.admission import Admission, _Refused

    async def scenario() -> None:
        adm = Admission(max_total=4, max_per_peer=8, request_timeout=1)
        hold = asyncio.Event()
        order: list[int] = []

        async def call(i: int, peer: str, receive: bool) -> None:
            t = adm.enter(peer, False)
            try:
                if receive:
                    adm.received(t)  # its request arrived: no longer evictable
                await hold.wait()
            except asyncio.CancelledError:
                order.append(i)
            finally:
                adm.leave(t)

        tasks = [asyncio.create_task(call(0, "a", True))]
        for i in range(1, 4):
            tasks.append(asyncio.create_task(call(i, f"s{i}", False)))
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert adm.total == 4
        # Full: each newcomer evicts the waiter that has waited longest, never an answered
        # call; once only answered calls are left, a newcomer is refused.
        for i in range(4, 7):
            tasks.append(asyncio.create_task(call(i, "new", True)))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert order == [1, 2, 3]
        with pytest.raises(_Refused) as e:
            adm.enter("late", False)
        assert e.value.err.code == "service.limits.server_busy"
        hold.set()
        await asyncio.gather(*tasks)
        assert (adm.total, adm.per_peer, adm.waiting) == (0, {}, {})
        # Streams: a quarter of the cap, and a quarter of each address's share.
        adm = Admission(max_total=40, max_per_peer=8, request_timeout=1)
        held = [adm.enter("w", True) for _ in range(2)]
        with pytest.raises(_Refused) as e:
            adm.enter("w", True)
        assert e.value.err.code == "service.limits.peer_busy"
        held += [adm.enter(f"w{i}", True) for i in range(8)]
        with pytest.raises(_Refused) as e:
            adm.enter("other", True)
        assert e.value.err.code == "service.limits.server_busy"
        adm.enter("other", False)  # unary calls still get in
        for t in held:
            adm.leave(t)
        assert adm.streaming == 0 and adm.streaming_per_peer == {}

    asyncio.run(scenario())
