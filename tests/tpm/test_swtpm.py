"""Real swtpm quotes: sealgate and tpm2_checkquote (tpm2-tools as a peer) agree on good and
tampered input."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sealgate import _core, tpm
from sealgate.testing import reference
from sealgate.testing.eventlog import build_event_log, sample_boot_events
from sealgate.testing.swtpm import Quote, Swtpm, TpmKey, tools_available

pytestmark = pytest.mark.swtpm
SELECTION = "sha256:0,1,2,3,4,5,6,7,8,9+sha1:0,4"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Scenario:
    tpm: Swtpm
    ek: TpmKey
    aks: dict[str, TpmKey]
    quotes: dict[str, Quote]
    nonce: bytes
    log: bytes
    expected: dict[str, dict[int, bytes]]
    dir: Path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed")
    d = tmp_path_factory.mktemp("swtpm-scenario")
    t = Swtpm(d / "tpm")
    try:
        t.start()
        ek = t.create_ek("rsa")
        aks = {k: t.create_ak(ek, k) for k in ("rsa", "ecc")}
        log, expected = t.replay_events(sample_boot_events())
        nonce = os.urandom(32)
        quotes = {k: t.quote(ak, nonce, SELECTION) for k, ak in aks.items()}
        yield Scenario(t, ek, aks, quotes, nonce, log, expected, d)
    finally:
        t.stop()


def _files(s: Scenario, kind: str, name: str, q: Quote, ak: bytes) -> dict[str, Path]:
    out = s.tpm.write_quote(q, s.dir / f"{kind}-{name}")
    out["ak"] = out["quote"].parent / "ak.pub"
    out["ak"].write_bytes(ak)
    return out


def sealgate_cli(f: dict[str, Path], nonce: bytes, *extra: str) -> tuple[int, dict[str, object]]:
    r = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "sealgate"),
            "verify",
            "tpm",
            "--quote",
            str(f["quote"]),
            "--signature",
            str(f["signature"]),
            "--ak",
            str(f["ak"]),
            "--pcrs",
            str(f["pcrs"]),
            "--nonce",
            nonce.hex(),
            *extra,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b"Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout)


def checkquote(f: dict[str, Path], nonce: bytes) -> bool:
    r = subprocess.run(
        [
            "tpm2_checkquote",
            "-u",
            str(f["ak"]),
            "-m",
            str(f["quote"]),
            "-s",
            str(f["signature"]),
            "-f",
            str(f["pcrs"]),
            "-g",
            "sha256",
            "-q",
            nonce.hex(),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return r.returncode == 0


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _tamper_pcr(q: Quote) -> Quote:
    # First digest byte of the first TPML_DIGEST in the tpm2-tools file: 132 + 4 + 4 + 2.
    return Quote(q.message, q.signature, _flip(q.pcrs_file, 142), q.selection)


Case = Callable[[Scenario, str], tuple[Quote, bytes, bytes, str]]

CASES: dict[str, Case] = {
    "good": lambda s, k: (s.quotes[k], s.aks[k].public, s.nonce, ""),
    "nonce": lambda s, k: (
        s.quotes[k],
        s.aks[k].public,
        _flip(s.nonce, 0),
        "tpm.quote.nonce_mismatch",
    ),
    "pcr_value": lambda s, k: (
        _tamper_pcr(s.quotes[k]),
        s.aks[k].public,
        s.nonce,
        "tpm.quote.pcr_digest_mismatch",
    ),
    "signature": lambda s, k: (
        Quote(s.quotes[k].message, _flip(s.quotes[k].signature, 20), s.quotes[k].pcrs_file, ""),
        s.aks[k].public,
        s.nonce,
        "tpm.quote.signature_invalid",
    ),
    "message": lambda s, k: (
        Quote(_flip(s.quotes[k].message, 60), s.quotes[k].signature, s.quotes[k].pcrs_file, ""),
        s.aks[k].public,
        s.nonce,
        "tpm.quote.signature_invalid",
    ),
    "wrong_ak": lambda s, k: (
        s.quotes[k],
        s.aks["ecc" if k == "rsa" else "rsa"].public,
        s.nonce,
        "",
    ),
}


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_verdict_as_tpm2_checkquote(scenario: Scenario, kind: str, case: str) -> None:
    q, ak, nonce, code = CASES[case](scenario, kind)
    f = _files(scenario, kind, case, q, ak)
    rc, doc = sealgate_cli(f, nonce)
    peer = checkquote(f, nonce)
    assert (rc == 0) == peer == (case == "good"), (case, doc, peer)
    assert doc["platform"] == "tpm"
    codes = [e["code"] for e in doc["errors"]]  # type: ignore[attr-defined]
    if case == "good":
        assert rc == 0 and doc["verified"] is True and codes == []
    else:
        assert rc == 1 and doc["verified"] is False
        if code:
            assert code in codes
        else:  # wrong AK: the signature cannot verify (and the scheme may differ)
            assert "tpm.quote.signature_invalid" in codes or "tpm.quote.scheme_mismatch" in codes


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_eventlog_replay_matches_quote(scenario: Scenario, kind: str) -> None:
    q = scenario.quotes[kind]
    res = tpm.verify_quote(
        scenario.aks[kind].public,
        q.message,
        q.signature,
        eventlog=scenario.log,
        nonce=scenario.nonce,
        min_selection=tpm.parse_selection("sha256:0,4,8,9"),
    )
    assert res.errors == [], res.errors
    assert _core.replay_event_log(scenario.log) == scenario.expected
    # The reference implementation agrees with the Rust core.
    assert reference.replay(scenario.log) == scenario.expected
    pcrs = tpm.load_pcrs(q.pcrs_file)
    key = _ref_key(scenario.aks[kind])
    assert reference.verify_quote(key, q.message, q.signature, pcrs, scenario.nonce)


def _ref_key(ak: TpmKey) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    comps = _core.TpmPublic.parse(ak.public).components()
    assert comps is not None
    if comps[0] == "rsa":
        return rsa.RSAPublicNumbers(
            int.from_bytes(comps[2], "big"), int.from_bytes(comps[1], "big")
        ).public_key()
    half = len(comps[1]) // 2
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(comps[1][:half], "big"),
        int.from_bytes(comps[1][half:], "big"),
        ec.SECP256R1(),
    ).public_key()


def test_eventlog_mismatch_names_the_pcr(scenario: Scenario) -> None:
    # A log with one extra kernel-stage event: only PCR 9 differs from what was quoted.
    q = scenario.quotes["rsa"]
    evil_log, _ = build_event_log([*sample_boot_events(), *sample_boot_events(b"evil")[-1:]])
    res = tpm.verify_quote(
        scenario.aks["rsa"].public,
        q.message,
        q.signature,
        tpm.load_pcrs(q.pcrs_file),
        eventlog=evil_log,
        nonce=scenario.nonce,
    )
    assert [e.code for e in res.errors] == ["tpm.eventlog.replay_mismatch"]
    assert "sha256:9" in res.errors[0].message
    assert res.claims["replay_mismatch_pcrs"] == ["sha256:9"]


def test_ak_is_restricted_signing_and_name(scenario: Scenario) -> None:
    for ak in scenario.aks.values():
        pub = _core.TpmPublic.parse(ak.public)
        assert pub.restricted_signing is True
        assert pub.attributes == 0x00050072
        assert pub.name == ak.name  # tpm2_createak -n writes the Name


def test_ek_certificates_chain_to_the_local_ca(scenario: Scenario) -> None:
    root_pem, inter_pem = scenario.tpm.ca_certificates()
    root = x509.load_pem_x509_certificate(root_pem)
    inter = x509.load_pem_x509_certificate(inter_pem)
    inter.verify_directly_issued_by(root)
    for kind, key_type, size in (
        ("rsa", rsa.RSAPublicKey, 2048),
        ("ecc", ec.EllipticCurvePublicKey, 384),
    ):
        cert = x509.load_der_x509_certificate(scenario.tpm.ek_certificate(kind))
        cert.verify_directly_issued_by(inter)
        key = cert.public_key()
        assert isinstance(key, key_type)
        assert key.key_size == size
    # The RSA EK created with the default template is the certified key.
    cert = x509.load_der_x509_certificate(scenario.tpm.ek_certificate("rsa"))
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    comps = _core.TpmPublic.parse(scenario.ek.public).components()
    assert comps is not None and int.from_bytes(comps[1], "big") == key.public_numbers().n
