"""NVIDIA Reference Integrity Manifests: signed SWID tags for the GPU driver and VBIOS.

A RIM is an ISO/IEC 19770-2 SWID tag (TCG PC Client RIM information model binding) whose
``Payload`` lists one ``Resource`` per SPDM measurement block: RIM index *i* (0-based) is
SPDM block *i + 1* (DMTF DSP0274 §10.11); ``active`` says whether it is compared and
``Hash0..HashN-1`` (SHA-384, hex) are the accepted alternatives. The tag carries an
enveloped W3C XML-DSig 1.1 signature (C14N 1.1, ECDSA-SHA384, SHA-384 digest) with the
signer chain in ``KeyInfo/X509Data``.

The XML signature is checked with ``signxml`` (maintained, lxml-based, supports C14N 1.1 and
ECDSA over P-384). signxml's own certificate validation is not used: the signer chain is
built by the one PKI layer (:class:`sealgate.pki.ChainVerifier`) to the pinned NVIDIA RIM
root, with validity at the caller's verification time reported under its own code.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lxml import etree

from .. import pki
from ..errors import ChainError, ParseError, SealgateError, VerificationError

__all__ = [
    "MAX_RIM_BYTES",
    "Measurement",
    "Mismatch",
    "Rim",
    "RimError",
    "RimSource",
    "compare",
    "keyinfo_chain",
    "parse_rim",
    "peek",
    "require_match",
    "rim_roots",
    "vbios_version_text",
]

#: Published RIMs are ~20 KiB; 1 MiB bounds memory and C14N time for hostile input.
MAX_RIM_BYTES = 1 << 20
#: SWID RIMs are four levels deep (SoftwareIdentity/Payload/Resource, Signature/...); a deep
#: tree is an attack on the recursive canonicaliser, not a RIM.
MAX_DEPTH = 16
MAX_RESOURCES = 256
MAX_ALTERNATIVES = 16
MAX_KEYINFO_CERTS = 8

_SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_TCG_RIM = (
    "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-"
    "information-model/"
)
_SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"
_DS = "http://www.w3.org/2000/09/xmldsig#"

#: The RIM signer hierarchy signs with ECDSA P-384/SHA-384 (PROVENANCE; NVIDIA RIM root).
RIM_CERT_ALGORITHMS = ("ecdsa-sha384",)
_CHAIN = pki.ChainVerifier(RIM_CERT_ALGORITHMS, max_depth=MAX_KEYINFO_CERTS, memo_entries=4096)

_CHAIN_CODES = {
    "x509.chain.expired": "gpu.rim.not_valid_at",
    "x509.chain.not_yet_valid": "gpu.rim.not_valid_at",
}


class RimError(VerificationError):
    """A RIM is malformed, badly signed, untrusted or not valid at the verification time."""


@dataclass(frozen=True)
class Measurement:
    index: int  # RIM index (0-based); SPDM block index is index + 1
    active: bool
    alternatives: tuple[bytes, ...]
    name: str = ""


@dataclass(frozen=True)
class Mismatch:
    index: int  # RIM index (0-based)
    kind: str  # "driver" | "vbios"
    actual: bytes | None  # None: the report has no such block
    expected: tuple[bytes, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "rim": self.kind,
            "actual": self.actual.hex() if self.actual is not None else None,
            "expected": [e.hex() for e in self.expected],
        }


@dataclass(frozen=True)
class Rim:
    id: str  # SoftwareIdentity tagId
    kind: str  # "driver" | "vbios"
    version: str  # Meta colloquialVersion ("545.00", "96.00.5E.00.01")
    manufacturer: str
    product: str
    platform_model: str
    measurements: dict[int, Measurement]
    signer: tuple[pki.Certificate, ...]  # leaf first, anchor last
    not_before: datetime
    not_after: datetime
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def active_indices(self) -> frozenset[int]:
        return frozenset(i for i, m in self.measurements.items() if m.active)

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def _parser() -> etree.XMLParser:
    # No DTD, no entity expansion, no network, no huge-tree relaxation: the parser refuses
    # the billion-laughs and external-entity classes outright.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def _parse_tree(xml: bytes) -> etree._Element:
    if len(xml) > MAX_RIM_BYTES:
        raise ParseError("gpu.rim.too_large", f"RIM is {len(xml)} bytes; cap {MAX_RIM_BYTES}")
    # A DOCTYPE has no place in a SWID RIM; refusing it closes entity tricks before lxml.
    if re.search(rb"<!DOCTYPE|<!ENTITY", xml, re.I):
        raise ParseError("gpu.rim.malformed", "RIM carries a DOCTYPE or ENTITY declaration")
    try:
        root = etree.fromstring(xml, parser=_parser())
    except etree.XMLSyntaxError as e:
        raise ParseError("gpu.rim.malformed", f"RIM is not well-formed XML: {e}") from None
    depth = 0
    stack = [(root, 1)]
    while stack:  # bounded by the element count, itself bounded by the byte cap
        el, d = stack.pop()
        depth = max(depth, d)
        if depth > MAX_DEPTH:
            raise ParseError("gpu.rim.malformed", f"RIM nests deeper than {MAX_DEPTH}")
        stack.extend((c, d + 1) for c in el)
    if root.tag != f"{{{_SWID}}}SoftwareIdentity":
        raise ParseError("gpu.rim.malformed", "root element is not a SWID SoftwareIdentity")
    return root


def _keyinfo_certs(root: etree._Element) -> list[pki.Certificate]:
    els = root.findall(f".//{{{_DS}}}KeyInfo/{{{_DS}}}X509Data/{{{_DS}}}X509Certificate")
    if not els:
        raise RimError("gpu.rim.no_signer", "the RIM signature carries no X509Certificate")
    if len(els) > MAX_KEYINFO_CERTS:
        raise RimError("gpu.rim.no_signer", f"KeyInfo holds more than {MAX_KEYINFO_CERTS} certs")
    out = []
    for e in els:
        try:
            der = base64.b64decode("".join((e.text or "").split()), validate=True)
            out.append(pki.load_certificate(der, "RIM signer certificate"))
        except (binascii.Error, ValueError, ParseError) as err:
            raise RimError("gpu.rim.no_signer", f"bad KeyInfo certificate: {err}") from None
    return out


def _order(certs: Sequence[pki.Certificate]) -> list[pki.Certificate]:
    """KeyInfo certificates from the one leaf upward by issuer name (at most as many steps as
    certificates). The signer is the one no other KeyInfo certificate names as its issuer
    (NVIDIA lists it first; order is not relied on); ambiguity is refused."""
    issuers = {c.issuer for c in certs if c.subject != c.issuer}
    leaves = [c for c in certs if c.subject not in issuers]
    if len(leaves) != 1:
        raise RimError("gpu.rim.no_signer", f"KeyInfo names {len(leaves)} possible signers")
    by_subject = {c.subject: c for c in certs}
    out = [leaves[0]]
    while len(out) < len(certs) and out[-1].issuer != out[-1].subject:
        nxt = by_subject.get(out[-1].issuer)
        if nxt is None or nxt in out:
            break
        out.append(nxt)
    return out


def keyinfo_chain(xml: bytes) -> list[pki.Certificate]:
    """The signer chain a RIM carries in its KeyInfo, leaf first — *unverified*: what
    ``sealgate collateral fetch nvidia`` asks OCSP about (the responses are checked when
    used, against the chain :func:`parse_rim` builds to the pinned root)."""
    return _order(_keyinfo_certs(_parse_tree(xml)))


def _kind_of(version: str) -> str:
    # NVIDIA's driver RIMs name the firmware "GPU" edition with a dotted two- or three-part
    # version; VBIOS RIMs carry the five-part VBIOS version (96.00.5E.00.01).
    return "vbios" if re.fullmatch(r"[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}", version) else "driver"


def peek(xml: bytes) -> tuple[str, str]:
    """(kind, colloquialVersion) of a RIM, *unverified* (bounded parse, no signature check):
    what a node uses to choose which RIM to carry with a GPU's evidence; the verifier
    trusts a RIM only by :func:`parse_rim`."""
    root = _parse_tree(xml)
    meta = root.find(f"{{{_SWID}}}Meta")
    version = meta.get("colloquialVersion", "") if meta is not None else ""
    if not version:
        raise ParseError("gpu.rim.malformed", "RIM lacks colloquialVersion")
    return _kind_of(version), version


def _verify_signature(xml: bytes, leaf: pki.Certificate) -> etree._Element:
    """Check the enveloped XML-DSig with signxml against ``leaf`` and return the element the
    signature covers (only signed content is read afterwards)."""
    from cryptography import x509
    from signxml import SignatureConfiguration, XMLVerifier  # type: ignore[attr-defined]
    from signxml.algorithms import DigestAlgorithm, SignatureMethod

    cfg = SignatureConfiguration(
        require_x509=True,
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.ECDSA_SHA384}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA384}),
        ignore_ambiguous_key_info=True,
        # Time validity is the PKI layer's job (its own code at the caller's ``at``); signxml
        # only checks the signature, so give it a time inside the leaf's window.
        verification_time=leaf.not_before,
    )
    try:
        cert = x509.load_der_x509_certificate(leaf.der)
        res = XMLVerifier().verify(xml, x509_cert=cert, expect_config=cfg, parser=_parser())
    except SealgateError:
        raise
    except Exception as e:  # signxml raises InvalidSignature/InvalidDigest/InvalidInput/...
        raise RimError(
            "gpu.rim.signature_invalid", f"RIM XML signature: {type(e).__name__}: {e}"
        ) from None
    if isinstance(res, list):
        raise RimError("gpu.rim.signature_invalid", "RIM has more than one signature")
    signed = res.signed_xml
    if signed is None or signed.tag != f"{{{_SWID}}}SoftwareIdentity":
        raise RimError("gpu.rim.signature_invalid", "the signature does not cover the SWID tag")
    return signed


def _hex48(s: str, where: str) -> bytes:
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise ParseError("gpu.rim.malformed", f"{where}: digest is not hex") from None
    if len(b) != 48:
        raise ParseError("gpu.rim.malformed", f"{where}: digest is {len(b)} bytes, not 48")
    return b


def _measurements(signed: etree._Element) -> dict[int, Measurement]:
    res = signed.findall(f"{{{_SWID}}}Payload/{{{_SWID}}}Resource")
    if len(res) > MAX_RESOURCES:
        raise ParseError("gpu.rim.malformed", f"more than {MAX_RESOURCES} resources")
    out: dict[int, Measurement] = {}
    for r in res:
        if r.get("type") != "Measurement":
            continue
        try:
            idx = int(r.get("index", ""))
            n = int(r.get("alternatives", ""))
        except ValueError:
            raise ParseError(
                "gpu.rim.malformed", "Resource index/alternatives not a number"
            ) from None
        if not 0 <= idx < MAX_RESOURCES or not 1 <= n <= MAX_ALTERNATIVES:
            raise ParseError(
                "gpu.rim.malformed", f"Resource {idx}: index or alternatives out of range"
            )
        if idx in out:
            raise ParseError("gpu.rim.malformed", f"Resource index {idx} appears twice")
        active = r.get("active")
        if active not in ("True", "False", "true", "false"):
            raise ParseError("gpu.rim.malformed", f"Resource {idx}: active is {active!r}")
        alts = []
        for k in range(n):
            h = r.get(f"{{{_SHA384_NS}}}Hash{k}")
            if h is None:
                raise ParseError("gpu.rim.malformed", f"Resource {idx}: Hash{k} missing")
            alts.append(_hex48(h, f"Resource {idx} Hash{k}"))
        out[idx] = Measurement(idx, active.lower() == "true", tuple(alts), r.get("name", ""))
    return out


def parse_rim(
    xml: bytes,
    *,
    roots: Sequence[pki.Certificate],
    at: datetime | None,
    source: str = "",
) -> Rim:
    """Parse and verify a signed SWID RIM: XML signature by the KeyInfo leaf, leaf chain to
    one of ``roots`` (the pinned NVIDIA RIM root), every certificate valid at ``at``
    (``gpu.rim.not_valid_at`` otherwise; None skips the time check). Raises ParseError or
    RimError with a ``gpu.rim.*`` code."""
    root = _parse_tree(xml)
    certs = _keyinfo_certs(root)
    if not roots:
        raise RimError("gpu.rim.untrusted", "no NVIDIA RIM root is configured")
    leaf = _order(certs)[0]
    try:
        path = _CHAIN.build(leaf, certs, roots, None)
    except ChainError as e:
        raise RimError("gpu.rim.untrusted", f"RIM signer chain: {e.message}") from None
    signed = _verify_signature(xml, leaf)
    if at is not None and (bad := path.invalid_at(at)) is not None:
        cert, why = bad
        raise RimError(
            "gpu.rim.not_valid_at",
            f"RIM signer {pki.describe(cert)} is {why.replace('_', ' ')} at {at.isoformat()} "
            f"(chain valid {path.not_before.isoformat()}..{path.not_after.isoformat()})",
        )
    meta = signed.find(f"{{{_SWID}}}Meta")
    ent = signed.find(f"{{{_SWID}}}Entity")
    if meta is None:
        raise ParseError("gpu.rim.malformed", "RIM has no Meta element")
    tag_id = signed.get("tagId", "")
    version = meta.get("colloquialVersion", "")
    if not tag_id or not version:
        raise ParseError("gpu.rim.malformed", "RIM lacks tagId or colloquialVersion")
    kind = _kind_of(version)
    return Rim(
        id=tag_id,
        kind=kind,
        version=version,
        manufacturer=meta.get(f"{{{_TCG_RIM}}}PlatformManufacturerStr", "")
        or (ent.get("name", "") if ent is not None else ""),
        product=meta.get("product", ""),
        platform_model=meta.get(f"{{{_TCG_RIM}}}PlatformModel", ""),
        measurements=_measurements(signed),
        signer=path.certs,
        not_before=path.not_before,
        not_after=path.not_after,
        source=source,
        extra={k: v for k, v in meta.attrib.items() if isinstance(k, str)},
    )


def vbios_version_text(raw: bytes) -> str:
    """The opaque VBIOS_VERSION (8 bytes LE, e.g. 005e009601000000) as NVIDIA prints it:
    96.00.5E.00.01."""
    if len(raw) != 8:
        raise ParseError("gpu.rim.malformed", "VBIOS version is not 8 bytes")
    b = raw
    return f"{b[3]:02X}.{b[2]:02X}.{b[1]:02X}.{b[0]:02X}.{b[4]:02X}"


def compare(report_measurements: dict[int, bytes], driver: Rim, vbios: Rim) -> list[Mismatch]:
    """Every active measurement of both RIMs against the report's blocks
    (``{spdm_index: value}``, 1-based as DSP0274). A block matches when it equals any
    alternative. The driver and VBIOS active index sets must be disjoint (NVIDIA splits the
    64 blocks between the two manifests); overlap raises ``gpu.rim.index_overlap``."""
    if driver.kind != "driver" or vbios.kind != "vbios":
        raise RimError("gpu.rim.wrong_kind", f"RIM kinds are {driver.kind}/{vbios.kind}")
    overlap = driver.active_indices & vbios.active_indices
    if overlap:
        raise RimError(
            "gpu.rim.index_overlap",
            f"driver and VBIOS RIMs both claim indices {sorted(overlap)}",
        )
    out: list[Mismatch] = []
    for rim in (vbios, driver):
        for idx in sorted(rim.active_indices):
            m = rim.measurements[idx]
            actual = report_measurements.get(idx + 1)
            if actual is None or actual not in m.alternatives:
                out.append(Mismatch(idx, rim.kind, actual, m.alternatives))
    out.sort(key=lambda x: x.index)
    return out


def require_match(mismatches: Sequence[Mismatch]) -> None:
    """Raise ``gpu.rim.mismatch`` naming every mismatched index with actual and expected."""
    if mismatches:
        parts = [
            f"{m.kind}[{m.index}] actual {m.actual.hex() if m.actual else 'absent'} "
            f"expected {' | '.join(e.hex() for e in m.expected)}"
            for m in mismatches[:8]
        ]
        more = f" (+{len(mismatches) - 8} more)" if len(mismatches) > 8 else ""
        raise RimError(
            "gpu.rim.mismatch",
            f"{len(mismatches)} measurement(s) mismatch: " + "; ".join(parts) + more,
        )


class RimSource:
    """Where RIMs come from: directories (an operator's RIM dir, the collateral cache) and
    RIM bytes given with the evidence. Each RIM is parsed and verified on load; a RIM that
    fails verification is remembered with its error so a lookup can say why."""

    def __init__(
        self,
        *,
        roots: Sequence[pki.Certificate],
        dirs: Iterable[Path] = (),
        blobs: Iterable[tuple[str, bytes]] = (),
        max_files: int = 4096,
        ocsp_cache: Path | None = None,
    ) -> None:
        self.roots = list(roots)
        #: The collateral cache whose ``nvidia/ocsp`` holds responses for RIM signer chains
        #: (``sealgate collateral fetch nvidia`` stores them next to the RIMs it fetches).
        self.ocsp_cache = ocsp_cache
        self._items: list[tuple[str, bytes]] = list(blobs)
        for d in dirs:
            d = Path(d)
            if not d.is_dir():
                continue
            for f in sorted(d.iterdir())[:max_files]:
                if f.is_file() and not f.is_symlink() and f.suffix in (".swidtag", ".xml"):
                    try:
                        if f.stat().st_size <= MAX_RIM_BYTES:
                            self._items.append((str(f), f.read_bytes()))
                    except OSError:
                        continue
        self._cache: dict[int, Rim | SealgateError] = {}

    @classmethod
    def from_places(
        cls,
        *,
        roots: Sequence[pki.Certificate],
        rim_dirs: Iterable[Path] = (),
        cache_root: Path | None = None,
        blobs: Iterable[tuple[str, bytes]] = (),
    ) -> RimSource:
        """RIMs given with the evidence first, then ``rim_dirs``, then the collateral cache's
        ``nvidia/rims`` (what ``sealgate collateral fetch nvidia`` stores)."""
        dirs = list(rim_dirs)
        if cache_root is not None:
            dirs.append(Path(cache_root) / "nvidia" / "rims")
        return cls(
            roots=roots,
            dirs=dirs,
            blobs=blobs,
            ocsp_cache=Path(cache_root) if cache_root is not None else None,
        )

    def cached_ocsp(self, chain: Sequence[pki.Certificate]) -> list[bytes]:
        """The collateral cache's OCSP responses for the non-anchor certificates of a RIM
        signer chain (read at each call, so a fetch is seen at once); an unreadable cache
        entry counts as absent — the chain is then not checked, which policy decides."""
        if self.ocsp_cache is None:
            return []
        from ..collateral import CollateralCache
        from .fetch import cached_responses

        try:
            return cached_responses(CollateralCache(self.ocsp_cache), chain)
        except SealgateError:
            return []

    def _load(self, i: int) -> Rim | SealgateError:
        if i not in self._cache:
            name, xml = self._items[i]
            try:
                self._cache[i] = parse_rim(xml, roots=self.roots, at=None, source=name)
            except SealgateError as e:
                self._cache[i] = e
        return self._cache[i]

    def find(
        self,
        kind: str,
        version: str,
        *,
        at: datetime | None = None,
        project: str | None = None,
        project_sku: str | None = None,
        chip_sku: str | None = None,
    ) -> Rim | None:
        """The RIM of ``kind`` for ``version`` (driver "550.90.07"; VBIOS "96.00.5E.00.01"
        compared case-insensitively). VBIOS RIMs are named by NVIDIA
        ``<project>_<project sku>_<chip sku>_<vbios hex>_*.swidtag``; when ``project`` etc.
        are given a file name in that shape must agree. A RIM found but not valid at ``at``
        raises ``gpu.rim.not_valid_at`` (a RIM that exists but expired is not "not found")."""
        want = version.strip().lower()
        expired: Rim | None = None
        for i, (name, _) in enumerate(self._items):
            r = self._load(i)
            if isinstance(r, SealgateError) or r.kind != kind or r.version.lower() != want:
                continue
            if kind == "vbios" and not name_agrees(name, project, project_sku, chip_sku):
                continue
            if at is not None and not r.valid_at(at):
                expired = expired or r
                continue
            return r
        if expired is not None:
            raise RimError(
                "gpu.rim.not_valid_at",
                f"{kind} RIM {expired.id} for {version} is valid "
                f"{expired.not_before.isoformat()}..{expired.not_after.isoformat()}, "
                f"not at {at.isoformat() if at else '?'}",
            )
        return None

    def require(
        self,
        kind: str,
        version: str,
        *,
        at: datetime | None = None,
        project: str | None = None,
        project_sku: str | None = None,
        chip_sku: str | None = None,
    ) -> Rim:
        """:meth:`find`, with a missing RIM as ``gpu.rim.not_found`` (never a mismatch): the
        message says what was looked for and where, and why candidates were rejected."""
        r = self.find(
            kind, version, at=at, project=project, project_sku=project_sku, chip_sku=chip_sku
        )
        if r is None:
            why = "; ".join(f"{Path(n).name}: {e.code}" for n, e in self.errors()[:4])
            raise RimError(
                "gpu.rim.not_found",
                f"no {kind} RIM for version {version} among {len(self._items)} RIM(s)"
                + (f" (rejected: {why})" if why else ""),
            )
        return r

    def errors(self) -> list[tuple[str, SealgateError]]:
        out = []
        for i, (name, _) in enumerate(self._items):
            r = self._load(i)
            if isinstance(r, SealgateError):
                out.append((name, r))
        return out


_NAME = re.compile(r"([0-9A-Za-z]{4})_([0-9A-Za-z]{4})_([0-9A-Za-z]{3})_([0-9A-Fa-f]{10})_")


def name_agrees(
    name: str, project: str | None, project_sku: str | None, chip_sku: str | None
) -> bool:
    """A VBIOS RIM file named as NVIDIA names them agrees with the report's project, project
    SKU and chip SKU (another name shape: no constraint)."""
    m = _NAME.match(Path(name).name)
    if m is None:
        return True  # bytes given with the evidence have no NVIDIA file name
    for want, got in ((project, m[1]), (project_sku, m[2]), (chip_sku, m[3])):
        if want is not None and want.strip().lower() != got.lower():
            return False
    return True


#: The trust-store pin name of the NVIDIA RIM root (sealgate.trust.PINS). The "nvidia"
#: platform also holds the device identity root; RIM chains anchor only at this one.
RIM_ROOT_PIN = "nvidia-rim-root"


def rim_roots(store: object | None = None) -> list[pki.Certificate]:
    """The pinned NVIDIA RIM root(s) from the trust directory (``sealgate trust import``)."""
    from .. import trust

    ts = store if isinstance(store, trust.TrustStore) else trust.TrustStore()
    return [
        c
        for c in ts.roots("nvidia")
        if (p := trust.pin_for(c.fingerprint)) is not None and p.name == RIM_ROOT_PIN
    ]
