"""The one table from domain errors to gRPC statuses, and a service core free of gRPC."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from sealgate.errors import ParseError, UsageError
from sealgate.service import errors as E
from sealgate.service.auth import AuthError
from sealgate.service.grpc_errors import STATUS, rich_status, status_of, to_service_error
from sealgate.storage import StorageUnavailable

SERVICE = Path(__file__).resolve().parents[2] / "python" / "sealgate" / "service"

EXPECTED = {
    E.Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    E.NotFound: grpc.StatusCode.NOT_FOUND,
    E.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    E.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    E.Denied: grpc.StatusCode.PERMISSION_DENIED,
    E.Precondition: grpc.StatusCode.FAILED_PRECONDITION,
    E.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    E.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    E.Unavailable: grpc.StatusCode.UNAVAILABLE,
    E.Internal: grpc.StatusCode.INTERNAL,
}


def _all_subclasses(cls: type[E.ServiceError]) -> set[type[E.ServiceError]]:
    out: set[type[E.ServiceError]] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_every_domain_error_maps_to_its_status() -> None:
    kinds = _all_subclasses(E.ServiceError)
    assert kinds == set(EXPECTED), "a domain error type without a status (or a stale entry)"
    assert STATUS == EXPECTED


@pytest.mark.parametrize("cls", sorted(EXPECTED, key=str))
def test_rich_status_carries_status_and_code(cls: type[E.ServiceError]) -> None:
    err = cls("component.sub.event", "what happened")
    assert status_of(err) == EXPECTED[cls]
    status = rich_status(err)
    assert status.code == EXPECTED[cls]
    assert status.details == "component.sub.event: what happened"
    (key, raw), = status.trailing_metadata  # fmt: skip
    assert key == "grpc-status-details-bin"
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
    assert (info.reason, info.domain) == ("component.sub.event", "sealgate")


def test_other_exceptions_become_domain_errors() -> None:
    assert isinstance(to_service_error(UsageError("a.b.c", "m"), "X"), E.Invalid)
    assert isinstance(to_service_error(ParseError("a.b.c", "m"), "X"), E.Precondition)
    unauth = to_service_error(AuthError("auth.token.missing", "m", unauthenticated=True), "X")
    assert isinstance(unauth, E.Unauthenticated)
    assert isinstance(
        to_service_error(AuthError("auth.role.denied", "m", unauthenticated=False), "X"), E.Denied
    )
    down = to_service_error(StorageUnavailable("connection to db.example:5432 user=u lost"), "X")
    assert isinstance(down, E.Unavailable) and down.code == "storage.unavailable"
    assert "example" not in down.message and "user" not in down.message
    assert status_of(down) == grpc.StatusCode.UNAVAILABLE
    internal = to_service_error(RuntimeError("secret evidence bytes"), "X")
    assert isinstance(internal, E.Internal) and internal.code == "service.internal.error"
    assert "secret" not in internal.message


@pytest.mark.parametrize("name", ["core.py", "errors.py"])
def test_domain_modules_do_not_import_grpc(name: str) -> None:
    tree = ast.parse((SERVICE / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module or ""]
        else:
            continue
        assert not any(m == "grpc" or m.startswith(("grpc.", "grpc_")) for m in mods), mods


def test_core_loads_without_grpc() -> None:
    code = (
        "import sys, sealgate.service.core\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'grpc'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
