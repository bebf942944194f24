"""The platform-independent verification result (the CLI's JSON contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealgate.errors import Failure, SealgateError


@dataclass
class VerifyResult:
    """``{"verified", "platform", "claims", "errors"}`` — one per verified piece of evidence."""

    platform: str
    claims: dict[str, Any] = field(default_factory=dict)
    errors: list[Failure] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.errors

    def fail(self, code: str, message: str) -> None:
        self.errors.append(Failure(code, message))

    def fail_from(self, exc: SealgateError) -> None:
        self.errors.append(Failure(exc.code, exc.message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "platform": self.platform,
            "claims": self.claims,
            "errors": [f.as_dict() for f in self.errors],
        }
