"""The native binding (``sealgate._core``) converts and decides nothing: failures cross as
``sealgate.errors.Failure`` records, errors as the ``sealgate.errors`` exceptions, and the
decisions it exposes (product line, REPORT_DATA, CCEL and PCR replay comparison) are the
verify crate's."""

from __future__ import annotations

import hashlib

import pytest
from sealgate import _core
from sealgate.errors import Failure, ParseError, VerificationError
from sealgate.testing.eventlog import EV_IPL, LogEvent, build_event_log
from sealgate.testing.snp import SyntheticNode, ec_point
from sealgate.testing.tdx import FakeIntel


def _snp() -> tuple[SyntheticNode, _core.SnpKey]:
    node = SyntheticNode.load()
    return node, _core.SnpKey.from_sec1(ec_point(node.key))


def test_snp_failures_are_failure_records() -> None:
    node, key = _snp()
    report = bytearray(node.report(b"\x01"))
    report[0x90] ^= 1  # MEASUREMENT: the signature no longer verifies
    claims, failures = _core.verify_snp(key, bytes(report), "Genoa", b"\x02")
    assert all(type(f) is Failure for f in failures)
    assert [f.code for f in failures] == [
        "snp.report.signature_invalid",
        "snp.report.product_mismatch",
        "snp.report.report_data_mismatch",
    ]
    assert failures[1].message == "report CPUID says Milan, verification asked for Genoa"
    assert claims["product"] == "Genoa"
    parsed = _core.SnpReport.parse(bytes(report))
    sig = parsed.verify_signature(key)
    assert type(sig) is Failure and sig.code == "snp.report.signature_invalid"
    assert _core.SnpReport.parse(node.report(b"")).verify_signature(key) is None


def test_snp_decisions_without_an_endorsement_key() -> None:
    node, _ = _snp()
    r = _core.SnpReport.parse(node.report(b"\x07"))
    assert r.product() == "Milan" and r.product("Turin") == "Turin"
    claims, failures = r.check_unendorsed()
    assert failures == [] and claims["product"] == "Milan"
    claims, failures = r.check_unendorsed("Turin", "Genoa", b"\x08")
    assert claims["product"] == "Turin"
    assert [f.code for f in failures] == [
        "snp.report.product_mismatch",
        "snp.report.report_data_mismatch",
    ]
    assert failures[1].message == f"REPORT_DATA 07{'0' * 126}, expected 08{'0' * 126}"
    assert r.check_unendorsed(report_data=b"\x07")[1] == []
    # Arguments outside the API are the caller's bug: ValueError, not evidence failures.
    with pytest.raises(ValueError):
        r.check_unendorsed("Bergamo")
    with pytest.raises(ValueError):
        r.check_unendorsed(report_data=bytes(65))


def test_errors_cross_as_the_python_exceptions() -> None:
    node, key = _snp()
    with pytest.raises(ParseError) as pe:
        _core.verify_snp(key, node.report(b"")[:100])
    assert pe.value.code.startswith("snp.format.") and pe.value.field
    v4 = bytearray(node.report(b""))
    v4[0] = 4
    with pytest.raises(VerificationError) as ve:
        _core.SnpReport.parse(bytes(v4))
    assert ve.value.code == "snp.report.unsupported_version"
    with pytest.raises(VerificationError) as ve:
        _core.SnpKey.from_sec1(b"\x04" + bytes(96))
    assert ve.value.code == "snp.vcek.unsupported_key"
    with pytest.raises(VerificationError) as ve:
        _core.TdxPckKey(bytes(32), bytes(32))
    assert ve.value.code == "tdx.pck.key_invalid"
    with pytest.raises(TypeError):
        _core.check_pcr_replay({"sha256": b"not a dict"}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        _core.check_pcr_replay({"md5": {}}, {})


def test_tdx_ccel_checked_against_the_quote() -> None:
    intel = FakeIntel()
    log, expected = build_event_log(
        [LogEvent(1, EV_IPL, b"kernel"), LogEvent(3, EV_IPL, b"app")], banks=("sha384",)
    )
    rtmrs = tuple(expected["sha384"].get(i + 1, bytes(48)) for i in range(4))
    good = _core.TdxQuote.parse(intel.quote(b"c", rtmrs=rtmrs))  # type: ignore[arg-type]
    replayed, mismatch = good.check_ccel(log)
    assert mismatch is None and tuple(replayed) == rtmrs
    bad = _core.TdxQuote.parse(intel.quote(b"c"))
    replayed, mismatch = bad.check_ccel(log)
    assert type(mismatch) is Failure and mismatch.code == "tdx.ccel.replay_mismatch"
    assert mismatch.message == (
        f"CCEL replay disagrees with the quote: RTMR0 replayed {rtmrs[0].hex()} quoted "
        f"{'00' * 48}; RTMR2 replayed {rtmrs[2].hex()} quoted {'00' * 48}"
    )
    with pytest.raises(ParseError):
        bad.check_ccel(b"\x01\x02")
    wrong_index, _ = build_event_log([LogEvent(7, EV_IPL, b"x")], banks=("sha384",))
    with pytest.raises(VerificationError) as ve:
        bad.check_ccel(wrong_index)
    assert ve.value.code == "tdx.ccel.invalid_mr_index"
    q = bytearray(intel.quote(b"q"))
    q[100] ^= 1  # inside the TD quote body: the quote signature fails
    failures = _core.verify_tdx_quote(bytes(q))[1]
    assert failures and all(type(f) is Failure for f in failures)


def test_pcr_replay_mismatch_comes_from_rust() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    assert _core.check_pcr_replay({"sha256": {0: a, 9: a}}, {"sha256": {0: a, 9: a}}) is None
    # PCRs present on one side only are not compared.
    assert _core.check_pcr_replay({"sha256": {0: a}}, {"sha256": {7: b}, "sha1": {0: b}}) is None
    out = _core.check_pcr_replay({"sha256": {0: a, 9: a}}, {"sha256": {0: b, 9: b}})
    assert out is not None
    failure, pcrs = out
    assert type(failure) is Failure and pcrs == ["sha256:0", "sha256:9"]
    assert failure == (
        "tpm.eventlog.replay_mismatch",
        "event log replay disagrees with the quote for PCR sha256:0, sha256:9: "
        f"sha256:0 replayed {a.hex()} quoted {b.hex()}; "
        f"sha256:9 replayed {a.hex()} quoted {b.hex()}",
    )


def test_audit_failure_is_a_failure_record() -> None:
    entries = [b"one", b"two"]
    hashes = _core.audit_chain(entries)
    assert _core.audit_verify(entries, hashes) is None
    bad = _core.audit_verify(entries, [hashes[0], bytes(32)])
    assert bad is not None
    index, failure = bad
    assert index == 1 and type(failure) is Failure
    assert failure.code == "audit.chain.hash_mismatch"
