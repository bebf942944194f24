"""Test signers made at test time with ``cryptography``: ECDSA keys and a small CA hierarchy
(root → intermediate → code-signing leaf). Nothing here is committed key material."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2030, 1, 1, tzinfo=UTC)
INSIDE = datetime(2026, 6, 1, tzinfo=UTC)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    ca: bool,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    key_usage: str | None = "default",
    code_signing: bool = True,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if key_usage == "default":
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif key_usage == "no_digital_signature":
        b = b.add_extension(
            x509.KeyUsage(False, False, True, False, False, False, False, False, False),
            critical=True,
        )
    if not ca and code_signing:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    elif not ca and code_signing is False and key_usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class Hierarchy:
    root_key: rsa.RSAPrivateKey
    root: x509.Certificate
    int_key: rsa.RSAPrivateKey
    intermediate: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    @property
    def root_pem(self) -> bytes:
        return cert_pem(self.root)

    @property
    def chain_pem(self) -> bytes:
        """What a signer passes: leaf, then the intermediate."""
        return cert_pem(self.leaf) + cert_pem(self.intermediate)


def hierarchy(*, leaf_curve: ec.EllipticCurve | None = None, **leaf_kw: object) -> Hierarchy:
    """RSA-2048 root and intermediate (sha256WithRSA, as the shared vectors' CA), EC leaf."""
    root_key = rsa.generate_private_key(65537, 2048)
    root = make_cert("test-root", root_key, None, root_key, ca=True)
    int_key = rsa.generate_private_key(65537, 2048)
    inter = make_cert("test-intermediate", int_key, root, root_key, ca=True)
    leaf_key = ec_key(leaf_curve)
    leaf = make_cert("model-signer", leaf_key, inter, int_key, ca=False, **leaf_kw)  # type: ignore[arg-type]
    return Hierarchy(root_key, root, int_key, inter, leaf_key, leaf)


def past(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
