"""A synthetic AMD SEV-SNP world: fake AMD key hierarchy, VCEK/VLEK, CRLs, signed reports.

Used by ``scripts/gen_snp_vectors.py`` (which writes ``vectors/sev-snp/``), by the tests, by
the service's end-to-end tests and by the benchmark to play SNP nodes.

Determinism: every key is derived from a fixed seed string, so regenerating the vectors
gives byte-identical files and no private key is stored anywhere. RSA-4096 keys (ARK, ASK,
ASVK) come from a SHA-256 counter-mode stream feeding a prime search (Miller-Rabin with 40
fixed prime bases); P-384 keys (VCEK, VLEK) are a seed-derived scalar. RSASSA-PSS signatures
use a salt derived from the seed and the message (RFC 8017 §9.1.1 allows any salt; a fixed
derivation keeps output stable), ECDSA uses RFC 6979 deterministic nonces. Certificates and
CRLs are assembled with the small DER writer below because AMD's VCEKs carry serial number 0,
which X.509 builders refuse.

Everything here is test material: the "AMD" roots are not pinned, so verifying against them
always needs ``roots=[...]`` (``--roots``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from sealgate.node.tsm import Responder
from sealgate.pki import to_pem
from sealgate.snp import kds
from sealgate.testing.layout import SNP_REPORT

# --------------------------------------------------------------------------------------
# Deterministic randomness and keys
# --------------------------------------------------------------------------------------


def stream(seed: str) -> Iterator[bytes]:
    """SHA-256 in counter mode over the seed: an endless deterministic byte stream."""
    n = 0
    while True:
        yield hashlib.sha256(f"{seed}/{n}".encode()).digest()
        n += 1


def rand_bytes(s: Iterator[bytes], n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += next(s)
    return out[:n]


_SMALL_PRIMES = [p for p in range(3, 20000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]
_MR_BASES = _SMALL_PRIMES[:40]


def _probable_prime(n: int) -> bool:
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(s: Iterator[bytes], bits: int, e: int) -> int:
    while True:
        c = int.from_bytes(rand_bytes(s, bits // 8), "big") | (3 << (bits - 2)) | 1
        if (c - 1) % e != 0 and _probable_prime(c):
            return c


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int
    d: int
    seed: str

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def spki(self) -> bytes:
        pub = seq(integer(self.n), integer(self.e))
        return seq(alg_id(OID_RSA, null()), bitstring(pub))

    def sign_pss_sha384(self, msg: bytes) -> bytes:
        """RSASSA-PSS (RFC 8017 §8.1.1) with SHA-384, MGF1-SHA-384, 48-byte salt."""
        h_len = s_len = 48
        em_bits = self.n.bit_length() - 1
        em_len = (em_bits + 7) // 8
        m_hash = hashlib.sha384(msg).digest()
        salt = hashlib.sha384(f"{self.seed}/pss-salt".encode() + m_hash).digest()[:s_len]
        h = hashlib.sha384(b"\x00" * 8 + m_hash + salt).digest()
        db = b"\x00" * (em_len - s_len - h_len - 2) + b"\x01" + salt
        mask = _mgf1(h, em_len - h_len - 1)
        masked = bytearray(a ^ b for a, b in zip(db, mask, strict=True))
        masked[0] &= 0xFF >> (8 * em_len - em_bits)
        em = bytes(masked) + h + b"\xbc"
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(self.size, "big")


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b""
    c = 0
    while len(out) < length:
        out += hashlib.sha384(seed + c.to_bytes(4, "big")).digest()
        c += 1
    return out[:length]


@cache
def rsa_key(seed: str, bits: int = 4096) -> RsaKey:
    s = stream(f"rsa/{seed}")
    e = 65537
    p = _prime(s, bits // 2, e)
    q = _prime(s, bits // 2, e)
    n = p * q
    d = pow(e, -1, (p - 1) * (q - 1))
    return RsaKey(n, e, d, seed)


@cache
def ec_key(seed: str) -> ec.EllipticCurvePrivateKey:
    order = int(
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
        16,
    )  # P-384 group order (SEC 2 §2.5.1)
    d = int.from_bytes(hashlib.sha512(f"p384/{seed}".encode()).digest(), "big") % (order - 1) + 1
    return ec.derive_private_key(d, ec.SECP384R1())


def ec_point(k: ec.EllipticCurvePrivateKey) -> bytes:
    n = k.public_key().public_numbers()
    return b"\x04" + n.x.to_bytes(48, "big") + n.y.to_bytes(48, "big")


# --------------------------------------------------------------------------------------
# A minimal DER writer (X.690)
# --------------------------------------------------------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))


def integer(v: int) -> bytes:
    n = max(1, (v.bit_length() + 8) // 8)
    return tlv(0x02, v.to_bytes(n, "big", signed=True))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for a in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def null() -> bytes:
    return b"\x05\x00"


def boolean(v: bool) -> bytes:
    return tlv(0x01, b"\xff" if v else b"\x00")


def bitstring(b: bytes) -> bytes:
    return tlv(0x03, b"\x00" + b)


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def ia5(s: str) -> bytes:
    return tlv(0x16, s.encode("ascii"))


def utf8(s: str) -> bytes:
    return tlv(0x0C, s.encode())


def explicit(n: int, content: bytes) -> bytes:
    return tlv(0xA0 + n, content)


def time(t: datetime) -> bytes:
    if t.year < 2050:  # RFC 5280 §4.1.2.5: UTCTime through 2049
        return tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


def alg_id(o: str, params: bytes | None = None) -> bytes:
    return seq(oid(o), params) if params is not None else seq(oid(o))


OID_RSA = "1.2.840.113549.1.1.1"
OID_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_EC = "1.2.840.10045.2.1"
OID_P384 = "1.3.132.0.34"
AMD = "1.3.6.1.4.1.3704.1"

#: AlgorithmIdentifier of AMD's signatures: RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48.
PSS_SHA384 = alg_id(
    OID_PSS,
    seq(
        explicit(0, alg_id(OID_SHA384)),
        explicit(1, alg_id(OID_MGF1, alg_id(OID_SHA384))),
        explicit(2, integer(48)),
    ),
)


def name(cn: str) -> bytes:
    rdn = [
        ("2.5.4.11", "Engineering"),
        ("2.5.4.6", "US"),
        ("2.5.4.7", "Santa Clara"),
        ("2.5.4.8", "CA"),
        ("2.5.4.10", "sealgate synthetic AMD (test only)"),
        ("2.5.4.3", cn),
    ]
    return seq(*(set_(seq(oid(o), utf8(v))) for o, v in rdn))


def extension(o: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(o), *([boolean(True)] if critical else []), octets(value))


def ca_extensions() -> list[bytes]:
    return [
        extension("2.5.29.19", seq(boolean(True)), critical=True),  # basicConstraints cA
        extension("2.5.29.15", tlv(0x03, b"\x01\x06"), critical=True),  # keyCertSign, cRLSign
    ]


def certificate(
    *,
    serial: int,
    issuer: str,
    subject: str,
    not_before: datetime,
    not_after: datetime,
    spki: bytes,
    extensions: list[bytes],
    signer: RsaKey,
) -> bytes:
    tbs = seq(
        explicit(0, integer(2)),
        integer(serial),
        PSS_SHA384,
        name(issuer),
        seq(time(not_before), time(not_after)),
        name(subject),
        spki,
        explicit(3, seq(*extensions)),
    )
    return seq(tbs, PSS_SHA384, bitstring(signer.sign_pss_sha384(tbs)))


def crl(
    *, issuer: str, this_update: datetime, next_update: datetime, revoked: list[int], signer: RsaKey
) -> bytes:
    entries = [seq(integer(s), time(this_update)) for s in revoked]
    tbs = seq(
        integer(1),
        PSS_SHA384,
        name(issuer),
        time(this_update),
        time(next_update),
        *([seq(*entries)] if entries else []),
    )
    return seq(tbs, PSS_SHA384, bitstring(signer.sign_pss_sha384(tbs)))


# --------------------------------------------------------------------------------------
# The synthetic hierarchy
# --------------------------------------------------------------------------------------


def _utc(y: int, m: int = 1, d: int = 1) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


ROOT_VALIDITY = (_utc(2020), _utc(2045))
VCEK_VALIDITY = (_utc(2025), _utc(2032))
#: Real VLEKs live one year; the synthetic one is longer so "now" stays inside it for a
#: while; tests of expiry use an explicit verification time.
VLEK_VALIDITY = (_utc(2025), _utc(2035))
EXPIRED_VALIDITY = (_utc(2020), _utc(2021))
CRL_WINDOW = (_utc(2025), _utc(2035))
#: A verification time inside every synthetic validity window.
VALID_AT = _utc(2026, 6, 1)
REVOKED_SERIAL = 0x5EA1


@dataclass(frozen=True)
class Tcb(kds.Tcb):
    """``sealgate.snp.kds.Tcb`` that also encodes itself, for building reports."""

    def encode(self, product: str) -> bytes:
        """TCB_VERSION bytes (ABI rev 1.57 Table 3; Turin: [fmc, bl, tee, snp, 0, 0, 0, ucode])."""
        if product == "Turin":
            return bytes(
                [self.fmc or 0, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode]
            )
        return bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])


MILAN_TCB = Tcb(bootloader=4, tee=0, snp=22, microcode=213)
TURIN_TCB = Tcb(bootloader=3, tee=2, snp=5, microcode=97, fmc=1)
CHIP_A = hashlib.sha512(b"sealgate synthetic chip A").digest()
CHIP_B = hashlib.sha512(b"sealgate synthetic chip B").digest()
TURIN_CHIP = hashlib.sha512(b"sealgate synthetic turin chip").digest()[:8] + bytes(56)


def vcek_extensions(
    product_name: str, tcb: Tcb, hwid: bytes | None, csp_id: str | None, turin: bool
) -> list[bytes]:
    """AMD VCEK/VLEK extensions (pub. 57230 Table 8)."""
    exts = [
        extension(f"{AMD}.1", integer(1 if turin else 0)),
        extension(f"{AMD}.2", ia5(product_name)),
    ]
    if turin:
        exts.append(extension(f"{AMD}.3.9", integer(tcb.fmc or 0)))
    exts += [
        extension(f"{AMD}.3.1", integer(tcb.bootloader)),
        extension(f"{AMD}.3.2", integer(tcb.tee)),
        extension(f"{AMD}.3.4", integer(0)),
        extension(f"{AMD}.3.5", integer(0)),
        extension(f"{AMD}.3.6", integer(0)),
        extension(f"{AMD}.3.7", integer(0)),
        extension(f"{AMD}.3.3", integer(tcb.snp)),
        extension(f"{AMD}.3.8", integer(tcb.microcode)),
    ]
    if hwid is not None:
        # The hwID extnValue holds the raw CHIP_ID bytes, not a DER value (as AMD issues it).
        exts.append(extension(f"{AMD}.4", hwid))
    if csp_id is not None:
        exts.append(extension(f"{AMD}.5", ia5(csp_id)))
    return exts


@dataclass(frozen=True)
class Product:
    name: str
    ark: RsaKey
    ask: RsaKey
    asvk: RsaKey | None
    ark_der: bytes
    ask_der: bytes
    asvk_der: bytes | None

    def cert_chain_pem(self) -> bytes:
        """KDS ``cert_chain`` layout: ASK then ARK."""
        return to_pem(self.ask_der) + to_pem(self.ark_der)

    def vlek_chain_pem(self) -> bytes:
        assert self.asvk_der is not None
        return to_pem(self.asvk_der) + to_pem(self.ark_der)


@cache
def product(name_: str, with_asvk: bool = True) -> Product:
    ark = rsa_key(f"ark-{name_}")
    ask = rsa_key(f"ask-{name_}")
    pid = {"Milan": 1, "Genoa": 2, "Turin": 3}[name_]
    ark_der = certificate(
        serial=pid << 16,
        issuer=f"ARK-{name_}",
        subject=f"ARK-{name_}",
        not_before=ROOT_VALIDITY[0],
        not_after=ROOT_VALIDITY[1],
        spki=ark.spki(),
        extensions=ca_extensions(),
        signer=ark,
    )
    ask_der = certificate(
        serial=(pid << 16) | 1,
        issuer=f"ARK-{name_}",
        subject=f"SEV-{name_}",
        not_before=ROOT_VALIDITY[0],
        not_after=ROOT_VALIDITY[1],
        spki=ask.spki(),
        extensions=ca_extensions(),
        signer=ark,
    )
    asvk = asvk_der = None
    if with_asvk:
        asvk = rsa_key(f"asvk-{name_}")
        asvk_der = certificate(
            serial=(pid << 16) | 0x101,
            issuer=f"ARK-{name_}",
            subject=f"SEV-VLEK-{name_}",
            not_before=ROOT_VALIDITY[0],
            not_after=ROOT_VALIDITY[1],
            spki=asvk.spki(),
            extensions=ca_extensions(),
            signer=ark,
        )
    return Product(name_, ark, ask, asvk, ark_der, ask_der, asvk_der)


@dataclass(frozen=True)
class Endorsement:
    """A VCEK or VLEK: its certificate and private key."""

    der: bytes
    key: ec.EllipticCurvePrivateKey
    kind: str  # "vcek" | "vlek"
    product: str
    tcb: Tcb
    chip_id: bytes


def endorsement(
    prod: Product,
    *,
    kind: str = "vcek",
    seed: str,
    tcb: Tcb,
    chip_id: bytes,
    serial: int = 0,
    validity: tuple[datetime, datetime] | None = None,
    product_name: str | None = None,
    csp_id: str = "CN=sealgate-test-csp.example",
) -> Endorsement:
    key = ec_key(seed)
    turin = prod.name == "Turin"
    if kind == "vcek":
        hwid: bytes | None = chip_id[:8] if turin else chip_id
        issuer, signer, csp = f"SEV-{prod.name}", prod.ask, None
        validity = validity or VCEK_VALIDITY
    else:
        assert prod.asvk is not None
        hwid, issuer, signer, csp = None, f"SEV-VLEK-{prod.name}", prod.asvk, csp_id
        validity = validity or VLEK_VALIDITY
    spki = seq(alg_id(OID_EC, oid(OID_P384)), bitstring(ec_point(key)))
    pname = product_name or (prod.name if turin else f"{prod.name}-B0")
    der = certificate(
        serial=serial,
        issuer=issuer,
        subject="SEV-VCEK" if kind == "vcek" else "SEV-VLEK",
        not_before=validity[0],
        not_after=validity[1],
        spki=spki,
        extensions=vcek_extensions(pname, tcb, hwid, csp, turin),
        signer=signer,
    )
    return Endorsement(der, key, kind, prod.name, tcb, chip_id)


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------

CPUID = {"Milan": (0x19, 0x01, 0x01), "Genoa": (0x19, 0x11, 0x01), "Turin": (0x1A, 0x02, 0x01)}


@dataclass(frozen=True)
class ReportFields:
    """Chosen ATTESTATION_REPORT fields (ABI rev 1.57 Table 23)."""

    version: int = 5
    guest_svn: int = 1
    policy: int = 0x30000  # SMT allowed, reserved bit 17, debug off
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    vmpl: int = 0
    platform_info: int = 0x25  # SMT, ECC, alias check complete
    signing_key: int = 0  # 0 VCEK, 1 VLEK, 7 none
    report_data: bytes = bytes(64)
    measurement: bytes = hashlib.sha384(b"sealgate synthetic launch digest").digest()
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = hashlib.sha256(b"sealgate report id").digest()
    report_id_ma: bytes = b"\xff" * 32
    firmware: tuple[int, int, int] = (1, 55, 21)  # major, minor, build
    mit_vector: int = 0x0B
    extra: dict[int, bytes] = field(default_factory=dict)  # offset → bytes (malformed cases)


def build_report(
    ek: Endorsement | None,
    f: ReportFields,
    *,
    product_name: str = "Milan",
    tcb: Tcb | None = None,
    chip_id: bytes | None = None,
    sign: bool = True,
) -> bytes:
    """Assemble a report and sign bytes 0x000-0x29F with the endorsement key."""
    prod = ek.product if ek is not None else product_name
    tcb = tcb or (ek.tcb if ek is not None else MILAN_TCB)
    chip = chip_id if chip_id is not None else (ek.chip_id if ek is not None else bytes(64))
    t = tcb.encode(prod)
    L = SNP_REPORT
    b = L.new()
    L.put(b, "version", f.version)
    L.put(b, "guest_svn", f.guest_svn)
    L.put(b, "policy", f.policy)
    L.put(b, "family_id", f.family_id)
    L.put(b, "image_id", f.image_id)
    L.put(b, "vmpl", f.vmpl)
    L.put(b, "signature_algo", 1)  # ECDSA P-384 with SHA-384
    for tcb_field in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        L.put(b, tcb_field, t)
    L.put(b, "platform_info", f.platform_info)
    L.put(b, "key_info", f.signing_key << 2)
    L.put(b, "report_data", f.report_data)
    L.put(b, "measurement", f.measurement)
    L.put(b, "host_data", f.host_data)
    L.put(b, "id_key_digest", f.id_key_digest)
    L.put(b, "author_key_digest", f.author_key_digest)
    L.put(b, "report_id", f.report_id)
    L.put(b, "report_id_ma", f.report_id_ma)
    if f.version >= 3:
        L.put(b, "cpuid", bytes(CPUID[prod]))
    L.put(b, "chip_id", chip)
    major, minor, build = f.firmware
    L.put(b, "current_version", bytes([build, minor, major, 0]))
    L.put(b, "committed_version", bytes([build, minor, major, 0]))
    if f.version >= 5:
        L.put(b, "launch_mit_vector", f.mit_vector)
        L.put(b, "current_mit_vector", f.mit_vector)
    if sign and ek is not None:
        signed = bytes(b[: L.offset("signature")])
        der = ek.key.sign(signed, ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
        r, s = utils.decode_dss_signature(der)
        L.put(b, "signature.r", r.to_bytes(72, "little"))
        L.put(b, "signature.s", s.to_bytes(72, "little"))
    for off, data in f.extra.items():
        b[off : off + len(data)] = data
    return bytes(b)


# --------------------------------------------------------------------------------------
# The world the vectors and the e2e tests share
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    milan: Product
    genoa: Product
    turin: Product
    vcek: Endorsement
    vcek_chip_b: Endorsement
    vcek_expired: Endorsement
    vcek_revoked: Endorsement
    vlek: Endorsement
    vcek_turin: Endorsement
    crl: bytes
    crl_ask_revoked: bytes
    crl_expired: bytes


@cache
def world() -> World:
    """Build (deterministically) every synthetic key and certificate. A few seconds: the
    RSA-4096 prime searches run in pure Python once per process."""
    milan, genoa, turin = product("Milan"), product("Genoa", False), product("Turin", False)
    vcek = endorsement(milan, seed="vcek-milan-chip-a", tcb=MILAN_TCB, chip_id=CHIP_A)
    return World(
        milan=milan,
        genoa=genoa,
        turin=turin,
        vcek=vcek,
        vcek_chip_b=endorsement(milan, seed="vcek-milan-chip-b", tcb=MILAN_TCB, chip_id=CHIP_B),
        vcek_expired=endorsement(
            milan,
            seed="vcek-milan-expired",
            tcb=MILAN_TCB,
            chip_id=CHIP_A,
            validity=EXPIRED_VALIDITY,
        ),
        vcek_revoked=endorsement(
            milan,
            seed="vcek-milan-revoked",
            tcb=MILAN_TCB,
            chip_id=CHIP_A,
            serial=REVOKED_SERIAL,
        ),
        vlek=endorsement(milan, kind="vlek", seed="vlek-milan", tcb=MILAN_TCB, chip_id=bytes(64)),
        vcek_turin=endorsement(turin, seed="vcek-turin", tcb=TURIN_TCB, chip_id=TURIN_CHIP),
        crl=crl(
            issuer="ARK-Milan",
            this_update=CRL_WINDOW[0],
            next_update=CRL_WINDOW[1],
            revoked=[REVOKED_SERIAL],
            signer=milan.ark,
        ),
        crl_ask_revoked=crl(
            issuer="ARK-Milan",
            this_update=CRL_WINDOW[0],
            next_update=CRL_WINDOW[1],
            revoked=[(1 << 16) | 1],
            signer=milan.ark,
        ),
        crl_expired=crl(
            issuer="ARK-Milan",
            this_update=_utc(2021),
            next_update=_utc(2022),
            revoked=[],
            signer=milan.ark,
        ),
    )


# --------------------------------------------------------------------------------------
# Playing an SNP node (service e2e tests, benchmark)
# --------------------------------------------------------------------------------------

VECTOR_DIR = Path(__file__).resolve().parents[3] / "vectors" / "sev-snp"


@dataclass(frozen=True)
class SyntheticNode:
    """An SNP node of the synthetic world: signs fresh reports with the chip-A VCEK.

    Built from the committed vectors (certificates) plus the seed-derived VCEK key, so it is
    instant; ``SyntheticNode.build()`` recomputes everything instead (slow, no files).
    """

    vcek_der: bytes
    cert_chain: bytes
    ark_pem: bytes
    key: ec.EllipticCurvePrivateKey
    tcb: Tcb = MILAN_TCB
    chip_id: bytes = CHIP_A
    product: str = "Milan"

    @classmethod
    def load(cls, vector_dir: Path = VECTOR_DIR) -> SyntheticNode:
        return cls(
            vcek_der=(vector_dir / "vcek-milan.der").read_bytes(),
            cert_chain=(vector_dir / "cert_chain-milan.pem").read_bytes(),
            ark_pem=(vector_dir / "ark-milan.pem").read_bytes(),
            key=ec_key("vcek-milan-chip-a"),
        )

    @classmethod
    def build(cls) -> SyntheticNode:
        w = world()
        return cls(
            vcek_der=w.vcek.der,
            cert_chain=w.milan.cert_chain_pem(),
            ark_pem=to_pem(w.milan.ark_der),
            key=w.vcek.key,
        )

    def report(self, report_data: bytes, **fields: object) -> bytes:
        """A v5 report carrying ``report_data`` (≤ 64 bytes, zero-padded), signed now."""
        if len(report_data) > 64:
            raise ValueError("report_data is at most 64 bytes")
        f = replace(ReportFields(), report_data=report_data.ljust(64, b"\x00"), **fields)  # type: ignore[arg-type]
        ek = Endorsement(self.vcek_der, self.key, "vcek", self.product, self.tcb, self.chip_id)
        return build_report(ek, f)

    def tsm_responder(self, with_certs: bool = True) -> Responder:
        """A ``FakeTsm`` responder producing this node's reports and, as the host would with
        an extended guest request, the certificate table holding the VCEK in ``auxblob``."""
        from sealgate.snp.certtable import build_cert_table

        aux = build_cert_table({"vcek": self.vcek_der}) if with_certs else None

        def respond(data: bytes) -> tuple[bytes, bytes | None]:
            return self.report(data), aux

        return respond
