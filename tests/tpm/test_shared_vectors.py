"""Published TPM vectors (tests/vectors.py ``shared``); skipped when absent."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from sealgate import _core, tpm
from sealgate.testing import reference

from tests.vectors import shared

BANKS = ["sha1", "sha256", "sha384"]
LOGS = [
    "rhel8-uefi.bin",
    "ubuntu-2104-no-secure-boot.bin",
    "glinux-alex.bin",
    "debian-10.bin",
    "cos-101-amd-sev.bin",
    "eventlogwithsp800155.bin",
    "sb_cert_eventlog",
]


def gce(name: str) -> bytes:
    return shared("tpm", "gce-cos85-attestation", "derived", name).read_bytes()


@pytest.mark.parametrize("bank", BANKS)
def test_gce_quote_verifies_in_every_bank(bank: str) -> None:
    pcrs = tpm.load_pcrs(gce("quoted_pcrs.json"))
    res = tpm.verify_quote(
        gce("ak_pub.tpmt_public"),
        gce(f"quote_{bank}.tpms_attest"),
        gce(f"quote_{bank}.tpmt_signature"),
        pcrs,
        eventlog=gce("event_log.bin"),
        nonce=b"",
        min_selection=[(bank, list(range(24)))],
    )
    assert res.errors == []
    c = res.claims
    assert c["nonce"] == ""
    assert c["pcr_selection"] == {bank: list(range(24))}
    assert c["signature_scheme"] == "rsassa" and c["hash_alg"] == "sha256"
    assert c["ak_restricted"] is True
    assert c["pcrs"][bank] == {str(i): pcrs[bank][i].hex() for i in range(24)}


@pytest.mark.parametrize("bank", BANKS)
def test_gce_quote_with_pcrs_from_replay_only(bank: str) -> None:
    # Without --pcrs the values come from the log; PCRs 10..23 the log never extends hold
    # their reset values, which is what this VM quoted except for PCR 10... so the digest
    # must disagree unless the quoted values for those PCRs are reset values.
    quoted = tpm.load_pcrs(gce("quoted_pcrs.json"))[bank]
    log_pcrs = _core.replay_event_log(gce("event_log.bin"))[bank]
    expect_ok = all(quoted[i] == log_pcrs.get(i, tpm.reset_value(bank, i)) for i in range(24))
    res = tpm.verify_quote(
        gce("ak_pub.tpmt_public"),
        gce(f"quote_{bank}.tpms_attest"),
        gce(f"quote_{bank}.tpmt_signature"),
        eventlog=gce("event_log.bin"),
    )
    assert res.verified is expect_ok
    if not expect_ok:
        assert [e.code for e in res.errors] == ["tpm.quote.pcr_digest_mismatch"]


def test_gce_ak_certificate_chain() -> None:
    ak = _core.TpmPublic.parse(gce("ak_pub.tpmt_public"))
    cert = x509.load_der_x509_certificate(gce("ak_cert.der"))
    inter = x509.load_der_x509_certificate(
        shared("tpm", "gce-ca-certs", "tpm_ek_intermediate_2.crt").read_bytes()
    )
    root = x509.load_der_x509_certificate(
        shared("tpm", "gce-ca-certs", "tpm_ek_root_1.cer").read_bytes()
    )
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    comps = ak.components()
    assert comps is not None
    assert key.public_numbers().n == int.from_bytes(comps[1], "big")
    cert.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root)


def test_gce_wrong_nonce_rejected() -> None:
    res = tpm.verify_quote(
        gce("ak_pub.tpmt_public"),
        gce("quote_sha256.tpms_attest"),
        gce("quote_sha256.tpmt_signature"),
        tpm.load_pcrs(gce("quoted_pcrs.json")),
        nonce=b"\x01" * 32,
    )
    assert [e.code for e in res.errors] == ["tpm.quote.nonce_mismatch"]


@pytest.mark.parametrize("name", LOGS)
def test_eventlog_replays_to_expected(name: str) -> None:
    path = shared("tpm", "eventlogs", name)
    expected = json.loads(shared("tpm", "eventlogs", "expected_pcrs.json").read_text())[name]
    got = _core.replay_event_log(path.read_bytes())
    compared = 0
    for bank in ("sha1", "sha256"):
        for idx, value in expected.get(bank, {}).items():
            i = int(idx)
            if i in got.get(bank, {}):
                assert got[bank][i].hex() == value, f"{bank}:{i}"
                compared += 1
            else:
                # PCRs this log never extends: reset values, or IMA's PCR 10 (see the note).
                assert value in (tpm.reset_value(bank, i).hex(),) or i == 10
    assert compared >= 4
    # The independent pure-Python replay agrees on every bank and PCR.
    assert reference.replay(path.read_bytes()) == got


def test_startup_locality_log() -> None:
    log = _core.parse_event_log(shared("tpm", "eventlogs", "glinux-alex.bin").read_bytes())
    assert log.startup_locality == 3


def test_sp800155_events_are_skipped() -> None:
    data = shared("tpm", "eventlogs", "eventlogwithsp800155.bin").read_bytes()
    log = _core.parse_event_log(data)
    sp = [e for e in log.events if e[3] == 3 and e[5].startswith(b"SP800-155 Event3")]
    assert len(sp) == 2
