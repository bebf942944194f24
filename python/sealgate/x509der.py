"""A small strict DER reader for the X.509 certificates and CRLs vendors ship.

Why not ``cryptography.x509``? AMD's VCEK/VLEK certificates carry serial number 0, which
RFC 5280 §4.1.2.2 forbids; pyca/cryptography 48+ loads them only with a
``CryptographyDeprecationWarning`` announcing a future exception. A verifier must not
depend on behaviour its library has scheduled for removal, so certificates and CRLs are
parsed here (DER, X.690 §8/§10) into exactly the fields verification needs, and
``cryptography`` is used only for what it does well: loading a SubjectPublicKeyInfo and
checking a signature. Nothing here trusts anything; it only reads bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sealgate.errors import ChainError, ParseError

#: Certificates and CRLs larger than this are refused before parsing. Vendor certificates
#: are 1-3 KiB; AMD's per-product CRLs and Intel's PCK CRLs are tens of KiB.
MAX_CERT_LEN = 16 << 10
MAX_CRL_LEN = 4 << 20
#: DER nesting deeper than this is not X.509 (certs nest ~8 levels).
MAX_DEPTH = 32
#: OBJECT IDENTIFIER contents longer than this are refused. X.509 OIDs are short: the longest
#: in AMD's and Intel's certificates is 11 octets, a UUID OID under 2.25 (X.667) about 20.
#: The bound keeps every arc below 7 * 128 = 896 bits (at most 270 decimal digits), so
#: decoding is linear in the input and an arc never reaches Python's 4,300-digit limit on
#: int-to-str conversion; without it a node-supplied CRL carrying one 400 KB arc took
#: seconds of quadratic big-integer shifting before any signature check.
MAX_OID_LEN = 128
#: INTEGER contents longer than this are refused. The integers read here are versions,
#: serial numbers (at most 20 octets, RFC 5280 §4.1.2.2), RSASSA-PSS salt/trailer fields
#: and AMD's one-octet SPL extensions; RSA moduli sit inside BIT STRINGs and are left to
#: ``cryptography``. 64 octets (at most 155 decimal digits) also keeps every value printable
#: in an error message.
MAX_INTEGER_LEN = 64
#: Extensions per certificate: vendor certificates carry about ten.
MAX_EXTENSIONS = 64
#: Revoked entries read from one CRL. AMD's per-product CRLs list a handful of serials;
#: the bound caps the set a node-supplied CRL can make us build (a 4 MiB CRL of minimal
#: entries would otherwise hold ~250,000).
MAX_CRL_ENTRIES = 1 << 16

OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_SHA256_RSA = "1.2.840.113549.1.1.11"
OID_SHA384_RSA = "1.2.840.113549.1.1.12"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_ECDSA_SHA384 = "1.2.840.10045.4.3.3"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_P384 = "1.3.132.0.34"
OID_CN = "2.5.4.3"
OID_BASIC_CONSTRAINTS = "2.5.29.19"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    OID_SHA256: hashes.SHA256,
    OID_SHA384: hashes.SHA384,
    OID_SHA512: hashes.SHA512,
}

# Universal tags used here (X.680 §8.4).
T_BOOLEAN, T_INTEGER, T_BIT_STRING, T_OCTET_STRING, T_NULL, T_OID = 1, 2, 3, 4, 5, 6
T_UTF8, T_PRINTABLE, T_IA5, T_UTC_TIME, T_GEN_TIME = 12, 19, 22, 23, 24
T_SEQUENCE, T_SET = 0x30, 0x31


def _perr(what: str, msg: str, offset: int = 0) -> ParseError:
    return ParseError("x509.format.invalid", f"{what}: {msg}", what, offset)


class Der:
    """A cursor over one DER-encoded value list. Every read is bounds-checked."""

    __slots__ = ("buf", "depth", "end", "pos", "what")

    def __init__(
        self, buf: bytes, what: str, pos: int = 0, end: int | None = None, depth: int = 0
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end
        self.what = what
        self.depth = depth

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek_tag(self) -> int | None:
        return None if self.pos >= self.end else self.buf[self.pos]

    def read(self, tag: int | None = None) -> tuple[int, int, int, int]:
        """Read one TLV → (tag, start_of_tlv, start_of_content, end_of_content)."""
        start = self.pos
        if start + 2 > self.end:
            raise _perr(self.what, "truncated", start)
        t = self.buf[start]
        if t & 0x1F == 0x1F:
            raise _perr(self.what, "multi-byte tags are not used by X.509", start)
        if tag is not None and t != tag:
            raise _perr(self.what, f"expected tag 0x{tag:02x}, found 0x{t:02x}", start)
        first = self.buf[start + 1]
        p = start + 2
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            # DER: definite lengths only (X.690 §10.1), at most 4 length octets here, and
            # minimal (no leading zero octet, long form only for lengths >= 128).
            if n == 0 or n > 4 or p + n > self.end:
                raise _perr(self.what, "bad length encoding", start)
            length = int.from_bytes(self.buf[p : p + n], "big")
            if self.buf[p] == 0 or length < 0x80:
                raise _perr(self.what, "non-minimal length encoding", start)
            p += n
        if p + length > self.end:
            raise _perr(self.what, "value runs past its container", start)
        self.pos = p + length
        return t, start, p, p + length

    def sub(self, tag: int) -> Der:
        _, start, s, e = self.read(tag)
        if self.depth >= MAX_DEPTH:
            raise _perr(self.what, f"nested deeper than {MAX_DEPTH} levels", start)
        return Der(self.buf, self.what, s, e, self.depth + 1)

    def raw(self, tag: int | None = None) -> bytes:
        _, s, _, e = self.read(tag)
        return self.buf[s:e]

    def content(self, tag: int) -> bytes:
        _, _, s, e = self.read(tag)
        return self.buf[s:e]

    def integer(self) -> int:
        start = self.pos
        v = self.content(T_INTEGER)
        if not v:
            raise _perr(self.what, "empty INTEGER", start)
        if len(v) > MAX_INTEGER_LEN:
            raise _perr(self.what, f"INTEGER of {len(v)} octets (at most {MAX_INTEGER_LEN})", start)
        return int.from_bytes(v, "big", signed=True)

    def oid(self) -> str:
        start = self.pos
        return decode_oid(self.content(T_OID), self.what, start)

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise _perr(self.what, f"{self.end - self.pos} unexpected trailing bytes", self.pos)


def decode_oid(b: bytes, what: str = "oid", offset: int = 0) -> str:
    """Dotted form of an OBJECT IDENTIFIER's contents (X.690 §8.19), at most MAX_OID_LEN."""
    if not b or b[-1] & 0x80:
        raise _perr(what, "bad OBJECT IDENTIFIER", offset)
    if len(b) > MAX_OID_LEN:
        raise _perr(what, f"OBJECT IDENTIFIER of {len(b)} octets (at most {MAX_OID_LEN})", offset)
    arcs: list[int] = []
    v = 0
    start = True
    for byte in b:
        # X.690 §8.19.2: a subidentifier is minimal, its first octet is never 0x80.
        if start and byte == 0x80:
            raise _perr(what, "non-minimal OBJECT IDENTIFIER arc", offset)
        v = (v << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(v)
            v = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_time(tag: int, b: bytes, what: str) -> datetime:
    """UTCTime / GeneralizedTime in the RFC 5280 §4.1.2.5 profile (Z, seconds)."""
    try:
        s = b.decode("ascii")
        if tag == T_UTC_TIME and len(s) == 13 and s.endswith("Z"):
            yy = int(s[:2])
            # RFC 5280: YY >= 50 is 19YY, otherwise 20YY.
            year = 1900 + yy if yy >= 50 else 2000 + yy
            return datetime.strptime(f"{year}{s[2:12]}", "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if tag == T_GEN_TIME and len(s) == 15 and s.endswith("Z"):
            return datetime.strptime(s[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except (UnicodeDecodeError, ValueError):
        pass
    raise _perr(what, f"bad time {b!r}")


def _time(d: Der) -> datetime:
    t, _, s, e = d.read()
    if t not in (T_UTC_TIME, T_GEN_TIME):
        raise _perr(d.what, f"expected a Time, found tag 0x{t:02x}", s)
    return decode_time(t, d.buf[s:e], d.what)


@dataclass(frozen=True)
class AlgorithmId:
    oid: str
    params: bytes  # raw DER of the parameters (b"" when absent)


def _alg(d: Der) -> AlgorithmId:
    a = d.sub(T_SEQUENCE)
    oid = a.oid()
    params = b"" if a.at_end() else a.raw()
    a.expect_end()
    return AlgorithmId(oid, params)


@dataclass(frozen=True)
class PssParams:
    """RSASSA-PSS-params (RFC 4055 §3.1)."""

    hash_oid: str
    mgf_hash_oid: str
    salt_length: int


def parse_pss_params(params: bytes, what: str) -> PssParams:
    d = Der(params, what).sub(T_SEQUENCE)
    # Defaults per RFC 4055: SHA-1, MGF1-SHA-1, salt 20, trailer 1.
    hash_oid, mgf_hash, salt, trailer = "1.3.14.3.2.26", "1.3.14.3.2.26", 20, 1
    if d.peek_tag() == 0xA0:
        hash_oid = _alg(d.sub(0xA0)).oid
    if d.peek_tag() == 0xA1:
        mgf = _alg(d.sub(0xA1))
        if mgf.oid != OID_MGF1:
            raise _perr(what, f"unsupported mask generation {mgf.oid}")
        mgf_hash = _alg(Der(mgf.params, what)).oid
    if d.peek_tag() == 0xA2:
        salt = d.sub(0xA2).integer()
    if d.peek_tag() == 0xA3:
        trailer = d.sub(0xA3).integer()
    d.expect_end()
    if trailer != 1:
        raise _perr(what, f"PSS trailer field {trailer}")
    return PssParams(hash_oid, mgf_hash, salt)


def common_name(name_der: bytes) -> str:
    """The first CN of a Name, or the empty string."""
    try:
        d = Der(name_der, "name").sub(T_SEQUENCE)
        while not d.at_end():
            rdn = d.sub(T_SET)
            while not rdn.at_end():
                atv = rdn.sub(T_SEQUENCE)
                if atv.oid() == OID_CN:
                    _, _, s, e = atv.read()
                    return atv.buf[s:e].decode("utf-8", "replace")
    except ParseError:
        return ""
    return ""


@dataclass(frozen=True)
class Extension:
    critical: bool
    value: bytes  # the extnValue OCTET STRING's content


@dataclass(frozen=True)
class Certificate:
    """The fields of an X.509 v3 certificate verification uses (RFC 5280 §4.1)."""

    der: bytes
    tbs: bytes
    serial: int
    signature_alg: AlgorithmId
    signature: bytes
    issuer: bytes  # raw DER Name
    subject: bytes
    not_before: datetime
    not_after: datetime
    spki: bytes  # raw DER SubjectPublicKeyInfo
    spki_alg: AlgorithmId
    public_key_bits: bytes
    extensions: dict[str, Extension] = field(default_factory=dict)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the DER encoding, lowercase hex (computed once)."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def subject_cn(self) -> str:
        return common_name(self.subject)

    @property
    def issuer_cn(self) -> str:
        return common_name(self.issuer)

    def is_ca(self) -> bool:
        ext = self.extensions.get(OID_BASIC_CONSTRAINTS)
        if ext is None:
            return False
        d = Der(ext.value, "basicConstraints").sub(T_SEQUENCE)
        return d.peek_tag() == T_BOOLEAN and d.content(T_BOOLEAN) != b"\x00"

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        try:
            key = serialization.load_der_public_key(self.spki)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise _perr("SubjectPublicKeyInfo", f"unusable public key: {e}") from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise _perr("SubjectPublicKeyInfo", f"{type(key).__name__} is not RSA or EC")
        return key

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def load_certificate(data: bytes, what: str = "certificate") -> Certificate:
    """Parse one DER certificate; the input must be exactly one certificate."""
    if len(data) > MAX_CERT_LEN:
        raise ParseError("x509.format.too_large", f"{what} of {len(data)} bytes", what, 0)
    top = Der(data, what)
    cert = top.sub(T_SEQUENCE)
    top.expect_end()
    tbs_raw = cert.raw(T_SEQUENCE)
    sig_alg = _alg(cert)
    sig_bits = cert.content(T_BIT_STRING)
    cert.expect_end()
    if not sig_bits or sig_bits[0] != 0:
        raise _perr(what, "signature BIT STRING has unused bits")
    t = Der(tbs_raw, what).sub(T_SEQUENCE)
    version = 0
    if t.peek_tag() == 0xA0:
        version = t.sub(0xA0).integer()
    if version != 2:
        raise _perr(what, f"X.509 version {version + 1}, only v3 is accepted")
    serial = t.integer()
    inner_alg = _alg(t)
    # RFC 5280 §4.1.1.2: the outer signatureAlgorithm must equal tbsCertificate.signature.
    if inner_alg != sig_alg:
        raise _perr(what, "signatureAlgorithm differs from tbsCertificate.signature")
    issuer = t.raw(T_SEQUENCE)
    validity = t.sub(T_SEQUENCE)
    not_before = _time(validity)
    not_after = _time(validity)
    validity.expect_end()
    subject = t.raw(T_SEQUENCE)
    spki = t.raw(T_SEQUENCE)
    sd = Der(spki, what).sub(T_SEQUENCE)
    spki_alg = _alg(sd)
    key_bits = sd.content(T_BIT_STRING)
    sd.expect_end()
    if not key_bits or key_bits[0] != 0:
        raise _perr(what, "subjectPublicKey has unused bits")
    # issuerUniqueID [1] / subjectUniqueID [2] are skipped (never used by these vendors).
    for tag in (0x81, 0x82):
        if t.peek_tag() == tag:
            t.read(tag)
    exts: dict[str, Extension] = {}
    if t.peek_tag() == 0xA3:
        el = t.sub(0xA3).sub(T_SEQUENCE)
        while not el.at_end():
            if len(exts) >= MAX_EXTENSIONS:
                raise _perr(what, f"more than {MAX_EXTENSIONS} extensions", el.pos)
            e = el.sub(T_SEQUENCE)
            oid = e.oid()
            critical = False
            if e.peek_tag() == T_BOOLEAN:
                critical = e.content(T_BOOLEAN) != b"\x00"
            value = e.content(T_OCTET_STRING)
            e.expect_end()
            if oid in exts:  # RFC 5280 §4.2
                raise _perr(what, f"duplicate extension {oid}")
            exts[oid] = Extension(critical, value)
    t.expect_end()
    return Certificate(
        der=data,
        tbs=tbs_raw,
        serial=serial,
        signature_alg=sig_alg,
        signature=sig_bits[1:],
        issuer=issuer,
        subject=subject,
        not_before=not_before,
        not_after=not_after,
        spki=spki,
        spki_alg=spki_alg,
        public_key_bits=key_bits[1:],
        extensions=exts,
    )


@dataclass(frozen=True)
class Crl:
    """An X.509 v2 CRL (RFC 5280 §5.1): who issued it, when, and the revoked serials."""

    der: bytes
    tbs: bytes
    signature_alg: AlgorithmId
    signature: bytes
    issuer: bytes
    this_update: datetime
    next_update: datetime | None
    revoked: frozenset[int]

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def load_crl(data: bytes, what: str = "CRL") -> Crl:
    # PEM is at most 4/3 of the DER plus line breaks: refuse oversized input before decoding.
    if len(data) > 2 * MAX_CRL_LEN:
        raise ParseError("x509.format.too_large", f"{what} of {len(data)} bytes", what, 0)
    data = pem_to_der(data, "X509 CRL", what)
    if len(data) > MAX_CRL_LEN:
        raise ParseError("x509.format.too_large", f"{what} of {len(data)} bytes", what, 0)
    top = Der(data, what)
    c = top.sub(T_SEQUENCE)
    top.expect_end()
    tbs = c.raw(T_SEQUENCE)
    sig_alg = _alg(c)
    sig_bits = c.content(T_BIT_STRING)
    c.expect_end()
    if not sig_bits or sig_bits[0] != 0:
        raise _perr(what, "signature BIT STRING has unused bits")
    t = Der(tbs, what).sub(T_SEQUENCE)
    if t.peek_tag() == T_INTEGER:
        t.integer()
    if _alg(t) != sig_alg:
        raise _perr(what, "signatureAlgorithm differs from tbsCertList.signature")
    issuer = t.raw(T_SEQUENCE)
    this_update = _time(t)
    next_update = _time(t) if t.peek_tag() in (T_UTC_TIME, T_GEN_TIME) else None
    revoked: set[int] = set()
    if t.peek_tag() == T_SEQUENCE:
        rl = t.sub(T_SEQUENCE)
        entries = 0
        while not rl.at_end():
            entries += 1
            if entries > MAX_CRL_ENTRIES:
                raise _perr(what, f"more than {MAX_CRL_ENTRIES} revoked entries", rl.pos)
            entry = rl.sub(T_SEQUENCE)
            revoked.add(entry.integer())
    if t.peek_tag() == 0xA0:
        t.read(0xA0)
    t.expect_end()
    return Crl(
        der=data,
        tbs=tbs,
        signature_alg=sig_alg,
        signature=sig_bits[1:],
        issuer=issuer,
        this_update=this_update,
        next_update=next_update,
        revoked=frozenset(revoked),
    )


def pem_to_der(data: bytes, label: str, what: str) -> bytes:
    """The DER inside one PEM block with ``label``, or the input when it is not PEM."""
    blocks = pem_blocks(data, label)
    if not blocks:
        if data.lstrip().startswith(b"-----BEGIN"):
            raise _perr(what, f"PEM without a {label} block")
        return data
    if len(blocks) != 1:
        raise _perr(what, f"{len(blocks)} PEM {label} blocks where one was expected")
    return blocks[0]


def pem_blocks(data: bytes, label: str = "CERTIFICATE", *, strict: bool = False) -> list[bytes]:
    """Every ``-----BEGIN <label>-----`` block of a PEM bundle, decoded.

    RFC 7468 §2 lets text surround the blocks, and by default it is skipped. ``strict``
    allows only whitespace there (``x509.format.trailing_bytes`` otherwise), for bundles that
    are nothing but certificates (evidence chains, collateral issuer chains): there the text
    is padding an attester chose, and a block whose header was garbled would otherwise be
    skipped as text and the bundle would silently lose a certificate.
    """
    import base64
    import binascii

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
            raise _perr("PEM", f"unterminated {label} block", s)
        body = b"".join(data[s + len(begin) : e].split())
        try:
            out.append(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            raise _perr("PEM", f"bad base64 in {label} block", s) from None
        pos = e + len(end)


def load_certificates(data: bytes, what: str = "certificates") -> list[Certificate]:
    """A PEM bundle (any number of certificates) or one DER certificate."""
    if data.lstrip().startswith(b"-----BEGIN"):
        ders = pem_blocks(data)
        if not ders:
            raise _perr(what, "no CERTIFICATE block in PEM")
        return [load_certificate(d, what) for d in ders]
    return [load_certificate(data, what)]


def verify_signature(
    tbs: bytes,
    alg: AlgorithmId,
    signature: bytes,
    issuer_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    what: str,
    *,
    code: str = "x509.chain.signature_invalid",
) -> None:
    """Check ``signature`` over ``tbs`` with the issuer's key, for the algorithms vendors use.

    RSASSA-PSS parameters are read from the AlgorithmIdentifier and applied explicitly
    (hash, MGF1 hash and salt length) rather than inferred.
    """
    try:
        if alg.oid == OID_RSASSA_PSS:
            p = parse_pss_params(alg.params, what)
            h = _HASHES.get(p.hash_oid)
            if h is None or p.mgf_hash_oid != p.hash_oid or p.salt_length < 0:
                raise ChainError(code, f"{what}: unsupported RSASSA-PSS parameters {p}")
            if not isinstance(issuer_key, rsa.RSAPublicKey):
                raise ChainError(code, f"{what}: RSASSA-PSS signature but the issuer key is EC")
            issuer_key.verify(
                signature, tbs, padding.PSS(mgf=padding.MGF1(h()), salt_length=p.salt_length), h()
            )
        elif alg.oid in (OID_SHA256_RSA, OID_SHA384_RSA):
            if not isinstance(issuer_key, rsa.RSAPublicKey):
                raise ChainError(code, f"{what}: RSA signature but the issuer key is EC")
            h2 = hashes.SHA256() if alg.oid == OID_SHA256_RSA else hashes.SHA384()
            issuer_key.verify(signature, tbs, padding.PKCS1v15(), h2)
        elif alg.oid in (OID_ECDSA_SHA256, OID_ECDSA_SHA384):
            if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
                raise ChainError(code, f"{what}: ECDSA signature but the issuer key is RSA")
            h3 = hashes.SHA256() if alg.oid == OID_ECDSA_SHA256 else hashes.SHA384()
            issuer_key.verify(signature, tbs, ec.ECDSA(h3))
        else:
            raise ChainError(code, f"{what}: unsupported signature algorithm {alg.oid}")
    except InvalidSignature:
        raise ChainError(code, f"{what}: signature does not verify") from None
    except (ValueError, TypeError, OverflowError, UnsupportedAlgorithm) as e:
        # cryptography refuses parameters it cannot apply (e.g. a PSS salt longer than the
        # key allows): that signature does not verify either.
        raise ChainError(code, f"{what}: signature unusable: {type(e).__name__}") from None
