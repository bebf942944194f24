"""Hostile bytes never escape as anything but a result with failures (or a ParseError)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate.errors import ParseError
from sealgate.pki import load_certificate, load_crl
from sealgate.snp import verify_report
from sealgate.snp.certtable import parse_cert_table
from sealgate.testing.snp import VALID_AT

from tests.vectors import project

VCEK = project("sev-snp", "vcek-milan.der").read_bytes()
CHAIN = project("sev-snp", "cert_chain-milan.pem").read_bytes()
REPORT = project("sev-snp", "report-v5.bin").read_bytes()
ARK = project("sev-snp", "ark-milan.pem").read_bytes()
CRL = project("sev-snp", "crl-milan.der").read_bytes()
NO_TRUST = Path("/nonexistent/sealgate-trust")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_report_bytes(data: bytes) -> None:
    res = verify_report(
        data, vcek=VCEK, cert_chain=CHAIN, roots=[ARK], at=VALID_AT, trust_dir=NO_TRUST
    )
    assert not res.verified


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VCEK) - 1), st.integers(0, 255), st.integers(0, len(VCEK)))
def test_mutated_vcek(pos: int, val: int, cut: int) -> None:
    assert verify_report(
        REPORT, vcek=VCEK, cert_chain=CHAIN, roots=[ARK], at=VALID_AT, trust_dir=NO_TRUST
    ).verified
    b = bytearray(VCEK)
    b[pos] = val
    for data in (bytes(b), VCEK[:cut]):
        try:
            load_certificate(data)
        except ParseError:
            pass
        res = verify_report(
            REPORT, vcek=data, cert_chain=CHAIN, roots=[ARK], at=VALID_AT, trust_dir=NO_TRUST
        )
        if data != VCEK:
            assert not res.verified


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(CRL) - 1), st.integers(0, 255))
def test_mutated_crl(pos: int, val: int) -> None:
    b = bytearray(CRL)
    b[pos] = val
    try:
        load_crl(bytes(b))
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_cert_table(data: bytes) -> None:
    try:
        parse_cert_table(data)
    except ParseError:
        pass
