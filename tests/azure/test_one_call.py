"""The steady-state path (the VCEK chain in memory: the SNP report verified inside the one
Rust call, ``_core.verify_azure``) gives exactly the result of the first verification (the
chain verified in Python, the report through ``sealgate.snp.verify_report``): the same
codes in the same order, the same messages and claims, for genuine and altered evidence."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sealgate import _core, azure
from sealgate.azure import AzureEvidence

from tests.azure.common import AT, CHALLENGE, codes, edit_runtime, snp_v2, snp_v3, verifier

SNP_REPORT = 32
MEASUREMENT = 0x90


def flip(b: bytes, at: int) -> bytes:
    return b[:at] + bytes([b[at] ^ 0x01]) + b[at + 1 :]


def _pcr(ev: AzureEvidence) -> AzureEvidence:
    assert ev.pcrs is not None
    ev.pcrs = {"sha256": dict(ev.pcrs["sha256"])}
    ev.pcrs["sha256"][7] = bytes(32)
    return ev


def _signature(ev: AzureEvidence) -> AzureEvidence:
    assert ev.signature is not None
    ev.signature = flip(ev.signature, 100)
    return ev


def _other_vms_quote(ev: AzureEvidence) -> AzureEvidence:
    other = snp_v2()
    return dataclasses.replace(ev, quote=other.quote, signature=other.signature, pcrs=other.pcrs)


VARIANTS: dict[str, Callable[[AzureEvidence], AzureEvidence]] = {
    "genuine": lambda ev: ev,
    "runtime_data_altered": lambda ev: dataclasses.replace(
        ev, hcl_report=edit_runtime(ev.hcl_report, {"vm-configuration": {"secure-boot": True}})
    ),
    "runtime_data_without_ak": lambda ev: dataclasses.replace(
        ev, hcl_report=edit_runtime(ev.hcl_report, {"keys": []})
    ),
    "runtime_data_not_json": lambda ev: dataclasses.replace(
        ev, hcl_report=flip(ev.hcl_report, 1236)
    ),
    "measurement_altered": lambda ev: dataclasses.replace(
        ev, hcl_report=flip(ev.hcl_report, SNP_REPORT + MEASUREMENT)
    ),
    "report_data_altered": lambda ev: dataclasses.replace(
        ev, hcl_report=flip(ev.hcl_report, SNP_REPORT + 0x50 + 40)
    ),
    "quote_signature_altered": _signature,
    "pcr_altered": _pcr,
    "pcrs_absent": lambda ev: dataclasses.replace(ev, pcrs=None),
    "quote_of_another_vm": _other_vms_quote,
    "quote_not_tpms_attest": lambda ev: dataclasses.replace(ev, quote=b"\xff\x54\x43\x47"),
    "signature_not_tpmt": lambda ev: dataclasses.replace(ev, signature=b"\x00\x14"),
    "signature_missing": lambda ev: dataclasses.replace(ev, signature=None),
    "quote_missing": lambda ev: dataclasses.replace(ev, quote=None, signature=None),
    "eventlog_garbage": lambda ev: dataclasses.replace(ev, eventlog=b"not an event log"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("user_data", [None, b"\x01" * 64])
def test_chain_in_memory_gives_the_first_verifications_result(
    tmp_path: Path, name: str, user_data: bytes | None
) -> None:
    ev = VARIANTS[name](snp_v3())
    first = verifier(tmp_path).verify(ev, nonce=CHALLENGE, user_data=user_data, at=AT)
    warm = verifier(tmp_path)
    assert warm.verify(snp_v3(), nonce=CHALLENGE, at=AT).verified
    assert ev.vcek is not None
    hit = warm.snp.cached_entry(
        ev.vcek,
        cert_chain=ev.cert_chain,
        roots=warm.snp_roots,
        at=AT,
        trust_dir=tmp_path,
        cache_dir=None,
    )
    assert hit is not None, "the steady-state path is not taken"
    steady = warm.verify(ev, nonce=CHALLENGE, user_data=user_data, at=AT)
    assert steady.as_dict() == first.as_dict()
    if name == "genuine" and user_data is None:
        assert steady.verified
    else:
        assert not steady.verified


def test_failures_keep_the_order_of_the_chain_of_checks(tmp_path: Path) -> None:
    """Runtime data, hardware report, binding, event log, quote, user data: in that order
    whichever path verified the hardware report."""
    ev = snp_v3()
    assert ev.signature is not None
    ev.hcl_report = flip(edit_runtime(ev.hcl_report, {"user-data": "02" * 64}), 32 + 0x90)
    ev.signature = flip(ev.signature, 7)
    ev.eventlog = b"\x00" * 8
    v = verifier(tmp_path)
    for _ in range(2):  # the chain verified, then in memory
        res = v.verify(ev, nonce=CHALLENGE, user_data=b"\x01" * 64, at=AT)
        got = codes(res)
        assert got[0] == "snp.report.signature_invalid"
        assert got[1] == "azure.hcl.report_data_mismatch"
        assert got[2].startswith("tpm.")  # the event log that does not parse
        assert got[-2:] == ["tpm.quote.signature_invalid", "azure.runtime_data.user_data_mismatch"]


def test_one_call_refuses_what_python_refuses(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        _core.verify_azure(snp_v3().hcl_report, user_data=bytes(65))
    res = verifier(tmp_path).verify(
        AzureEvidence(hcl_report=b"HCLA" + bytes(100)), nonce=CHALLENGE, at=AT
    )
    assert res.platform == "azure" and codes(res) == ["azure.hcl.truncated"]


def _rfc7638(n: bytes, e: bytes) -> str:
    def b64u(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    canon = json.dumps({"e": b64u(e), "kty": "RSA", "n": b64u(n)}, separators=(",", ":"))
    return b64u(hashlib.sha256(canon.encode()).digest())


def test_ak_and_thumbprint_kept_by_key_bytes() -> None:
    """The runtime data parsed alone and inside the one call agree on the AK's RFC 7638
    thumbprint (the kept entry is keyed by the key's bytes, not by who asked first)."""
    ev = snp_v3()
    rt = azure.RuntimeData.parse(azure.parse_hcl_report(ev.hcl_report).runtime_data)
    out = _core.verify_azure(ev.hcl_report)
    assert out[2] is not None
    assert out[2]["ak_jwk_thumbprint"] == rt.ak.thumbprint == _rfc7638(rt.ak.n, rt.ak.e)
    assert out[2]["ek_jwk_thumbprint"] == (rt.ek.thumbprint if rt.ek else None)
    other = azure.RuntimeData.parse(azure.parse_hcl_report(snp_v2().hcl_report).runtime_data)
    assert other.ak.thumbprint != rt.ak.thumbprint
