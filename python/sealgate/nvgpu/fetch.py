"""``sealgate collateral fetch nvidia``: RIMs from NVIDIA's RIM service and OCSP responses
for a certificate chain, into the collateral cache. Contents are verified when used
(:mod:`sealgate.nvgpu.rim`, :mod:`sealgate.nvgpu.ocsp`), never trusted for being cached.

RIM service (as NVIDIA's verifiers call it): ``GET <base>/v1/rim/<id>`` answers JSON
``{"id", "rim": base64(SWID XML), "sha256": hex}``; ids are ``NV_GPU_DRIVER_GH100_<driver
version>`` and ``NV_GPU_VBIOS_<project>_<project sku>_<chip sku>_<VBIOS version without
dots, upper case>``. OCSP: an RFC 6960 request (SHA-384 CertID, no nonce — NVIDIA's
responder does not echo one) POSTed as ``application/ocsp-request`` (RFC 6960 App. A.1).

Cache layout: ``nvidia/rims/<file>.swidtag`` named as NVIDIA names RIM files
(``<project>_<project sku>_<chip sku>_<vbios hex>_fetched.swidtag``, ``driver_<version>_
fetched.swidtag``) so :class:`RimSource` matches them; ``nvidia/ocsp/<sha256 of the
certificate DER>.der``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from .. import collateral, pki
from ..collateral import CollateralCache
from ..errors import CollateralError, SealgateError, UsageError
from .ocsp import MAX_RESPONSE_BYTES
from .rim import MAX_RIM_BYTES, keyinfo_chain

__all__ = [
    "DEFAULT_OCSP_URL",
    "DEFAULT_RIM_URL",
    "cached_responses",
    "driver_rim_id",
    "fetch_ocsp",
    "fetch_rim",
    "fetch_rim_ocsp",
    "ocsp_cache_parts",
    "vbios_rim_id",
]

DEFAULT_RIM_URL = "https://rim.attestation.nvidia.com"
DEFAULT_OCSP_URL = "https://ocsp.ndis.nvidia.com/"

_VER = re.compile(r"^[0-9A-Za-z]+(\.[0-9A-Za-z]+){1,5}$")
_TOKEN = re.compile(r"^[0-9A-Za-z]{1,8}$")


def driver_rim_id(version: str) -> str:
    if not _VER.match(version):
        raise UsageError("cli.usage.bad_version", f"bad driver version {version!r}")
    return f"NV_GPU_DRIVER_GH100_{version}"


def vbios_rim_id(version: str, project: str, project_sku: str, chip_sku: str) -> str:
    if not _VER.match(version):
        raise UsageError("cli.usage.bad_version", f"bad VBIOS version {version!r}")
    for what, v in (("project", project), ("project SKU", project_sku), ("chip SKU", chip_sku)):
        if not _TOKEN.match(v):
            raise UsageError("cli.usage.bad_version", f"bad {what} {v!r}")
    hexv = version.replace(".", "").upper()
    return f"NV_GPU_VBIOS_{project.upper()}_{project_sku.upper()}_{chip_sku.upper()}_{hexv}"


def fetch_rim(cache: CollateralCache, base: str, rim_id: str, file_name: str) -> str:
    """GET one RIM by id, check the service's own SHA-256 of it, store the XML; the path."""
    body = collateral.fetch(f"{base.rstrip('/')}/v1/rim/{rim_id}", max_bytes=4 * MAX_RIM_BYTES)
    try:
        doc = json.loads(body)
        xml = base64.b64decode(doc["rim"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise CollateralError(
            "collateral.fetch.bad_response", f"RIM service answer for {rim_id} is not RIM JSON"
        ) from None
    want = doc.get("sha256") if isinstance(doc, dict) else None
    if isinstance(want, str) and want.lower() != hashlib.sha256(xml).hexdigest():
        raise CollateralError(
            "collateral.fetch.bad_response", f"RIM {rim_id}: sha256 differs from the service's"
        )
    if len(xml) > MAX_RIM_BYTES:
        raise CollateralError("collateral.fetch.too_large", f"RIM {rim_id} exceeds the cap")
    return str(cache.put("nvidia", "rims", file_name, data=xml))


def ocsp_cache_parts(cert: pki.Certificate) -> tuple[str, str]:
    return ("ocsp", f"{cert.fingerprint}.der")


def cached_responses(cache: CollateralCache, chain: Sequence[pki.Certificate]) -> list[bytes]:
    """The cached OCSP responses for the non-anchor certificates of ``chain`` (those present);
    :func:`sealgate.nvgpu.ocsp.check_chain` decides whether they suffice."""
    out = []
    for c in chain[:-1]:
        data = cache.get("nvidia", *ocsp_cache_parts(c))
        if data is not None:
            out.append(data)
    return out


def _post(url: str, data: bytes) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise UsageError("collateral.fetch.bad_url", f"only http(s) URLs are fetched: {url!r}")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=data, method="POST", headers={"Content-Type": "application/ocsp-request"}
    )
    try:
        with collateral._OPENER.open(req, timeout=collateral.FETCH_TIMEOUT) as resp:
            body: bytes = resp.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise CollateralError("collateral.fetch.http_error", f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CollateralError("collateral.fetch.unreachable", f"{url}: {reason}") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise CollateralError("collateral.fetch.too_large", f"{url}: exceeds the OCSP cap")
    return body


def fetch_ocsp(cache: CollateralCache, url: str, chain: Sequence[pki.Certificate]) -> list[str]:
    """One OCSP request per non-anchor certificate of ``chain`` (leaf first); responses are
    stored as fetched and checked when used."""
    xs = [x509.load_der_x509_certificate(c.der) for c in chain]
    out = []
    for cert, issuer, pc in zip(xs, xs[1:], chain, strict=False):
        req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384()).build()
        body = _post(url, req.public_bytes(serialization.Encoding.DER))
        out.append(str(cache.put("nvidia", *ocsp_cache_parts(pc), data=body)))
    return out


def rim_signer_chain(xml: bytes, roots: Sequence[pki.Certificate] = ()) -> list[pki.Certificate]:
    """The signer chain a RIM carries (KeyInfo, leaf first), completed with the root among
    ``roots`` that issued its top certificate when KeyInfo stops below the root. Unverified:
    it only says whom to ask; the responses are checked against the verified chain when
    used."""
    chain = keyinfo_chain(xml)
    top = chain[-1]
    if top.issuer != top.subject:
        chain += [r for r in roots if r.subject == top.issuer][:1]
    return chain


def fetch_rim_ocsp(
    cache: CollateralCache, url: str, xml: bytes, roots: Sequence[pki.Certificate] = ()
) -> list[str]:
    """OCSP responses for a fetched RIM's signer chain (RFC 6960; NVIDIA answers for the RIM
    signing certificates at the same responder as for the device chain), cached by
    certificate as :func:`fetch_ocsp` caches them: ``sealgate.nvgpu.rim.RimSource`` hands them
    to the verifier for that chain."""
    try:
        chain = rim_signer_chain(xml, roots)
    except SealgateError as e:
        raise CollateralError(
            "collateral.fetch.bad_response", f"RIM signer chain: {e.message}"
        ) from None
    return fetch_ocsp(cache, url, chain) if len(chain) > 1 else []
