"""What every gRPC servicer shares: registration from the service descriptor with a parser
that answers undecodable requests INVALID_ARGUMENT, and ``ServicerBase._run``, which runs a
call and answers its failure with the status the domain error maps to
(``sealgate.service.grpc_errors``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from sealgate.service import errors as E
from sealgate.service.core import Verifier
from sealgate.service.grpc_errors import rich_status, status_of, to_service_error
from sealgate.service.metrics import Metrics
from sealgate.service.readiness import Readiness
from sealgate.storage import bridge

Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


class _Malformed:
    """What a request that does not parse as its message type deserializes to."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def add_service(server: grpc.aio.Server, module: Any, name: str, servicer: ServicerBase) -> None:
    """Register ``servicer``'s unary methods from the service descriptor, like the generated
    ``add_*Servicer_to_server``, except that bytes which do not parse as the request type
    are answered INVALID_ARGUMENT with a stable code (the stock path answers UNKNOWN and
    logs a traceback)."""
    service = module.DESCRIPTOR.services_by_name[name]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for m in service.methods:
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)

        def parse(data: bytes, _cls: Any = req_cls) -> Any:
            try:
                return _cls.FromString(data)
            except DecodeError:
                return _Malformed(_cls.DESCRIPTOR.full_name)

        handlers[m.name] = grpc.unary_unary_rpc_method_handler(
            _guard(m.name, getattr(servicer, m.name), servicer.metrics),
            request_deserializer=parse,
            response_serializer=resp_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _guard(
    method: str,
    fn: Callable[[Any, Ctx], Coroutine[Any, Any, Any]],
    metrics: Metrics,
) -> Callable[[Any, Ctx], Coroutine[Any, Any, Any]]:
    async def handler(request: Any, context: Ctx) -> Any:
        if isinstance(request, _Malformed):
            err = E.Invalid(
                "service.request.malformed", f"request is not a valid {request.type_name}"
            )
            metrics.rpc(method, status_of(err).name, 0.0)
            await context.abort_with_status(rich_status(err))
        return await fn(request, context)

    return handler


class ServicerBase:
    def __init__(
        self,
        core: Verifier,
        metrics: Metrics,
        pool: futures.Executor,
        readiness: Readiness | None = None,
    ) -> None:
        self.core = core
        self.metrics = metrics
        self._pool = pool
        self.readiness = readiness

    async def _run(
        self,
        method: str,
        context: Ctx,
        fn: Callable[[], Resp],
        *,
        offload: bool = False,
    ) -> Resp:
        """Run ``fn`` and map failures to statuses.

        The attestation hot path runs on the event loop's thread: its work is short and
        CPU-bound, and running it there avoids a thread hand-off per call and GIL convoys
        (threads that release the GIL around storage calls wait up to a switch interval to
        get it back, stretching the time the audit write lock is held). On SQLite it runs
        inline. When storage is a database server (``Storage.remote``) it runs under
        ``sealgate.storage.bridge``: its round trips are awaited by the loop, which serves
        other calls meanwhile. Calls that may take long (admin, enrollment, cold
        verifications) go to the thread pool (``offload``) so they never stall the loop.
        """
        t0 = time.perf_counter()
        try:
            if offload:
                result = await asyncio.get_running_loop().run_in_executor(self._pool, fn)
            elif self.core.st.remote:
                result = await bridge.run(fn)
            else:
                result = fn()
            self.metrics.rpc(method, "OK", time.perf_counter() - t0)
            return result
        except Exception as e:
            err = to_service_error(e, method)
        if isinstance(err, E.Unavailable) and self.readiness is not None:
            self.readiness.failed()
        self.metrics.rpc(method, status_of(err).name, time.perf_counter() - t0)
        await context.abort_with_status(rich_status(err))
        raise AssertionError("abort_with_status returned")  # it raises
