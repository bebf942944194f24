"""EK certificate chains through the PKI layer: every refusal under its stable ``tpm.ek.*``
code (TCG EK Credential Profile 2.x §3.2 for the EK itself, RFC 5280 §6.1 for the chain),
on hierarchies made here; bad input of any shape ends in a SealgateError."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate import pki
from sealgate.errors import ChainError, ParseError, SealgateError, VerificationError
from sealgate.tpm.enroll import (
    MAX_CHAIN_DEPTH,
    OID_TCG_KP_EK_CERTIFICATE,
    OID_TPM_MANUFACTURER,
    OID_TPM_MODEL,
    OID_TPM_VERSION,
    EkVerifier,
    ek_public_key,
    load_certificate,
    load_certificates,
    verify_ek_chain,
)

UTC = datetime.UTC
NOW = datetime.datetime.now(UTC)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_ROOT_KEY = rsa.generate_private_key(65537, 2048)
_CA_KEY = ec.generate_private_key(ec.SECP384R1())
_OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
_EK = rsa.generate_private_key(65537, 2048)
_KU_CA = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
_KU_EK = x509.KeyUsage(False, False, True, False, False, False, False, False, False)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _der(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.DER)


def _sign(b: x509.CertificateBuilder, key: Key, pss: bool = False) -> bytes:
    if pss:
        assert isinstance(key, rsa.RSAPrivateKey)
        pad = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
        return _der(b.sign(key, hashes.SHA256(), rsa_padding=pad))
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return _der(b.sign(key, hashes.SHA384()))
    return _der(b.sign(key, hashes.SHA256()))


def ca(
    cn: str,
    key: Key,
    issuer: tuple[str, Key] | None = None,
    *,
    is_ca: bool = True,
    key_usage: x509.KeyUsage | None = _KU_CA,
    not_after: datetime.datetime = NOW + datetime.timedelta(days=365),
    pss: bool = False,
) -> bytes:
    iname, ikey = issuer or (cn, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(iname))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=True)
    return _sign(b, ikey, pss)


def ek_cert(
    issuer: tuple[str, Key],
    *,
    eku: list[str] | None = None,
    san: list[tuple[str, str]] | None = None,
    not_before: datetime.datetime = NOW - datetime.timedelta(days=1),
    not_after: datetime.datetime = NOW + datetime.timedelta(days=365),
) -> bytes:
    """An EK certificate as the TCG profile has it (empty subject, critical SAN with the
    TPM attributes, EKU tcg-kp-EKCertificate, keyEncipherment)."""
    eku = [OID_TCG_KP_EK_CERTIFICATE] if eku is None else eku
    san = (
        [(OID_TPM_MANUFACTURER, "id:49465800"), (OID_TPM_MODEL, "SLB9670"),
         (OID_TPM_VERSION, "id:00070055")]
        if san is None else san
    )  # fmt: skip
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(_name(issuer[0]))
        .public_key(_EK.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_KU_EK, critical=True)
    )
    if san:
        attrs = [x509.NameAttribute(x509.ObjectIdentifier(o), v) for o, v in san]
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DirectoryName(x509.Name(attrs))]), critical=True
        )
    if eku:
        b = b.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in eku]), critical=False
        )
    return _sign(b, issuer[1])


ROOT = ("EK Root CA", _ROOT_KEY)
INTER = ("EK Intermediate CA", _CA_KEY)
ROOT_DER = ca(*ROOT)
INTER_DER = ca(*INTER, issuer=ROOT)
EK_DER = ek_cert(INTER)


def roots() -> list[pki.Certificate]:
    return [load_certificate(ROOT_DER)]


def code(ek: bytes, chain: list[bytes], anchors: list[pki.Certificate] | None = None) -> str:
    with pytest.raises(SealgateError) as e:
        verify_ek_chain(ek, chain, roots() if anchors is None else anchors)
    return e.value.code


def test_good_chain_and_what_it_reports() -> None:
    info = verify_ek_chain(EK_DER, [INTER_DER], roots())
    assert (info.manufacturer, info.model, info.version) == (
        "id:49465800",
        "SLB9670",
        "id:00070055",
    )
    assert info.fingerprint == load_certificate(EK_DER).fingerprint
    assert info.root_fingerprint == load_certificate(ROOT_DER).fingerprint
    assert info.certificate.der == EK_DER
    assert isinstance(ek_public_key(info.certificate), rsa.RSAPublicKey)
    # PEM, a PEM bundle holding the chain, and configured intermediates all work.
    pem = pki.to_pem(EK_DER)
    assert verify_ek_chain(pem, [pki.to_pem(INTER_DER) + pki.to_pem(ROOT_DER)], roots()).model
    v = EkVerifier(roots(), [load_certificate(INTER_DER)])
    assert v.verify(EK_DER).root_fingerprint == info.root_fingerprint
    # The verifier's memo keeps the CA signatures: a second enrollment re-verifies none.
    n = v.chain.memo_len
    assert n == 2
    v.verify(EK_DER)
    assert v.chain.memo_len == n


def test_ek_profile_refusals() -> None:
    assert code(ek_cert(INTER, eku=[]), [INTER_DER]) == "tpm.ek.profile_invalid"
    assert code(ek_cert(INTER, eku=["1.3.6.1.5.5.7.3.2"]), [INTER_DER]) == (
        "tpm.ek.profile_invalid"
    )
    assert code(ek_cert(INTER, san=[]), [INTER_DER]) == "tpm.ek.profile_invalid"
    partial = [(OID_TPM_MANUFACTURER, "id:49465800"), (OID_TPM_MODEL, "SLB9670")]
    with pytest.raises(VerificationError) as e:
        verify_ek_chain(ek_cert(INTER, san=partial), [INTER_DER], roots())
    assert e.value.code == "tpm.ek.profile_invalid"
    assert OID_TPM_VERSION in e.value.message


def test_ek_validity() -> None:
    old = ek_cert(INTER, not_before=NOW - datetime.timedelta(days=10),
                  not_after=NOW - datetime.timedelta(days=1))  # fmt: skip
    assert code(old, [INTER_DER]) == "tpm.ek.cert_expired"
    young = ek_cert(INTER, not_before=NOW + datetime.timedelta(days=1))
    assert code(young, [INTER_DER]) == "tpm.ek.cert_expired"
    # An expired CA is the same code (the issuer's window, RFC 5280 §6.1.3 (a)(2)).
    old_ca = ca(*INTER, issuer=ROOT, not_after=NOW - datetime.timedelta(seconds=1))
    assert code(EK_DER, [old_ca]) == "tpm.ek.cert_expired"
    # The EK's own window is checked before its profile, as it always was.
    assert code(ek_cert(INTER, eku=[], not_after=NOW - datetime.timedelta(days=1)), []) == (
        "tpm.ek.cert_expired"
    )


def test_chain_refusals() -> None:
    assert code(EK_DER, []) == "tpm.ek.untrusted_root"
    not_ca = ca(*INTER, issuer=ROOT, is_ca=False)
    assert code(EK_DER, [not_ca]) == "tpm.ek.chain_invalid"
    no_sign = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    assert code(EK_DER, [ca(*INTER, issuer=ROOT, key_usage=no_sign)]) == "tpm.ek.chain_invalid"
    # A same-name CA with another key: the link's signature does not verify.
    lookalike = ca(INTER[0], _OTHER_KEY, issuer=ROOT)
    assert code(EK_DER, [lookalike]) == "tpm.ek.signature_invalid"
    assert verify_ek_chain(EK_DER, [lookalike, INTER_DER], roots()).model == "SLB9670"
    # Same-name root, other key (another vendor's CA of the same name).
    other_root = load_certificate(ca(ROOT[0], _OTHER_KEY))
    assert code(EK_DER, [INTER_DER], [other_root]) == "tpm.ek.signature_invalid"
    # A self-signed root the node sent is not a configured one.
    planted = ("Planted Root", _OTHER_KEY)
    assert code(ek_cert(planted), [ca(*planted)]) == "tpm.ek.untrusted_root"
    with pytest.raises(ChainError) as e:
        verify_ek_chain(EK_DER, [INTER_DER], [])
    assert e.value.code == "tpm.ek.no_roots"


def test_chain_depth() -> None:
    """At most MAX_CHAIN_DEPTH CAs above the EK, the root included."""

    def chain_of(n_cas: int) -> tuple[bytes, list[bytes]]:
        keys: list[Key] = [_OTHER_KEY, _CA_KEY]
        names = [(f"CA {i}", keys[i % 2]) for i in range(n_cas - 1)]
        pool: list[bytes] = []
        issuer: tuple[str, Key] = ROOT
        for n in names:
            pool.append(ca(*n, issuer=issuer))
            issuer = n
        return ek_cert(issuer), pool

    ek, pool = chain_of(MAX_CHAIN_DEPTH)
    assert verify_ek_chain(ek, pool, roots()).model == "SLB9670"
    ek, pool = chain_of(MAX_CHAIN_DEPTH + 1)
    assert code(ek, pool) == "tpm.ek.chain_too_long"


def test_ek_ca_signature_algorithms() -> None:
    # RSA-PSS SHA-256 (TPM vendors moving off PKCS#1 v1.5) is in the EK CA profile.
    pss_inter = ca(*INTER, issuer=ROOT, pss=True)
    assert verify_ek_chain(EK_DER, [pss_inter], roots()).model == "SLB9670"
    # ECDSA with SHA-512 is not.
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(INTER[0]))
        .issuer_name(_name(ROOT[0]))
        .public_key(_CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    ec_root_key = ec.generate_private_key(ec.SECP384R1())
    ec_root = load_certificate(ca(ROOT[0], ec_root_key))
    sha512 = _der(b.sign(ec_root_key, hashes.SHA512()))
    assert code(EK_DER, [sha512], [ec_root]) == "tpm.ek.signature_invalid"


def test_not_a_certificate() -> None:
    for bad in (b"", b"\x30\x03\x02\x01\x00", EK_DER[:-1], EK_DER + b"\x00", b"-----BEGIN x"):
        with pytest.raises(ParseError) as e:
            load_certificate(bad)
        assert e.value.code == "tpm.ek.cert_invalid"
        assert code(bad, [INTER_DER]) == "tpm.ek.cert_invalid"
        assert code(EK_DER, [bad]) == "tpm.ek.cert_invalid"
    with pytest.raises(ParseError) as e:
        load_certificates(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
    assert e.value.code == "tpm.ek.cert_invalid"


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from(["ek", "inter"]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_chains_fail_with_a_code(which: str, edits: list[tuple[int, int]]) -> None:
    ek, inter = bytearray(EK_DER), bytearray(INTER_DER)
    target = ek if which == "ek" else inter
    for pos, val in edits:
        target[pos % len(target)] = val
    try:
        verify_ek_chain(bytes(ek), [bytes(inter)], roots())
    except SealgateError as e:
        assert e.code.startswith("tpm.ek."), e.code
