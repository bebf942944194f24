"""Appraisal of the NVIDIA GPUs in composite evidence against a key's ``gpu`` policy.

Input per GPU (in the order the node sent them; index ``i`` is the EAR submod
``<platform>/gpu<i>``): the verifier's verdict (``verified``, failure codes) and its claims
(``sealgate verify nvidia-gpu`` claims: ``driver_version``, ``vbios_version``, ``rim``
``{driver, vbios}``, ``mismatched_indices``, ``revocation``). The verifier has already
checked genuineness, the per-GPU nonce and the RIMs; here the key's policy decides what it
accepts (policy module docstring, ``gpu``).

An entry may be an NVSwitch (``kind: nvswitch``, protected-PCIe boards): switches are
appraised on their own (submod ``<platform>/nvswitch<j>``, ``j`` counting switches in
evidence order, as ``i`` counts GPUs), and the set's verdict (``GPU_TOPOLOGY_CLAIM``:
distinct devices and the GPU↔switch topology, ``sealgate.nvgpu.check_set``) against the
key's ``ppcie`` requirement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sealgate.appraise.base import (
    AFFIRMING,
    CONTRAINDICATED,
    UNRECOGNIZED_EXECUTABLES,
    UNSAFE_HARDWARE,
    UNSUPPORTED_CONFIG,
    Appraisal,
)
from sealgate.appraise.policy import MAX_POLICY_GPUS, GpuRequirements

#: The verifier's code for measurements that differ from the RIM: the only verifier failure
#: ``allow_mismatch`` can tolerate (every other failure — signature, chain, nonce, missing
#: RIM, RIM signature — is final).
MISMATCH_CODE = "gpu.rim.mismatch"


KIND_GPU, KIND_NVSWITCH = "gpu", "nvswitch"


@dataclass
class GpuVerdict:
    """One GPU's (or NVSwitch's) verification outcome as the appraiser sees it."""

    verified: bool
    claims: Mapping[str, Any] = field(default_factory=dict)
    error_codes: list[str] = field(default_factory=list)
    kind: str = KIND_GPU


#: The verified result's claim holding the per-device outcomes (the service fills it when
#: the node sent GPU evidence): a list of ``{"kind", "verified", "errors": [code...],
#: "claims"}``.
GPUS_CLAIM = "gpus"
#: The verified result's claim holding the set's outcome: ``{"verified", "errors": [code...],
#: "messages", "claims": <topology claims or None>}``.
GPU_TOPOLOGY_CLAIM = "gpu_topology"


@dataclass
class TopologyVerdict:
    verified: bool
    error_codes: list[str]
    claims: Mapping[str, Any]


def topology_verdict(claims: Mapping[str, Any]) -> TopologyVerdict:
    """The set's verdict; absent or malformed is unverified (fail closed) when devices were
    sent, and an empty, verified set when none were."""
    raw = claims.get(GPU_TOPOLOGY_CLAIM)
    if raw is None and not isinstance(claims.get(GPUS_CLAIM), list):
        return TopologyVerdict(True, [], {})
    if not isinstance(raw, Mapping):
        return TopologyVerdict(False, ["gpu.evidence.invalid"], {})
    errs = raw.get("errors")
    codes = [e for e in errs if isinstance(e, str)] if isinstance(errs, list) else []
    c = raw.get("claims")
    ok = raw.get("verified") is True and not codes
    return TopologyVerdict(
        ok, codes if ok or codes else ["unverified"], c if isinstance(c, Mapping) else {}
    )


def gpu_verdicts(claims: Mapping[str, Any]) -> list[GpuVerdict]:
    """The per-GPU verdicts in ``claims[GPUS_CLAIM]``; anything malformed is an unverified
    GPU (fail closed), never skipped, so it still counts against nothing but itself."""
    raw = claims.get(GPUS_CLAIM)
    if not isinstance(raw, list):
        return []
    out: list[GpuVerdict] = []
    for item in raw[:MAX_POLICY_GPUS]:
        if not isinstance(item, Mapping):
            out.append(GpuVerdict(False, {}, ["gpu.evidence.invalid"]))
            continue
        errs = item.get("errors")
        codes = [e for e in errs if isinstance(e, str)] if isinstance(errs, list) else []
        c = item.get("claims")
        kind = item.get("kind", KIND_GPU)
        if kind not in (KIND_GPU, KIND_NVSWITCH):
            # An unknown kind is an unverified GPU: it counts for nothing and denies.
            out.append(GpuVerdict(False, {}, ["gpu.evidence.invalid"]))
            continue
        out.append(
            GpuVerdict(
                item.get("verified") is True,
                c if isinstance(c, Mapping) else {},
                codes,
                kind,
            )
        )
    return out


def _mismatched(claims: Mapping[str, Any]) -> list[int]:
    out: list[int] = []
    for m in claims.get("mismatched_indices") or []:
        idx = m.get("index") if isinstance(m, Mapping) else m
        if isinstance(idx, int) and not isinstance(idx, bool):
            out.append(idx)
    return out


def _compared(claims: Mapping[str, Any]) -> bool:
    rim = claims.get("rim")
    return isinstance(rim, Mapping) and all(
        isinstance(rim.get(k), Mapping) and rim[k].get("id") for k in ("driver", "vbios")
    )


def appraise_gpus(
    a: Appraisal,
    req: GpuRequirements,
    devices: Sequence[GpuVerdict],
    *,
    at: datetime,
    topology: TopologyVerdict | None = None,
) -> dict[str, dict[str, int]]:
    """Record every failure in ``a``; return each device's AR4SI vector (``gpu<i>`` /
    ``nvswitch<j>`` → vector)."""
    gpus = [d for d in devices if d.kind == KIND_GPU]
    switches = [d for d in devices if d.kind == KIND_NVSWITCH]
    vectors: dict[str, dict[str, int]] = {}
    _ppcie(a, req, gpus, switches, topology or TopologyVerdict(True, [], {}))
    for j, s in enumerate(switches):
        vec: dict[str, int] = {}
        vectors[f"nvswitch{j}"] = vec
        _switch(a, req, j, s, vec)
        for k, v in vec.items():
            a.worse(k, v)
    if len(gpus) < req.min_count:
        a.fail(
            "policy.gpu.too_few",
            f"{len(gpus)} GPU(s) attested, the policy requires at least {req.min_count}",
            len(gpus),
            req.min_count,
        )
        a.worse("hardware", UNSAFE_HARDWARE)
    for i, g in enumerate(gpus):
        vec = {}
        vectors[f"gpu{i}"] = vec
        _one(a, req, i, g, at, vec)
        for k, v in vec.items():
            a.worse(k, v)
    return vectors


def _ppcie(
    a: Appraisal,
    req: GpuRequirements,
    gpus: Sequence[GpuVerdict],
    switches: Sequence[GpuVerdict],
    topo: TopologyVerdict,
) -> None:
    """The set against ``ppcie``. The set's own failures (repeated devices, mixed modes,
    an inconsistent topology) deny whatever ``ppcie`` says."""
    if not topo.verified:
        a.fail(
            "policy.gpu.topology",
            "the GPU/NVSwitch set is inconsistent (repeated devices or topology)",
            topo.error_codes,
        )
        a.worse("hardware", CONTRAINDICATED)
    in_ppcie = topo.claims.get("ppcie") is True or any(g.claims.get("ppcie") is True for g in gpus)
    if req.ppcie == "forbidden" or (req.ppcie == "any" and not in_ppcie and not switches):
        if in_ppcie or switches:
            a.fail(
                "policy.gpu.ppcie_forbidden",
                f"protected-PCIe set ({len(switches)} NVSwitch report(s)) but the policy "
                "does not allow protected PCIe",
                len(switches),
                req.ppcie,
            )
            a.worse("hardware", UNSUPPORTED_CONFIG)
        return
    # "required", or "any" with a PPCIe GPU or a switch: the whole board must hold.
    if not gpus or not all(g.claims.get("ppcie") is True for g in gpus):
        a.fail(
            "policy.gpu.not_ppcie",
            "the policy requires protected PCIe but not every GPU is in protected-PCIe mode",
            [g.claims.get("ppcie") for g in gpus],
            True,
        )
        a.worse("hardware", UNSUPPORTED_CONFIG)
    if len(switches) < req.min_switches:
        a.fail(
            "policy.gpu.too_few_switches",
            f"{len(switches)} NVSwitch(es) attested, the policy requires at least "
            f"{req.min_switches}",
            len(switches),
            req.min_switches,
        )
        a.worse("hardware", UNSAFE_HARDWARE)
    elif topo.verified and topo.claims.get("switch_side_checked") is not True:
        a.fail(
            "policy.gpu.topology",
            "the GPU/NVSwitch topology was not checked from the switches' side",
            topo.claims.get("switch_side_checked"),
            True,
        )
        a.worse("hardware", UNSAFE_HARDWARE)


def _switch(a: Appraisal, req: GpuRequirements, j: int, s: GpuVerdict, vec: dict[str, int]) -> None:
    """One NVSwitch: verified (every verifier failure is final: ``allow_mismatch`` names GPU
    RIM indices), compared with its RIM, an allowed VBIOS version, revocation checked."""

    def fail(code: str, msg: str, claim: str, value: int, actual: Any = "", exp: Any = "") -> None:
        a.fail(code, f"nvswitch{j}: {msg}", actual, exp)
        vec[claim] = max(vec.get(claim, 0), value)

    if not s.verified:
        fail(
            "policy.gpu.switch_not_verified",
            "NVSwitch evidence did not verify",
            "hardware",
            CONTRAINDICATED,
            s.error_codes or ["unverified"],
        )
        return
    c = s.claims
    vec["instance_identity"] = AFFIRMING
    vec["hardware"] = AFFIRMING
    rim = c.get("rim")
    used = rim.get("vbios") if isinstance(rim, Mapping) else None
    if isinstance(used, Mapping) and used.get("id") and c.get("measurements_compared") is True:
        vec["executables"] = AFFIRMING
    else:
        fail(
            "policy.gpu.not_compared",
            "switch measurements were not compared with its RIM",
            "configuration",
            UNSUPPORTED_CONFIG,
        )
    vb = c.get("vbios_version")
    vb_norm = vb.upper() if isinstance(vb, str) else vb
    # Under ``ppcie: forbidden`` the switch's presence already denies (``_ppcie``).
    if (
        req.ppcie != "forbidden"
        and not req.allow_any_switch_vbios
        and vb_norm not in req.switch_vbios_versions
    ):
        fail(
            "policy.gpu.switch_vbios_not_allowed",
            "NVSwitch VBIOS version not allowed",
            "executables",
            UNRECOGNIZED_EXECUTABLES,
            vb,
            req.switch_vbios_versions,
        )
    _require_revocation(req, c, fail)


def _one(
    a: Appraisal,
    req: GpuRequirements,
    i: int,
    g: GpuVerdict,
    at: datetime,
    vec: dict[str, int],
) -> None:
    def fail(code: str, msg: str, claim: str, value: int, actual: Any = "", exp: Any = "") -> None:
        a.fail(code, f"gpu{i}: {msg}", actual, exp)
        vec[claim] = max(vec.get(claim, 0), value)

    c = g.claims
    mism = _mismatched(c)
    fatal = [e for e in g.error_codes if e != MISMATCH_CODE]
    if not g.verified and (fatal or not g.error_codes):
        fail(
            "policy.gpu.not_verified",
            "GPU evidence did not verify",
            "hardware",
            CONTRAINDICATED,
            fatal or ["unverified"],
        )
        return
    # Genuine (chain to the NVIDIA root, report signature, FWID) and fresh for its slot: the
    # verifier said so. AR4SI affirming values let the GPU's EAR submod say "affirming"
    # rather than "none"; any failure below raises its claim past them.
    vec["instance_identity"] = AFFIRMING
    vec["hardware"] = AFFIRMING
    if _compared(c):
        vec["executables"] = AFFIRMING
    if not _compared(c):
        # CC mode and devtools are visible only through the measurements (policy docstring).
        fail(
            "policy.gpu.not_compared",
            "measurements were not compared with RIMs; CC mode and devtools unproven",
            "configuration",
            UNSUPPORTED_CONFIG,
        )
    if mism:
        bad = [x for x in mism if not (x in req.allow_mismatch and at < req.allow_mismatch[x])]
        if bad:
            fail(
                "policy.gpu.measurement_mismatch",
                f"measurement index(es) {', '.join(map(str, bad))} differ from the RIM "
                "(developer-tools or non-CC mode, or an unapproved firmware)",
                "executables",
                UNRECOGNIZED_EXECUTABLES,
                bad,
            )
    elif MISMATCH_CODE in g.error_codes:
        fail("policy.gpu.not_verified", "mismatch without indices", "hardware", CONTRAINDICATED)
    drv, vb = c.get("driver_version"), c.get("vbios_version")
    if not req.allow_any_driver and drv not in req.driver_versions:
        fail(
            "policy.gpu.driver_not_allowed",
            "driver version not allowed",
            "executables",
            UNRECOGNIZED_EXECUTABLES,
            drv,
            req.driver_versions,
        )
    vb_norm = vb.upper() if isinstance(vb, str) else vb
    if not req.allow_any_vbios and vb_norm not in req.vbios_versions:
        fail(
            "policy.gpu.vbios_not_allowed",
            "VBIOS version not allowed",
            "executables",
            UNRECOGNIZED_EXECUTABLES,
            vb,
            req.vbios_versions,
        )
    _require_revocation(req, c, fail)


def _require_revocation(
    req: GpuRequirements, c: Mapping[str, Any], fail: Callable[..., None]
) -> None:
    """``require_revocation_check``: every chain of the device (device, each RIM signer)
    must have been checked by OCSP."""
    unchecked = _unchecked_chains(c)
    if req.require_revocation_check and unchecked:
        fail(
            "policy.gpu.revocation_unchecked",
            f"certificate revocation was not checked for the {', '.join(unchecked)} "
            "chain(s) (no OCSP responses)",
            "hardware",
            UNSAFE_HARDWARE,
            unchecked,
        )


def _unchecked_chains(c: Mapping[str, Any]) -> list[str]:
    """The chains whose revocation the claims do not show as checked: the device chain and
    the signer chain of every RIM the measurements were compared with (``revocation``
    ``device`` / ``rims``). Fail closed: a claim set without the per-chain entries (or with
    anything but ``checked: true``) counts as unchecked."""
    rev = c.get("revocation")
    if not isinstance(rev, Mapping):
        return ["device"]
    out: list[str] = []
    dev = rev.get("device")
    if not (isinstance(dev, Mapping) and dev.get("checked") is True):
        out.append("device")
    rims = rev.get("rims")
    rim = c.get("rim")
    for kind in ("driver", "vbios"):
        used = rim.get(kind) if isinstance(rim, Mapping) else None
        rim_id = used.get("id") if isinstance(used, Mapping) else None
        if not rim_id:
            continue
        entry = rims.get(kind) if isinstance(rims, Mapping) else None
        if not (
            isinstance(entry, Mapping)
            and entry.get("checked") is True
            and entry.get("id") == rim_id
        ):
            out.append(f"{kind} RIM")
    if not out and rev.get("checked") is not True:
        out.append("all")  # the verifier's own verdict says not every chain was checked
    return out
