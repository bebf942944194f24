"""The sealgate exception hierarchy and the failure record.

Defined in Python and raised from Rust through one conversion point
(``rust/py/src/errors.rs``). Every error carries a stable machine code shaped
``component.sub.event`` (listed in ``sealgate.codes``) and a human message with actual vs expected
values. Messages never contain key material or tokens.
"""

from __future__ import annotations

from typing import NamedTuple


class SealgateError(Exception):
    """Base of every sealgate error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ParseError(SealgateError):
    """Evidence bytes are malformed: truncated, oversized, wrong type, trailing bytes."""

    def __init__(self, code: str, message: str, field: str = "", offset: int = 0) -> None:
        super().__init__(code, message)
        self.field = field
        self.offset = offset


class VerificationError(SealgateError):
    """Evidence parsed but a structural check failed (replay impossible, bad key, ...)."""


class ChainError(VerificationError):
    """A certificate chain or its revocation/validity check failed."""


class CollateralError(VerificationError):
    """Collateral (CRLs, TCB info, QE identity) is missing, expired or invalid."""


class UsageError(SealgateError):
    """The caller asked for something malformed (bad argument, unreadable file)."""


class Failure(NamedTuple):
    """One reason evidence was rejected: the shape every failure has, in Python and as it
    comes out of the Rust core (``rust/py/src/errors.rs`` builds these). A named tuple, so
    ``code, message = failure`` works as well as ``failure.code``."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
