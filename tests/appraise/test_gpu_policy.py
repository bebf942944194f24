"""The ``gpu`` policy block and the GPU appraisal (sealgate.appraise.gpu)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sealgate.appraise.base import Appraisal
from sealgate.appraise.gpu import MISMATCH_CODE, GpuVerdict, appraise_gpus
from sealgate.appraise.policy import check_writable, parse_policy
from sealgate.errors import UsageError

AT = datetime(2026, 12, 1, tzinfo=UTC)
GOOD_GPU: dict[str, Any] = {
    "min_count": 2,
    "driver_versions": ["550.54.15"],
    "vbios_versions": ["96.00.5e.00.01"],
}


def _doc(gpu: dict[str, Any]) -> str:
    return json.dumps(
        {"platforms": {"snp": {"measurement": ["00" * 48]}}, "gpu": gpu},
    )


def _claims(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "driver_version": "550.54.15",
        "vbios_version": "96.00.5E.00.01",
        "rim": {"driver": {"id": "d", "status": "ok"}, "vbios": {"id": "v", "status": "ok"}},
        "mismatched_indices": [],
        "revocation": {
            "checked": True,
            "device": {"checked": True},
            "rims": {"driver": {"id": "d", "checked": True}, "vbios": {"id": "v", "checked": True}},
        },
    }
    c.update(over)
    return c


def _codes(gpu: dict[str, Any], verdicts: list[GpuVerdict]) -> list[str]:
    p = parse_policy(_doc(gpu))
    check_writable(p)
    assert p.gpu is not None
    a = Appraisal("snp")
    appraise_gpus(a, p.gpu, verdicts, at=AT)
    return [f.code for f in a.failures]


def test_two_good_gpus_pass() -> None:
    v = [GpuVerdict(True, _claims()), GpuVerdict(True, _claims())]
    assert _codes(GOOD_GPU, v) == []


def test_too_few() -> None:
    assert _codes(GOOD_GPU, [GpuVerdict(True, _claims())]) == ["policy.gpu.too_few"]
    assert _codes(GOOD_GPU, []) == ["policy.gpu.too_few"]


def test_unverified_gpu_names_its_index() -> None:
    p = parse_policy(_doc(GOOD_GPU))
    assert p.gpu is not None
    a = Appraisal("snp")
    vec = appraise_gpus(
        a,
        p.gpu,
        [GpuVerdict(True, _claims()), GpuVerdict(False, {}, ["gpu.nonce_mismatch"])],
        at=AT,
    )
    assert [f.code for f in a.failures] == ["policy.gpu.not_verified"]
    assert a.failures[0].message.startswith("gpu1:")
    assert "gpu.nonce_mismatch" in a.failures[0].actual
    assert vec["gpu0"] == {"instance_identity": 2, "hardware": 2, "executables": 2}
    assert vec["gpu1"]["hardware"] >= 96


def test_mismatch_names_index_and_allow_mismatch_window() -> None:
    bad = GpuVerdict(False, _claims(mismatched_indices=[9]), [MISMATCH_CODE])
    ok = GpuVerdict(True, _claims())
    assert _codes(GOOD_GPU, [ok, bad]) == ["policy.gpu.measurement_mismatch"]
    later = {**GOOD_GPU, "allow_mismatch": [{"index": 9, "until": "2027-01-01T00:00:00Z"}]}
    assert _codes(later, [ok, bad]) == []
    past = {**GOOD_GPU, "allow_mismatch": [{"index": 9, "until": "2026-11-30T00:00:00Z"}]}
    assert _codes(past, [ok, bad]) == ["policy.gpu.measurement_mismatch"]
    other = {**GOOD_GPU, "allow_mismatch": [{"index": 8, "until": "2027-01-01T00:00:00Z"}]}
    assert _codes(other, [ok, bad]) == ["policy.gpu.measurement_mismatch"]
    # allow_mismatch never excuses another failure next to the mismatch.
    worse = GpuVerdict(False, _claims(mismatched_indices=[9]), [MISMATCH_CODE, "gpu.x.y"])
    assert _codes(later, [ok, worse]) == ["policy.gpu.not_verified"]


def test_versions_revocation_and_rims() -> None:
    ok = GpuVerdict(True, _claims())
    assert _codes(GOOD_GPU, [ok, GpuVerdict(True, _claims(driver_version="535.1"))]) == [
        "policy.gpu.driver_not_allowed"
    ]
    assert _codes(GOOD_GPU, [ok, GpuVerdict(True, _claims(vbios_version="96.00.A5.00.01"))]) == [
        "policy.gpu.vbios_not_allowed"
    ]
    assert _codes(GOOD_GPU, [ok, GpuVerdict(True, _claims(revocation={"checked": False}))]) == [
        "policy.gpu.revocation_unchecked"
    ]
    lax = {**GOOD_GPU, "require_revocation_check": False}
    assert _codes(lax, [ok, GpuVerdict(True, _claims(revocation={"checked": False}))]) == []
    assert _codes(GOOD_GPU, [ok, GpuVerdict(True, _claims(rim=None))]) == [
        "policy.gpu.not_compared"
    ]
    anyv = {"min_count": 1, "allow_any_driver": True, "allow_any_vbios": True}
    assert _codes(anyv, [GpuVerdict(True, _claims(driver_version="1", vbios_version="2"))]) == []


def _rev(device: bool = True, **rims: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "driver": {"id": "d", "checked": True},
        "vbios": {"id": "v", "checked": True},
    }
    r.update(rims)
    return {
        "checked": device and all(isinstance(v, dict) and v.get("checked") for v in r.values()),
        "device": {"checked": device},
        "rims": r,
    }


@pytest.mark.parametrize(
    ("rev", "chains"),
    [
        (_rev(), None),
        (_rev(device=False), "device"),
        (_rev(driver={"id": "d", "checked": False}), "driver RIM"),
        (_rev(vbios={"id": "v", "checked": False, "status": "not_checked"}), "vbios RIM"),
        # A revocation entry for another RIM than the one compared does not count.
        (_rev(vbios={"id": "other", "checked": True}), "vbios RIM"),
        # Claims from a verifier that checked only the device chain: the RIMs count as
        # unchecked (fail closed), even with the old top-level "checked".
        ({"checked": True, "device": {"checked": True}}, "driver RIM, vbios RIM"),
        ({"checked": True}, "device, driver RIM, vbios RIM"),
        ({**_rev(), "checked": False}, "all"),
        ("junk", "device"),
    ],
)
def test_revocation_covers_device_and_rim_chains(rev: Any, chains: str | None) -> None:
    ok = GpuVerdict(True, _claims())
    p = parse_policy(_doc(GOOD_GPU))
    assert p.gpu is not None
    a = Appraisal("snp")
    appraise_gpus(a, p.gpu, [ok, GpuVerdict(True, _claims(revocation=rev))], at=AT)
    if chains is None:
        assert a.failures == []
        return
    assert [(f.code, f.message.split(":")[0]) for f in a.failures] == [
        ("policy.gpu.revocation_unchecked", "gpu1")
    ]
    assert f"the {chains} chain(s)" in a.failures[0].message
    lax = parse_policy(_doc({**GOOD_GPU, "require_revocation_check": False}))
    assert lax.gpu is not None
    b = Appraisal("snp")
    appraise_gpus(b, lax.gpu, [ok, GpuVerdict(True, _claims(revocation=rev))], at=AT)
    assert b.failures == []


@pytest.mark.parametrize(
    "gpu",
    [
        {"min_count": 0, "allow_any_driver": True, "allow_any_vbios": True},
        {"allow_any_driver": True, "allow_any_vbios": True},
        {**GOOD_GPU, "cc_mode": "off"},
        {**GOOD_GPU, "devtools": "allowed"},
        {**GOOD_GPU, "allow_any_driver": True},
        {**GOOD_GPU, "min_count": 17},
        {**GOOD_GPU, "min_count": "2"},
        {**GOOD_GPU, "allow_mismatch": [{"index": 1, "until": "2027-01-01T00:00:00"}]},
        {**GOOD_GPU, "allow_mismatch": [{"index": 256, "until": "2027-01-01T00:00:00Z"}]},
        {
            **GOOD_GPU,
            "allow_mismatch": [
                {"index": 1, "until": "2027-01-01T00:00:00Z"},
                {"index": 1, "until": "2028-01-01T00:00:00Z"},
            ],
        },
        {**GOOD_GPU, "driver_versions": ["x"] * 65},
        {**GOOD_GPU, "unknown": 1},
    ],
)
def test_bad_gpu_policy_refused(gpu: dict[str, Any]) -> None:
    with pytest.raises(UsageError) as e:
        parse_policy(_doc(gpu))
    assert e.value.code == "policy.document.invalid"


@pytest.mark.parametrize("missing", ["driver_versions", "vbios_versions"])
def test_empty_versions_not_a_permission(missing: str) -> None:
    gpu = {k: v for k, v in GOOD_GPU.items() if k != missing}
    p = parse_policy(_doc(gpu))
    with pytest.raises(UsageError) as e:
        check_writable(p)
    assert e.value.code == "policy.gpu.no_versions"


def test_appraise_requires_gpus_when_the_policy_does() -> None:
    from sealgate.appraise.evaluate import appraise
    from sealgate.result import VerifyResult

    p = parse_policy(_doc(GOOD_GPU))
    snp_claims: dict[str, Any] = {}
    r = VerifyResult("snp", claims=snp_claims)
    codes = [f.code for f in appraise(p, r).failures]
    assert "policy.gpu.too_few" in codes
    r.claims["gpus"] = [
        {"verified": True, "errors": [], "claims": _claims()},
        {"verified": False, "errors": ["gpu.report.nonce_mismatch"], "claims": {}},
        "garbage",
    ]
    # Devices without the set's verdict: the set is unverified (fail closed).
    a = appraise(p, r)
    assert "policy.gpu.topology" in [f.code for f in a.failures]
    r.claims["gpu_topology"] = {"verified": True, "errors": [], "claims": {"ppcie": False}}
    a = appraise(p, r)
    gpu_fails = [f for f in a.failures if f.code.startswith("policy.gpu.")]
    assert [f.message.split(":")[0] for f in gpu_fails] == ["gpu1", "gpu2"]
    assert set(a.components) == {"gpu0", "gpu1", "gpu2"}
