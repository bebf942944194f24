"""The ``gpu`` block's protected-PCIe fields (``ppcie``, ``min_switches``, switch VBIOS
versions) and the NVSwitch / topology appraisal (sealgate.appraise.gpu)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sealgate.appraise.base import Appraisal
from sealgate.appraise.gpu import (
    GpuVerdict,
    TopologyVerdict,
    appraise_gpus,
    gpu_verdicts,
    topology_verdict,
)
from sealgate.appraise.policy import check_writable, parse_policy
from sealgate.errors import UsageError

AT = datetime(2026, 12, 1, tzinfo=UTC)
SW_VBIOS = "96.10.73.00.01"
BASE: dict[str, Any] = {
    "min_count": 2,
    "driver_versions": ["550.54.15"],
    "vbios_versions": ["96.00.5E.00.01"],
}
REQ: dict[str, Any] = {**BASE, "ppcie": "required", "switch_vbios_versions": [SW_VBIOS.lower()]}
GOOD_TOPO = TopologyVerdict(True, [], {"ppcie": True, "switch_side_checked": True})


def _doc(gpu: dict[str, Any]) -> str:
    return json.dumps({"platforms": {"snp": {"measurement": ["00" * 48]}}, "gpu": gpu})


def _rev(*kinds: str) -> dict[str, Any]:
    return {
        "checked": True,
        "device": {"checked": True},
        "rims": {k: {"id": k[0], "checked": True} for k in kinds},
    }


def _gpu(ppcie: bool | None = True) -> GpuVerdict:
    return GpuVerdict(
        True,
        {
            "ppcie": ppcie,
            "driver_version": "550.54.15",
            "vbios_version": "96.00.5E.00.01",
            "rim": {"driver": {"id": "d"}, "vbios": {"id": "v"}},
            "mismatched_indices": [],
            "revocation": _rev("driver", "vbios"),
        },
    )


def _switch(verified: bool = True, **over: Any) -> GpuVerdict:
    c: dict[str, Any] = {
        "vbios_version": SW_VBIOS,
        "rim": {"vbios": {"id": "v"}, "status": "compared"},
        "measurements_compared": True,
        "mismatched_indices": [],
        "revocation": _rev("vbios"),
    }
    c.update(over)
    return GpuVerdict(verified, c, [] if verified else ["gpu.chain.untrusted"], "nvswitch")


def _codes(
    gpu: dict[str, Any], devices: list[GpuVerdict], topo: TopologyVerdict = GOOD_TOPO
) -> list[str]:
    p = parse_policy(_doc(gpu))
    check_writable(p)
    assert p.gpu is not None
    a = Appraisal("snp")
    appraise_gpus(a, p.gpu, devices, at=AT, topology=topo)
    return sorted(f.code for f in a.failures)


BOARD = [_gpu(), _gpu(), _switch(), _switch()]


def test_required_board_passes_and_counts_gpus_only() -> None:
    assert _codes(REQ, BOARD) == []
    assert _codes({**REQ, "min_switches": 2}, BOARD) == []
    assert _codes({**REQ, "min_switches": 3}, BOARD) == ["policy.gpu.too_few_switches"]
    # min_count counts GPUs: two GPUs and two switches are not three GPUs.
    assert _codes({**REQ, "min_count": 3}, BOARD) == ["policy.gpu.too_few"]


def test_default_forbids_ppcie() -> None:
    assert _codes(BASE, BOARD) == ["policy.gpu.ppcie_forbidden"]
    # PPCIe GPUs without their switches are refused too.
    assert _codes(BASE, BOARD[:2], TopologyVerdict(True, [], {"ppcie": True})) == [
        "policy.gpu.ppcie_forbidden"
    ]
    assert _codes(BASE, [_gpu(None), _gpu(False)], TopologyVerdict(True, [], {})) == []


def test_any_takes_either_complete_set() -> None:
    anyp = {**BASE, "ppcie": "any", "allow_any_switch_vbios": True}
    assert _codes(anyp, BOARD) == []
    assert (
        _codes(anyp, [_gpu(False), _gpu(False)], TopologyVerdict(True, [], {"ppcie": False})) == []
    )
    # PPCIe GPUs without switches: not a complete PPCIe board.
    assert _codes(anyp, BOARD[:2], TopologyVerdict(True, [], {"ppcie": True})) == [
        "policy.gpu.too_few_switches"
    ]
    # Switches next to plain-mode GPUs.
    assert "policy.gpu.not_ppcie" in _codes(anyp, [_gpu(False), _gpu(False), _switch()])


def test_required_refusals() -> None:
    plain = [_gpu(False), _gpu(False)]
    assert _codes(REQ, plain, TopologyVerdict(True, [], {"ppcie": False})) == [
        "policy.gpu.not_ppcie",
        "policy.gpu.too_few_switches",
    ]
    bad_topo = TopologyVerdict(False, ["gpu.topology.switch_missing"], {"ppcie": True})
    assert _codes(REQ, BOARD, bad_topo) == ["policy.gpu.topology"]
    unchecked = TopologyVerdict(True, [], {"ppcie": True, "switch_side_checked": False})
    assert _codes(REQ, BOARD, unchecked) == ["policy.gpu.topology"]
    assert _codes(REQ, [*BOARD[:3], _switch(vbios_version="96.10.99.00.01")]) == [
        "policy.gpu.switch_vbios_not_allowed"
    ]
    assert _codes(REQ, [*BOARD[:3], _switch(rim={"vbios": None})]) == ["policy.gpu.not_compared"]
    assert _codes(REQ, [*BOARD[:3], _switch(revocation={"checked": False})]) == [
        "policy.gpu.revocation_unchecked"
    ]
    assert (
        _codes(
            {**REQ, "require_revocation_check": False},
            [*BOARD[:3], _switch(revocation={"checked": False})],
        )
        == []
    )


@pytest.mark.parametrize("ppcie", ["required", "any", "forbidden"])
def test_unverified_switch_denies_whatever_ppcie_says(ppcie: str) -> None:
    gpu = {**BASE, "ppcie": ppcie}
    if ppcie != "forbidden":
        gpu["allow_any_switch_vbios"] = True
    codes = _codes(gpu, [*BOARD[:3], _switch(False)])
    assert "policy.gpu.switch_not_verified" in codes
    # A set-level failure denies under every setting too.
    bad = TopologyVerdict(False, ["gpu.evidence.duplicate_device"], {})
    assert "policy.gpu.topology" in _codes(gpu, [_gpu(False), _gpu(False)], bad)


@pytest.mark.parametrize(
    "gpu",
    [
        {**BASE, "ppcie": "sometimes"},
        {**BASE, "min_switches": 2},  # switch requirements under the default "forbidden"
        {**BASE, "switch_vbios_versions": [SW_VBIOS]},
        {**REQ, "min_switches": 0},
        {**REQ, "min_count": 8, "min_switches": 9},  # over the 16-entry cap
        {**REQ, "allow_any_switch_vbios": True},  # with switch_vbios_versions
        {**REQ, "min_switches": True},
    ],
)
def test_bad_ppcie_policy_refused(gpu: dict[str, Any]) -> None:
    with pytest.raises(UsageError) as e:
        parse_policy(_doc(gpu))
    assert e.value.code == "policy.document.invalid"


@pytest.mark.parametrize("ppcie", ["required", "any"])
def test_switch_versions_must_be_named(ppcie: str) -> None:
    p = parse_policy(_doc({**BASE, "ppcie": ppcie}))
    with pytest.raises(UsageError) as e:
        check_writable(p)
    assert e.value.code == "policy.gpu.no_versions"
    assert "switch_vbios" in e.value.message


def test_claims_readers_fail_closed() -> None:
    claims: dict[str, Any] = {
        "gpus": [
            {"kind": "nvswitch", "verified": True, "errors": [], "claims": {}},
            {"kind": "tpu", "verified": True, "errors": [], "claims": {}},
        ]
    }
    v = gpu_verdicts(claims)
    assert [(x.kind, x.verified) for x in v] == [("nvswitch", True), ("gpu", False)]
    # Devices without the set's verdict, or a malformed one: unverified.
    assert not topology_verdict(claims).verified
    claims["gpu_topology"] = {"verified": True, "errors": ["gpu.topology.mismatch"]}
    assert not topology_verdict(claims).verified
    claims["gpu_topology"] = {"verified": True, "errors": [], "claims": {"ppcie": True}}
    t = topology_verdict(claims)
    assert t.verified and t.claims == {"ppcie": True}
    assert topology_verdict({}).verified  # no devices at all: nothing to be inconsistent
