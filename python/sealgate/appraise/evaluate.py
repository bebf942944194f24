"""Evaluate a policy against verified claims; every failure, with actual vs expected.

Each platform has one appraiser (``sealgate.appraise.tpm``, ``.snp``, ``.tdx``, ``.azure``)
reading that platform's typed claims; ``APPRAISERS`` is where they are registered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sealgate.appraise.azure import AzureAppraiser
from sealgate.appraise.base import (
    AFFIRMING,
    CONTRAINDICATED,
    UNSUPPORTED_CONFIG,
    Appraisal,
    Appraiser,
    PolicyFailure,
)
from sealgate.appraise.gpu import appraise_gpus, gpu_verdicts, topology_verdict
from sealgate.appraise.policy import Policy
from sealgate.appraise.snp import SnpAppraiser
from sealgate.appraise.tdx import TdxAppraiser
from sealgate.appraise.tpm import TpmAppraiser
from sealgate.result import VerifyResult
from sealgate.storage import ReferenceValue

__all__ = ["APPRAISERS", "Appraisal", "Appraiser", "PolicyFailure", "appraise", "ear_status"]

#: Platform name → its appraiser.
APPRAISERS: Mapping[str, Appraiser] = {
    a.platform: a
    for a in (
        TpmAppraiser(),
        SnpAppraiser(),
        TdxAppraiser(),
        AzureAppraiser("azure-snp"),
        AzureAppraiser("azure-tdx"),
    )
}


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
    appraiser = APPRAISERS.get(result.platform)
    if result.platform not in policy.platforms or appraiser is None:
        # A platform without an appraiser has nothing its policy could be checked against.
        a.fail(
            "policy.platform.not_allowed",
            f"platform {result.platform} may not receive this key",
            result.platform,
            policy.platforms,
        )
        a.worse("hardware", UNSUPPORTED_CONFIG)
        return a
    appraiser.appraise(a, policy, result.claims, refs)
    if policy.gpu is not None:
        # Composite evidence: the GPUs the CPU evidence is bound to (already verified, their
        # outcomes in the claims); none there means "too few", never "not required".
        a.components.update(
            appraise_gpus(
                a,
                policy.gpu,
                gpu_verdicts(result.claims),
                at=datetime.now(UTC),
                topology=topology_verdict(result.claims),
            )
        )
    return a
