"""Azure CVM appraisal on real verified claims: an HCL report made by the synthetic paravisor
(``sealgate.testing.azure``) for a software RSA AK, its vTPM quote, verified by
``sealgate.azure.AzureVerifier``; then the policy decides, component by component."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sealgate import azure
from sealgate.appraise import appraise, parse_policy
from sealgate.appraise.policy import canonical
from sealgate.errors import UsageError
from sealgate.result import VerifyResult
from sealgate.storage import ReferenceValue
from sealgate.testing.azure import SyntheticAzureVm, TdFields, VmIdentity
from sealgate.testing.snp import ReportFields
from sealgate.testing.softtpm import SoftAk

PCRS = {i: hashlib.sha256(b"pcr %d" % i).digest() for i in range(24)}
SELECTION = [("sha256", tuple(range(24)))]
REFS = [
    ReferenceValue("1", "tpm", "vtpm", "sha256:7", PCRS[7].hex(), "", 0),
    ReferenceValue("2", "snp", "hw", "measurement", ReportFields().measurement.hex(), "", 0),
    ReferenceValue("3", "tdx", "hw", "mr_td", TdFields().mr_td.hex(), "", 0),
]


def _verified(tmp_path: Path, kind: str, *, collateral: bool = True, **vm_kw: Any) -> VerifyResult:
    vm = SyntheticAzureVm(tmp_path / kind, kind, **vm_kw)
    ak = SoftAk("rsa")
    vm.use_ak(ak.key.public_key())  # type: ignore[arg-type]
    binding = os.urandom(64)
    hcl = vm.build_report(binding)
    msg, sig = ak.quote(binding[:32], {"sha256": PCRS}, SELECTION)
    ev = azure.AzureEvidence(
        hcl_report=hcl,
        quote=msg,
        signature=sig,
        pcrs={"sha256": dict(PCRS)},
        vcek=vm.snp.vcek_der if kind == "snp" else None,
        cert_chain=vm.snp.cert_chain if kind == "snp" else None,
        td_quote=vm.td_quote(azure.parse_hcl_report(hcl).hardware_report)
        if kind == "tdx"
        else None,
        collateral=vm.intel.collateral() if kind == "tdx" and collateral else None,
    )
    res = azure.AzureVerifier(snp_roots=[vm.root_pem()], tdx_roots=[vm.root_pem()]).verify(
        ev, nonce=binding[:32], user_data=binding
    )
    assert res.verified, res.errors
    return res


def _policy(kind: str, **parts: dict[str, Any]) -> str:
    doc: dict[str, Any] = {
        kind: {"reference_sets": ["hw"]},
        "tpm": {"reference_sets": ["vtpm"]},
        "vm_configuration": {"secure_boot": True, "console_enabled": False},
    }
    for name, value in parts.items():
        doc.setdefault(name, {}).update(value)
    return json.dumps({"platforms": {f"azure-{kind}": doc}})


def _codes(policy: str, res: VerifyResult) -> list[str]:
    return sorted(f.code for f in appraise(parse_policy(policy), res, REFS).failures)


@pytest.fixture(scope="module")
def snp_claims(tmp_path_factory: pytest.TempPathFactory) -> VerifyResult:
    return _verified(tmp_path_factory.mktemp("az"), "snp")


@pytest.fixture(scope="module")
def tdx_claims(tmp_path_factory: pytest.TempPathFactory) -> VerifyResult:
    return _verified(tmp_path_factory.mktemp("az"), "tdx")


@pytest.fixture(params=["snp", "tdx"])
def verified(
    request: pytest.FixtureRequest, snp_claims: VerifyResult, tdx_claims: VerifyResult
) -> tuple[str, VerifyResult]:
    return request.param, snp_claims if request.param == "snp" else tdx_claims


def test_each_component_is_appraised_and_has_its_own_vector(
    verified: tuple[str, VerifyResult],
) -> None:
    kind, res = verified
    a = appraise(parse_policy(_policy(kind)), res, REFS)
    assert a.ok, a.failures
    assert set(a.components) == {kind, "tpm", "runtime_data"}
    assert all(v == 2 for vec in a.components.values() for v in vec.values())
    assert a.vector["instance_identity"] == 2


def test_hardware_and_vtpm_fail_with_their_platforms_codes(
    verified: tuple[str, VerifyResult],
) -> None:
    kind, res = verified
    hw = {"snp": {"measurement": ["00" * 48]}, "tdx": {"mr_td": ["00" * 48]}}[kind]
    bad = _policy(
        kind,
        **{kind: {**hw, "reference_sets": []}},
        tpm={"pcrs": {"sha256": {"7": "00" * 32}}, "reference_sets": []},
    )
    a = appraise(parse_policy(bad), res, REFS)
    codes = sorted(f.code for f in a.failures)
    want = {"snp": "policy.snp.measurement_mismatch", "tdx": "policy.tdx.mr_td_mismatch"}[kind]
    assert codes == sorted([want, "policy.tpm.pcr_mismatch"])
    pcr = next(f for f in a.failures if f.code == "policy.tpm.pcr_mismatch")
    assert "PCR sha256:7" in pcr.message and pcr.actual == PCRS[7].hex()
    # Each failure lowers its own component only.
    assert a.components[kind]["executables"] == 33 and a.components["tpm"]["executables"] == 33
    assert a.components["runtime_data"]["configuration"] == 2


def test_vm_configuration_requirements(tmp_path: Path) -> None:
    identity = VmIdentity(vm_configuration={"secure-boot": False, "tpm-enabled": True})
    res = _verified(tmp_path, "snp", identity=identity)
    a = appraise(parse_policy(_policy("snp", vm_configuration={"tpm_persisted": False})), res, REFS)
    got = {f.code: (f.actual, f.expected) for f in a.failures}
    assert got == {
        "policy.azure.vm_configuration.secure_boot": ("false", "true"),
        # Absent from the report: a requirement is never met by omission.
        "policy.azure.vm_configuration.console_enabled": ("absent", "false"),
        "policy.azure.vm_configuration.tpm_persisted": ("absent", "false"),
    }
    assert a.components["runtime_data"]["configuration"] == 96
    vm_id = identity.vm_unique_id
    ok = _policy("snp", vm_configuration={"secure_boot": False, "console_enabled": None})
    ok_doc = json.loads(ok)
    ok_doc["platforms"]["azure-snp"]["vm_configuration"] = {
        "secure_boot": False,
        "vm_unique_ids": [vm_id.lower()],
    }
    assert appraise(parse_policy(json.dumps(ok_doc)), res, REFS).ok
    ok_doc["platforms"]["azure-snp"]["vm_configuration"]["vm_unique_ids"] = [str(vm_id[::-1])]
    assert _codes(json.dumps(ok_doc), res) == ["policy.azure.vm_configuration.vm_unique_id"]


def test_tdx_without_collateral_fails_closed_unless_allowed(tmp_path: Path) -> None:
    res = _verified(tmp_path, "tdx", collateral=False)
    assert res.claims["tdx"]["tcb_evaluated"] is False
    assert _codes(_policy("tdx"), res) == ["policy.azure.tcb_not_evaluated"]
    assert not _codes(_policy("tdx", tdx={"allow_unevaluated_tcb": True}), res)


def test_tdx_with_collateral_checks_the_status_whatever_the_flag(
    tdx_claims: VerifyResult,
) -> None:
    assert tdx_claims.claims["tdx"]["tcb_evaluated"] is True
    strict = _policy("tdx", tdx={"tcb_statuses": ["OutOfDate"], "allow_unevaluated_tcb": True})
    assert _codes(strict, tdx_claims) == ["policy.tdx.tcb_status_not_allowed"]


def test_a_bare_platform_policy_does_not_admit_azure_evidence(snp_claims: VerifyResult) -> None:
    """An snp policy is for bare SNP machines: Azure SNP evidence needs azure-snp."""
    bare = '{"platforms": {"snp": {"measurement": ["' + ReportFields().measurement.hex() + '"]}}}'
    assert _codes(bare, snp_claims) == ["policy.platform.not_allowed"]


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"snp": 5, "tpm": [], "runtime_data": "x"},
        {
            "snp": {"measurement": 7},
            "tpm": {"pcrs": "all"},
            "runtime_data": {"vm_configuration": 1},
        },
    ],
)
def test_mistyped_claims_fail_closed(claims: dict[str, Any]) -> None:
    a = appraise(parse_policy(_policy("snp")), VerifyResult("azure-snp", claims), REFS)
    codes = {f.code for f in a.failures}
    assert "policy.snp.measurement_mismatch" in codes and "policy.tpm.pcr_missing" in codes
    assert "policy.azure.vm_configuration.secure_boot" in codes


def test_tdx_claims_without_the_evaluation_flag_count_as_unevaluated() -> None:
    claims = dataclasses.asdict(TdFields())  # anything without tcb_evaluated: true
    res = VerifyResult("azure-tdx", {"tdx": {"mr_td": claims["mr_td"].hex()}})
    assert "policy.azure.tcb_not_evaluated" in _codes(_policy("tdx"), res)


def test_policy_documents() -> None:
    with pytest.raises(UsageError) as e:
        parse_policy('{"platforms": {"azure-snp": {"tpm": {"ek_ca_fingerprints": ["aa"]}}}}')
    assert "ek_ca_fingerprints" in e.value.message  # the vTPM has no EK certificate chain
    with pytest.raises(UsageError) as e:
        parse_policy('{"platforms": {"azure_snp": {}}}')
    assert e.value.code == "policy.document.invalid"
    with pytest.raises(UsageError) as e:
        parse_policy('{"platforms": {"azure-snp": {"vm_configuration": {"debug": false}}}}')
    assert e.value.code == "policy.document.invalid"
    # Every component must constrain its measurement, as on its own platform.
    with pytest.raises(UsageError) as e:
        canonical('{"platforms": {"azure-snp": {"snp": {"measurement": ["' + "11" * 48 + '"]}}}}')
    assert e.value.code == "policy.document.no_measurement"
    assert "azure-snp.tpm" in e.value.message
    with pytest.raises(UsageError) as e:
        canonical('{"platforms": {"azure-tdx": {"tdx": {"allow_any_measurement": true, '
                  '"tcb_statuses": []}, "tpm": {"allow_any_measurement": true}}}}')  # fmt: skip
    assert "azure-tdx.tdx.tcb_statuses" in e.value.message
    _, p = canonical(
        '{"platforms": {"azure-tdx": {"tdx": {"allow_any_measurement": true}, '
        '"tpm": {"reference_sets": ["vtpm"]}}}}'
    )
    assert p.platforms == ["azure-tdx"] and p.any_measurement == ["azure-tdx.tdx"]
