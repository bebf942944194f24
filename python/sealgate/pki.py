"""The one PKI layer every platform uses: certificates, CRLs, PEM, and the chain builder.

Parsing is the Rust core's (``sealgate-formats`` ``x509``, on RustCrypto's ``x509-cert``:
strict DER, AMD's serial-0 VCEKs accepted, the standard extensions decoded at parse time),
and so are the signature checks and the chain builder (``sealgate-verify`` ``pki``: issuer
by name and key identifier, basic constraints and path length, key usage, the vendor's
signature algorithms, validity, CRLs). This module gives those Python types with
``datetime`` times and the vendor extensions as typed records, and maps the builder's
``x509.*`` codes to each platform's stable codes (``remap``).

A platform describes its hierarchy once as a ``ChainVerifier`` (its vendor profile) owned by
its verifier object, which also keeps the memo of signatures already verified.

Docs: docs/architecture.md ("PKI").
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealgate import _core
from sealgate.errors import ChainError, ParseError

#: Largest DER certificate and CRL the core accepts (``x509.format.too_large`` beyond).
MAX_CERT_LEN = 16 << 10
MAX_CRL_LEN = 4 << 20

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_P384 = "1.3.132.0.34"
OID_AMD = "1.3.6.1.4.1.3704.1"
OID_SGX_EXTENSIONS = "1.2.840.113741.1.13.1"
OID_DICE_TCB_INFO = "2.23.133.5.4.1"


def to_unix(at: datetime) -> int:
    """A timezone-aware time as Unix seconds (the core's time unit)."""
    if at.tzinfo is None:
        raise ValueError("verification times must be timezone-aware")
    return int(at.timestamp())


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class AlgorithmId(NamedTuple):
    oid: str
    params: bytes | None


class Extension(NamedTuple):
    critical: bool
    value: bytes  # the extnValue OCTET STRING's content


@dataclass(frozen=True)
class AmdExtensions:
    """AMD VCEK/VLEK extensions (AMD pub. 57230 §3.1 Table 8); None where absent."""

    struct_version: int | None
    product_name: str | None
    bl_spl: int | None
    tee_spl: int | None
    snp_spl: int | None
    ucode_spl: int | None
    fmc_spl: int | None
    hwid: bytes | None
    csp_id: str | None


@dataclass(frozen=True)
class SgxExtension:
    """The SGX extension fields TCB evaluation uses (Intel PCK Certificate Profile §1.3.5)."""

    ppid: bytes
    cpusvn_components: tuple[int, ...]  # 16 SGX TCB component SVNs (.2.1 .. .2.16)
    pcesvn: int
    cpusvn: bytes
    pceid: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None


def parse_sgx_extension(raw: bytes) -> SgxExtension:
    """The DER value of extension 1.2.840.113741.1.13.1 (``tdx.format.*`` when malformed)."""
    d = _core.sgx_extension_fields(raw)
    return SgxExtension(
        ppid=d["ppid"],
        cpusvn_components=tuple(d["cpusvn_components"]),
        pcesvn=d["pcesvn"],
        cpusvn=d["cpusvn"],
        pceid=d["pceid"],
        fmspc=d["fmspc"],
        sgx_type=d["sgx_type"],
        platform_instance_id=d["platform_instance_id"],
    )


@dataclass(frozen=True)
class DiceTcbInfo:
    """TCG DICE 2.23.133.5.4.1: DiceTcbInfo, or the CompositeDeviceID shape (``version``,
    device key, one FWID) that NVIDIA's device certificates carry."""

    vendor: str | None
    model: str | None
    version: str | None
    svn: int | None
    layer: int | None
    index: int | None
    fwids: tuple[tuple[str, bytes], ...]  # (hash algorithm OID, digest)
    flags: bytes | None
    vendor_info: bytes | None
    type: bytes | None
    composite_version: int | None
    device_public_key: bytes | None  # DER SubjectPublicKeyInfo (CompositeDeviceID only)


class Certificate:
    """An X.509 v3 certificate as the core parsed it (RFC 5280 §4.1)."""

    def __init__(self, core: _core.X509Certificate) -> None:
        self.core = core
        self.der: bytes = core.der
        self.fingerprint: str = core.fingerprint  # SHA-256 of the DER, lowercase hex
        self.subject: bytes = core.subject  # raw DER Name
        self.issuer: bytes = core.issuer
        self.subject_cn: str = core.subject_cn
        self.issuer_cn: str = core.issuer_cn
        self.not_before: datetime = _dt(core.not_before)
        self.not_after: datetime = _dt(core.not_after)

    def __repr__(self) -> str:
        return f"Certificate({self.subject_cn!r}, sha256 {self.fingerprint[:16]}…)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @cached_property
    def serial(self) -> int:
        return int.from_bytes(self.core.serial_bytes, "big", signed=True)

    @property
    def serial_bytes(self) -> bytes:
        return self.core.serial_bytes

    @property
    def tbs(self) -> bytes:
        return self.core.tbs

    @property
    def signature(self) -> bytes:
        return self.core.signature

    @property
    def signature_alg(self) -> AlgorithmId:
        return AlgorithmId(*self.core.signature_algorithm)

    @property
    def signature_algorithm_name(self) -> str | None:
        """``rsa-pss-sha384``, ``ecdsa-sha256``, ... or None when not one sealgate verifies."""
        return self.core.signature_algorithm_name

    @property
    def spki(self) -> bytes:
        return self.core.spki

    @property
    def spki_alg(self) -> AlgorithmId:
        return AlgorithmId(*self.core.spki_algorithm)

    @property
    def public_key_bits(self) -> bytes:
        return self.core.public_key_bits

    @property
    def key_type(self) -> tuple[str, int, str | None]:
        """("rsa", modulus bits, None) | ("ec", field bits, curve OID) | ("other", 0, OID)."""
        return self.core.key_type

    @cached_property
    def extensions(self) -> dict[str, Extension]:
        return {oid: Extension(crit, v) for oid, crit, v in self.core.extensions}

    def extension(self, oid: str) -> bytes | None:
        return self.core.extension(oid)

    def is_ca(self) -> bool:
        return self.core.is_ca

    @property
    def basic_constraints(self) -> tuple[bool, int | None] | None:
        return self.core.basic_constraints

    @property
    def key_usage(self) -> tuple[bool, bool, bool] | None:
        """(digitalSignature, keyCertSign, cRLSign), None when absent."""
        return self.core.key_usage

    @property
    def extended_key_usage(self) -> list[str] | None:
        return self.core.extended_key_usage

    @property
    def san_directory_attributes(self) -> list[tuple[str, str]]:
        return self.core.san_directory_attributes

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The subject key as a ``cryptography`` object (for encryption to EKs and the like)."""
        try:
            key = serialization.load_der_public_key(self.spki)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise ParseError(
                "x509.format.invalid",
                f"unusable public key: {e}",
                "SubjectPublicKeyInfo",
                0,
            ) from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ParseError(
                "x509.format.invalid",
                f"{type(key).__name__} is not RSA or EC",
                "SubjectPublicKeyInfo",
                0,
            )
        return key

    def amd_extensions(self) -> AmdExtensions:
        """``snp.format.invalid`` (a ParseError) when one is malformed."""
        return AmdExtensions(**self.core.amd_extensions())

    def sgx_extension(self) -> SgxExtension | None:
        raw = self.extension(OID_SGX_EXTENSIONS)
        return parse_sgx_extension(raw) if raw is not None else None

    def dice_tcb_info(self) -> DiceTcbInfo | None:
        d = self.core.dice_tcb_info()
        if d is None:
            return None
        d["fwids"] = tuple(d["fwids"])
        return DiceTcbInfo(**d)

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


class Crl:
    """An X.509 v2 CRL (RFC 5280 §5.1)."""

    def __init__(self, core: _core.X509Crl) -> None:
        self.core = core
        self.der: bytes = core.der
        self.fingerprint: str = core.fingerprint
        self.issuer: bytes = core.issuer
        self.issuer_cn: str = core.issuer_cn
        self.this_update: datetime = _dt(core.this_update)
        nu = core.next_update
        self.next_update: datetime | None = _dt(nu) if nu is not None else None

    @cached_property
    def revoked(self) -> frozenset[int]:
        """Revoked serial numbers."""
        return frozenset(int.from_bytes(s, "big", signed=True) for s in self.core.revoked_serials)

    @property
    def signature_alg(self) -> AlgorithmId:
        return AlgorithmId(*self.core.signature_algorithm)

    def revokes(self, cert: Certificate) -> bool:
        return self.core.revokes(cert.serial_bytes)

    def current_at(self, at: datetime) -> bool:
        """thisUpdate ≤ at ≤ nextUpdate (RFC 5280 §5.1.2.4-5)."""
        return self.this_update <= at and (self.next_update is None or at <= self.next_update)


def _with_what(e: ParseError, what: str) -> ParseError:
    return ParseError(e.code, f"{what}: {e.message}", e.field, e.offset)


def load_certificate(data: bytes, what: str = "certificate") -> Certificate:
    """Exactly one DER certificate."""
    try:
        return Certificate(_core.X509Certificate.parse(data))
    except ParseError as e:
        raise _with_what(e, what) from None


def pem_blocks(data: bytes, label: str = "CERTIFICATE", *, strict: bool = False) -> list[bytes]:
    """Every ``-----BEGIN <label>-----`` block of a PEM text, decoded (RFC 7468).

    RFC 7468 §2 lets explanatory text surround the blocks, and by default it is skipped.
    ``strict`` allows only whitespace there (``x509.format.trailing_bytes`` otherwise), for
    bundles that are nothing but certificates (evidence chains, collateral issuer chains):
    there the text is padding an attester chose, and a block whose header was garbled would
    otherwise be skipped as text and the bundle would silently lose a certificate.

    PEM is text armour, not ASN.1; the standard library's base64 decodes it (``validate``:
    no characters outside the alphabet), so there is no library to prefer here.
    """
    begin = f"-----BEGIN {label}-----".encode()
    end = f"-----END {label}-----".encode()
    out: list[bytes] = []
    pos = 0
    while True:
        s = data.find(begin, pos)
        if strict and data[pos : s if s >= 0 else len(data)].strip():
            raise ParseError(
                "x509.format.trailing_bytes", f"PEM: bytes outside the {label} blocks", "PEM", pos
            )
        if s < 0:
            return out
        e = data.find(end, s)
        if e < 0:
            raise ParseError("x509.format.invalid", f"PEM: unterminated {label} block", "PEM", s)
        body = b"".join(data[s + len(begin) : e].split())
        try:
            out.append(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            raise ParseError(
                "x509.format.invalid", f"PEM: bad base64 in {label} block", "PEM", s
            ) from None
        pos = e + len(end)


def pem_to_der(data: bytes, label: str, what: str) -> bytes:
    """The DER inside one PEM block with ``label``, or the input when it is not PEM."""
    blocks = pem_blocks(data, label)
    if not blocks:
        if data.lstrip().startswith(b"-----BEGIN"):
            raise ParseError("x509.format.invalid", f"{what}: PEM without a {label} block", what, 0)
        return data
    if len(blocks) != 1:
        raise ParseError(
            "x509.format.invalid",
            f"{what}: {len(blocks)} PEM {label} blocks where one was expected",
            what,
            0,
        )
    return blocks[0]


def load_certificates(data: bytes, what: str = "certificates") -> list[Certificate]:
    """A PEM bundle (one or more certificates) or one DER certificate."""
    if data.lstrip().startswith(b"-----BEGIN"):
        ders = pem_blocks(data)
        if not ders:
            raise ParseError("x509.format.invalid", f"{what}: no CERTIFICATE block in PEM", what, 0)
        return [load_certificate(d, what) for d in ders]
    return [load_certificate(data, what)]


def load_crl(data: bytes, what: str = "CRL") -> Crl:
    """One CRL, PEM or DER."""
    # PEM is at most 4/3 of the DER plus line breaks: refuse oversized input before decoding.
    if len(data) > 2 * MAX_CRL_LEN:
        raise ParseError("x509.format.too_large", f"{what} of {len(data)} bytes", what, 0)
    der = pem_to_der(data, "X509 CRL", what)
    try:
        return Crl(_core.X509Crl.parse(der))
    except ParseError as e:
        raise _with_what(e, what) from None


def to_pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


@dataclass(frozen=True)
class Path:
    """A verified chain: ``certs`` leaf first, trust anchor last; the intersection of the
    certificates' validity windows."""

    certs: tuple[Certificate, ...]
    not_before: datetime
    not_after: datetime

    @property
    def leaf(self) -> Certificate:
        return self.certs[0]

    @property
    def anchor(self) -> Certificate:
        return self.certs[-1]

    def invalid_at(self, at: datetime) -> tuple[Certificate, str] | None:
        """The first certificate not valid at ``at`` and whether it is "expired" or
        "not_yet_valid"; None when every one is valid (two comparisons in the common case)."""
        if self.not_before <= at <= self.not_after:
            return None
        for c in self.certs:
            if at < c.not_before:
                return c, "not_yet_valid"
            if at > c.not_after:
                return c, "expired"
        return None


class ChainVerifier:
    """One vendor hierarchy's profile and the memo of signatures it has verified.

    ``algorithms``: the signature algorithms the vendor signs certificates and CRLs with
    (``rsa-pss-sha384``, ``rsa-pkcs1-sha256``, ``ecdsa-sha256``, ...); anything else is
    refused (``x509.chain.algorithm_not_allowed``). ``issuer_rsa_bits``: the exact RSA size
    every issuer must have. ``check_anchor_signature``: verify the anchor's self-signature.
    """

    def __init__(
        self,
        algorithms: Sequence[str],
        *,
        max_depth: int = 6,
        issuer_rsa_bits: int | None = None,
        check_anchor_signature: bool = False,
        memo_entries: int = 65536,
    ) -> None:
        self._v = _core.X509ChainVerifier(
            list(algorithms),
            max_depth=max_depth,
            issuer_rsa_bits=issuer_rsa_bits,
            check_anchor_signature=check_anchor_signature,
            memo_entries=memo_entries,
        )

    def build(
        self,
        leaf: Certificate,
        pool: Sequence[Certificate],
        anchors: Sequence[Certificate],
        at: datetime | None = None,
    ) -> Path:
        """Verify a path from ``leaf`` through ``pool`` (untrusted) to one of ``anchors``
        (trusted byte for byte). ``at``: check validity at that time; None leaves it to
        ``Path.invalid_at``. Raises ChainError with an ``x509.chain.*`` code."""
        steps, nb, na = self._v.build(
            leaf.core,
            [c.core for c in pool],
            [c.core for c in anchors],
            to_unix(at) if at is not None else None,
        )
        src: dict[str, Sequence[Certificate]] = {"leaf": (leaf,), "pool": pool, "anchor": anchors}
        return Path(tuple(src[k][i] for k, i in steps), _dt(nb), _dt(na))

    def check_signed(self, cert: Certificate, issuer: Certificate) -> None:
        """``issuer`` signed ``cert`` under this profile. Raises ChainError."""
        self._v.check_signed(cert.core, issuer.core)

    def check_crl(self, crl: Crl, issuer: Certificate, at: datetime | None = None) -> None:
        """``crl`` is ``issuer``'s (name, cRLSign, signature) and, with ``at``, current.
        Raises ChainError with an ``x509.crl.*`` code."""
        self._v.check_crl(crl.core, issuer.core, to_unix(at) if at is not None else None)

    @property
    def memo_len(self) -> int:
        return self._v.memo_len

    def clear(self) -> None:
        self._v.clear()


def remap(e: ChainError, codes: Mapping[str, str], default: str) -> ChainError:
    """The PKI layer's failure under a platform's code: ``codes`` maps ``x509.*`` codes to
    the platform's, anything unlisted becomes ``default``. The message is kept."""
    return ChainError(codes.get(e.code, default), e.message)


def describe(cert: Certificate) -> str:
    return repr(cert.subject_cn) if cert.subject_cn else f"certificate sha256 {cert.fingerprint}"
