"""A synthetic NVIDIA RIM hierarchy: RIM root → CA → signer, and signed SWID RIMs.

Mirrors the shape of NVIDIA's published RIMs (PROVENANCE "NVIDIA GPU confidential
computing"): an ISO/IEC 19770-2 SoftwareIdentity with a TCG RIM ``Meta`` and one
``Resource`` per measurement (``index`` 0-based, ``active``, ``alternatives``,
``Hash0..``), signed with an enveloped XML-DSig (C14N 1.1, ECDSA-SHA384, SHA-384 digest)
whose KeyInfo carries the signer chain. Signing uses signxml, the library the verifier uses
to check, so the test exercises the same canonicalisation on both sides.

Keys are P-384 scalars derived from a seed string, so a hierarchy is reproducible and no
private key is stored. The root is NOT pinned: verifiers take it via ``roots=[...]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from sealgate import pki
from sealgate.testing.nvgpu import ca_or_leaf_builder

__all__ = [
    "DRIVER_INDICES",
    "VBIOS_INDICES",
    "Entry",
    "RimHierarchy",
    "delegated_ocsp_signer",
    "make_hierarchy",
    "make_rim",
    "matching_rims",
]

_SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_TCG_RIM = (
    "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-"
    "information-model/"
)
_SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"
_P384_N = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)

#: (active, alternatives) per 0-based RIM index.
Entry = tuple[bool, Sequence[bytes]]


def _key(seed: str) -> ec.EllipticCurvePrivateKey:
    d = int.from_bytes(hashlib.sha384(b"sealgate-nvgpu-rim|" + seed.encode()).digest()) % (
        _P384_N - 1
    )
    return ec.derive_private_key(d + 1, ec.SECP384R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Synthetic NVIDIA"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_before: datetime,
    not_after: datetime,
    serial: int,
    eku: Sequence[x509.ObjectIdentifier] = (),
) -> x509.Certificate:
    b = (
        ca_or_leaf_builder(
            _name(subject),
            key,
            _name(issuer),
            ca=ca,
            not_before=not_before,
            not_after=not_after,
            serial=serial,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return b.sign(issuer_key, hashes.SHA384())


@dataclass(frozen=True)
class RimHierarchy:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer: x509.Certificate

    @property
    def root_cert(self) -> pki.Certificate:
        return pki.load_certificate(self.root.public_bytes(serialization.Encoding.DER))

    @property
    def chain(self) -> list[x509.Certificate]:
        """Signer first, root last (the KeyInfo order NVIDIA uses)."""
        return [self.signer, self.ca, self.root]

    def pki_chain(self) -> list[pki.Certificate]:
        return [
            pki.load_certificate(c.public_bytes(serialization.Encoding.DER)) for c in self.chain
        ]


def make_hierarchy(
    seed: str = "default",
    *,
    not_before: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    signer_days: int = 730,
) -> RimHierarchy:
    """Root (20 years) → "Reference Value CA" → "RIM Signer" (``signer_days``)."""
    rk, ck, sk = _key(seed + "/root"), _key(seed + "/ca"), _key(seed + "/signer")
    far = not_before + timedelta(days=365 * 20)
    root = _cert(
        f"Synthetic NVIDIA RIM Root ({seed})",
        rk,
        f"Synthetic NVIDIA RIM Root ({seed})",
        rk,
        ca=True,
        not_before=not_before,
        not_after=far,
        serial=1,
    )
    ca = _cert(
        f"Synthetic Reference Value CA ({seed})",
        ck,
        f"Synthetic NVIDIA RIM Root ({seed})",
        rk,
        ca=True,
        not_before=not_before,
        not_after=far,
        serial=2,
    )
    signer = _cert(
        f"Synthetic RIM Signer ({seed})",
        sk,
        f"Synthetic Reference Value CA ({seed})",
        ck,
        ca=False,
        not_before=not_before,
        not_after=not_before + timedelta(days=signer_days),
        serial=3,
    )
    return RimHierarchy(rk, root, ck, ca, sk, signer)


def make_rim(
    h: RimHierarchy,
    *,
    kind: str,
    version: str,
    measurements: Mapping[int, Entry],
    tag_id: str | None = None,
    count: int = 64,
    product: str = "GH100",
) -> bytes:
    """A signed SWID RIM. ``kind`` "driver" or "vbios" (VBIOS versions are five hex pairs,
    "96.00.5E.00.01"); ``measurements`` maps 0-based indices to (active, alternatives);
    every other index below ``count`` is an inactive all-zero entry, as NVIDIA ships them."""
    from signxml import XMLSigner  # type: ignore[attr-defined]
    from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

    if kind not in ("driver", "vbios"):
        raise ValueError(kind)
    nsmap = {None: _SWID, "ns0": _SWID, "ns2": _SHA384_NS}
    root = etree.Element(f"{{{_SWID}}}SoftwareIdentity", nsmap=nsmap)
    root.set("corpus", "false")
    root.set("name", product)
    root.set("patch", "false")
    root.set("supplemental", "false")
    root.set("tagId", tag_id or hashlib.sha384(f"{kind}|{version}".encode()).hexdigest())
    root.set("version", "1.0")
    root.set("tagVersion", "0")
    ent = etree.SubElement(root, f"{{{_SWID}}}Entity")
    ent.set("name", "NVIDIA Corporation")
    ent.set("role", "softwareCreator tagCreator")
    meta = etree.SubElement(root, f"{{{_SWID}}}Meta", nsmap={"ns1": _TCG_RIM})
    meta.set("colloquialVersion", version)
    meta.set("edition", "GPU" if kind == "driver" else "VBIOS")
    meta.set("product", product)
    meta.set(f"{{{_TCG_RIM}}}PlatformManufacturerStr", "NVIDIA Corporation")
    meta.set(f"{{{_TCG_RIM}}}PlatformModel", product)
    payload = etree.SubElement(root, f"{{{_SWID}}}Payload")
    for i in range(max(count, max(measurements, default=-1) + 1)):
        active, alts = measurements.get(i, (False, [bytes(48)]))
        r = etree.SubElement(payload, f"{{{_SWID}}}Resource")
        r.set("type", "Measurement")
        r.set("index", str(i))
        r.set("active", "True" if active else "False")
        r.set("alternatives", str(len(alts)))
        for k, a in enumerate(alts):
            r.set(f"{{{_SHA384_NS}}}Hash{k}", a.hex())
        r.set("name", f"Measurement_{i}")
        r.set("size", "48")
    pem = [c.public_bytes(serialization.Encoding.PEM).decode() for c in h.chain]
    signed = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA384,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    ).sign(root, key=h.signer_key, cert=pem)
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out


#: NVIDIA's split of the GH100 measurement indices (0-based RIM indices; PROVENANCE).
VBIOS_INDICES = (*range(0, 7), *range(8, 13))
DRIVER_INDICES = (7, *range(21, 41))


def matching_rims(
    h: RimHierarchy,
    blocks: Mapping[int, bytes],
    *,
    driver_version: str,
    vbios_version: str,
) -> tuple[bytes, bytes]:
    """(driver RIM, VBIOS RIM) whose active entries equal ``blocks`` ({SPDM index (1-based):
    value}) on NVIDIA's index split; blocks the report lacks are left inactive."""

    def entries(idx: Sequence[int]) -> dict[int, Entry]:
        return {i: (True, [blocks[i + 1]]) for i in idx if i + 1 in blocks}

    return (
        make_rim(h, kind="driver", version=driver_version, measurements=entries(DRIVER_INDICES)),
        make_rim(h, kind="vbios", version=vbios_version, measurements=entries(VBIOS_INDICES)),
    )


def delegated_ocsp_signer(
    issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate, seed: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A delegated OCSP responder certificate (id-kp-OCSPSigning, RFC 6960 §4.2.2.2)."""
    k = _key(seed + "/ocsp")
    cn = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    c = _cert(
        f"Synthetic OCSP responder ({seed})",
        k,
        str(cn),
        issuer_key,
        ca=False,
        not_before=issuer.not_valid_before_utc,
        not_after=issuer.not_valid_after_utc,
        serial=77,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
    )
    return k, c


def ocsp_good(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    at: datetime | None = None,
) -> bytes:
    """A DER "good" OCSP response for ``cert``, signed by its issuer itself (RFC 6960
    §4.2.2.2), current around ``at`` (default now): thisUpdate an hour before, nextUpdate a
    day after."""
    from cryptography.x509 import ocsp

    now = at if at is not None else datetime.now(UTC)
    b = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=issuer,
            algorithm=hashes.SHA384(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now - timedelta(hours=1),
            next_update=now + timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.NAME, issuer)
    )
    return b.sign(issuer_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)
