"""Signature scheme matrix: RSA 2048-4096 with PKCS#1 v1.5 and PSS, ECDSA
P-256 and P-384, scheme hashes SHA-1/256/384/512 — each verifies, and each rejects a
tampered quote. SHA-1 verifies but is reported weak."""

from __future__ import annotations

import functools
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sealgate import _core
from sealgate.errors import VerificationError
from sealgate.testing.softtpm import SoftAk
from sealgate.tpm.enroll import check_ak

PCRS = {
    "sha256": {i: hashlib.sha256(bytes([i])).digest() for i in range(24)},
    "sha1": {i: hashlib.sha1(bytes([i])).digest() for i in range(24)},  # noqa: S324
}
SEL = [("sha256", [0, 1, 2, 3, 4, 5, 6, 7]), ("sha1", [0, 7])]

MATRIX = (
    [
        ("rsa", "rsassa", h, bits, "P-256")
        for h in ("sha1", "sha256", "sha384", "sha512")
        for bits in (2048, 3072, 4096)
    ]
    + [("rsa", "rsapss", h, 2048, "P-256") for h in ("sha1", "sha256", "sha384", "sha512")]
    + [
        ("ecc", "ecdsa", h, 2048, c)
        for h in ("sha1", "sha256", "sha384", "sha512")
        for c in ("P-256", "P-384")
    ]
)


@functools.cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """RSA key generation dominates this module's time: one key per size."""
    return rsa.generate_private_key(65537, bits)


@pytest.mark.parametrize(("kind", "scheme", "hash_alg", "bits", "curve"), MATRIX)
def test_scheme(kind: str, scheme: str, hash_alg: str, bits: int, curve: str) -> None:
    key = rsa_key(bits) if kind == "rsa" else None
    ak = SoftAk(kind, scheme=scheme, hash_alg=hash_alg, bits=bits, curve=curve, key=key)
    nonce = os.urandom(32)
    attest, sig = ak.quote(nonce, PCRS, SEL)
    pub = _core.TpmPublic.parse(ak.tpm2b_public)
    res = _core.verify_tpm_quote(pub, attest, sig, PCRS, nonce)
    assert res.failures == []
    assert res.verified
    assert res.weak_hash is (hash_alg == "sha1")
    assert (res.signature_scheme, res.hash_alg) == (scheme, hash_alg)
    tampered = bytearray(attest)
    tampered[-1] ^= 0x80  # last pcrDigest byte: signature and digest both fail
    bad = _core.verify_tpm_quote(pub, bytes(tampered), sig, PCRS, nonce)
    codes = [c for c, _ in bad.failures]
    assert "tpm.quote.signature_invalid" in codes
    assert "tpm.quote.pcr_digest_mismatch" in codes


def test_scheme_must_match_the_aks_scheme() -> None:
    ak = SoftAk("rsa", scheme="rsassa", hash_alg="sha256")
    other = SoftAk("rsa", scheme="rsapss", hash_alg="sha256")
    other.key = ak.key  # same key, different declared scheme
    attest, _ = ak.quote(b"n", PCRS, SEL)
    sig = other.sign(attest)
    res = _core.verify_tpm_quote(_core.TpmPublic.parse(ak.tpm2b_public), attest, sig, PCRS, b"n")
    assert [c for c, _ in res.failures] == ["tpm.quote.scheme_mismatch"]


def test_unrestricted_key_refused() -> None:
    ak = SoftAk("ecc", attributes=0x00040072)  # sign, not restricted
    attest, sig = ak.quote(b"n", PCRS, SEL)
    res = _core.verify_tpm_quote(_core.TpmPublic.parse(ak.tpm2b_public), attest, sig, PCRS, b"n")
    assert [c for c, _ in res.failures] == ["tpm.ak.not_restricted_signing"]
    assert res.ak_restricted is False


def test_missing_and_wrong_length_pcrs() -> None:
    ak = SoftAk("ecc")
    attest, sig = ak.quote(b"n", PCRS, SEL)
    pub = _core.TpmPublic.parse(ak.tpm2b_public)
    res = _core.verify_tpm_quote(pub, attest, sig, {"sha256": PCRS["sha256"]}, b"n")
    assert [c for c, _ in res.failures] == ["tpm.quote.pcr_missing"]
    assert "sha1:0, sha1:7" in res.failures[0][1]
    short = {"sha256": PCRS["sha256"], "sha1": {0: b"\x00" * 19, 7: PCRS["sha1"][7]}}
    res = _core.verify_tpm_quote(pub, attest, sig, short, b"n")
    assert [c for c, _ in res.failures] == ["tpm.quote.pcr_value_invalid"]


def test_min_selection() -> None:
    ak = SoftAk("ecc")
    attest, sig = ak.quote(b"n", PCRS, SEL)
    pub = _core.TpmPublic.parse(ak.tpm2b_public)
    ok = _core.verify_tpm_quote(pub, attest, sig, PCRS, b"n", [("sha256", [0, 7])])
    assert ok.verified
    bad = _core.verify_tpm_quote(pub, attest, sig, PCRS, b"n", [("sha256", [0, 8])])
    assert [c for c, _ in bad.failures] == ["tpm.quote.selection_insufficient"]


def test_enrollment_refuses_unrestricted_ak_with_the_quote_paths_code() -> None:
    # One condition, one code: enrollment's AK check and quote verification both say
    # tpm.ak.not_restricted_signing (enrollment used to say tpm.ak.not_restricted).
    ak = SoftAk("ecc", attributes=0x00040072)  # sign, not restricted
    with pytest.raises(VerificationError) as e:
        check_ak(ak.tpm2b_public)
    assert e.value.code == "tpm.ak.not_restricted_signing"
