"""Published TDX vectors (tests/vectors.py ``shared``) give their documented outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sealgate import _core, tdx
from sealgate.result import VerifyResult

from tests.vectors import shared

pytestmark = pytest.mark.shared

EMR_T = datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)
V5_T = datetime(2026, 3, 1, tzinfo=UTC)
SPR_T = datetime(2023, 7, 1, tzinfo=UTC)


def roots() -> list[bytes]:
    return [shared("tdx", "roots", "Intel_SGX_Root_CA.der").read_bytes()]


def emr() -> tuple[bytes, tdx.TdxCollateral]:
    q = shared("tdx", "dcapqvl-emr-v4", "tdx_quote").read_bytes()
    c = tdx.load_collateral_json(
        shared("tdx", "dcapqvl-emr-v4", "tdx_quote_collateral.json").read_bytes()
    )
    return q, c


def spr_files() -> dict[str, bytes]:
    d = "trustee-spr-v4-with-pcs2023"
    return {
        "quote": shared("tdx", d, "tdx_quote_4.dat").read_bytes(),
        "tcb": shared("tdx", d, "sample_tcbInfo_response").read_bytes(),
        "qe": shared("tdx", d, "sample_qeIdentity_response").read_bytes(),
        "chain": shared("tdx", d, "tcb_signing_chain_2018-2025.pem").read_bytes(),
        "pckcrl": shared("tdx", d, "pckcrl").read_bytes(),
        "rootcrl": shared("tdx", d, "rootcrl.der").read_bytes(),
    }


def spr_collateral(f: dict[str, bytes]) -> tdx.TdxCollateral:
    return tdx.load_collateral_files(f["tcb"], f["qe"], f["chain"], f["pckcrl"], f["rootcrl"])


def codes(r: VerifyResult) -> list[str]:
    return [e.code for e in r.errors]


def test_emr_v4_up_to_date() -> None:
    q, c = emr()
    r = tdx.verify_quote(q, collateral=c, roots=roots(), at=EMR_T)
    assert r.verified, r.errors
    cl = r.claims
    assert cl["tcb_status"] == "UpToDate"
    assert cl["advisory_ids"] == []
    assert cl["qe_status"] == "UpToDate"
    assert cl["fmspc"] == "b0c06f000000"
    assert cl["version"] == 4
    assert cl["trailing_bytes"] == 70
    assert cl["tee_tcb_svn"] == "06010300000000000000000000000000"
    assert cl["mr_td"].startswith("91eb2b44d141d4ec")
    assert cl["td_attributes"]["debug"] is False
    assert cl["xfam"] == "e702060000000000"


def test_emr_v4_expired_today() -> None:
    q, c = emr()
    r = tdx.verify_quote(q, collateral=c, roots=roots())
    assert not r.verified
    assert set(codes(r)) == {"tdx.collateral.expired"}


def test_emr_before_window_not_yet_valid() -> None:
    q, c = emr()
    r = tdx.verify_quote(q, collateral=c, roots=roots(), at=datetime(2025, 6, 1, tzinfo=UTC))
    assert "tdx.collateral.not_yet_valid" in codes(r)


def test_v5_no_matching_level() -> None:
    d = "dcapqvl-v5-tcb-unsupported"
    q = shared("tdx", d, "tdx_quote_outdated").read_bytes()
    c = tdx.load_collateral_json(
        shared("tdx", d, "tdx_quote_outdated_collateral.json").read_bytes()
    )
    r = tdx.verify_quote(q, collateral=c, roots=roots(), at=V5_T)
    assert codes(r) == ["tdx.tcb.no_matching_level"]
    assert r.claims["version"] == 5
    assert r.claims["tee_tcb_svn2"] == "0d010300000000000000000000000000"
    assert len(r.claims["mr_service_td"]) == 96
    assert r.claims["qe_status"] == "UpToDate"
    assert r.claims["fmspc"] == "90c06f000000"


def test_spr_pcs_files_up_to_date_debug_flagged() -> None:
    f = spr_files()
    r = tdx.verify_quote(f["quote"], collateral=spr_collateral(f), roots=roots(), at=SPR_T)
    assert r.verified, r.errors
    assert r.claims["tcb_status"] == "UpToDate"
    assert r.claims["qe_status"] == "UpToDate"
    assert r.claims["td_attributes"]["debug"] is True
    assert r.claims["fmspc"] == "50806f000000"
    assert r.claims["pck_ca"] == "platform"
    assert r.claims["platform_instance_id"] == "021ac64d355ba904e2d5948d228d5482"


def test_spr_missing_crl() -> None:
    f = spr_files()
    c = tdx.load_collateral_files(f["tcb"], f["qe"], f["chain"])
    r = tdx.verify_quote(f["quote"], collateral=c, roots=roots(), at=SPR_T)
    assert set(codes(r)) == {"tdx.collateral.crl_missing"}
    r = tdx.verify_quote(f["quote"], collateral=c, roots=roots(), at=SPR_T, allow_missing_crl=True)
    assert r.verified


def test_gce_ccel_replays_to_rtmrs() -> None:
    d = "gce-cos113-ccel"
    expected = json.loads(shared("tdx", d, "expected_rtmrs.json").read_text())
    ccel = shared("tdx", d, "ccel_data.dat").read_bytes()
    replayed = tdx.replay_ccel(ccel)
    q = _core.TdxQuote.parse(shared("tdx", d, "cos-113-tdx-quote.dat").read_bytes())
    assert replayed == q.rtmrs
    for i in range(3):
        key = next(k for k in expected if k.lower() in (f"rtmr{i}", f"rtmr_{i}"))
        assert replayed[i].hex() == expected[key]
    r = tdx.verify_quote(
        shared("tdx", d, "cos-113-tdx-quote.dat").read_bytes(), roots=roots(), ccel=ccel
    )
    # No collateral ships with this vector: signatures, chain and the CCEL all pass.
    assert codes(r) == ["tdx.collateral.missing"]
    assert r.claims["trailing_bytes"] == 3065
    # Flip one byte of the SHA-384 digest of the first event extending RTMR1 (MR index 2):
    # TCG_PCR_EVENT2 = pcrIndex(4) eventType(4) count(4) hashAlg(2) digest(48) ...
    log = _core.parse_event_log(ccel, "tdx")
    off = next(e[1] for e in log.events if e[2] == 2 and e[3] != 3)
    bad = bytearray(ccel)
    bad[off + 14] ^= 1
    mutated = tdx.verify_quote(
        shared("tdx", d, "cos-113-tdx-quote.dat").read_bytes(), roots=roots(), ccel=bytes(bad)
    )
    assert codes(mutated) == ["tdx.ccel.replay_mismatch", "tdx.collateral.missing"]
    assert "RTMR1" in mutated.errors[0].message


def test_fmspc_mismatch() -> None:
    f = spr_files()
    _, c = emr()
    r = tdx.verify_quote(f["quote"], collateral=c, roots=roots(), at=EMR_T)
    assert "tdx.collateral.fmspc_mismatch" in codes(r)


def test_tampered_collateral_text() -> None:
    q, _ = emr()
    doc = json.loads(shared("tdx", "dcapqvl-emr-v4", "tdx_quote_collateral.json").read_bytes())
    doc["tcb_info"] = doc["tcb_info"].replace(
        '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18'
    )
    r = tdx.verify_quote(
        q, collateral=tdx.load_collateral_json(json.dumps(doc).encode()), roots=roots(), at=EMR_T
    )
    assert codes(r) == ["tdx.collateral.signature_invalid"]
    doc = json.loads(shared("tdx", "dcapqvl-emr-v4", "tdx_quote_collateral.json").read_bytes())
    sig = bytearray(bytes.fromhex(doc["qe_identity_signature"]))
    sig[5] ^= 1
    doc["qe_identity_signature"] = sig.hex()
    r = tdx.verify_quote(
        q, collateral=tdx.load_collateral_json(json.dumps(doc).encode()), roots=roots(), at=EMR_T
    )
    assert codes(r) == ["tdx.collateral.signature_invalid"]


def test_pcs_body_whitespace_is_signed_text() -> None:
    """Re-serialising the tcbInfo (here: adding a space inside) breaks its signature."""
    f = spr_files()
    body = f["tcb"].replace(b'"version":3,', b'"version": 3,', 1)
    c = tdx.load_collateral_files(body, f["qe"], f["chain"], f["pckcrl"], f["rootcrl"])
    r = tdx.verify_quote(f["quote"], collateral=c, roots=roots(), at=SPR_T)
    assert codes(r) == ["tdx.collateral.signature_invalid"]


def test_wrong_root() -> None:
    q, c = emr()
    other = shared("sev-snp", "roots", "virtee-builtin", "milan_ark.pem").read_bytes()
    r = tdx.verify_quote(q, collateral=c, roots=[other], at=EMR_T)
    assert codes(r)[0] == "tdx.pck.chain_invalid"
    r = tdx.verify_quote(q, collateral=c, roots=[], at=EMR_T)
    assert codes(r)[0] == "tdx.pck.chain_invalid"


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (0x30 + 100, "tdx.quote.signature_invalid"),  # TD body (MRSEAM area)
        (0x30 + 520, "tdx.quote.signature_invalid"),  # report_data
        (20, "tdx.quote.signature_invalid"),  # header QE vendor id ...
        (20, "tdx.quote.unsupported_qe_vendor"),  # ... which must be Intel's
        (632 + 4 + 10, "tdx.quote.signature_invalid"),  # the quote signature itself
        (632 + 4 + 70, "tdx.quote.signature_invalid"),  # attestation key (binding too)
        (632 + 4 + 134 + 5, "tdx.qe.signature_invalid"),  # QE report cpusvn
        (632 + 4 + 134 + 330, "tdx.qe.binding_mismatch"),  # QE report data
        (632 + 4 + 134 + 384 + 3, "tdx.qe.signature_invalid"),  # QE report signature
        (632 + 4 + 134 + 384 + 64 + 2 + 4, "tdx.qe.binding_mismatch"),  # QE auth data
    ],
)
def test_changed_signed_byte(offset: int, code: str) -> None:
    q, c = emr()
    b = bytearray(q)
    b[offset] ^= 0x01
    r = tdx.verify_quote(bytes(b), collateral=c, roots=roots(), at=EMR_T)
    assert code in codes(r), codes(r)


def test_truncated_quote() -> None:
    q, c = emr()
    r = tdx.verify_quote(q[:700], collateral=c, roots=roots(), at=EMR_T)
    assert codes(r) == ["tdx.format.truncated"]


def test_peer_dcap_qvl_same_verdicts() -> None:
    """dcap-qvl (Phala) reaches the same verdict on every shared vector with collateral.

    dcap-qvl refuses debug TDs inside verification; sealgate verifies the quote and flags
    ``td_attributes.debug`` for policy, so the comparable verdict is "verified and not debug".
    (gce-cos113-ccel ships no collateral, so neither verifier can give a full verdict.)
    """
    dcap_qvl = pytest.importorskip("dcap_qvl")
    from sealgate.tdx.collateral import to_json

    f = spr_files()
    spr_doc = json.loads(to_json(spr_collateral(f)))
    spr_doc["pck_crl_issuer_chain"] = spr_doc["tcb_info_issuer_chain"]
    spr_json = json.dumps(spr_doc).encode()
    d5 = "dcapqvl-v5-tcb-unsupported"
    cases = [
        (
            shared("tdx", "dcapqvl-emr-v4", "tdx_quote").read_bytes(),
            shared("tdx", "dcapqvl-emr-v4", "tdx_quote_collateral.json").read_bytes(),
            EMR_T,
            True,
        ),
        (
            shared("tdx", "dcapqvl-emr-v4", "tdx_quote").read_bytes(),
            shared("tdx", "dcapqvl-emr-v4", "tdx_quote_collateral.json").read_bytes(),
            datetime.now(UTC),
            False,
        ),
        (
            shared("tdx", d5, "tdx_quote_outdated").read_bytes(),
            shared("tdx", d5, "tdx_quote_outdated_collateral.json").read_bytes(),
            V5_T,
            False,
        ),
        (f["quote"], spr_json, SPR_T, False),
        (f["quote"], spr_json, datetime.now(UTC), False),
    ]
    for q, raw, t, expect in cases:
        ours = tdx.verify_quote(q, collateral=tdx.load_collateral_json(raw), roots=roots(), at=t)
        ours_ok = ours.verified and not ours.claims["td_attributes"]["debug"]
        try:
            rep = dcap_qvl.verify(
                q, dcap_qvl.QuoteCollateralV3.from_json(raw.decode()), int(t.timestamp())
            )
            theirs = rep.status == "UpToDate"
        except ValueError:
            theirs = False
        assert ours_ok == theirs == expect, (t, [e.code for e in ours.errors])
