"""What every platform's appraiser shares: the verdict being built, the AR4SI values, the
interface an appraiser implements, and the checks more than one platform makes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sealgate.appraise.policy import Policy
from sealgate.storage import ReferenceValue

# AR4SI trustworthiness claim values (draft-ietf-rats-ar4si §2.3): 0 no claim, 2..31
# affirming, 32..95 warning, 96..127 contraindicated.
AFFIRMING = 2
UNRECOGNIZED_EXECUTABLES = 33
UNSAFE_HARDWARE = 32
UNSUPPORTED_CONFIG = 36
CONTRAINDICATED = 96
WEAK_CONFIG = 32


@dataclass(frozen=True)
class PolicyFailure:
    code: str
    message: str
    actual: str = ""
    expected: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "message": self.message,
            "actual": self.actual,
            "expected": self.expected,
        }


@dataclass
class Appraisal:
    platform: str
    failures: list[PolicyFailure] = field(default_factory=list)
    vector: dict[str, int] = field(default_factory=dict)
    #: Composite evidence (an Azure CVM: ``snp``/``tdx``, ``tpm``, ``runtime_data``): each
    #: component's own vector; ``vector`` is the worst of them.
    components: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, code: str, message: str, actual: Any = "", expected: Any = "") -> None:
        self.failures.append(PolicyFailure(code, message, _text(actual), _text(expected)))

    def worse(self, claim: str, value: int) -> None:
        self.vector[claim] = max(self.vector.get(claim, 0), value)


class Appraiser(Protocol):
    """One platform's appraisal: its requirements from the policy against its typed claims.

    ``appraise`` runs only for a platform the policy allows (``Policy.platforms``), so the
    policy holds that platform's requirements. It builds the typed claims from the wire
    dict itself (``<platform>.claims``) and records every failure in ``a``.
    """

    @property
    def platform(self) -> str: ...

    def appraise(
        self,
        a: Appraisal,
        policy: Policy,
        claims: Mapping[str, Any],
        refs: Sequence[ReferenceValue],
    ) -> None: ...


def component_vectors(appraisals: Sequence[Appraisal]) -> dict[str, dict[str, int]]:
    """Per component, the worst value of each claim over several appraisals (one per key)."""
    out: dict[str, dict[str, int]] = {}
    for a in appraisals:
        for part, vec in a.components.items():
            merged = out.setdefault(part, {})
            for k, v in vec.items():
                merged[k] = max(merged.get(k, 0), v)
    return out


def _text(v: Any) -> str:
    if isinstance(v, list | tuple | set):
        return ", ".join(str(x) for x in v)
    return "" if v is None else str(v)


def unconstrained(a: Appraisal, platform: str, sets: list[str], what: str) -> None:
    """No value to compare the measurement with: fail closed (an empty requirement is not a
    permission). With reference sets named, they yielded nothing for it; without, the policy
    predates the write-time check (``policy.document.no_measurement``)."""
    if sets:
        a.fail(
            f"policy.{platform}.no_reference_values",
            f"reference set(s) {', '.join(sets)} hold no {what}",
            "",
            sets,
        )
    else:
        a.fail(
            f"policy.{platform}.no_measurement",
            f"the policy constrains no {what} and does not set allow_any_measurement",
        )
    a.worse("executables", UNRECOGNIZED_EXECUTABLES)


def reference_values(
    refs: Sequence[ReferenceValue], platform: str, sets: list[str]
) -> dict[str, set[str]]:
    """The named reference sets' values for ``platform``: name → lowercase values."""
    out: dict[str, set[str]] = {}
    for r in refs:
        if r.platform == platform and r.set_name in sets:
            out.setdefault(r.name, set()).add(r.value.lower())
    return out


def one_of(
    a: Appraisal, code: str, what: str, got: Any, allowed: set[str], claim: str, value: int
) -> None:
    """``got`` must be one of ``allowed`` (lowercase); an empty ``allowed`` checks nothing
    (the caller has already failed closed on an unconstrained measurement)."""
    if not allowed:
        return
    g = str(got).lower() if got is not None else ""
    if g not in allowed:
        a.fail(
            code,
            f"{what} is {g or 'absent'}; accepted: {', '.join(sorted(allowed))}",
            g,
            sorted(allowed),
        )
        a.worse(claim, value)
