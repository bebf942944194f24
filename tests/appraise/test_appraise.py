"""Appraisal: table of claims and policy → expected failure codes."""

from __future__ import annotations

from typing import Any

import pytest
from sealgate.appraise import appraise, ear_status, parse_policy
from sealgate.errors import UsageError
from sealgate.result import VerifyResult
from sealgate.storage import ReferenceValue

P0 = "aa" * 32
P7 = "bb" * 32
REFS = [
    ReferenceValue("1", "tpm", "golden", "sha256:0", P0, "", 0),
    ReferenceValue("2", "tpm", "golden", "sha256:7", P7, "", 0),
    ReferenceValue("3", "snp", "prod", "measurement", "11" * 48, "", 0),
    ReferenceValue("4", "tdx", "prod", "mr_td", "22" * 48, "", 0),
]

TPM_POLICY = (
    '{"platforms": {"tpm": {"reference_sets": ["golden"], "required_selection": "sha256:0,7"}}}'
)
SNP_POLICY = """
platforms:
  snp:
    reference_sets: [prod]
    min_reported_tcb: {bootloader: 3, snp: 8}
    vmpl: [0]
    products: [Milan]
"""
TDX_POLICY = '{"platforms": {"tdx": {"reference_sets": ["prod"], "tcb_statuses": ["UpToDate"]}}}'


def _tpm_claims(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "pcrs": {"sha256": {"0": P0, "7": P7}},
        "pcr_selection": {"sha256": [0, 7]},
        "weak_hash": False,
        "hash_alg": "sha256",
    }
    c.update(over)
    return c


def _snp_claims(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "measurement": "11" * 48,
        "host_data": "00" * 32,
        "policy": {"debug": False},
        "vmpl": 0,
        "product": "Milan",
        "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
    }
    c.update(over)
    return c


def _tdx_claims(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "mr_td": "22" * 48,
        "td_attributes": {"debug": False},
        "tcb_status": "UpToDate",
    }
    c.update(over)
    return c


CASES: list[tuple[str, str, str, dict[str, Any], list[str]]] = [
    ("tpm ok", "tpm", TPM_POLICY, _tpm_claims(), []),
    ("tpm extra extension", "tpm", TPM_POLICY,
     _tpm_claims(pcrs={"sha256": {"0": P0, "7": "cc" * 32}}), ["policy.tpm.pcr_mismatch"]),
    ("tpm pcr not quoted", "tpm", TPM_POLICY,
     _tpm_claims(pcrs={"sha256": {"0": P0}}, pcr_selection={"sha256": [0]}),
     ["policy.tpm.pcr_missing", "policy.tpm.selection_missing"]),
    ("tpm weak", "tpm", TPM_POLICY, _tpm_claims(weak_hash=True, hash_alg="sha1"),
     ["policy.tpm.weak_hash"]),
    ("tpm refused for snp policy", "tpm", SNP_POLICY, _tpm_claims(),
     ["policy.platform.not_allowed"]),
    ("snp ok", "snp", SNP_POLICY, _snp_claims(), []),
    ("snp everything wrong", "snp", SNP_POLICY,
     _snp_claims(measurement="12" * 48, policy={"debug": True}, vmpl=2, product="Genoa",
                 reported_tcb={"bootloader": 2, "snp": 9}),
     ["policy.snp.measurement_mismatch", "policy.snp.debug_enabled",
      "policy.snp.vmpl_not_allowed", "policy.snp.product_not_allowed",
      "policy.snp.tcb_too_old"]),
    ("snp debug unknown counts as debug", "snp", SNP_POLICY, _snp_claims(policy={}),
     ["policy.snp.debug_enabled"]),
    ("tdx ok", "tdx", TDX_POLICY, _tdx_claims(), []),
    ("tdx wrong", "tdx", TDX_POLICY,
     _tdx_claims(mr_td="23" * 48, td_attributes={"debug": True}, tcb_status="OutOfDate"),
     ["policy.tdx.mr_td_mismatch", "policy.tdx.debug_enabled",
      "policy.tdx.tcb_status_not_allowed"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "platform", "policy", "claims", "codes"), CASES)
def test_appraisal_table(
    name: str, platform: str, policy: str, claims: dict[str, Any], codes: list[str]
) -> None:
    res = VerifyResult(platform=platform, claims=claims)
    a = appraise(parse_policy(policy), res, REFS)
    assert [f.code for f in a.failures] == codes, name
    assert a.ok == (not codes)
    if not codes:
        assert ear_status(a.vector) == "affirming"
    else:
        assert ear_status(a.vector) in ("warning", "contraindicated")


def test_mismatch_names_pcr_with_actual_and_expected() -> None:
    res = VerifyResult("tpm", _tpm_claims(pcrs={"sha256": {"0": P0, "7": "cc" * 32}}))
    a = appraise(parse_policy(TPM_POLICY), res, REFS)
    f = a.failures[0]
    assert "sha256:7" in f.message and f.actual == "cc" * 32 and f.expected == P7
    assert a.vector["executables"] == 33


def test_unverified_evidence_never_passes() -> None:
    res = VerifyResult("tpm", _tpm_claims())
    res.fail("tpm.quote.signature_invalid", "bad signature")
    a = appraise(parse_policy(TPM_POLICY), res, REFS)
    assert [f.code for f in a.failures] == ["tpm.quote.signature_invalid"]
    assert ear_status(a.vector) == "contraindicated"


def test_empty_reference_set_fails_closed() -> None:
    a = appraise(parse_policy(TPM_POLICY), VerifyResult("tpm", _tpm_claims()), [])
    assert [f.code for f in a.failures] == ["policy.tpm.no_reference_values"]


@pytest.mark.parametrize(
    "doc",
    [
        "[]",
        "{}",
        '{"platforms": {}}',
        '{"platforms": {"sgx": {}}}',
        '{"platforms": {"tpm": {"pcr": {}}}}',
        '{"platforms": {"tpm": {"pcrs": {"sha256": {"99": ["00"]}}}}}',
        '{"platforms": {"tpm": {"pcrs": {"sha256": {"1": ["zz"]}}}}}',
        '{"platforms": {"tpm": {"required_selection": "md5:1"}}}',
        '{"platforms": {"snp": {"allow_debug": "no"}}}',
        '{"platforms": {"snp": {"min_reported_tcb": {"bogus": 1}}}}',
        "platforms: [",
    ],
)
def test_bad_policies_refused(doc: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_policy(doc)
    assert e.value.code == "policy.document.invalid"


# -- empty requirements are not permissions ------------------------------------------------

NO_MEASUREMENT = [
    '{"platforms": {"tpm": {}}}',
    '{"platforms": {"snp": {}}}',
    '{"platforms": {"tdx": {}}}',
    '{"platforms": {"tpm": {"required_selection": "sha256:0,7"}}}',
    '{"platforms": {"tpm": {"pcrs": {"sha256": {"7": []}}}}}',
    '{"platforms": {"snp": {"host_data": ["00"], "products": ["Milan"]}}}',
    '{"platforms": {"snp": {"measurement": []}}}',
    '{"platforms": {"tdx": {"mr_config_id": ["00"], "tcb_statuses": ["UpToDate"]}}}',
    '{"platforms": {"tdx": {"mr_td": []}}}',
    '{"platforms": {"tpm": {"reference_sets": ["golden"]}, "snp": {"vmpl": [0]}}}',
]


@pytest.mark.parametrize("doc", NO_MEASUREMENT)
def test_policy_without_measurement_refused_when_written(doc: str) -> None:
    from sealgate.appraise.policy import canonical_json

    with pytest.raises(UsageError) as e:
        canonical_json(doc)
    assert e.value.code == "policy.document.no_measurement"
    # The stored-policy reader still parses it: appraisal refuses it instead (below).
    parse_policy(doc)


@pytest.mark.parametrize(
    "doc",
    [
        '{"platforms": {"tpm": {"allow_any_measurement": true}}}',
        '{"platforms": {"snp": {"allow_any_measurement": true, "products": ["Milan"]}}}',
        '{"platforms": {"tdx": {"allow_any_measurement": true}}}',
        '{"platforms": {"tpm": {"pcrs": {"sha256": {"7": ["aa"]}}}}}',
        '{"platforms": {"snp": {"measurement": ["aa"]}}}',
        '{"platforms": {"tdx": {"rtmr2": ["aa"]}}}',
        '{"platforms": {"snp": {"reference_sets": ["prod"]}}}',
    ],
)
def test_explicit_or_constrained_policies_written(doc: str) -> None:
    from sealgate.appraise.policy import canonical_json

    canonical_json(doc)


APPRAISE_EMPTY: list[tuple[str, str, dict[str, Any], list[ReferenceValue], list[str]]] = [
    # Stored before the write-time check: nothing constrains the measurement.
    ("tpm", '{"platforms": {"tpm": {}}}', _tpm_claims(), REFS, ["policy.tpm.no_measurement"]),
    ("snp", '{"platforms": {"snp": {}}}', _snp_claims(), REFS, ["policy.snp.no_measurement"]),
    ("tdx", '{"platforms": {"tdx": {}}}', _tdx_claims(), REFS, ["policy.tdx.no_measurement"]),
    # A set holding only host_data leaves the launch digest unchecked.
    ("snp", '{"platforms": {"snp": {"reference_sets": ["hd"]}}}', _snp_claims(),
     [ReferenceValue("5", "snp", "hd", "host_data", "00" * 32, "", 0)],
     ["policy.snp.no_reference_values"]),
    # A set holding only mr_config_id measures no code.
    ("tdx", '{"platforms": {"tdx": {"reference_sets": ["cfg"]}}}', _tdx_claims(mr_config_id="00"),
     [ReferenceValue("6", "tdx", "cfg", "mr_config_id", "00", "", 0)],
     ["policy.tdx.no_reference_values"]),
    ("snp", '{"platforms": {"snp": {"reference_sets": ["prod"]}}}', _snp_claims(), [],
     ["policy.snp.no_reference_values"]),
    ("tdx", '{"platforms": {"tdx": {"reference_sets": ["prod"]}}}', _tdx_claims(), [],
     ["policy.tdx.no_reference_values"]),
    # Explicitly any measurement: granted.
    ("snp", '{"platforms": {"snp": {"allow_any_measurement": true}}}', _snp_claims(), [], []),
    ("tpm", '{"platforms": {"tpm": {"allow_any_measurement": true}}}', _tpm_claims(), [], []),
    ("tdx", '{"platforms": {"tdx": {"allow_any_measurement": true}}}', _tdx_claims(), [], []),
    # ... but named sets that hold nothing still fail closed.
    ("tpm", '{"platforms": {"tpm": {"reference_sets": ["x"], "allow_any_measurement": true}}}',
     _tpm_claims(), REFS, ["policy.tpm.no_reference_values"]),
    # Unset tcb_statuses means UpToDate only.
    ("tdx", '{"platforms": {"tdx": {"mr_td": ["' + "22" * 48 + '"]}}}',
     _tdx_claims(tcb_status="OutOfDate"), [], ["policy.tdx.tcb_status_not_allowed"]),
    ("tdx", '{"platforms": {"tdx": {"mr_td": ["' + "22" * 48 + '"]}}}',
     _tdx_claims(tcb_status="SWHardeningNeeded"), [], ["policy.tdx.tcb_status_not_allowed"]),
    ("tdx", '{"platforms": {"tdx": {"mr_td": ["' + "22" * 48 + '"]}}}', _tdx_claims(), [], []),
    ("tdx", '{"platforms": {"tdx": {"mr_td": ["' + "22" * 48 + '"], '
     '"tcb_statuses": ["UpToDate", "SWHardeningNeeded"]}}}',
     _tdx_claims(tcb_status="SWHardeningNeeded"), [], []),
]  # fmt: skip


@pytest.mark.parametrize(("platform", "policy", "claims", "refs", "codes"), APPRAISE_EMPTY)
def test_empty_requirements_fail_closed(
    platform: str,
    policy: str,
    claims: dict[str, Any],
    refs: list[ReferenceValue],
    codes: list[str],
) -> None:
    a = appraise(parse_policy(policy), VerifyResult(platform, claims), refs)
    assert [f.code for f in a.failures] == codes
    assert a.ok == (not codes)


def test_empty_tcb_statuses_refused_and_never_any() -> None:
    from sealgate.appraise.policy import canonical_json

    doc = '{"platforms": {"tdx": {"mr_td": ["' + "22" * 48 + '"], "tcb_statuses": []}}}'
    with pytest.raises(UsageError) as e:
        canonical_json(doc)
    assert e.value.code == "policy.document.invalid"
    # Stored before this check: it accepts no status, not every status.
    a = appraise(parse_policy(doc), VerifyResult("tdx", _tdx_claims()), [])
    assert [f.code for f in a.failures] == ["policy.tdx.tcb_status_not_allowed"]
