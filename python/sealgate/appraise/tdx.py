"""TDX appraisal: MRTD, RTMRs and MR_CONFIG_ID (inline and reference sets), the TD debug
attribute and the TCB status, against ``TdxClaims``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealgate.appraise.base import (
    AFFIRMING,
    CONTRAINDICATED,
    UNRECOGNIZED_EXECUTABLES,
    UNSAFE_HARDWARE,
    UNSUPPORTED_CONFIG,
    Appraisal,
    one_of,
    reference_values,
    unconstrained,
)
from sealgate.appraise.policy import TDX_CODE_MEASUREMENTS, Policy
from sealgate.storage import ReferenceValue
from sealgate.tdx.claims import TdxClaims


class TdxAppraiser:
    platform = "tdx"

    def appraise(
        self,
        a: Appraisal,
        policy: Policy,
        claims: Mapping[str, Any],
        refs: Sequence[ReferenceValue],
    ) -> None:
        req = policy.tdx
        assert req is not None  # Policy.platforms lists tdx only with its requirements
        c = TdxClaims.from_claims(claims)
        for claim in ("hardware", "executables", "configuration", "runtime_opaque"):
            a.worse(claim, AFFIRMING)
        ref = reference_values(refs, "tdx", req.reference_sets)
        code_measured = any(req.measurements.get(n) or ref.get(n) for n in TDX_CODE_MEASUREMENTS)
        if not code_measured and not req.allow_any_measurement:
            # mr_config_id alone is host-chosen configuration, not a measurement of code.
            unconstrained(a, "tdx", req.reference_sets, "TDX MRTD or RTMR value")
        elif req.reference_sets and not ref:
            unconstrained(a, "tdx", req.reference_sets, "TDX values")
        for name in sorted(set(req.measurements) | set(ref)):
            allowed = set(req.measurements.get(name, [])) | ref.get(name, set())
            code = (
                "policy.tdx.rtmr_mismatch"
                if name.startswith("rtmr")
                else f"policy.tdx.{name}_mismatch"
            )
            claim = "configuration" if name == "mr_config_id" else "executables"
            value = UNSUPPORTED_CONFIG if name == "mr_config_id" else UNRECOGNIZED_EXECUTABLES
            # A reference value naming no register of the quote reads as absent: it fails.
            one_of(a, code, name, c.registers.get(name), allowed, claim, value)
        if c.debug and not req.allow_debug:
            a.fail(
                "policy.tdx.debug_enabled",
                "TD attributes allow debugging",
                "debug=true",
                "debug=false",
            )
            a.worse("configuration", CONTRAINDICATED)
        # A TD quote verified without collateral (Azure's signature-and-chain-only mode,
        # ``tcb_evaluated: false``) has no status to compare: the Azure appraiser fails it
        # closed with its own code (``policy.azure.tcb_not_evaluated``) unless allowed.
        if claims.get("tcb_evaluated") is not False and c.tcb_status not in req.tcb_statuses:
            a.fail(
                "policy.tdx.tcb_status_not_allowed",
                f"TCB status {c.tcb_status}",
                c.tcb_status,
                req.tcb_statuses,
            )
            a.worse("hardware", UNSAFE_HARDWARE)
