"""The strict DER reader: accepts AMD's serial-0 certificates without warnings, refuses
non-DER and truncated input with ParseError, never anything else."""

from __future__ import annotations

import warnings

import pytest
from sealgate.errors import ChainError, ParseError
from sealgate.x509der import load_certificate, load_certificates, load_crl, verify_signature

from tests.vectors import project

VCEK = project("sev-snp", "vcek-milan.der").read_bytes()


def test_serial_zero_without_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = load_certificate(VCEK)
    assert c.serial == 0 and c.subject_cn == "SEV-VCEK" and c.issuer_cn == "SEV-Milan"


def test_signature_chain_and_crl() -> None:
    ask, ark = load_certificates(project("sev-snp", "cert_chain-milan.pem").read_bytes())
    vcek = load_certificate(VCEK)
    verify_signature(vcek.tbs, vcek.signature_alg, vcek.signature, ask.public_key(), "vcek")
    with pytest.raises(ChainError):
        verify_signature(vcek.tbs, vcek.signature_alg, vcek.signature, ark.public_key(), "vcek")
    crl = load_crl(project("sev-snp", "crl-milan.der").read_bytes())
    assert crl.issuer == ark.subject and 0x5EA1 in crl.revoked


@pytest.mark.parametrize(
    ("what", "data"),
    [
        ("empty", b""),
        ("truncated", VCEK[:-1]),
        ("trailing", VCEK + b"\x00"),
        ("indefinite length", b"\x30\x80" + VCEK[4:]),
        ("non-minimal length", b"\x30\x83\x00" + VCEK[2:]),
        ("not a sequence", b"\x31" + VCEK[1:]),
        ("bad PEM", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
    ],
)
def test_malformed(what: str, data: bytes) -> None:
    with pytest.raises(ParseError):
        load_certificates(data)
