"""The PKI layer's chain builder (``sealgate.pki.ChainVerifier``, Rust ``sealgate-verify``
``pki``) on hierarchies made here with ``cryptography``: every rule of RFC 5280 §6.1 that
the builder applies, each refused with its ``x509.chain.*`` / ``x509.crl.*`` code, next to
the same hierarchy without the defect, which verifies (so each refusal is the defect's)."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sealgate import pki
from sealgate.errors import ChainError

UTC = datetime.UTC
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)
NOT_BEFORE = T0 - datetime.timedelta(days=30)
NOT_AFTER = T0 + datetime.timedelta(days=365)
ALGS = ("ecdsa-sha256", "ecdsa-sha384", "rsa-pkcs1-sha256", "rsa-pss-sha384")

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_EC = ec.generate_private_key(ec.SECP256R1())
_EC2 = ec.generate_private_key(ec.SECP256R1())
_EC3 = ec.generate_private_key(ec.SECP384R1())
_RSA = rsa.generate_private_key(65537, 2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ski(key: Key) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest


_KU_CA = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
_KU_CERT_ONLY = x509.KeyUsage(False, False, False, False, False, True, False, False, False)
_KU_LEAF = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


@dataclass
class Ca:
    cert: pki.Certificate
    key: Key
    name: str


def _hash_for(key: Key) -> hashes.SHA256 | hashes.SHA384:
    """ECDSA P-384 signs with SHA-384; P-256 and RSA (PKCS#1 v1.5) with SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return hashes.SHA384()
    return hashes.SHA256()


def issue(
    subject: str,
    key: Key,
    issuer: Ca | None,
    *,
    ca: bool | None = True,
    path_len: int | None = None,
    key_usage: x509.KeyUsage | None = _KU_CA,
    not_before: datetime.datetime = NOT_BEFORE,
    not_after: datetime.datetime = NOT_AFTER,
    ski: bytes | None = None,
    aki: bytes | None = None,
) -> Ca:
    """A certificate for ``key`` named ``subject``, signed by ``issuer`` (self-signed when
    None). ``ca``: basicConstraints cA (None: no basicConstraints at all)."""
    signer = issuer.key if issuer else key
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer.name if issuer else subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=True)
    if ski is not None:
        b = b.add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
    if aki is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None),
            critical=False,
        )
    cert = b.sign(signer, _hash_for(signer))
    der = cert.public_bytes(serialization.Encoding.DER)
    return Ca(pki.load_certificate(der), key, subject)


def leaf_of(
    issuer: Ca,
    not_before: datetime.datetime = NOT_BEFORE,
    not_after: datetime.datetime = NOT_AFTER,
) -> pki.Certificate:
    return issue(
        "leaf",
        _EC2,
        issuer,
        ca=False,
        key_usage=_KU_LEAF,
        not_before=not_before,
        not_after=not_after,
    ).cert


def verifier(algorithms: tuple[str, ...] = ALGS, max_depth: int = 6) -> pki.ChainVerifier:
    return pki.ChainVerifier(algorithms, max_depth=max_depth)


def code_of(
    leaf: pki.Certificate,
    pool: list[pki.Certificate],
    anchors: list[pki.Certificate],
    at: datetime.datetime | None = T0,
    v: pki.ChainVerifier | None = None,
) -> str | None:
    """The builder's code, or None when the path verifies."""
    try:
        (v or verifier()).build(leaf, pool, anchors, at)
    except ChainError as e:
        return e.code
    return None


@pytest.fixture(scope="module")
def root() -> Ca:
    return issue("Root CA", _RSA, None)


@pytest.fixture(scope="module")
def inter(root: Ca) -> Ca:
    return issue("Intermediate CA", _EC, root)


def test_good_path_rsa_root_ec_intermediate(root: Ca, inter: Ca) -> None:
    leaf = leaf_of(inter)
    path = verifier().build(leaf, [inter.cert], [root.cert], T0)
    assert [c.subject_cn for c in path.certs] == ["leaf", "Intermediate CA", "Root CA"]
    assert path.anchor == root.cert
    assert path.not_before == NOT_BEFORE and path.not_after == NOT_AFTER
    # Pool order and an anchor copy in the pool change nothing.
    again = verifier().build(leaf, [root.cert, inter.cert], [root.cert], T0)
    assert again.certs == path.certs


@pytest.mark.parametrize("ca", [None, False])
def test_issuer_without_ca_basic_constraints(root: Ca, ca: bool | None) -> None:
    good = issue("Intermediate CA", _EC, root)
    assert code_of(leaf_of(good), [good.cert], [root.cert]) is None
    bad = issue("Intermediate CA", _EC, root, ca=ca)
    assert code_of(leaf_of(bad), [bad.cert], [root.cert]) == "x509.chain.not_ca"


def test_path_len_constraint(root: Ca) -> None:
    # Root with pathLen 0 may issue only end-entity certificates... and CAs that issue
    # nothing: one intermediate below it is one too many.
    tight = issue("Tight Root", _RSA, None, path_len=0)
    mid = issue("Mid CA", _EC, tight)
    assert code_of(leaf_of(mid), [mid.cert], [tight.cert]) == "x509.chain.path_len_exceeded"
    loose = issue("Tight Root", _RSA, None, path_len=1)
    mid1 = issue("Mid CA", _EC, loose)
    assert code_of(leaf_of(mid1), [mid1.cert], [loose.cert]) is None
    # Two intermediates below a pathLen-1 root.
    mid2 = issue("Mid2 CA", _EC3, mid1)
    assert code_of(leaf_of(mid2), [mid1.cert, mid2.cert], [loose.cert]) == (
        "x509.chain.path_len_exceeded"
    )
    # The leaf directly under the pathLen-0 root is fine.
    assert code_of(leaf_of(tight), [], [tight.cert]) is None


def test_key_usage_without_key_cert_sign(root: Ca) -> None:
    no_sign = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    bad = issue("Intermediate CA", _EC, root, key_usage=no_sign)
    assert code_of(leaf_of(bad), [bad.cert], [root.cert]) == "x509.chain.key_usage"
    # keyUsage absent: allowed (RFC 5280 §4.2.1.3 only restricts when present).
    none = issue("Intermediate CA", _EC, root, key_usage=None)
    assert code_of(leaf_of(none), [none.cert], [root.cert]) is None


def _crl(issuer: Ca, revoked: list[int], this: datetime.datetime = NOT_BEFORE) -> pki.Crl:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_name(issuer.name))
        .last_update(this)
        .next_update(this + datetime.timedelta(days=60))
    )
    for s in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(this).build()
        )
    signed = b.sign(issuer.key, _hash_for(issuer.key))
    return pki.load_crl(signed.public_bytes(serialization.Encoding.DER))


def test_crl_issuer_key_usage_and_currency(root: Ca) -> None:
    leaf = leaf_of(root)
    crl = _crl(root, [leaf.serial])
    v = verifier()
    v.check_crl(crl, root.cert, T0)
    assert crl.revokes(leaf)
    cert_only = issue("Root CA", _RSA, None, key_usage=_KU_CERT_ONLY)
    with pytest.raises(ChainError) as e:
        v.check_crl(crl, cert_only.cert, T0)
    assert e.value.code == "x509.crl.key_usage"
    other = issue("Other CA", _RSA, None)
    with pytest.raises(ChainError) as e:
        v.check_crl(crl, other.cert, T0)
    assert e.value.code == "x509.crl.wrong_issuer"
    lookalike = issue("Root CA", _EC3, None)
    with pytest.raises(ChainError) as e:
        v.check_crl(crl, lookalike.cert, T0)
    assert e.value.code == "x509.crl.signature_invalid"
    with pytest.raises(ChainError) as e:
        v.check_crl(crl, root.cert, NOT_BEFORE + datetime.timedelta(days=61))
    assert e.value.code == "x509.crl.expired"
    with pytest.raises(ChainError) as e:
        verifier(("ecdsa-sha256",)).check_crl(crl, root.cert, T0)
    assert e.value.code == "x509.crl.algorithm_not_allowed"


def test_lookalike_issuer_first_then_genuine(root: Ca, inter: Ca) -> None:
    """Two candidates with the intermediate's name: the first (another key) cannot have
    signed the leaf, the second did; the builder tries both."""
    fake = issue("Intermediate CA", _EC3, root)
    leaf = leaf_of(inter)
    path = verifier().build(leaf, [fake.cert, inter.cert], [root.cert], T0)
    assert path.certs[1] == inter.cert
    # Alone, the look-alike is a signature that does not verify.
    assert code_of(leaf, [fake.cert], [root.cert]) == "x509.chain.signature_invalid"
    # Same for anchors: a look-alike root first.
    fake_root = issue("Root CA", _EC3, None)
    path = verifier().build(leaf, [inter.cert], [fake_root.cert, root.cert], T0)
    assert path.anchor == root.cert


def test_self_signed_root_that_is_not_an_anchor(root: Ca) -> None:
    planted = issue("Planted Root", _EC3, None)
    mid = issue("Mid CA", _EC, planted)
    code = code_of(leaf_of(mid), [mid.cert, planted.cert], [root.cert])
    assert code == "x509.chain.untrusted_root"
    # Without the planted root in the pool the chain just has no issuer.
    assert code_of(leaf_of(mid), [mid.cert], [root.cert]) == "x509.chain.no_issuer"
    # Anchored, the same hierarchy verifies.
    assert code_of(leaf_of(mid), [mid.cert], [planted.cert]) is None


def test_issuer_loop_terminates(root: Ca) -> None:
    """A issues B and B issues A (cross-signed, each a CA): no anchor is reachable, and the
    search ends instead of going round."""
    a_key, b_key = _EC, _EC3
    a_ca = Ca(issue("A", a_key, None).cert, a_key, "A")
    b = issue("B", b_key, a_ca)
    a = issue("A", a_key, b)  # A again, issued by B
    leaf = leaf_of(a)
    start = time.monotonic()
    code = code_of(leaf, [a.cert, b.cert], [root.cert])
    assert code in ("x509.chain.no_issuer", "x509.chain.untrusted_root")
    assert time.monotonic() - start < 2


def test_many_mutually_issuing_lookalikes_are_bounded(root: Ca) -> None:
    """Twenty self-issued CAs that all name one subject and hold one key each verify as the
    issuer of every other: the number of paths is factorial in the pool, the work must not
    be (RFC 5280 §6 leaves path search to the implementation; the builder bounds it)."""
    key = _EC
    seed = Ca(issue("X", key, None).cert, key, "X")
    pool = [issue("X", key, seed, not_after=NOT_AFTER - datetime.timedelta(seconds=i)).cert
            for i in range(20)]  # fmt: skip
    leaf = leaf_of(seed)
    start = time.monotonic()
    code = code_of(leaf, pool, [root.cert], v=verifier(max_depth=8))
    assert code in ("x509.chain.untrusted_root", "x509.chain.no_issuer", "x509.chain.too_long")
    assert time.monotonic() - start < 5


def test_depth_limit(root: Ca) -> None:
    cas = [root]
    keys = [_EC, _EC3]
    for i in range(5):
        cas.append(issue(f"CA {i}", keys[i % 2], cas[-1]))
    leaf = leaf_of(cas[-1])
    pool = [c.cert for c in cas[1:]]
    # leaf + 5 intermediates + root = 7 certificates.
    assert code_of(leaf, pool, [root.cert], v=verifier(max_depth=7)) is None
    assert code_of(leaf, pool, [root.cert], v=verifier(max_depth=6)) == "x509.chain.too_long"
    assert code_of(leaf, pool, [root.cert], v=verifier(max_depth=3)) == "x509.chain.too_long"


def test_key_identifier_mismatch_skips_candidate(root: Ca) -> None:
    """A candidate whose subjectKeyIdentifier differs from the certificate's
    authorityKeyIdentifier is not its issuer (RFC 5280 §4.2.1.1): never tried."""
    good = issue("Intermediate CA", _EC, root, ski=_ski(_EC))
    leaf = issue("leaf", _EC2, good, ca=False, key_usage=_KU_LEAF, aki=_ski(_EC)).cert
    assert code_of(leaf, [good.cert], [root.cert]) is None
    wrong_ski = issue("Intermediate CA", _EC, root, ski=b"\x01" * 20)
    # Same key, so the signature would verify: the mismatch alone takes it out.
    assert code_of(leaf, [wrong_ski.cert], [root.cert]) == "x509.chain.no_issuer"
    path = verifier().build(leaf, [wrong_ski.cert, good.cert], [root.cert], T0)
    assert path.certs[1] == good.cert


def test_validity_bounds_are_inclusive(root: Ca) -> None:
    nb = T0 - datetime.timedelta(days=1)
    na = T0 + datetime.timedelta(days=1)
    sec = datetime.timedelta(seconds=1)
    mid = issue("Mid CA", _EC, root, not_before=nb, not_after=na)
    leaf = leaf_of(root, not_before=nb, not_after=na)
    leaf_under_mid = leaf_of(mid)
    for c, pool in ((leaf, []), (leaf_under_mid, [mid.cert])):
        assert code_of(c, pool, [root.cert], at=nb) is None
        assert code_of(c, pool, [root.cert], at=na) is None
        assert code_of(c, pool, [root.cert], at=nb - sec) == "x509.chain.not_yet_valid"
        assert code_of(c, pool, [root.cert], at=na + sec) == "x509.chain.expired"
    # Without a time the windows are the caller's: the path states their intersection.
    path = verifier().build(leaf_under_mid, [mid.cert], [root.cert])
    assert (path.not_before, path.not_after) == (nb, na)
    assert path.invalid_at(nb) is None and path.invalid_at(na) is None
    assert path.invalid_at(na + sec) == (mid.cert, "expired")
    assert path.invalid_at(nb - sec) == (mid.cert, "not_yet_valid")


def test_no_anchors(root: Ca) -> None:
    assert code_of(leaf_of(root), [root.cert], []) == "x509.chain.no_anchors"


def test_algorithm_profile(root: Ca, inter: Ca) -> None:
    with pytest.raises(ValueError):
        pki.ChainVerifier([])
    with pytest.raises(ValueError):
        pki.ChainVerifier(["rsa-pkcs1-md5"])
    leaf = leaf_of(inter)
    # The root signs the intermediate with RSA PKCS#1 SHA-256, which an ECDSA-only profile
    # refuses before any public-key work.
    v = verifier(("ecdsa-sha256",))
    assert code_of(leaf, [inter.cert], [root.cert], v=v) == "x509.chain.algorithm_not_allowed"
    assert code_of(leaf, [inter.cert], [root.cert], v=verifier(("rsa-pkcs1-sha256",))) == (
        "x509.chain.algorithm_not_allowed"
    )


def test_memo_remembers_verified_signatures(root: Ca, inter: Ca) -> None:
    v = verifier()
    leaf = leaf_of(inter)
    v.build(leaf, [inter.cert], [root.cert], T0)
    assert v.memo_len == 2
    v.build(leaf, [inter.cert], [root.cert], T0)
    assert v.memo_len == 2
    v.clear()
    assert v.memo_len == 0
