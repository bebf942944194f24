"""Evaluate a policy against verified claims; every failure, with actual vs expected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sealgate.appraise.policy import (
    TDX_CODE_MEASUREMENTS,
    Policy,
    SnpRequirements,
    TdxRequirements,
    TpmRequirements,
)
from sealgate.result import VerifyResult
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

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, code: str, message: str, actual: Any = "", expected: Any = "") -> None:
        self.failures.append(PolicyFailure(code, message, _text(actual), _text(expected)))

    def worse(self, claim: str, value: int) -> None:
        self.vector[claim] = max(self.vector.get(claim, 0), value)


def _text(v: Any) -> str:
    if isinstance(v, list | tuple | set):
        return ", ".join(str(x) for x in v)
    return "" if v is None else str(v)


def ear_status(vector: dict[str, int]) -> str:
    """EAR tier from the vector: the worst claim decides (draft-ietf-rats-ear §3.2)."""
    worst = max(vector.values(), default=0)
    if worst >= 96:
        return "contraindicated"
    if worst >= 32:
        return "warning"
    if worst >= 2:
        return "affirming"
    return "none"


def _unconstrained(a: Appraisal, platform: str, sets: list[str], what: str) -> None:
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


def _refs(refs: Sequence[ReferenceValue], platform: str, sets: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in refs:
        if r.platform == platform and r.set_name in sets:
            out.setdefault(r.name, set()).add(r.value.lower())
    return out


def appraise(
    policy: Policy,
    result: VerifyResult,
    refs: Sequence[ReferenceValue] = (),
) -> Appraisal:
    """Appraise one piece of verified evidence against one key's policy.

    Evidence that did not verify fails here too (with its own codes), so a caller can never
    grant on a result it forgot to check.
    """
    a = Appraisal(result.platform)
    a.vector["instance_identity"] = AFFIRMING
    for err in result.errors:
        a.fail(err.code, err.message)
        a.vector["instance_identity"] = CONTRAINDICATED
    if result.platform not in policy.platforms:
        a.fail(
            "policy.platform.not_allowed",
            f"platform {result.platform} may not receive this key",
            result.platform,
            policy.platforms,
        )
        a.worse("hardware", UNSUPPORTED_CONFIG)
        return a
    claims = result.claims
    if result.platform == "tpm":
        assert policy.tpm is not None
        _tpm(a, policy.tpm, claims, refs)
    elif result.platform == "snp":
        assert policy.snp is not None
        _snp(a, policy.snp, claims, refs)
    else:
        assert policy.tdx is not None
        _tdx(a, policy.tdx, claims, refs)
    return a


def _tpm(
    a: Appraisal, req: TpmRequirements, claims: dict[str, Any], refs: Sequence[ReferenceValue]
) -> None:
    a.worse("hardware", AFFIRMING)
    a.worse("executables", AFFIRMING)
    a.worse("configuration", AFFIRMING)
    expected: dict[str, dict[int, set[str]]] = {}
    for name, values in _refs(refs, "tpm", req.reference_sets).items():
        bank, _, index = name.partition(":")
        if index.isdigit():
            expected.setdefault(bank, {}).setdefault(int(index), set()).update(values)
    for bank, pcrs in req.pcrs.items():
        for pcr, hexes in pcrs.items():
            expected.setdefault(bank, {}).setdefault(pcr, set()).update(hexes)
    if not any(expected.values()) and (req.reference_sets or not req.allow_any_measurement):
        # A policy naming reference sets that hold nothing must not mean "anything goes".
        _unconstrained(a, "tpm", req.reference_sets, "TPM PCR values")
    quoted: dict[str, dict[str, str]] = claims.get("pcrs") or {}
    for bank in sorted(expected):
        if bank == "sha1" and not req.allow_weak_hashes:
            a.fail(
                "policy.tpm.weak_hash",
                "policy expects SHA-1 PCR values but weak hashes are refused",
                "sha1",
                "sha256 or stronger",
            )
            a.worse("configuration", WEAK_CONFIG)
        for idx in sorted(expected[bank]):
            want = expected[bank][idx]
            got = quoted.get(bank, {}).get(str(idx))
            if got is None:
                a.fail(
                    "policy.tpm.pcr_missing",
                    f"PCR {bank}:{idx} is not in the quote",
                    "not quoted",
                    sorted(want),
                )
                a.worse("executables", UNRECOGNIZED_EXECUTABLES)
            elif got.lower() not in want:
                a.fail(
                    "policy.tpm.pcr_mismatch",
                    f"PCR {bank}:{idx} is {got} but the policy accepts {', '.join(sorted(want))}",
                    got,
                    sorted(want),
                )
                a.worse("executables", UNRECOGNIZED_EXECUTABLES)
    if req.required_selection:
        from sealgate.tpm import parse_selection

        sel: dict[str, list[int]] = claims.get("pcr_selection") or {}
        for bank, idxs in parse_selection(req.required_selection):
            missing = sorted(set(idxs) - set(sel.get(bank, [])))
            if missing:
                a.fail(
                    "policy.tpm.selection_missing",
                    f"quote does not cover {bank}:{','.join(map(str, missing))}",
                    f"{bank}:{','.join(map(str, sorted(sel.get(bank, []))))}",
                    f"{bank}:{','.join(map(str, idxs))}",
                )
                a.worse("configuration", WEAK_CONFIG)
    if claims.get("weak_hash") and not req.allow_weak_hashes:
        a.fail(
            "policy.tpm.weak_hash",
            f"quote signed with {claims.get('hash_alg')}, a weak hash",
            claims.get("hash_alg"),
            "sha256 or stronger",
        )
        a.worse("configuration", WEAK_CONFIG)
    if req.ek_ca_fingerprints:
        ca = str(claims.get("ek_ca_fingerprint", "")).lower()
        if ca not in req.ek_ca_fingerprints:
            a.fail(
                "policy.tpm.ek_ca_not_allowed",
                "the node's EK certificate does not chain to an allowed EK CA",
                ca or "unknown",
                req.ek_ca_fingerprints,
            )
            a.worse("hardware", CONTRAINDICATED)


def _one_of(
    a: Appraisal, code: str, what: str, got: Any, allowed: set[str], claim: str, value: int
) -> None:
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


def _snp(
    a: Appraisal, req: SnpRequirements, claims: dict[str, Any], refs: Sequence[ReferenceValue]
) -> None:
    for claim in ("hardware", "executables", "configuration", "runtime_opaque"):
        a.worse(claim, AFFIRMING)
    ref = _refs(refs, "snp", req.reference_sets)
    measurements = set(req.measurement) | ref.get("measurement", set())
    host_data = set(req.host_data) | ref.get("host_data", set())
    if not measurements and not req.allow_any_measurement:
        # host_data alone (inline or from the sets) leaves the launch digest unchecked.
        _unconstrained(a, "snp", req.reference_sets, "SNP measurement")
    elif req.reference_sets and not (ref.get("measurement") or ref.get("host_data")):
        _unconstrained(a, "snp", req.reference_sets, "SNP values")
    _one_of(
        a,
        "policy.snp.measurement_mismatch",
        "measurement",
        claims.get("measurement"),
        measurements,
        "executables",
        UNRECOGNIZED_EXECUTABLES,
    )
    _one_of(
        a,
        "policy.snp.host_data_mismatch",
        "host_data",
        claims.get("host_data"),
        host_data,
        "configuration",
        UNSUPPORTED_CONFIG,
    )
    debug = bool((claims.get("policy") or {}).get("debug", True))
    if debug and not req.allow_debug:
        a.fail(
            "policy.snp.debug_enabled", "guest policy allows debugging", "debug=true", "debug=false"
        )
        a.worse("configuration", CONTRAINDICATED)
    if req.vmpl is not None and claims.get("vmpl") not in req.vmpl:
        a.fail(
            "policy.snp.vmpl_not_allowed",
            f"report from VMPL {claims.get('vmpl')}",
            claims.get("vmpl"),
            req.vmpl,
        )
        a.worse("configuration", UNSUPPORTED_CONFIG)
    if req.products and claims.get("product") not in req.products:
        a.fail(
            "policy.snp.product_not_allowed",
            f"product {claims.get('product')}",
            claims.get("product"),
            req.products,
        )
        a.worse("hardware", UNSUPPORTED_CONFIG)
    reported = claims.get("reported_tcb") or {}
    for fld, minimum in sorted(req.min_reported_tcb.items()):
        got = reported.get(fld)
        if not isinstance(got, int) or got < minimum:
            a.fail(
                "policy.snp.tcb_too_old",
                f"reported TCB {fld} is {got}, below the minimum {minimum}",
                got,
                f">= {minimum}",
            )
            a.worse("hardware", UNSAFE_HARDWARE)


def _tdx(
    a: Appraisal, req: TdxRequirements, claims: dict[str, Any], refs: Sequence[ReferenceValue]
) -> None:
    for claim in ("hardware", "executables", "configuration", "runtime_opaque"):
        a.worse(claim, AFFIRMING)
    ref = _refs(refs, "tdx", req.reference_sets)
    code_measured = any(req.measurements.get(n) or ref.get(n) for n in TDX_CODE_MEASUREMENTS)
    if not code_measured and not req.allow_any_measurement:
        # mr_config_id alone is host-chosen configuration, not a measurement of code.
        _unconstrained(a, "tdx", req.reference_sets, "TDX MRTD or RTMR value")
    elif req.reference_sets and not ref:
        _unconstrained(a, "tdx", req.reference_sets, "TDX values")
    names = sorted(set(req.measurements) | set(ref))
    for name in names:
        allowed = set(req.measurements.get(name, [])) | ref.get(name, set())
        code = (
            "policy.tdx.rtmr_mismatch" if name.startswith("rtmr") else f"policy.tdx.{name}_mismatch"
        )
        claim = "configuration" if name == "mr_config_id" else "executables"
        value = UNSUPPORTED_CONFIG if name == "mr_config_id" else UNRECOGNIZED_EXECUTABLES
        _one_of(a, code, name, claims.get(name), allowed, claim, value)
    debug = bool((claims.get("td_attributes") or {}).get("debug", True))
    if debug and not req.allow_debug:
        a.fail(
            "policy.tdx.debug_enabled", "TD attributes allow debugging", "debug=true", "debug=false"
        )
        a.worse("configuration", CONTRAINDICATED)
    if claims.get("tcb_status") not in req.tcb_statuses:
        a.fail(
            "policy.tdx.tcb_status_not_allowed",
            f"TCB status {claims.get('tcb_status')}",
            claims.get("tcb_status"),
            req.tcb_statuses,
        )
        a.worse("hardware", UNSAFE_HARDWARE)
