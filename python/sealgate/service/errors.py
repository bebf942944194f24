"""Service failures as domain errors: what went wrong, a stable code and a message safe to
show a client. Nothing here knows gRPC: the adapter maps each type to a status in one table
(``sealgate.service.grpc_errors.STATUS``), and a test checks every type below is in it.
"""

from __future__ import annotations

from sealgate.errors import SealgateError


class ServiceError(SealgateError):
    """A refusal the service answers with; the subclass says which kind."""


class Invalid(ServiceError):
    """The request itself is wrong (malformed, out of limits, unknown suite, ...)."""


class NotFound(ServiceError):
    """The named object (node, key, revocation) does not exist."""


class AlreadyExists(ServiceError):
    """The object to create exists, or the identity is bound elsewhere."""


class Unauthenticated(ServiceError):
    """No valid credential came with the call."""


class Denied(ServiceError):
    """The caller or its evidence may not have what it asked for."""


class Precondition(ServiceError):
    """The request is well formed but the system is not in a state to honour it (a
    challenge that expired, evidence that does not verify)."""


class ResourceExhausted(ServiceError):
    """A rate limit or admission cap refused the call; the client may retry later."""


class DeadlineExceeded(ServiceError):
    """The request did not arrive within the server's bound."""


class Unimplemented(ServiceError):
    """This deployment does not offer what was asked (a platform not configured)."""


class Unavailable(ServiceError):
    """A dependency the call needs (the database) cannot be reached; nothing of the call was
    committed and it may be retried, on this replica or another."""


class Internal(ServiceError):
    """An unexpected failure; the message carries a reference for the log, nothing else."""
