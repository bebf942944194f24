"""MakeCredential/ActivateCredential against a real TPM (swtpm + tpm2-tools), both ways."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from sealgate import _core
from sealgate.errors import ChainError, VerificationError
from sealgate.testing.swtpm import Swtpm, TpmKey
from sealgate.tpm.enroll import (
    Credential,
    EkParams,
    activate_credential,
    check_ak,
    ek_params,
    ek_public_key,
    load_certificate,
    make_credential,
    tpm_public_key,
    verify_ek_chain,
)

pytestmark = pytest.mark.swtpm


def _activate_on_tpm(t: Swtpm, ek: TpmKey, ak: TpmKey, blob: bytes, tmp: Path) -> bytes | None:
    sess, inp, out = tmp / "sess.ctx", tmp / "cred.blob", tmp / "secret.out"
    inp.write_bytes(blob)
    t.tpm2("startauthsession", "--policy-session", "-S", str(sess))
    try:
        t.tpm2("policysecret", "-S", str(sess), "-c", "e")
        r = t.tpm2("activatecredential", "-c", str(ak.ctx), "-C", str(ek.ctx), "-i", str(inp),
                   "-o", str(out), "-P", f"session:{sess}", check=False)  # fmt: skip
    finally:
        t.tpm2("flushcontext", str(sess), check=False)
    return out.read_bytes() if r.returncode == 0 else None


def test_make_credential_ecc_p256_ek_activates_on_real_tpm(swtpm: Swtpm, tmp_path: Path) -> None:
    """ECC: ECDH + KDFe seed, to the low-range P-256 EK (tpm2_createek -G ecc).

    swtpm only certifies a P-384 high-range EK whose PolicyOR auth tpm2_activatecredential
    cannot satisfy with a plain PolicySecret session, so the ECC path is exercised on the
    uncertified low-range EK, taking its public key from the TPM.
    """
    ctx, pub = tmp_path / "ek.ctx", tmp_path / "ek.pub"
    swtpm.tpm2("createek", "-c", str(ctx), "-G", "ecc", "-u", str(pub))
    ek = TpmKey("ecc", ctx, pub.read_bytes(), b"")
    key = tpm_public_key(_core.TpmPublic.parse(ek.public))
    ak = swtpm.create_ak(ek, "ecc")
    cred = make_credential(key, ak.name, b"ecc-secret")
    assert _activate_on_tpm(swtpm, ek, ak, cred.tpm2_tools_blob(), tmp_path) == b"ecc-secret"


def test_make_credential_ecc_p384_ek_activates_on_real_tpm(swtpm: Swtpm, tmp_path: Path) -> None:
    """ECC P-384 with nameAlg SHA-384 and AES-256-CFB: the crypto of the high-range H-3 EK
    template (TCG EK Credential Profile 2.x), whose seed derivation, KDFe and HMAC all change
    with the curve and hash. swtpm's certified H-3 EK sits behind a PolicyOR that
    tpm2_activatecredential cannot satisfy, so the primary here has the same parameters with
    userWithAuth instead of that policy (the policy is not part of the credential math)."""
    ek_ctx, ek_pub = tmp_path / "ek.ctx", tmp_path / "ek.pub"
    swtpm.tpm2("createprimary", "-C", "e", "-G", "ecc384:aes256cfb", "-g", "sha384", "-a",
               "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt",
               "-c", str(ek_ctx))  # fmt: skip
    swtpm.tpm2("readpublic", "-c", str(ek_ctx), "-o", str(ek_pub))
    key = tpm_public_key(_core.TpmPublic.parse(ek_pub.read_bytes()))
    assert ek_params(key) == EkParams("sha384", 256)
    ak_pub, ak_priv = tmp_path / "ak.pub", tmp_path / "ak.priv"
    ak_ctx, ak_name = tmp_path / "ak.ctx", tmp_path / "ak.name"
    swtpm.tpm2("create", "-C", str(ek_ctx), "-G", "ecc256:ecdsa-sha256:null", "-g", "sha256",
               "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
               "-u", str(ak_pub), "-r", str(ak_priv))  # fmt: skip
    swtpm.tpm2("load", "-C", str(ek_ctx), "-u", str(ak_pub), "-r", str(ak_priv),
               "-c", str(ak_ctx), "-n", str(ak_name))  # fmt: skip
    name = ak_name.read_bytes()

    def activate(blob: bytes) -> bytes | None:
        inp, out = tmp_path / "cred.blob", tmp_path / "secret.out"
        inp.write_bytes(blob)
        out.unlink(missing_ok=True)
        r = swtpm.tpm2("activatecredential", "-c", str(ak_ctx), "-C", str(ek_ctx),
                       "-i", str(inp), "-o", str(out), check=False)  # fmt: skip
        return out.read_bytes() if r.returncode == 0 else None

    cred = make_credential(key, name, b"p384-secret")
    assert activate(cred.tpm2_tools_blob()) == b"p384-secret"
    other = make_credential(key, b"\x00\x0b" + b"\x22" * 32, b"p384-secret")
    assert activate(other.tpm2_tools_blob()) is None


@pytest.mark.parametrize("kind", ["rsa"])
def test_make_credential_activates_on_real_tpm(swtpm: Swtpm, tmp_path: Path, kind: str) -> None:
    cert = load_certificate(swtpm.ek_certificate(kind))
    root, inter = swtpm.ca_certificates()
    info = verify_ek_chain(cert.der, [inter], [load_certificate(root)])
    assert info.model == "swtpm"
    ek = swtpm.create_ek(kind)
    ak = swtpm.create_ak(ek, "ecc")
    pub = check_ak(ak.public)
    assert pub.name == ak.name
    secret = b"sealgate-enroll-" + kind.encode()
    cred = make_credential(ek_public_key(cert), ak.name, secret)
    assert _activate_on_tpm(swtpm, ek, ak, cred.tpm2_tools_blob(), tmp_path) == secret
    # A credential made for another AK's Name does not activate (0x1DF: TPM_RC_INTEGRITY on
    # parameter 1, the outer HMAC; TPM 2.0 Part 3 §12.5).
    other = make_credential(ek_public_key(cert), b"\x00\x0b" + b"\x11" * 32, secret)
    assert _activate_on_tpm(swtpm, ek, ak, other.tpm2_tools_blob(), tmp_path) is None


def test_software_activate_opens_tpm2_makecredential(swtpm: Swtpm, tmp_path: Path) -> None:
    """tpm2_makecredential's blob, opened by our activate (independent implementation)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048)
    pem = tmp_path / "ek.pem"
    from cryptography.hazmat.primitives import serialization

    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                    serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    name = b"\x00\x0b" + bytes(range(32))
    (tmp_path / "secret").write_bytes(b"0123456789abcdef")
    # -T none: no TPM involved; -G rsa takes the EK public key as PEM.
    out = tmp_path / "blob"
    swtpm.tpm2("makecredential", "-T", "none", "-G", "rsa", "-u", str(pem), "-s",
               str(tmp_path / "secret"), "-n", name.hex(), "-o", str(out))  # fmt: skip
    blob = (tmp_path / "blob").read_bytes()
    assert blob[:8] == b"\xba\xdc\xc0\xde\x00\x00\x00\x01"
    body = blob[8:]
    idl = int.from_bytes(body[:2], "big")
    cred = Credential(body[: 2 + idl], body[2 + idl :])
    assert activate_credential(key, name, cred) == b"0123456789abcdef"


def test_ek_chain_refusals(swtpm: Swtpm, tmp_path: Path) -> None:
    der = swtpm.ek_certificate("rsa")
    root, inter = swtpm.ca_certificates()
    roots = [load_certificate(root)]
    with pytest.raises(ChainError) as e:
        verify_ek_chain(der, [], roots)  # intermediate missing
    assert e.value.code == "tpm.ek.untrusted_root"
    with Swtpm(tmp_path / "other") as other:
        other_root, _ = other.ca_certificates()
    with pytest.raises(ChainError) as e:
        verify_ek_chain(der, [inter], [load_certificate(other_root)])
    assert e.value.code in ("tpm.ek.untrusted_root", "tpm.ek.signature_invalid")
    # The intermediate (a CA certificate) is not an EK certificate.
    with pytest.raises(VerificationError) as e2:
        verify_ek_chain(load_certificate(inter).der, [inter], roots)
    assert e2.value.code == "tpm.ek.profile_invalid"
    late = datetime.datetime(10000 - 1, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    verify_ek_chain(der, [inter], roots, at=late - datetime.timedelta(days=1))
    with pytest.raises(ChainError):
        verify_ek_chain(der, [inter], roots, at=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
