"""TPM enrollment: EK certificate chain, AK checks, MakeCredential / ActivateCredential.

Flow (README "gRPC API", Enroll): the node sends its EK certificate (+ issuing
CAs) and its AK public area. The verifier

1. checks the EK certificate chain against the configured EK CA roots with the PKI layer's
   chain builder (``sealgate.pki``: issuer by name and key identifier, basic constraints,
   path length, keyUsage keyCertSign, the EK CAs' signature algorithms, validity; RFC 5280
   §6.1), and the TCG EK profile (EKU tcg-kp-EKCertificate 2.23.133.8.1 and a SAN
   directoryName with TPM manufacturer/model/version attributes 2.23.133.2.1-3; TCG EK
   Credential Profile 2.x §3.2). A general-purpose path validator would refuse EK
   certificates for lacking serverAuth/clientAuth; the TCG profile is checked here instead;
2. checks the AK is a restricted signing key that cannot leave the TPM;
3. runs TPM2_MakeCredential (TPM 2.0 Part 1 §24, Part 3 §12.6) for the AK's Name to the
   EK's public key: only the TPM holding that EK, with that AK loaded, can recover the
   secret with TPM2_ActivateCredential.

MakeCredential: seed encrypted to the EK (RSA: OAEP with the EK's nameAlg and label
"IDENTITY\\0"; ECC: ECDH with an ephemeral key and KDFe), then
``symKey = KDFa(nameAlg, seed, "STORAGE", Name(AK), ∅, symBits)``,
``encIdentity = AES-CFB(symKey, IV=0, TPM2B(secret))``,
``HMACkey = KDFa(nameAlg, seed, "INTEGRITY", ∅, ∅, digestBits)``,
``outerHMAC = HMAC(HMACkey, encIdentity ‖ Name(AK))``; credentialBlob (TPM2B_ID_OBJECT) =
``TPM2B(outerHMAC) ‖ encIdentity``. The EK parameters follow the TCG EK templates: RSA-2048
and ECC P-256 (low range, L-1/L-2) use SHA-256 and AES-128; ECC P-384 (high range H-3, what
swtpm certifies) uses SHA-384 and AES-256.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

# cryptography >= 49 keeps CFB in the decrepit module; MakeCredential needs AES-CFB
# (TPM 2.0 Part 1 §24).
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from sealgate import _core, pki
from sealgate.errors import ChainError, ParseError, VerificationError

#: TCG EK Credential Profile: EKU tcg-kp-EKCertificate and the SAN TPM attributes.
OID_TCG_KP_EK_CERTIFICATE = "2.23.133.8.1"
OID_TPM_MANUFACTURER = "2.23.133.2.1"
OID_TPM_MODEL = "2.23.133.2.2"
OID_TPM_VERSION = "2.23.133.2.3"
OID_SUBJECT_ALT_NAME = "2.5.29.17"  # RFC 5280 §4.2.1.6
#: Most CA certificates walked above the EK certificate to a root (intermediates + root).
MAX_CHAIN_DEPTH = 6
#: What TPM vendors' EK CAs sign with (Infineon, STMicro, Nuvoton, Intel PTT, AMD fTPM:
#: RSA PKCS#1 v1.5 and ECDSA; RSA-PSS for the CAs that moved to it). Anything else is
#: refused before any public-key work.
EK_CA_ALGORITHMS = (
    "rsa-pkcs1-sha256",
    "rsa-pkcs1-sha384",
    "rsa-pkcs1-sha512",
    "ecdsa-sha256",
    "ecdsa-sha384",
    "rsa-pss-sha256",
    "rsa-pss-sha384",
)
#: The PKI layer's chain failures under the stable EK codes. Issuer keys or algorithms the
#: profile cannot verify with are a signature that does not verify, as they always were.
_CHAIN_CODES = {
    "x509.chain.expired": "tpm.ek.cert_expired",
    "x509.chain.not_yet_valid": "tpm.ek.cert_expired",
    "x509.chain.not_ca": "tpm.ek.chain_invalid",
    "x509.chain.key_usage": "tpm.ek.chain_invalid",
    "x509.chain.path_len_exceeded": "tpm.ek.chain_invalid",
    "x509.chain.signature_invalid": "tpm.ek.signature_invalid",
    "x509.chain.algorithm_not_allowed": "tpm.ek.signature_invalid",
    "x509.chain.unsupported_algorithm": "tpm.ek.signature_invalid",
    "x509.chain.bad_key": "tpm.ek.signature_invalid",
    "x509.chain.no_issuer": "tpm.ek.untrusted_root",
    "x509.chain.untrusted_root": "tpm.ek.untrusted_root",
    "x509.chain.too_long": "tpm.ek.chain_too_long",
    "x509.chain.no_anchors": "tpm.ek.no_roots",
}
#: TPM2B_DIGEST credentials are at most the nameAlg digest size (Part 3 §12.6.1).
MAX_SECRET = 32

# TPMA_OBJECT bits (TPM 2.0 Part 2 §8.3).
FIXED_TPM = 0x00000002
FIXED_PARENT = 0x00000010
SENSITIVE_DATA_ORIGIN = 0x00000020
RESTRICTED = 0x00010000
SIGN = 0x00040000
DECRYPT = 0x00020000
AK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN

_HASHES = {"sha256": (hashes.SHA256, 0x000B), "sha384": (hashes.SHA384, 0x000C)}


def load_certificate(data: bytes, what: str = "certificate") -> pki.Certificate:
    """One certificate, PEM or DER (``tpm.ek.cert_invalid`` otherwise)."""
    try:
        return pki.load_certificate(pki.pem_to_der(data, "CERTIFICATE", what), what)
    except ParseError as e:
        raise ParseError(
            "tpm.ek.cert_invalid", f"{what} is not an X.509 certificate: {e}"
        ) from None


def load_certificates(data: bytes, what: str = "CA certificates") -> list[pki.Certificate]:
    """One DER certificate or a PEM bundle (``tpm.ek.cert_invalid`` otherwise)."""
    try:
        return pki.load_certificates(data, what)
    except ParseError as e:
        raise ParseError("tpm.ek.cert_invalid", f"bad certificate bundle: {e}") from None


@dataclass(frozen=True)
class EkInfo:
    certificate: pki.Certificate
    fingerprint: str
    root_fingerprint: str
    manufacturer: str
    model: str
    version: str


def _tcg_profile(cert: pki.Certificate) -> tuple[str, str, str]:
    """TCG EK Credential Profile 2.x §3.2: EKU tcg-kp-EKCertificate and the SAN
    directoryName attributes TPMManufacturer, TPMModel, TPMVersion."""
    eku = cert.extended_key_usage
    if eku is None:
        raise VerificationError("tpm.ek.profile_invalid", "EK certificate has no extendedKeyUsage")
    if OID_TCG_KP_EK_CERTIFICATE not in eku:
        raise VerificationError(
            "tpm.ek.profile_invalid", "EK certificate lacks EKU tcg-kp-EKCertificate (2.23.133.8.1)"
        )
    if OID_SUBJECT_ALT_NAME not in cert.extensions:
        raise VerificationError("tpm.ek.profile_invalid", "EK certificate has no subjectAltName")
    attrs = dict(cert.san_directory_attributes)  # the last of a repeated attribute, as before
    missing = [o for o in (OID_TPM_MANUFACTURER, OID_TPM_MODEL, OID_TPM_VERSION) if o not in attrs]
    if missing:
        raise VerificationError(
            "tpm.ek.profile_invalid",
            f"EK certificate SAN lacks TPM attribute(s) {', '.join(missing)}",
        )
    return attrs[OID_TPM_MANUFACTURER], attrs[OID_TPM_MODEL], attrs[OID_TPM_VERSION]


class EkVerifier:
    """The TPM vendor profile over the PKI layer: the configured EK CA roots (trust anchors,
    trusted byte for byte) and intermediates, and the chain verifier whose memo keeps the
    CA signatures already verified. The service holds one for its lifetime."""

    def __init__(
        self,
        roots: Sequence[pki.Certificate],
        intermediates: Sequence[pki.Certificate] = (),
    ) -> None:
        self.roots = tuple(roots)
        self.intermediates = tuple(intermediates)
        # max_depth counts every certificate of the path: the EK and the CAs above it.
        self.chain = pki.ChainVerifier(EK_CA_ALGORITHMS, max_depth=1 + MAX_CHAIN_DEPTH)

    def verify(
        self,
        ek_cert: bytes,
        chain: Sequence[bytes] = (),
        at: datetime.datetime | None = None,
    ) -> EkInfo:
        """Check the EK certificate (PEM or DER) chains to a root through ``chain`` (PEM
        bundles or DER certificates the node sent) and the configured intermediates, and
        follows the TCG profile."""
        when = at or datetime.datetime.now(datetime.UTC)
        cert = load_certificate(ek_cert, "EK certificate")
        pool = [c for blob in chain for c in load_certificates(blob)]
        pool.extend(self.intermediates)
        if not self.roots:
            raise ChainError("tpm.ek.no_roots", "no EK CA roots are configured")
        # The EK's own window and profile first: they name the EK certificate itself.
        if not cert.valid_at(when):
            raise ChainError(
                "tpm.ek.cert_expired",
                f"EK certificate valid {cert.not_before:%Y-%m-%d} .. "
                f"{cert.not_after:%Y-%m-%d}, not at {when:%Y-%m-%d}",
            )
        manufacturer, model, version = _tcg_profile(cert)
        try:
            path = self.chain.build(cert, pool, self.roots, when)
        except ChainError as e:
            raise pki.remap(e, _CHAIN_CODES, "tpm.ek.chain_invalid") from None
        return EkInfo(cert, cert.fingerprint, path.anchor.fingerprint, manufacturer, model, version)


def verify_ek_chain(
    ek_cert: bytes,
    intermediates: Sequence[bytes],
    roots: Sequence[pki.Certificate],
    at: datetime.datetime | None = None,
) -> EkInfo:
    """Check the EK certificate chains to one of ``roots`` and follows the TCG profile
    (a fresh ``EkVerifier``: nothing is kept between calls)."""
    return EkVerifier(roots).verify(ek_cert, intermediates, at)


def check_ak(ak_public: bytes) -> _core.TpmPublic:
    """The AK must be a restricted signing key generated in and bound to the TPM."""
    ak = _core.TpmPublic.parse(ak_public)
    attrs = ak.attributes
    if ak.name is None or attrs is None:
        raise VerificationError("tpm.ak.invalid", "AK public area has no Name")
    if attrs & AK_REQUIRED != AK_REQUIRED or attrs & DECRYPT:
        raise VerificationError(
            "tpm.ak.not_restricted_signing",
            f"AK attributes 0x{attrs:08x} lack fixedTPM|fixedParent|sensitiveDataOrigin|"
            f"restricted|sign (0x{AK_REQUIRED:08x}) or allow decrypt",
        )
    return ak


# -- KDFs and MakeCredential --------------------------------------------------------------


def kdfa(
    hash_name: str, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """TPM 2.0 Part 1 §11.4.10.2 KDFa: SP 800-108 counter mode with HMAC.

    The TPM's message ``[i]₃₂ ‖ Label ‖ 00 ‖ Context ‖ [L]₃₂`` is exactly KBKDF's
    counter-before-fixed-input layout with a 4-byte counter and a 4-byte length in bits
    (``Context = contextU ‖ contextV``). Every TPM use here asks for whole bytes; a bit count
    that is not a multiple of 8 (which the TPM would mask) is refused rather than guessed.
    """
    if bits <= 0 or bits % 8:
        raise ValueError(f"KDFa output must be a positive whole number of bytes, got {bits} bits")
    return KBKDFHMAC(
        algorithm=_HASHES[hash_name][0](),
        mode=Mode.CounterMode,
        length=bits // 8,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context_u + context_v,
        fixed=None,
    ).derive(key)


def kdfe(
    hash_name: str, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int
) -> bytes:
    """TPM 2.0 Part 1 §11.4.10.3 KDFe: SP 800-56A concatenation KDF.

    ``H([i]₃₂ ‖ Z ‖ Label ‖ 00 ‖ PartyUInfo ‖ PartyVInfo)`` is ConcatKDFHash with
    ``OtherInfo = Label ‖ 00 ‖ PartyUInfo ‖ PartyVInfo``; whole bytes only, as for KDFa.
    """
    if bits <= 0 or bits % 8:
        raise ValueError(f"KDFe output must be a positive whole number of bytes, got {bits} bits")
    return ConcatKDFHash(
        algorithm=_HASHES[hash_name][0](),
        length=bits // 8,
        otherinfo=label + b"\x00" + party_u + party_v,
    ).derive(z)


@dataclass(frozen=True)
class EkParams:
    """How MakeCredential protects to an EK (from the TCG EK template for its key type)."""

    name_alg: str
    sym_bits: int


def ek_params(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> EkParams:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size != 2048:
            # The high-range RSA-3072 template uses SHA-384/AES-256; not certified by swtpm.
            raise VerificationError("tpm.ek.unsupported_key", f"RSA-{key.key_size} EK")
        return EkParams("sha256", 128)
    if key.curve.name == "secp256r1":
        return EkParams("sha256", 128)
    if key.curve.name == "secp384r1":
        return EkParams("sha384", 256)
    raise VerificationError("tpm.ek.unsupported_key", f"EK curve {key.curve.name}")


def _tpm2b(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def _ecc_point(key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    size = (key.curve.key_size + 7) // 8
    n = key.public_numbers()
    return n.x.to_bytes(size, "big"), n.y.to_bytes(size, "big")


@dataclass(frozen=True)
class Credential:
    id_object: bytes  # TPM2B_ID_OBJECT
    encrypted_secret: bytes  # TPM2B_ENCRYPTED_SECRET

    def tpm2_tools_blob(self) -> bytes:
        """tpm2_makecredential's output file: ``BADCC0DE 00000001 ‖ TPM2B_ID_OBJECT ‖
        TPM2B_ENCRYPTED_SECRET`` (tpm2-tools' format)."""
        return b"\xba\xdc\xc0\xde" + struct.pack(">I", 1) + self.id_object + self.encrypted_secret


def _seal_seed(
    ek: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, params: EkParams
) -> tuple[bytes, bytes]:
    """(seed, encrypted seed) per Part 1 §B.10.3 (RSA) / §C.6.4 (ECC)."""
    digest_bits = hashlib.new(params.name_alg).digest_size * 8
    if isinstance(ek, rsa.RSAPublicKey):
        seed = os.urandom(digest_bits // 8)
        algo = _HASHES[params.name_alg][0]()
        enc = ek.encrypt(
            seed,
            padding.OAEP(mgf=padding.MGF1(algo), algorithm=algo, label=b"IDENTITY\x00"),
        )
        return seed, enc
    eph = ec.generate_private_key(ek.curve)
    z = eph.exchange(ec.ECDH(), ek)
    ex, ey = _ecc_point(eph.public_key())
    kx, _ = _ecc_point(ek)
    seed = kdfe(params.name_alg, z, b"IDENTITY", ex, kx, digest_bits)
    return seed, _tpm2b(ex) + _tpm2b(ey)


def make_credential(
    ek: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, ak_name: bytes, secret: bytes
) -> Credential:
    if not 1 <= len(secret) <= MAX_SECRET:
        raise ValueError(f"credential must be 1..{MAX_SECRET} bytes")
    params = ek_params(ek)
    seed, enc_seed = _seal_seed(ek, params)
    return _wrap_credential(params, seed, ak_name, secret, enc_seed)


def _wrap_credential(
    params: EkParams, seed: bytes, ak_name: bytes, secret: bytes, enc_seed: bytes
) -> Credential:
    digest_bits = hashlib.new(params.name_alg).digest_size * 8
    sym_key = kdfa(params.name_alg, seed, b"STORAGE", ak_name, b"", params.sym_bits)
    enc = Cipher(algorithms.AES(sym_key), CFB(b"\x00" * 16)).encryptor()
    enc_identity = enc.update(_tpm2b(secret)) + enc.finalize()
    hmac_key = kdfa(params.name_alg, seed, b"INTEGRITY", b"", b"", digest_bits)
    outer = hmac.new(hmac_key, enc_identity + ak_name, params.name_alg).digest()
    return Credential(_tpm2b(_tpm2b(outer) + enc_identity), _tpm2b(enc_seed))


def activate_credential(
    ek: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, ak_name: bytes, cred: Credential
) -> bytes:
    """TPM2_ActivateCredential in software (for the software TPM of tests and benches)."""
    params = ek_params(ek.public_key())
    digest_bits = hashlib.new(params.name_alg).digest_size * 8
    enc_seed = cred.encrypted_secret[2:]
    if isinstance(ek, rsa.RSAPrivateKey):
        algo = _HASHES[params.name_alg][0]()
        seed = ek.decrypt(
            enc_seed, padding.OAEP(mgf=padding.MGF1(algo), algorithm=algo, label=b"IDENTITY\x00")
        )
    else:
        (xl,) = struct.unpack_from(">H", enc_seed, 0)
        ex = enc_seed[2 : 2 + xl]
        (yl,) = struct.unpack_from(">H", enc_seed, 2 + xl)
        ey = enc_seed[4 + xl : 4 + xl + yl]
        eph = ec.EllipticCurvePublicNumbers(
            int.from_bytes(ex, "big"), int.from_bytes(ey, "big"), ek.curve
        ).public_key()
        z = ek.exchange(ec.ECDH(), eph)
        kx, _ = _ecc_point(ek.public_key())
        seed = kdfe(params.name_alg, z, b"IDENTITY", ex, kx, digest_bits)
    body = cred.id_object[2:]
    (hl,) = struct.unpack_from(">H", body, 0)
    outer, enc_identity = body[2 : 2 + hl], body[2 + hl :]
    hmac_key = kdfa(params.name_alg, seed, b"INTEGRITY", b"", b"", digest_bits)
    want = hmac.new(hmac_key, enc_identity + ak_name, params.name_alg).digest()
    if not hmac.compare_digest(outer, want):
        raise VerificationError("tpm.credential.integrity", "credential HMAC does not verify")
    sym_key = kdfa(params.name_alg, seed, b"STORAGE", ak_name, b"", params.sym_bits)
    dec = Cipher(algorithms.AES(sym_key), CFB(b"\x00" * 16)).decryptor()
    plain = dec.update(enc_identity) + dec.finalize()
    (n,) = struct.unpack_from(">H", plain, 0)
    return plain[2 : 2 + n]


def ek_public_key(cert: pki.Certificate) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    try:
        return cert.public_key()
    except ParseError as e:
        raise VerificationError("tpm.ek.unsupported_key", f"EK key: {e.message}") from None


def tpm_public_key(pub: _core.TpmPublic) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """A ``cryptography`` key from a TPM public area (``components()`` layout of _core)."""
    comps = pub.components()
    if comps is None:
        raise VerificationError("tpm.key.invalid", "public area has no key")
    kind, a, b = comps
    if kind == "rsa":
        return rsa.RSAPublicNumbers(int.from_bytes(b, "big"), int.from_bytes(a, "big")).public_key()
    curves: dict[str, ec.EllipticCurve] = {"nist_p256": ec.SECP256R1(), "nist_p384": ec.SECP384R1()}
    if kind not in curves:
        raise VerificationError("tpm.key.unsupported", f"curve {kind}")
    size = int.from_bytes(b, "big")
    x, y = a[:size], a[size:]
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curves[kind]
    ).public_key()
