"""PCK certificates: the SGX extension and the chain PCK → PCK CA → Intel SGX Root CA.

Chains are checked once per distinct (chain bytes, trusted roots) and cached in memory:
signatures, issuer linkage, CA constraints, the root pin. What depends on the verification
time (validity windows) or on collateral (CRLs) is re-checked on every call — those are
comparisons, not signature verifications.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate import _core
from sealgate.errors import ChainError, ParseError
from sealgate.lru import BoundedCache
from sealgate.tdx.der import (
    MAX_EXTENSION_LEN,
    T_INTEGER,
    T_OCTET_STRING,
    T_OID,
    T_SEQUENCE,
    children,
    decode_oid,
    decode_uint,
    read_tlv,
)
from sealgate.x509der import pem_blocks

#: Intel SGX Root CA (CN=Intel SGX Root CA, ECDSA P-256, valid 2018-05-21..2049-12-31), SHA-256
#: of the DER certificate: what Intel PCS serves at the end of /sgx/certification/v4/... issuer
#: chains and what Phala's dcap-qvl ships as its trusted root.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

#: "Intel SGX PCK Certificate and CRL Profile Specification" §3.5: extension OIDs.
OID_SGX_EXTENSIONS = "1.2.840.113741.1.13.1"
OID_PPID = OID_SGX_EXTENSIONS + ".1"
OID_TCB = OID_SGX_EXTENSIONS + ".2"
OID_PCESVN = OID_TCB + ".17"
OID_CPUSVN = OID_TCB + ".18"
OID_PCEID = OID_SGX_EXTENSIONS + ".3"
OID_FMSPC = OID_SGX_EXTENSIONS + ".4"
OID_SGX_TYPE = OID_SGX_EXTENSIONS + ".5"
OID_PLATFORM_INSTANCE_ID = OID_SGX_EXTENSIONS + ".6"

#: Subject common names of Intel's DCAP hierarchy ("Intel SGX PCK Certificate and
#: Certificate Revocation List Profile Specification", certificate hierarchy; QVL checks
#: the same names). Each role is pinned to its name so that, e.g., a PCK certificate (whose
#: key lives in a platform) can never pass as the TCB signing certificate.
CN_PCK = "Intel SGX PCK Certificate"
CN_PCK_CAS = ("Intel SGX PCK Platform CA", "Intel SGX PCK Processor CA")
CN_TCB_SIGNING = "Intel SGX TCB Signing"

#: A PCK chain is three certificates; more than this is not Intel's.
MAX_CHAIN_CERTS = 4
#: Entries kept in the verified-chain cache (one per platform the verifier has seen).
CHAIN_CACHE_SIZE = 4096


@dataclass(frozen=True)
class SgxExtension:
    """The fields of the PCK certificate's SGX extension that TCB evaluation uses."""

    ppid: bytes
    cpusvn_components: tuple[int, ...]  # 16 SGX TCB component SVNs (.2.1 .. .2.16)
    pcesvn: int
    cpusvn: bytes
    pceid: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None


def parse_sgx_extension(raw: bytes) -> SgxExtension:
    """Parse the DER value of extension 1.2.840.113741.1.13.1."""
    if len(raw) > MAX_EXTENSION_LEN:
        raise ParseError("tdx.format.too_large", "SGX extension too large", "SGX extension", 0)
    tag, s, e = read_tlv(raw, 0, len(raw))
    if tag != T_SEQUENCE or e != len(raw):
        raise ParseError("tdx.format.invalid", "SGX extension is not one SEQUENCE", "SGX", 0)
    fields: dict[str, tuple[int, bytes, int]] = {}
    comps: dict[int, int] = {}
    pcesvn: int | None = None
    cpusvn: bytes | None = None
    for tag, vs, ve in children(raw, s, e):
        if tag != T_SEQUENCE:
            raise ParseError("tdx.format.invalid", "SGX extension entry", "SGX", vs)
        items = children(raw, vs, ve)
        if len(items) != 2 or items[0][0] != T_OID:
            raise ParseError("tdx.format.invalid", "SGX extension entry shape", "SGX", vs)
        oid = decode_oid(raw[items[0][1] : items[0][2]])
        vtag, v0, v1 = items[1]
        if oid == OID_TCB:
            if vtag != T_SEQUENCE:
                raise ParseError("tdx.format.invalid", "SGX TCB is not a SEQUENCE", "SGX", v0)
            for ttag, ts, te in children(raw, v0, v1):
                sub = children(raw, ts, te)
                if ttag != T_SEQUENCE or len(sub) != 2 or sub[0][0] != T_OID:
                    raise ParseError("tdx.format.invalid", "SGX TCB entry shape", "SGX", ts)
                soid = decode_oid(raw[sub[0][1] : sub[0][2]])
                stag, ss, se = sub[1]
                if soid == OID_CPUSVN:
                    if stag != T_OCTET_STRING or se - ss != 16:
                        raise ParseError("tdx.format.invalid", "CPUSVN", "SGX.CPUSVN", ss)
                    cpusvn = raw[ss:se]
                    continue
                if stag != T_INTEGER:
                    raise ParseError("tdx.format.invalid", f"{soid} not INTEGER", "SGX", ss)
                val = decode_uint(raw[ss:se], ss)
                if soid == OID_PCESVN:
                    pcesvn = val
                elif soid.startswith(OID_TCB + "."):
                    idx = int(soid.rsplit(".", 1)[1])
                    if 1 <= idx <= 16:
                        comps[idx] = val
        else:
            fields[oid] = (vtag, raw[v0:v1], v0)

    def octets(oid: str, size: int | None, name: str) -> bytes:
        if oid not in fields:
            raise ParseError("tdx.format.invalid", f"SGX extension lacks {name}", name, 0)
        t, v, off = fields[oid]
        if t != T_OCTET_STRING or (size is not None and len(v) != size):
            raise ParseError("tdx.format.invalid", f"SGX {name} malformed", name, off)
        return v

    if sorted(comps) != list(range(1, 17)) or pcesvn is None or cpusvn is None:
        raise ParseError("tdx.format.invalid", "SGX TCB lacks components", "SGX.TCB", 0)
    sgx_type = 0
    if OID_SGX_TYPE in fields:
        sgx_type = decode_uint(fields[OID_SGX_TYPE][1], fields[OID_SGX_TYPE][2])
    pid = fields.get(OID_PLATFORM_INSTANCE_ID)
    return SgxExtension(
        ppid=octets(OID_PPID, 16, "PPID"),
        cpusvn_components=tuple(comps[i] for i in range(1, 17)),
        pcesvn=pcesvn,
        cpusvn=cpusvn,
        pceid=octets(OID_PCEID, 2, "PCE-ID"),
        fmspc=octets(OID_FMSPC, 6, "FMSPC"),
        sgx_type=sgx_type,
        platform_instance_id=pid[1] if pid and pid[0] == T_OCTET_STRING else None,
    )


#: Failures of ``cryptography`` reading a certificate it has already loaded: it parses
#: extensions, names and keys lazily, on first use.
_LAZY_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def _readable(cert: x509.Certificate, what: str, code: str) -> x509.Certificate:
    """Read now what ``cryptography`` reads lazily (names, extensions, the key), so that a
    duplicated extension (RFC 5280 §4.2: "MUST NOT include more than one instance of a
    particular extension"), a malformed one or an unknown key algorithm is refused with a
    code here instead of escaping later from a chain check as a foreign exception."""
    try:
        _ = (cert.subject, cert.issuer, cert.extensions)
        cert.public_key()
    except _LAZY_ERRORS as e:
        raise ChainError(code, f"{what}: {type(e).__name__}: {e}") from None
    return cert


def load_pem_chain(data: bytes, what: str) -> list[x509.Certificate]:
    """Certificates from concatenated PEM (a trailing NUL, as quotes carry, is ignored).

    Every block must be a certificate that parses, and nothing but whitespace may surround
    the blocks: a garbled block is refused, never skipped.
    """
    code = "tdx.pck.chain_invalid"
    body = data.rstrip(b"\x00 \r\n\t")
    if body.count(b"-----BEGIN") > MAX_CHAIN_CERTS:
        raise ChainError(code, f"{what} holds more than {MAX_CHAIN_CERTS} PEM blocks")
    try:
        ders = pem_blocks(body, strict=True)
    except ParseError as e:
        raise ChainError(code, f"{what} is not a PEM chain: {e.message}") from None
    if not ders:
        raise ChainError(code, f"{what} holds no certificate")
    certs = []
    for i, der in enumerate(ders):
        try:
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion) as e:
            raise ChainError(code, f"{what}: certificate #{i} does not parse: {e}") from None
        certs.append(_readable(cert, f"{what}: certificate #{i}", code))
    return certs


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate, PEM or DER."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as e:
        raise ChainError("tdx.root.invalid", f"not a certificate: {e}") from None
    return _readable(cert, "root certificate", "tdx.root.invalid")


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if len(attrs) == 1 else ""


def check_roles(chain: VerifiedChain, names: tuple[tuple[str, ...], ...], code: str) -> None:
    """``chain`` (leaf … root) has exactly ``len(names) + 1`` certificates whose subject CNs
    are, in order, one of ``names[i]`` (the root was already matched to a trusted one)."""
    if len(chain.certs) != len(names) + 1:
        raise ChainError(
            code, f"chain of {len(chain.certs)} certificates, expected {len(names) + 1}"
        )
    for cert, allowed in zip(chain.certs, names, strict=False):
        cn = common_name(cert.subject)
        if cn not in allowed:
            raise ChainError(code, f"certificate {cn!r} where {' or '.join(allowed)} belongs")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class VerifiedChain:
    """A chain whose signatures and shape were verified; times are checked per call."""

    certs: tuple[x509.Certificate, ...]  # leaf first, trusted root last
    windows: tuple[tuple[str, datetime, datetime], ...]  # (subject, not_before, not_after)
    not_before: datetime  # latest notBefore of the chain
    not_after: datetime  # earliest notAfter of the chain

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[0]

    def check_time(self, at: datetime, code: str) -> None:
        # Fast path: inside every certificate's window (two comparisons per quote).
        if self.not_before <= at <= self.not_after:
            return
        for subject, nb, na in self.windows:
            if not nb <= at <= na:
                raise ChainError(
                    code,
                    f"{subject} is valid {nb.isoformat()}..{na.isoformat()}, "
                    f"not at {at.isoformat()}",
                )


@dataclass(frozen=True)
class PckInfo:
    chain: VerifiedChain
    key: _core.TdxPckKey
    ext: SgxExtension
    ca_kind: str  # "platform" | "processor"
    ca_fp: str  # fingerprint of the issuing PCK CA (CRL cache key)
    #: (issuer DER, serial) of every certificate but the root, leaf first: revocation
    #: checks compare these with CRL entries without re-reading the certificates.
    serials: tuple[tuple[bytes, int], ...] = field(default=())
    #: The PCK claims (fmspc, pce_id, pcesvn, cpusvn, pck_ca), built once.
    claims: dict[str, Any] = field(default_factory=dict)


def verify_chain(
    certs: list[x509.Certificate], roots: list[x509.Certificate], code: str
) -> VerifiedChain:
    """Link ``certs`` (leaf first) to one of ``roots`` by issuer name and signature.

    The chain may or may not include the root; when it does, the included root must be
    byte-identical to a trusted one (a look-alike self-signed root is refused).
    """
    if not roots:
        raise ChainError(
            code,
            "no trusted Intel SGX Root CA is configured (run `sealgate trust fetch tdx` or "
            "`sealgate trust import FILE`, or pass roots)",
        )
    root_fps = {fingerprint(r): r for r in roots}
    chain = list(certs)
    if chain and chain[-1].subject == chain[-1].issuer:
        fp = fingerprint(chain[-1])
        if fp not in root_fps:
            raise ChainError(code, f"chain root {fp} is not a trusted Intel SGX Root CA")
        chain.pop()
    for i, c in enumerate(chain):
        if i > 0 and not _is_ca(c):
            raise ChainError(code, f"{c.subject.rfc4514_string()} is not a CA")
        if i + 1 < len(chain):
            if not _signed_by(c, chain[i + 1]):
                raise ChainError(
                    code,
                    f"{c.subject.rfc4514_string()} is not signed by "
                    f"{chain[i + 1].subject.rfc4514_string()}",
                )
    top = chain[-1] if chain else None
    root = None
    if top is None:
        raise ChainError(code, "empty chain")
    for r in roots:
        if r.subject == top.issuer and _signed_by(top, r):
            root = r
            break
    if root is None:
        raise ChainError(
            code, f"{top.subject.rfc4514_string()} is not signed by a trusted Intel SGX Root CA"
        )
    full = (*chain, root)
    windows = tuple(
        (c.subject.rfc4514_string(), c.not_valid_before_utc, c.not_valid_after_utc) for c in full
    )
    return VerifiedChain(
        certs=full,
        windows=windows,
        not_before=max(w[1] for w in windows),
        not_after=min(w[2] for w in windows),
    )


#: Bytes the verified-chain cache may hold (an entry is a few KiB of parsed certificates).
CHAIN_CACHE_BYTES = 64 << 20
_PCK_CACHE: BoundedCache[tuple[Any, ...], PckInfo] = BoundedCache(
    CHAIN_CACHE_SIZE, CHAIN_CACHE_BYTES
)


def chain_key(chain_pem: bytes) -> tuple[bytes, ...]:
    """SHA-256 of each certificate's DER in a PEM chain from a quote, checked for shape
    without parsing: at most ``MAX_CHAIN_CERTS`` blocks and nothing but whitespace (and
    the NUL terminator quotes carry) outside them, so that padding neither rides along in
    a cache key nor goes unnoticed."""
    if chain_pem.count(b"-----BEGIN") > MAX_CHAIN_CERTS:
        raise ChainError(
            "tdx.pck.chain_invalid", f"PCK chain holds more than {MAX_CHAIN_CERTS} certificates"
        )
    try:
        ders = pem_blocks(chain_pem.rstrip(b"\x00 \r\n\t"), strict=True)
    except ParseError as e:
        if e.code == "x509.format.trailing_bytes":
            raise ParseError("tdx.format.trailing_bytes", f"PCK chain: {e.message}") from None
        raise ChainError("tdx.pck.chain_invalid", f"PCK chain: {e.message}") from None
    return tuple(hashlib.sha256(d).digest() for d in ders)


def pck_cached(chain_pem: bytes, roots_key: tuple[str, ...]) -> PckInfo | None:
    """The verified chain for these certificates and roots, if already in memory."""
    try:
        return _PCK_CACHE.get((chain_key(chain_pem), roots_key))
    except (ChainError, ParseError):
        return None


def pck_info(
    chain_pem: bytes, roots: list[x509.Certificate], roots_key: tuple[str, ...]
) -> PckInfo:
    """Verified PCK chain for the quote's certification data (cached by the certificates'
    fingerprints and the root set)."""
    key = (chain_key(chain_pem), roots_key)
    hit = _PCK_CACHE.get(key)
    if hit is not None:
        return hit
    certs = load_pem_chain(chain_pem, "PCK certificate chain")
    chain = verify_chain(certs, roots, "tdx.pck.chain_invalid")
    check_roles(chain, ((CN_PCK,), CN_PCK_CAS), "tdx.pck.chain_invalid")
    leaf = chain.leaf
    pub = leaf.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
        raise ChainError("tdx.pck.chain_invalid", "PCK key is not ECDSA P-256")
    try:
        raw = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(OID_SGX_EXTENSIONS)).value
    except x509.ExtensionNotFound:
        raise ChainError("tdx.pck.chain_invalid", "PCK certificate has no SGX extension") from None
    if not isinstance(raw, x509.UnrecognizedExtension):
        raise ChainError("tdx.pck.chain_invalid", "SGX extension not readable")
    ext = parse_sgx_extension(raw.value)
    ca_name = leaf.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(ca_name[0].value) if ca_name else ""
    kind = "processor" if "Processor" in cn else "platform"
    nums = pub.public_numbers()
    info = PckInfo(
        chain=chain,
        key=_core.TdxPckKey(nums.x.to_bytes(32, "big"), nums.y.to_bytes(32, "big")),
        ext=ext,
        ca_kind=kind,
        ca_fp=fingerprint(chain.certs[1]),
        serials=tuple((c.issuer.public_bytes(), c.serial_number) for c in chain.certs[:-1]),
        claims={
            "fmspc": ext.fmspc.hex(),
            "pce_id": ext.pceid.hex(),
            "pcesvn": ext.pcesvn,
            "cpusvn": ext.cpusvn.hex(),
            "pck_ca": kind,
            # The platform's identity for revocation (stable across TCB recovery).
            "ppid": ext.ppid.hex(),
            # Platform CA certificates only (multi-package platforms); the OCTET STRING as
            # the certificate carries it (CoCo trustee prints it byte-reversed).
            "platform_instance_id": (
                ext.platform_instance_id.hex() if ext.platform_instance_id is not None else None
            ),
        },
    )
    # cryptography's certificates keep their DER and a parsed copy; charge both.
    size = 2 * sum(len(c.public_bytes(serialization.Encoding.DER)) for c in chain.certs)
    _PCK_CACHE.put(key, info, size + 32 * len(key[0]) + 1024)
    return info
