"""One appraiser per platform, registered in one place, reading typed claims."""

from __future__ import annotations

from typing import Any

import pytest
from sealgate.appraise import appraise, parse_policy
from sealgate.appraise.evaluate import APPRAISERS
from sealgate.appraise.policy import PLATFORMS
from sealgate.result import VerifyResult
from sealgate.service.platforms import CLAIMS, IDENTITY_KINDS, default_verifiers


def test_every_platform_is_registered_everywhere() -> None:
    """Adding a platform means its package, its appraiser and its verifier: a platform a
    policy may name but nothing appraises (or verifies) would be a hole."""
    assert set(APPRAISERS) == set(PLATFORMS)
    assert all(name == a.platform for name, a in APPRAISERS.items())
    assert {v.name for v in default_verifiers()} == set(PLATFORMS)
    assert set(CLAIMS) == set(IDENTITY_KINDS) == set(PLATFORMS)


POLICIES = {
    "tpm": '{"platforms": {"tpm": {"pcrs": {"sha256": {"0": ["' + "aa" * 32 + '"]}}}}}',
    "snp": '{"platforms": {"snp": {"measurement": ["' + "11" * 48 + '"]}}}',
    "tdx": '{"platforms": {"tdx": {"mr_td": ["' + "22" * 48 + '"]}}}',
}
MISTYPED: dict[str, dict[str, Any]] = {
    "tpm": {"pcrs": {"sha256": {"0": 5}}, "pcr_selection": "sha256:0"},
    "snp": {"measurement": "11" * 48, "policy": "debug=false", "reported_tcb": [3]},
    "tdx": {"mr_td": "22" * 48, "td_attributes": ["debug"], "tcb_status": ["UpToDate"]},
}
EXPECTED = {
    "tpm": ["policy.tpm.pcr_missing"],
    "snp": ["policy.snp.debug_enabled"],
    "tdx": ["policy.tdx.debug_enabled", "policy.tdx.tcb_status_not_allowed"],
}


@pytest.mark.parametrize("platform", sorted(POLICIES))
def test_mistyped_claims_fail_closed(platform: str) -> None:
    """Claims of the wrong shape read as absent and fail, never as a crash or a grant."""
    a = appraise(parse_policy(POLICIES[platform]), VerifyResult(platform, MISTYPED[platform]))
    assert [f.code for f in a.failures] == EXPECTED[platform]
