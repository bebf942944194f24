"""Admission control in front of every gRPC handler: per-peer and global concurrency, and a
bound on the time a client may take to send its request.

Why this is needed. Read in grpcio's asyncio server (1.85, the Cython ``AioServer``) and
seen on loopback (tests/service/test_dos.py fails without this module): its
``maximum_concurrent_rpcs`` counts a call from the moment core hands it over, that is once
its HEADERS arrived (``_server_main_loop``), until the call's task ends; and for a unary
request that task first awaits the request message (``_handle_unary_unary_rpc`` →
``_receive_message``) before any application code runs. So yes, the cap counts calls still
waiting for their message: a client that sends headers and never the message holds a slot
forever (there is no server-side bound on that wait), and once the cap is full grpcio
answers every other call RESOURCE_EXHAUSTED ("Concurrent RPC limit exceeded!") itself, before
a handler or rate limiter runs. The counter is global: no per-connection or per-peer share.
Interceptors do run first, but see only the method and metadata, not the peer.

So every method is served here as a *request-streaming* handler (the wire format of a unary
and a client-streaming call is the same, gRPC over HTTP2, "Requests"): our code runs as soon
as the headers arrive, admits or refuses the call by peer and global counts, then reads the
request under ``limits.request_timeout``. When the global cap is full, the call that has
waited longest for its request message is evicted: an honest client sends its message with
its headers, so it is never the oldest waiter while slow callers hold the slots. grpcio's own
cap stays as a backstop set above ours, so it never refuses first.

Streaming calls (health ``Watch``, reflection) may legitimately stay open; they hold at most
a quarter of the global cap, and of each address's share, so they cannot starve unary calls
nor one address every stream slot.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from sealgate.service import errors as E
from sealgate.service.config import Limits
from sealgate.service.grpc_errors import rich_status, status_of
from sealgate.service.metrics import Metrics

log = logging.getLogger("sealgate.service")

Ctx = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


#: Descriptors kept for everything but client connections (database, WAL, logs, pipes).
RESERVED_FDS = 256


def ensure_descriptors(limits: Limits) -> None:
    """Connection caps only protect the process if descriptors outlast them: otherwise
    accepting connections exhausts descriptors and the database, the other listener and
    new gRPC connections all fail. Raise the soft RLIMIT_NOFILE as far as needed (up to the
    hard limit, as the Go runtime does at start-up) and warn when even that is short."""
    need = limits.max_connections + limits.http_max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        target = soft
    if target < need:
        log.warning(
            "descriptor limit %d is below max_connections + http_max_connections + %d; "
            "lower those limits or raise the limit (ulimit -n)",
            target,
            RESERVED_FDS,
        )


def peer_key(peer: str) -> str:
    """The address a client is accounted under: ``ipv4:10.0.0.7:51234`` → ``10.0.0.7``;
    IPv6 by its /64 (one host usually holds a whole /64, RFC 4291 §2.5.4; an IPv4-mapped
    address counts as the IPv4 one); anything else (unix sockets) as given without a port."""
    kind, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return peer.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else kind or peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Refused(Exception):
    def __init__(self, err: E.ServiceError) -> None:
        self.err = err


class _Ticket:
    __slots__ = ("evicted", "peer", "streaming", "task")

    def __init__(self, peer: str, streaming: bool, task: asyncio.Task[Any] | None) -> None:
        self.peer = peer
        self.streaming = streaming
        self.task = task
        self.evicted = False


def _busy(code: str, message: str) -> E.ServiceError:
    return E.ResourceExhausted(code, message)


class Admission:
    """The counts; used only from the event loop's thread (no lock needed)."""

    def __init__(self, max_total: int, max_per_peer: int, request_timeout: float) -> None:
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.max_streaming = max(1, max_total // 4)
        self.max_streaming_per_peer = max(1, max_per_peer // 4)
        self.request_timeout = request_timeout
        self.total = 0
        self.streaming = 0
        self.per_peer: dict[str, int] = {}
        self.streaming_per_peer: dict[str, int] = {}
        #: Admitted calls still waiting for their request message, oldest first.
        self.waiting: OrderedDict[int, _Ticket] = OrderedDict()

    def enter(self, peer: str, streaming: bool) -> _Ticket:
        n = self.per_peer.get(peer, 0)
        if n >= self.max_per_peer:
            raise _Refused(
                _busy(
                    "service.limits.peer_busy",
                    f"more than {self.max_per_peer} concurrent calls from this address",
                )
            )
        if streaming:
            if self.streaming_per_peer.get(peer, 0) >= self.max_streaming_per_peer:
                raise _Refused(
                    _busy("service.limits.peer_busy", "too many open streams from this address")
                )
            if self.streaming >= self.max_streaming:
                raise _Refused(_busy("service.limits.server_busy", "too many open streams"))
        if self.total >= self.max_total:
            if not self.waiting:
                raise _Refused(_busy("service.limits.server_busy", "server at its call limit"))
            _, oldest = self.waiting.popitem(last=False)
            oldest.evicted = True
            if oldest.task is not None:
                oldest.task.cancel()
        t = _Ticket(peer, streaming, asyncio.current_task())
        self.per_peer[peer] = n + 1
        self.total += 1
        if streaming:
            self.streaming += 1
            self.streaming_per_peer[peer] = self.streaming_per_peer.get(peer, 0) + 1
        self.waiting[id(t)] = t
        return t

    def received(self, t: _Ticket) -> None:
        self.waiting.pop(id(t), None)

    def leave(self, t: _Ticket) -> None:
        self.waiting.pop(id(t), None)
        self.total -= 1
        _decrement(self.per_peer, t.peer)
        if t.streaming:
            self.streaming -= 1
            _decrement(self.streaming_per_peer, t.peer)


def _decrement(counts: dict[str, int], key: str) -> None:
    n = counts[key] - 1
    if n:
        counts[key] = n
    else:
        del counts[key]  # bounded memory: only addresses with calls in flight stay


async def _abort(context: Ctx, err: E.ServiceError) -> None:
    await context.abort_with_status(rich_status(err))


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every registered handler (ours, health, reflection) as described above."""

    def __init__(self, admission: Admission, metrics: Metrics) -> None:
        self.admission = admission
        self.metrics = metrics
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # UNIMPLEMENTED, answered by grpcio without reading anything
        method = handler_call_details.method
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = self._wrap(method.rsplit("/", 1)[-1], handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, name: str, h: Handler) -> Handler:
        adm = self.admission
        metrics = self.metrics
        streaming = bool(h.request_streaming or h.response_streaming)

        async def admit(context: Ctx) -> _Ticket:
            try:
                return adm.enter(peer_key(context.peer()), streaming)
            except _Refused as r:
                metrics.rpc(name, status_of(r.err).name, 0.0)
                await _abort(context, r.err)
                raise AssertionError("abort returned") from None  # it raises

        async def read(context: Ctx, t: _Ticket, t0: float, first: bool) -> Any:
            """The next request message within the bound; evicted or late → aborted."""
            err: E.ServiceError
            try:
                async with asyncio.timeout(adm.request_timeout):
                    msg = await context.read()
                if first:
                    adm.received(t)
                return msg
            except TimeoutError:
                err = E.DeadlineExceeded(
                    "service.limits.request_timeout",
                    f"request message not received within {adm.request_timeout:g} s",
                )
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not t.evicted or task is None:
                    raise  # the client cancelled, or the server stops
                task.uncancel()
                err = _busy("service.limits.server_busy", "server at its call limit")
            metrics.rpc(name, status_of(err).name, time.perf_counter() - t0)
            await _abort(context, err)
            raise AssertionError("abort returned")  # it raises

        async def first(context: Ctx, t: _Ticket, t0: float) -> Any:
            msg = await read(context, t, t0, True)
            if msg is grpc.aio.EOF:
                err = E.Invalid("service.request.malformed", "no request message")
                metrics.rpc(name, status_of(err).name, time.perf_counter() - t0)
                await _abort(context, err)
            return msg

        async def requests(context: Ctx, t: _Ticket, t0: float) -> AsyncIterator[Any]:
            """A client stream whose every message (the first included) arrives in time."""
            is_first = True
            while True:
                msg = await read(context, t, t0, is_first)
                is_first = False
                if msg is grpc.aio.EOF:
                    return
                yield msg

        async def resolve(result: Any) -> Any:
            return await result if inspect.isawaitable(result) else result

        async def relay(result: Any, context: Ctx) -> None:
            # The original is an async generator, or a coroutine writing via context.write.
            # Ours is a coroutine, not a generator: its ``finally`` then runs when the task
            # is cancelled, instead of whenever an abandoned generator is collected.
            if inspect.isasyncgen(result):
                async for item in result:
                    await context.write(item)
            elif inspect.isawaitable(result):
                await result

        ser, deser = h.response_serializer, h.request_deserializer
        if h.unary_unary is not None:
            fn_uu: Any = h.unary_unary

            async def unary_unary(_it: Any, context: Ctx) -> Any:
                t0 = time.perf_counter()
                t = await admit(context)
                try:
                    req = await first(context, t, t0)
                    return await resolve(fn_uu(req, context))
                finally:
                    adm.leave(t)

            return grpc.stream_unary_rpc_method_handler(unary_unary, deser, ser)
        if h.unary_stream is not None:
            fn_us: Any = h.unary_stream

            async def unary_stream(_it: Any, context: Ctx) -> None:
                t0 = time.perf_counter()
                t = await admit(context)
                try:
                    req = await first(context, t, t0)
                    await relay(fn_us(req, context), context)
                finally:
                    adm.leave(t)

            return grpc.stream_stream_rpc_method_handler(unary_stream, deser, ser)
        if h.stream_unary is not None:
            fn_su: Any = h.stream_unary

            async def stream_unary(_it: Any, context: Ctx) -> Any:
                t0 = time.perf_counter()
                t = await admit(context)
                try:
                    return await resolve(fn_su(requests(context, t, t0), context))
                finally:
                    adm.leave(t)

            return grpc.stream_unary_rpc_method_handler(stream_unary, deser, ser)
        fn_ss: Any = h.stream_stream
        assert fn_ss is not None

        async def stream_stream(_it: Any, context: Ctx) -> None:
            t0 = time.perf_counter()
            t = await admit(context)
            try:
                await relay(fn_ss(requests(context, t, t0), context), context)
            finally:
                adm.leave(t)

        return grpc.stream_stream_rpc_method_handler(stream_stream, deser, ser)
