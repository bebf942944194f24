"""The strict DER reader: accepts AMD's serial-0 certificates without warnings, refuses
non-DER and truncated input with ParseError, never anything else."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import pytest
from sealgate.errors import ChainError, ParseError
from sealgate.testing import hostile
from sealgate.testing.snp import integer, octets, oid, seq, tlv
from sealgate.x509der import (
    MAX_CRL_ENTRIES,
    MAX_CRL_LEN,
    MAX_DEPTH,
    MAX_EXTENSIONS,
    MAX_INTEGER_LEN,
    MAX_OID_LEN,
    Der,
    decode_oid,
    load_certificate,
    load_certificates,
    load_crl,
    pem_blocks,
    verify_signature,
)

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


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    with pytest.raises(ParseError) as e:
        fn()
    assert e.value.code == "x509.format.invalid"
    return time.process_time() - t0


def test_long_oid_is_refused_in_bounded_time() -> None:
    """OID arcs filling the whole 4 MiB CRL cap: refused before any big-integer work
    (decoding it took about 20 minutes before the length bound)."""
    crl = project("sev-snp", "crl-milan.der").read_bytes()
    big = hostile.crl_long_oid(crl, (MAX_CRL_LEN - len(crl)) // 2 - 64)  # two OIDs
    assert len(big) <= MAX_CRL_LEN
    assert _timed(lambda: load_crl(big)) < 0.5
    assert _timed(lambda: decode_oid(b"\x2a" + b"\x81" * (4 << 20) + b"\x01")) < 0.5


def test_oid_bounds_and_minimality() -> None:
    longest = b"\x2a" + b"\x81" * (MAX_OID_LEN - 2) + b"\x01"
    assert decode_oid(longest).startswith("1.2.")  # at the bound: accepted
    for bad in (longest + b"\x01", b"\x2a\x80\x01", b"\x80\x01", b"\x2a\x81"):
        with pytest.raises(ParseError):
            decode_oid(bad)
    with pytest.raises(ParseError, match="non-minimal"):
        decode_oid(b"\x2a\x86\x48\x80\x01")


def test_integer_bound() -> None:
    ok = tlv(0x02, b"\x01" * MAX_INTEGER_LEN)
    assert Der(ok, "i").integer() == int.from_bytes(b"\x01" * MAX_INTEGER_LEN, "big")
    with pytest.raises(ParseError, match="INTEGER of"):
        Der(tlv(0x02, b"\x01" * (MAX_INTEGER_LEN + 1)), "i").integer()
    with pytest.raises(ParseError):
        load_certificate(hostile.huge_serial(VCEK))


def test_nesting_and_element_counts_are_bounded() -> None:
    deep = b"\x05\x00"
    for _ in range(MAX_DEPTH + 1):
        deep = tlv(0x30, deep)
    d = Der(deep, "deep")
    with pytest.raises(ParseError, match="nested deeper"):
        for _ in range(MAX_DEPTH + 1):
            d = d.sub(0x30)
    n = len(hostile.children(hostile.edit_get(VCEK, hostile.EXTENSIONS)))
    extra = [seq(oid(f"1.2.3.{i}"), octets(b"")) for i in range(n, MAX_EXTENSIONS + 1)]
    many = hostile.edit(VCEK, hostile.EXTENSIONS, lambda old: seq(*hostile.children(old), *extra))
    with pytest.raises(ParseError, match="extensions"):
        load_certificate(many)
    crl = project("sev-snp", "crl-milan.der").read_bytes()
    entry = seq(integer(7), tlv(0x17, b"250101000000Z"))
    many_crl = hostile.edit(crl, (0, 5), lambda _: seq(*[entry] * (MAX_CRL_ENTRIES + 1)))
    with pytest.raises(ParseError, match="revoked entries"):
        load_crl(many_crl)


def test_strict_pem_refuses_text_between_blocks() -> None:
    pem = project("sev-snp", "cert_chain-milan.pem").read_bytes()
    assert len(pem_blocks(pem, strict=True)) == 2
    garbled = pem.replace(b"-----BEGIN CERTIFICATE-----", b"----BEGIN CERTIFICATE-----", 1)
    assert len(pem_blocks(garbled)) == 1  # RFC 7468 text is skipped by default ...
    with pytest.raises(ParseError, match="outside"):
        pem_blocks(garbled, strict=True)  # ... and refused in strict mode
    with pytest.raises(ParseError, match="outside"):
        pem_blocks(pem + b"x", strict=True)


def test_unknown_key_algorithm_is_a_parse_error() -> None:
    ask = pem_blocks(project("sev-snp", "ask-milan.pem").read_bytes())[0]
    cert = load_certificate(hostile.unknown_key_algorithm(ask))
    with pytest.raises(ParseError, match="unusable public key"):
        cert.public_key()
