"""Azure confidential VM appraisal (``azure-snp``, ``azure-tdx``): one appraisal per component.

The verified claims of an Azure CVM are per component (``sealgate.azure``): ``snp`` or
``tdx`` (the hardware report, the claims ``verify snp`` / ``verify tdx`` give), ``tpm`` (the
vTPM quote, the claims ``verify tpm`` gives) and ``runtime_data`` (the paravisor's runtime
data the hardware report commits to, with ``vm_configuration``). The hardware part and the
vTPM part are appraised by the SNP/TDX and TPM appraisers against the policy's ``snp``/``tdx``
and ``tpm`` parts, with those platforms' reference values: the same rules and the same
failure codes whether the machine is bare or behind the paravisor. What only Azure has is
checked here: the ``vm_configuration`` requirements, and (TDX) whether the TCB status was
evaluated at all (a TD quote without collateral is verified by signature and chain only).

``component_vectors`` keeps the AR4SI vector of each component apart, for the EAR token's
submods (DESIGN.md "Composite evidence": claims and submods stay per component).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealgate.appraise.base import (
    AFFIRMING,
    CONTRAINDICATED,
    UNSAFE_HARDWARE,
    UNSUPPORTED_CONFIG,
    Appraisal,
    Appraiser,
)
from sealgate.appraise.policy import (
    AZURE_HARDWARE,
    VM_CONFIGURATION_KEYS,
    AzureRequirements,
    Policy,
    TdxRequirements,
)
from sealgate.appraise.snp import SnpAppraiser
from sealgate.appraise.tdx import TdxAppraiser
from sealgate.appraise.tpm import TpmAppraiser
from sealgate.storage import ReferenceValue

#: The component appraisers an Azure CVM reuses.
_COMPONENTS: dict[str, Appraiser] = {
    "snp": SnpAppraiser(),
    "tdx": TdxAppraiser(),
    "tpm": TpmAppraiser(),
}

#: Policy ``vm_configuration`` field → the code naming it when it is not as required.
VM_CONFIGURATION_CODES = {
    "secure_boot": "policy.azure.vm_configuration.secure_boot",
    "tpm_enabled": "policy.azure.vm_configuration.tpm_enabled",
    "tpm_persisted": "policy.azure.vm_configuration.tpm_persisted",
    "console_enabled": "policy.azure.vm_configuration.console_enabled",
}

#: Reference values an Azure platform's appraisal reads: those of its components' platforms.
REFERENCE_PLATFORMS = {p: (hw, "tpm") for p, hw in AZURE_HARDWARE.items()}


def _mapping(v: Any) -> Mapping[str, Any]:
    # Claims of the wrong shape read as absent (and then fail), never as a crash.
    return v if isinstance(v, Mapping) else {}


def tcb_evaluated(tdx_claims: Mapping[str, Any]) -> bool:
    """Whether the TD quote's TCB status was evaluated against collateral. Only an explicit
    ``true`` counts: absent or mistyped means it was not."""
    return tdx_claims.get("tcb_evaluated") is True


class AzureAppraiser:
    """``Appraiser`` for one Azure platform; ``component_vectors`` per component."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.hardware = AZURE_HARDWARE[platform]

    def appraise(
        self,
        a: Appraisal,
        policy: Policy,
        claims: Mapping[str, Any],
        refs: Sequence[ReferenceValue],
    ) -> None:
        a.components = self.component_vectors(a, policy, claims, refs)

    def component_vectors(
        self,
        a: Appraisal,
        policy: Policy,
        claims: Mapping[str, Any],
        refs: Sequence[ReferenceValue],
    ) -> dict[str, dict[str, int]]:
        """Appraise every component into ``a`` (failures and the combined vector: the worst
        value of each claim); return each component's own vector."""
        req = policy.requirements(self.platform)
        assert isinstance(req, AzureRequirements)  # Policy.platforms lists it only then
        parts = req.components()
        hw_claims = _mapping(claims.get(self.hardware))
        vectors: dict[str, dict[str, int]] = {}
        for name, comp_claims in (
            (self.hardware, hw_claims),
            ("tpm", _mapping(claims.get("tpm"))),
        ):
            sub = Appraisal(name)
            _COMPONENTS[name].appraise(sub, parts, comp_claims, refs)
            if name == "tdx":
                self._tdx_tcb(sub, req, comp_claims)
            vectors[name] = sub.vector
            a.failures.extend(sub.failures)
        sub = Appraisal("runtime_data")
        self._vm_configuration(sub, req, _mapping(claims.get("runtime_data")))
        vectors["runtime_data"] = sub.vector
        a.failures.extend(sub.failures)
        for vec in vectors.values():
            for k, v in vec.items():
                a.worse(k, v)
        return vectors

    def _tdx_tcb(self, a: Appraisal, req: AzureRequirements, tdx_claims: Mapping[str, Any]) -> None:
        """Without collateral there is no TCB status to compare (the TDX appraiser skips
        it): refuse, since the policy asks for statuses (every TDX policy does, ``UpToDate``
        by default), unless the policy accepts an unevaluated TCB."""
        if tcb_evaluated(tdx_claims) or req.allow_unevaluated_tcb:
            return
        assert isinstance(req.hardware, TdxRequirements)
        a.fail(
            "policy.azure.tcb_not_evaluated",
            "the TD quote was verified without collateral, so its TCB status was not "
            f"evaluated; the policy accepts {', '.join(req.hardware.tcb_statuses)} "
            "(send collateral, or set allow_unevaluated_tcb)",
            "not evaluated",
            req.hardware.tcb_statuses,
        )
        a.worse("hardware", UNSAFE_HARDWARE)

    def _vm_configuration(
        self, a: Appraisal, req: AzureRequirements, runtime_data: Mapping[str, Any]
    ) -> None:
        a.worse("configuration", AFFIRMING)
        cfg = _mapping(runtime_data.get("vm_configuration"))
        for name, want in sorted(req.vm_configuration.flags.items()):
            got = cfg.get(VM_CONFIGURATION_KEYS[name])
            if got is want:
                continue
            shown = "absent" if got is None else str(got).lower()
            a.fail(
                VM_CONFIGURATION_CODES[name],
                f"vm-configuration {VM_CONFIGURATION_KEYS[name]} is {shown}; the policy "
                f"requires {str(want).lower()}",
                shown,
                str(want).lower(),
            )
            # A console or disabled secure boot on a machine that is to hold model keys is
            # a configuration the operator said no to.
            a.worse("configuration", CONTRAINDICATED if got is not None else UNSUPPORTED_CONFIG)
        if req.vm_configuration.vm_unique_ids:
            vm_id = cfg.get("vmUniqueId")
            got_id = vm_id.lower() if isinstance(vm_id, str) else ""
            if got_id not in req.vm_configuration.vm_unique_ids:
                a.fail(
                    "policy.azure.vm_configuration.vm_unique_id",
                    f"vmUniqueId {got_id or 'absent'} is not one the policy accepts",
                    got_id,
                    req.vm_configuration.vm_unique_ids,
                )
                a.worse("configuration", UNSUPPORTED_CONFIG)
