"""Domain errors → gRPC statuses with rich details, in one table.

A refusal travels as a ``google.rpc.Status`` (the gRPC richer error model) whose details hold
an ``ErrorInfo`` with ``reason`` = the stable code and ``domain`` = ``sealgate``; clients read
the code from there (``sealgate.node.agent.error_code``). Anything that is not a domain error
becomes INTERNAL with a fixed message and a reference; the exception type goes to the log,
never a stack trace or secret to the client.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sealgate.errors import SealgateError, UsageError
from sealgate.service import errors as E
from sealgate.service.auth import AuthError
from sealgate.storage import StorageUnavailable

log = logging.getLogger("sealgate.service")

#: The one mapping from domain error type to gRPC status (status codes as in
#: grpc/doc/statuscodes.md). ``tests/service/test_grpc_errors.py`` checks every
#: ``ServiceError`` subclass is here.
STATUS: dict[type[E.ServiceError], grpc.StatusCode] = {
    E.Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    E.NotFound: grpc.StatusCode.NOT_FOUND,
    E.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    E.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    E.Denied: grpc.StatusCode.PERMISSION_DENIED,
    E.Precondition: grpc.StatusCode.FAILED_PRECONDITION,
    E.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    E.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    # Retryable by definition (statuscodes.md: "most likely a transient condition").
    E.Unavailable: grpc.StatusCode.UNAVAILABLE,
    E.Internal: grpc.StatusCode.INTERNAL,
}


def status_of(err: E.ServiceError) -> grpc.StatusCode:
    """The status of ``err``'s type; a type missing from the table fails closed as INTERNAL."""
    return STATUS.get(type(err), grpc.StatusCode.INTERNAL)


def to_service_error(exc: BaseException, method: str) -> E.ServiceError:
    """Any exception a call raised, as the domain error it is answered with."""
    if isinstance(exc, E.ServiceError):
        return exc
    if isinstance(exc, StorageUnavailable):
        # A fixed message: what the driver said may name hosts or users.
        return E.Unavailable(exc.code, "the database is unavailable; nothing was done, retry")
    if isinstance(exc, AuthError):
        if exc.unauthenticated:
            return E.Unauthenticated(exc.code, exc.message)
        return E.Denied(exc.code, exc.message)
    if isinstance(exc, UsageError):
        return E.Invalid(exc.code, exc.message)
    if isinstance(exc, SealgateError):
        return E.Precondition(exc.code, exc.message)
    ref = uuid.uuid4().hex[:12]
    # The type and a reference only: messages may hold evidence or secrets.
    log.error("internal error in %s (ref %s): %s", method, ref, type(exc).__name__)
    return E.Internal("service.internal.error", f"internal error (ref {ref})")


def rich_status(err: E.ServiceError) -> grpc.Status:
    """google.rpc.Status + ErrorInfo(reason=code), sent in the trailing metadata."""
    info = error_details_pb2.ErrorInfo(reason=err.code, domain="sealgate")
    detail = any_pb2.Any()
    detail.Pack(info)
    st = status_pb2.Status(
        code=status_of(err).value[0], message=f"{err.code}: {err.message}", details=[detail]
    )
    status: grpc.Status = rpc_status.to_status(st)
    return status
