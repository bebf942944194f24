"""AMD Key Distribution Service (KDS): URL layout, fetching and the collateral cache.

URL layout (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
Specification", pub. 57230, §4): ``/vcek/v1/{product}/{hwid}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=``
(Turin adds ``fmcSPL`` and its hwid is the 8-byte form), ``/vcek/v1/{product}/cert_chain``
(ASK then ARK, PEM), ``/vcek/v1/{product}/crl`` (DER, signed by the ARK); the VLEK
hierarchy lives under ``/vlek/v1/{product}/...`` (ASVK then ARK). VLEK certificates themselves
are provisioned by the cloud provider, not served by KDS.

Cache layout under ``<cache_dir>/snp/<product>/``: ``vcek/<hwid>-<tcb>.der``,
``cert_chain.pem``, ``crl.der``, ``vlek_cert_chain.pem``, ``vlek_crl.der``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote

from sealgate.collateral import CollateralCache, fetch

DEFAULT_KDS_URL = "https://kdsintf.amd.com"
PRODUCTS = ("Milan", "Genoa", "Turin")
#: Turin's hwID in the VCEK and in KDS URLs is the first 8 bytes of CHIP_ID (AMD pub. 57230).
TURIN_HWID_LEN = 8


def kds_base_url(base: str | None = None) -> str:
    return (base or os.environ.get("SEALGATE_AMD_KDS_URL") or DEFAULT_KDS_URL).rstrip("/")


@dataclass(frozen=True)
class Tcb:
    """A decoded TCB_VERSION; ``fmc`` is present on Turin only."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    def query(self) -> str:
        parts = [] if self.fmc is None else [f"fmcSPL={self.fmc}"]
        parts += [
            f"blSPL={self.bootloader}",
            f"teeSPL={self.tee}",
            f"snpSPL={self.snp}",
            f"ucodeSPL={self.microcode}",
        ]
        return "&".join(parts)

    def cache_key(self) -> str:
        f = "" if self.fmc is None else f"fmc{self.fmc}-"
        return f"{f}bl{self.bootloader}-tee{self.tee}-snp{self.snp}-uc{self.microcode}"


def hwid(product: str, chip_id: bytes) -> str:
    return (chip_id[:TURIN_HWID_LEN] if product == "Turin" else chip_id).hex()


def vcek_url(base: str, product: str, chip_id: bytes, tcb: Tcb) -> str:
    return f"{base}/vcek/v1/{quote(product)}/{hwid(product, chip_id)}?{tcb.query()}"


def chain_url(base: str, product: str, key: str = "vcek") -> str:
    return f"{base}/{key}/v1/{quote(product)}/cert_chain"


def crl_url(base: str, product: str, key: str = "vcek") -> str:
    return f"{base}/{key}/v1/{quote(product)}/crl"


def vcek_cache_parts(product: str, chip_id: bytes, tcb: Tcb) -> tuple[str, ...]:
    return (product, "vcek", f"{hwid(product, chip_id)}-{tcb.cache_key()}.der")


def chain_cache_parts(product: str, key: str = "vcek") -> tuple[str, ...]:
    return (product, "cert_chain.pem" if key == "vcek" else "vlek_cert_chain.pem")


def crl_cache_parts(product: str, key: str = "vcek") -> tuple[str, ...]:
    return (product, "crl.der" if key == "vcek" else "vlek_crl.der")


def fetch_chain(base: str, product: str, key: str = "vcek") -> bytes:
    return fetch(chain_url(base, product, key))


def fetch_into_cache(
    cache: CollateralCache,
    base: str,
    product: str,
    chip_id: bytes | None,
    tcb: Tcb | None,
    *,
    with_crl: bool = True,
) -> dict[str, str]:
    """Fetch the VCEK (when chip_id/tcb given), the chain and the CRL into the cache.

    Returns {what: cache path}. Contents are verified when used, not here.
    """
    out: dict[str, str] = {}
    if chip_id is not None and tcb is not None:
        der = fetch(vcek_url(base, product, chip_id, tcb))
        out["vcek"] = str(cache.put("snp", *vcek_cache_parts(product, chip_id, tcb), data=der))
    chain = fetch(chain_url(base, product))
    out["cert_chain"] = str(cache.put("snp", *chain_cache_parts(product), data=chain))
    if with_crl:
        crl = fetch(crl_url(base, product))
        out["crl"] = str(cache.put("snp", *crl_cache_parts(product), data=crl))
    return out
