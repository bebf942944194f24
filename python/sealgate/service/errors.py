"""Service failures: a gRPC status, a stable code and a message safe to show a client."""

from __future__ import annotations

import grpc
from sealgate.errors import SealgateError


class ServiceError(SealgateError):
    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


def invalid(code: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, code, message)


def denied(code: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, code, message)


def precondition(code: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, code, message)


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, code, message)


def unimplemented(code: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNIMPLEMENTED, code, message)
