"""The PKI layer's parser and signature checks (``sealgate.pki``): accepts AMD's serial-0
certificates without warnings, refuses non-DER, truncated, trailing and oversized input
with ParseError ``x509.format.*`` in bounded time, never anything else."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import partial

import pytest
from sealgate.errors import ChainError, ParseError
from sealgate.pki import (
    MAX_CERT_LEN,
    MAX_CRL_LEN,
    ChainVerifier,
    load_certificate,
    load_certificates,
    load_crl,
    pem_blocks,
)
from sealgate.snp.certs import AMD_ALGORITHMS, AmdChainVerifier
from sealgate.testing import hostile
from sealgate.testing.snp import VALID_AT, integer, octets, oid, seq, tlv

from tests.vectors import project

VCEK = project("sev-snp", "vcek-milan.der").read_bytes()
CRL = project("sev-snp", "crl-milan.der").read_bytes()
#: Caps of the core's parser (rust/formats/src/x509): extensions per certificate and
#: revoked entries per CRL.
MAX_EXTENSIONS = 64
MAX_CRL_ENTRIES = 1 << 16


def _refused(fn: Callable[[], object], prefix: str = "x509.format.") -> str:
    with pytest.raises(ParseError) as e:
        fn()
    assert e.value.code.startswith(prefix), e.value.code
    return e.value.code


def _with_extension(cert: bytes, ext: bytes) -> bytes:
    n = len(hostile.children(hostile.edit_get(cert, hostile.EXTENSIONS)))
    return hostile.edit(cert, (*hostile.EXTENSIONS, n), lambda _: ext)


def test_serial_zero_without_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = load_certificate(VCEK)
    assert c.serial == 0 and c.subject_cn == "SEV-VCEK" and c.issuer_cn == "SEV-Milan"


def test_signature_chain_and_crl() -> None:
    ask, ark = load_certificates(project("sev-snp", "cert_chain-milan.pem").read_bytes())
    vcek = load_certificate(VCEK)
    amd = ChainVerifier(AMD_ALGORITHMS)
    amd.check_signed(vcek, ask)
    with pytest.raises(ChainError) as e:
        amd.check_signed(vcek, ark)
    assert e.value.code == "x509.chain.signature_invalid"
    # A profile that does not allow AMD's algorithm refuses before any key work.
    with pytest.raises(ChainError) as e:
        ChainVerifier(["ecdsa-sha256"]).check_signed(vcek, ask)
    assert e.value.code == "x509.chain.algorithm_not_allowed"
    crl = load_crl(CRL)
    assert crl.issuer == ark.subject and 0x5EA1 in crl.revoked
    amd.check_crl(crl, ark, VALID_AT)
    with pytest.raises(ChainError) as e:
        amd.check_crl(crl, ask)
    assert e.value.code == "x509.crl.wrong_issuer"


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
        ("oversized", VCEK + bytes(MAX_CERT_LEN)),
    ],
)
def test_malformed(what: str, data: bytes) -> None:
    _refused(lambda: load_certificates(data))


def test_malformed_crls() -> None:
    for data in (b"", CRL[:-1], CRL + b"\x00", b"\x31" + CRL[1:], bytes(2 * MAX_CRL_LEN + 1)):
        _refused(partial(load_crl, data))
    assert _refused(lambda: load_crl(tlv(0x30, bytes(MAX_CRL_LEN)))) == "x509.format.too_large"


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    assert _refused(fn) == "x509.format.invalid"
    return time.process_time() - t0


def test_long_oid_is_refused_in_bounded_time() -> None:
    """OID arcs filling the whole 4 MiB CRL cap: refused before any big-integer work
    (decoding it took about 20 minutes in a quadratic decoder)."""
    big = hostile.crl_long_oid(CRL, (MAX_CRL_LEN - len(CRL)) // 2 - 64)  # two OIDs
    assert len(big) <= MAX_CRL_LEN
    assert _timed(lambda: load_crl(big)) < 0.5
    assert _timed(lambda: load_certificate(hostile.vcek_long_oid_extension(VCEK, 8000))) < 0.5


def test_oid_bounds() -> None:
    """X.509 OIDs are short (the longest in AMD's and Intel's certificates is 11 octets):
    the core takes up to 39 content octets and refuses longer ones, huge arcs and
    truncated encodings."""
    longest = "1.2." + ".".join(["127"] * 38)
    assert len(oid(longest)) == 2 + 39
    cert = load_certificate(_with_extension(VCEK, seq(oid(longest), octets(b""))))
    assert longest in cert.extensions
    too_long = oid(longest + ".127")
    for bad in (too_long, hostile.long_oid(40), tlv(0x06, b"\x80\x01"), tlv(0x06, b"\x2a\x81")):
        _refused(partial(load_certificate, _with_extension(VCEK, seq(bad, octets(b"")))))


def test_oid_minimality() -> None:
    """X.690 §8.19.2: no subidentifier starts with 0x80 (the parser checks every OID it
    decodes, since const-oid maps a padded subidentifier to the same arc)."""
    for bad in (b"\x2a\x86\x48\x80\x01", b"\x2a\x80\x01"):
        ext = seq(tlv(0x06, bad), octets(b""))
        _refused(partial(load_certificate, _with_extension(VCEK, ext)))


def test_integer_bound() -> None:
    """Serial numbers are at most 20 octets (RFC 5280 §4.1.2.2; the parser allows one more
    for encoders that add a sign octet); longer ones, up to an INTEGER beyond Python's
    int-to-str limit, are refused."""
    ok = hostile.edit(VCEK, hostile.SERIAL, lambda _: tlv(0x02, b"\x01" * 20))
    assert load_certificate(ok).serial == int.from_bytes(b"\x01" * 20, "big")
    for n in (22, 64, 2000):
        bad = hostile.edit(VCEK, hostile.SERIAL, partial(lambda n, _: tlv(0x02, b"\x01" * n), n))
        _refused(partial(load_certificate, bad))
    _refused(lambda: load_certificate(hostile.huge_serial(VCEK)))
    # An AMD SPL extension holding a huge INTEGER is malformed DER, not an SPL value.
    assert _refused(lambda: AmdChainVerifier().verify_chain(
        load_certificate(hostile.vcek_huge_spl(VCEK)), [], [], None, VALID_AT, None
    )) == "x509.format.invalid"  # fmt: skip


def test_nesting_and_element_counts_are_bounded() -> None:
    deep = b"\x05\x00"
    for _ in range(10_000):
        deep = tlv(0x30, deep)
    t0 = time.process_time()
    _refused(lambda: load_certificate(deep[:MAX_CERT_LEN]))
    _refused(lambda: load_crl(deep))
    assert time.process_time() - t0 < 0.5
    n = len(hostile.children(hostile.edit_get(VCEK, hostile.EXTENSIONS)))
    extra = [seq(oid(f"1.2.3.{i}"), octets(b"")) for i in range(n, MAX_EXTENSIONS + 1)]
    many = hostile.edit(VCEK, hostile.EXTENSIONS, lambda old: seq(*hostile.children(old), *extra))
    assert len(load_certificate(hostile.edit(VCEK, hostile.EXTENSIONS, lambda old: seq(
        *hostile.children(old), *extra[:-1]))).extensions) == MAX_EXTENSIONS  # fmt: skip
    with pytest.raises(ParseError, match="extensions"):
        load_certificate(many)
    entry = seq(integer(7), tlv(0x17, b"250101000000Z"))
    at_cap = hostile.edit(CRL, (0, 5), lambda _: seq(*[entry] * MAX_CRL_ENTRIES))
    assert 7 in load_crl(at_cap).revoked
    many_crl = hostile.edit(CRL, (0, 5), lambda _: seq(*[entry] * (MAX_CRL_ENTRIES + 1)))
    with pytest.raises(ParseError, match="revoked entries"):
        load_crl(many_crl)


def test_duplicate_extension_is_refused() -> None:
    """RFC 5280 §4.2: a certificate must not include more than one instance of an extension."""
    _refused(lambda: load_certificate(hostile.duplicate_extension(VCEK)))


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
    assert cert.key_type == ("other", 0, "1.2.3.4")
    with pytest.raises(ParseError, match="unusable public key"):
        cert.public_key()
