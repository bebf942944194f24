"""SEV-SNP appraisal: measurement and host_data (inline and reference sets), guest policy
debug bit, VMPL, product and minimum reported TCB, against ``SnpClaims``."""

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
from sealgate.appraise.policy import Policy
from sealgate.snp.claims import SnpClaims
from sealgate.storage import ReferenceValue


class SnpAppraiser:
    platform = "snp"

    def appraise(
        self,
        a: Appraisal,
        policy: Policy,
        claims: Mapping[str, Any],
        refs: Sequence[ReferenceValue],
    ) -> None:
        req = policy.snp
        assert req is not None  # Policy.platforms lists snp only with its requirements
        c = SnpClaims.from_claims(claims)
        for claim in ("hardware", "executables", "configuration", "runtime_opaque"):
            a.worse(claim, AFFIRMING)
        ref = reference_values(refs, "snp", req.reference_sets)
        measurements = set(req.measurement) | ref.get("measurement", set())
        host_data = set(req.host_data) | ref.get("host_data", set())
        if not measurements and not req.allow_any_measurement:
            # host_data alone (inline or from the sets) leaves the launch digest unchecked.
            unconstrained(a, "snp", req.reference_sets, "SNP measurement")
        elif req.reference_sets and not (ref.get("measurement") or ref.get("host_data")):
            unconstrained(a, "snp", req.reference_sets, "SNP values")
        one_of(
            a,
            "policy.snp.measurement_mismatch",
            "measurement",
            c.measurement,
            measurements,
            "executables",
            UNRECOGNIZED_EXECUTABLES,
        )
        one_of(
            a,
            "policy.snp.host_data_mismatch",
            "host_data",
            c.host_data,
            host_data,
            "configuration",
            UNSUPPORTED_CONFIG,
        )
        if c.debug and not req.allow_debug:
            a.fail(
                "policy.snp.debug_enabled",
                "guest policy allows debugging",
                "debug=true",
                "debug=false",
            )
            a.worse("configuration", CONTRAINDICATED)
        if req.vmpl is not None and c.vmpl not in req.vmpl:
            a.fail("policy.snp.vmpl_not_allowed", f"report from VMPL {c.vmpl}", c.vmpl, req.vmpl)
            a.worse("configuration", UNSUPPORTED_CONFIG)
        if req.products and c.product not in req.products:
            a.fail(
                "policy.snp.product_not_allowed",
                f"product {c.product}",
                c.product,
                req.products,
            )
            a.worse("hardware", UNSUPPORTED_CONFIG)
        for fld, minimum in sorted(req.min_reported_tcb.items()):
            got = c.reported_tcb.get(fld)
            if got is None or got < minimum:
                a.fail(
                    "policy.snp.tcb_too_old",
                    f"reported TCB {fld} is {got}, below the minimum {minimum}",
                    got,
                    f">= {minimum}",
                )
                a.worse("hardware", UNSAFE_HARDWARE)
