"""Hostile X.509 inputs for the Python certificate paths (tests and fuzz harnesses).

What a genuine but hostile node can put into its evidence: certificates and CRLs edited at
the DER level (X.690) and, where the check under test runs after a signature check,
re-signed with the synthetic hierarchy's keys (``sealgate.testing.tdx.FakeIntel``). Every
builder is deterministic. Nothing here is used by verification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate.pki import to_pem
from sealgate.testing.snp import AMD, alg_id, bitstring, integer, octets, oid, seq, tlv
from sealgate.testing.tdx import FakeIntel, Platform

# --------------------------------------------------------------------------------------
# DER surgery
# --------------------------------------------------------------------------------------


def _header(der: bytes, pos: int) -> tuple[int, int]:
    """(start of the contents, end of the TLV) of the TLV at ``pos`` (X.690 §8.1: one-octet
    tags, definite lengths; the inputs are well-formed certificates and CRLs this module
    edits, never evidence, so a malformed one is a bug in the test: IndexError/ValueError)."""
    first = der[pos + 1]
    if first < 0x80:
        return pos + 2, pos + 2 + first
    n = first & 0x7F
    if not 0 < n <= 4:
        raise ValueError(f"unsupported DER length at {pos}")
    length = int.from_bytes(der[pos + 2 : pos + 2 + n], "big")
    return pos + 2 + n, pos + 2 + n + length


def children(der: bytes) -> list[bytes]:
    """The TLVs inside the contents of the one TLV ``der`` (constructed or OCTET STRING)."""
    pos, end = _header(der, 0)
    out: list[bytes] = []
    while pos < end:
        _, nxt = _header(der, pos)
        if nxt > end:
            raise ValueError(f"TLV at {pos} runs past its container")
        out.append(der[pos:nxt])
        pos = nxt
    return out


def edit(der: bytes, path: Sequence[int], fn: Callable[[bytes], bytes]) -> bytes:
    """``der`` with the TLV at ``path`` (child indices from the outermost TLV) replaced by
    ``fn(old)``; every enclosing length is re-encoded. An index equal to the number of
    children appends ``fn(b"")``."""
    if not path:
        return fn(der)
    kids = children(der)
    i = path[0]
    if i == len(kids):
        kids.append(fn(b""))
    else:
        kids[i] = edit(kids[i], path[1:], fn)
    return tlv(der[0], b"".join(kids))


#: Paths inside a certificate (RFC 5280 §4.1): tbsCertificate and its fields (v3 layout).
TBS = 0
SERIAL = (TBS, 1)
SPKI = (TBS, 6)
EXTENSIONS = (TBS, 7, 0)  # [3] EXPLICIT → SEQUENCE OF Extension


def extension_path(cert: bytes, oid_der: bytes) -> tuple[int, ...]:
    """Path of the Extension whose extnID encodes as ``oid_der``."""
    exts = children(edit_get(cert, EXTENSIONS))
    for i, e in enumerate(exts):
        if children(e)[0] == oid_der:
            return (*EXTENSIONS, i)
    raise KeyError(oid_der.hex())


def edit_get(der: bytes, path: Sequence[int]) -> bytes:
    for i in path:
        der = children(der)[i]
    return der


def huge_integer(octets_: int = 2000) -> bytes:
    """An INTEGER far beyond Python's 4,300-digit int-to-str limit (2000 octets ≈ 4,800
    decimal digits)."""
    return tlv(0x02, b"\x01" + bytes(octets_ - 1))


def long_oid(arc_octets: int) -> bytes:
    """An OBJECT IDENTIFIER 1.2.<one arc of ``arc_octets`` base-128 digits>."""
    return tlv(0x06, b"\x2a" + b"\x81" * (arc_octets - 1) + b"\x01")


def duplicate_extension(cert: bytes, index: int = 0) -> bytes:
    """The certificate with extension ``index`` listed twice (RFC 5280 §4.2 forbids it)."""
    ext = edit_get(cert, (*EXTENSIONS, index))
    n = len(children(edit_get(cert, EXTENSIONS)))
    return edit(cert, (*EXTENSIONS, n), lambda _: ext)


# --------------------------------------------------------------------------------------
# SEV-SNP: the certificate parser (signatures are not needed: each input fails while
# parsing)
# --------------------------------------------------------------------------------------

#: blSPL, one of AMD's one-octet TCB extensions on a VCEK (pub. 57230 Table 8).
OID_BL_SPL_DER = oid(f"{AMD}.3.1")


def vcek_huge_spl(vcek: bytes) -> bytes:
    """A VCEK whose blSPL extension holds a ~4,800-digit INTEGER."""
    path = extension_path(vcek, OID_BL_SPL_DER)
    return edit(vcek, (*path, 1), lambda _: octets(huge_integer()))


def vcek_long_oid_extension(vcek: bytes, arc_octets: int = 3000) -> bytes:
    """A VCEK with an extra extension whose extnID has one ~6,300-digit arc."""
    n = len(children(edit_get(vcek, EXTENSIONS)))
    return edit(vcek, (*EXTENSIONS, n), lambda _: seq(long_oid(arc_octets), octets(b"\x05\x00")))


def huge_serial(cert: bytes) -> bytes:
    return edit(cert, SERIAL, lambda _: huge_integer())


def unknown_key_algorithm(cert: bytes, oid: str = "1.2.3.4") -> bytes:
    """The certificate with a SubjectPublicKeyInfo of an algorithm nobody implements."""
    return edit(cert, SPKI, lambda _: seq(alg_id(oid), bitstring(b"\x01\x02\x03\x04")))


def crl_long_oid(crl: bytes, arc_octets: int) -> bytes:
    """A CRL whose signatureAlgorithm OIDs (outer and in tbsCertList) have one huge arc."""
    oid = long_oid(arc_octets)
    crl = edit(crl, (1, 0), lambda _: oid)
    return edit(crl, (0, 1, 0), lambda _: oid)


# --------------------------------------------------------------------------------------
# TDX: cryptography-parsed certificates and CRLs, re-signed so they pass signature checks
# --------------------------------------------------------------------------------------


def resign(der: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A certificate or CRL (tbs, algorithm, signature) re-signed with ECDSA P-256 SHA-256."""
    tbs, alg, _ = children(der)
    sig = key.sign(tbs, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return seq(tbs, alg, bitstring(sig))


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def crl_version(crl: bytes, key: ec.EllipticCurvePrivateKey, version: int) -> bytes:
    """The CRL claiming ``version`` (RFC 5280 knows v1 and v2: INTEGER 1), re-signed."""
    return resign(edit(crl, (0, 0), lambda _: integer(version - 1)), key)


@dataclass
class HostileIntel(FakeIntel):
    """``FakeIntel`` whose quotes carry an edited PCK chain (PEM, as in certification data
    type 5): ``chain_edit`` maps the genuine chain bytes to the ones the quote carries."""

    chain_edit: Callable[[bytes], bytes] | None = None

    def pck_chain(self, platform: Platform) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key, chain = super().pck_chain(platform)
        return key, (self.chain_edit(chain) if self.chain_edit else chain)

    def pck_ca_duplicate_extension(self) -> Callable[[bytes], bytes]:
        """A chain edit: the PCK Platform CA lists basicConstraints twice, re-signed by root."""
        bad = to_pem(resign(duplicate_extension(der_of(self.pck_ca)), self.root_key))
        good = self.pck_ca.public_bytes(serialization.Encoding.PEM)
        return lambda chain: chain.replace(good, bad)

    def garbled_root_block(self) -> Callable[[bytes], bytes]:
        """A chain edit: the root block's header line loses a dash, so a lenient PEM reader
        skips the block as explanatory text and the chain silently loses its root."""
        header = b"-----BEGIN CERTIFICATE-----"
        root = self.root.public_bytes(serialization.Encoding.PEM)
        return lambda chain: chain.replace(root, root.replace(header, header[1:]))

    def collateral_with(self, **changes: Any) -> bytes:
        """Collateral JSON (dcap-qvl layout) with fields replaced, e.g. ``pck_crl=hex``."""
        import json

        doc = json.loads(self.collateral_json())
        doc.update(changes)
        return json.dumps(doc).encode()

    def tcb_signer_duplicate_extension(self) -> bytes:
        """Collateral whose TCB signing certificate lists an extension twice (re-signed)."""
        bad = to_pem(resign(duplicate_extension(der_of(self.tcb_signer)), self.root_key))
        chain = (bad + self.root_pem).decode()
        return self.collateral_with(tcb_info_issuer_chain=chain, qe_identity_issuer_chain=chain)

    def pck_crl_v3(self) -> bytes:
        """Collateral whose PCK CRL claims version 3, correctly signed by the PCK CA."""
        return self.collateral_with(pck_crl=crl_version(self.pck_crl(), self.ca_key, 3).hex())
