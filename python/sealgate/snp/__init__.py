"""AMD SEV-SNP evidence facade: report + endorsement key + chain → ``VerifyResult``.

Layers (DESIGN.md): the report is parsed and its signature checked in Rust
(``sealgate._core``, GIL released); the AMD chain (``sealgate.snp.certs``) is verified with
``cryptography`` once and cached in memory by certificate fingerprints together with the
window in which it is valid, so a steady-state verification costs one P-384 verify plus a
few dictionary look-ups. The VCEK's AMD extensions are compared with the report here
(hwID = CHIP_ID, SPLs = REPORTED_TCB, product).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealgate import _core
from sealgate.collateral import CollateralCache
from sealgate.errors import ChainError, ParseError, SealgateError, UsageError, VerificationError
from sealgate.result import VerifyResult
from sealgate.snp import kds
from sealgate.snp.certs import (
    EndorsementKey,
    VerifiedChain,
    clear_signature_cache,
    parse_endorsement_key,
    verify_chain,
)
from sealgate.trust import TrustStore
from sealgate.x509der import (
    Certificate,
    Crl,
    load_certificate,
    load_certificates,
    load_crl,
    pem_blocks,
)

__all__ = ["PRODUCTS", "clear_cache", "verify_report", "verify_tsm_evidence"]

PRODUCTS = kds.PRODUCTS
#: Verified chains kept in memory. An entry is a few KiB; a verifier sees one per chip/TCB.
CHAIN_CACHE_SIZE = 4096


@dataclass(frozen=True)
class _Entry:
    key: _core.SnpKey
    chain: VerifiedChain
    ek: EndorsementKey
    claims: dict[str, Any]


class _ChainCache:
    """LRU of verified chains, keyed by the exact inputs (certificate bytes, CRL, product,
    trust/cache directories), which fix the certificate fingerprints. A hit is used only when
    the verification time falls inside the chain's validity window (all certificates and the
    CRL); otherwise the chain is built again and fails with the precise reason. Below it,
    ``sealgate.snp.certs`` keeps verified signatures by (certificate, issuer) fingerprint, so
    rebuilding a chain from known certificates does no RSA work."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, k: tuple[Any, ...], at: datetime) -> _Entry | None:
        with self._lock:
            e = self._d.get(k)
            if e is None:
                return None
            self._d.move_to_end(k)
        if e.chain.not_before <= at <= e.chain.not_after:
            return e
        return None

    def put(self, k: tuple[Any, ...], e: _Entry) -> None:
        with self._lock:
            self._d[k] = e
            self._d.move_to_end(k)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_CACHE = _ChainCache(CHAIN_CACHE_SIZE)


def clear_cache() -> None:
    """Forget every verified chain and signature (tests; operators after a trust change)."""
    _CACHE.clear()
    clear_signature_cache()


def _load_cert(data: bytes, what: str) -> Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        blocks = pem_blocks(data)
        if len(blocks) != 1:
            raise ParseError("x509.format.invalid", f"{what}: expected one certificate")
        data = blocks[0]
    return load_certificate(data, what)


def _certs(data: bytes | None, what: str) -> list[Certificate]:
    return [] if data is None else load_certificates(data, what)


def _tcb_claim(ek: EndorsementKey) -> dict[str, int | None]:
    out = {
        "bootloader": ek.bl_spl,
        "tee": ek.tee_spl,
        "snp": ek.snp_spl,
        "microcode": ek.ucode_spl,
    }
    if ek.fmc_spl is not None:
        out["fmc"] = ek.fmc_spl
    return out


def _resolve_product(
    explicit: str | None, cpuid: str | None, ek_product: str | None
) -> tuple[str | None, str | None]:
    """(product, failure message). Explicit > CPUID (v3+) > the VCEK's productName."""
    if explicit is not None and explicit not in PRODUCTS:
        raise UsageError("cli.usage.bad_product", f"product must be one of {', '.join(PRODUCTS)}")
    product = explicit or cpuid or ek_product
    if explicit and cpuid and explicit != cpuid:
        return product, f"report CPUID says {cpuid}, verification asked for {explicit}"
    return product, None


def _leaf_product(vcek: bytes) -> str | None:
    """The product line a VCEK/VLEK names, for decoding when its chain failed."""
    try:
        return parse_endorsement_key(_load_cert(vcek, "VCEK/VLEK")).product
    except (ChainError, ParseError):
        return None


def _cached_file(cache: CollateralCache | None, *parts: str) -> bytes | None:
    if cache is None:
        return None
    try:
        return cache.get("snp", *parts)
    except (SealgateError, OSError):
        return None


def _chain_for(
    leaf_der: bytes,
    cert_chain: bytes | None,
    roots: list[bytes] | None,
    crl: bytes | None,
    product: str | None,
    at: datetime,
    trust_dir: Path | None,
    cache: CollateralCache | None,
) -> _Entry:
    """Verified chain for a leaf, from the in-memory cache or verified now."""
    key = (leaf_der, cert_chain, tuple(roots or ()), crl, product, trust_dir, cache and cache.root)
    hit = _CACHE.get(key, at)
    if hit is not None:
        return hit
    leaf = _load_cert(leaf_der, "VCEK/VLEK")
    candidates = _certs(cert_chain, "cert chain")
    explicit: list[Certificate] = []
    for i, r in enumerate(roots or []):
        explicit.extend(_certs(r, f"root #{i}"))
    store = TrustStore(trust_dir)
    candidates.extend(store.intermediates("snp"))
    candidates.extend(store.roots("snp"))
    crl_obj: Crl | None = load_crl(crl) if crl is not None else None
    # Collateral cache: chains and CRLs for the candidate product lines.
    ek0 = parse_endorsement_key(leaf)
    line = product or ek0.product
    for p in [line] if line else list(PRODUCTS):
        data = _cached_file(cache, *kds.chain_cache_parts(p, ek0.kind))
        if data is not None:
            try:
                candidates.extend(load_certificates(data, f"cached {p} chain"))
            except ParseError:
                pass  # A corrupt cache file only removes candidates.
    if crl_obj is None and line:
        data = _cached_file(cache, *kds.crl_cache_parts(line, ek0.kind))
        if data is not None:
            crl_obj = load_crl(data, f"cached {line} CRL")
    chain = verify_chain(leaf, candidates, explicit, product, at, crl_obj)
    ek = chain.endorsement
    snp_key = _core.SnpKey.from_sec1(
        ek.point,
        kind=ek.kind,
        product=ek.product,
        chain_product=chain.product,
        hwid=ek.hwid,
        bootloader=ek.bl_spl,
        tee=ek.tee_spl,
        snp=ek.snp_spl,
        microcode=ek.ucode_spl,
        fmc=ek.fmc_spl,
    )
    claims = {
        "kind": ek.kind,
        "sha256": hashlib.sha256(leaf.der).hexdigest(),
        "product_name": ek.product_name,
        "tcb": _tcb_claim(ek),
        "not_before": leaf.not_before.isoformat(),
        "not_after": leaf.not_after.isoformat(),
        "intermediate": chain.intermediate.subject_cn,
        "root": chain.root.subject_cn,
        "root_sha256": chain.root.fingerprint,
        "root_pinned": chain.root_pin is not None,
        "crl_checked": chain.crl is not None,
    }
    entry = _Entry(snp_key, chain, ek, claims)
    _CACHE.put(key, entry)
    return entry


def verify_report(
    report: bytes,
    *,
    vcek: bytes | None = None,
    cert_chain: bytes | None = None,
    roots: list[bytes] | None = None,
    crl: bytes | None = None,
    at: datetime | None = None,
    product: str | None = None,
    report_data: bytes | None = None,
    trust_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> VerifyResult:
    """Verify an SEV-SNP attestation report; every failure is in the result, never raised.

    ``vcek``: VCEK or VLEK certificate (PEM or DER; when absent, the VCEK is looked up in the
    collateral cache by product/chip/TCB). ``cert_chain``: PEM bundle with the ASK/ASVK and
    ARK in any order. ``roots``: explicitly trusted roots (otherwise only pinned ARKs from
    the chain, trust directory or cache). ``crl``: AMD's per-product CRL (else the cached
    one, if any). ``at``: verification time (default now). ``report_data``: expected
    REPORT_DATA (shorter values are zero-padded to 64 bytes).
    """
    res = VerifyResult(platform="snp")
    when = at if at is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise UsageError("cli.usage.bad_time", "verification time must be timezone-aware")
    if report_data is not None and len(report_data) > 64:
        raise UsageError("cli.usage.bad_report_data", "report_data is at most 64 bytes")
    cache = CollateralCache(cache_dir) if cache_dir is not None else None
    if product is not None and product not in PRODUCTS:
        raise UsageError("cli.usage.bad_product", f"product must be one of {', '.join(PRODUCTS)}")

    if vcek is None:
        # Offline path: the VCEK for this chip and REPORTED_TCB from the collateral cache.
        try:
            parsed = _core.SnpReport.parse(report)
        except (ParseError, VerificationError) as e:
            res.fail_from(e)
            return res
        p = product or parsed.cpuid_product
        if p is None:
            res.fail("snp.report.unknown_product", "report v2 has no CPUID; pass the product")
            return res
        bl, tee, snp, uc, fmc = parsed.reported_tcb(p)
        parts = kds.vcek_cache_parts(p, parsed.chip_id, kds.Tcb(bl, tee, snp, uc, fmc))
        vcek = _cached_file(cache or CollateralCache(), *parts)
        if vcek is None:
            res.fail(
                "snp.collateral.vcek_missing",
                f"no VCEK supplied and none cached at {'/'.join(parts)}; run "
                "`sealgate collateral fetch snp --report FILE` or pass --vcek",
            )
            res.claims.update(parsed.claims(p))
            return res

    entry: _Entry | None = None
    try:
        entry = _chain_for(vcek, cert_chain, roots, crl, product, when, trust_dir, cache)
    except (ChainError, ParseError, VerificationError) as e:
        res.fail_from(e)

    if entry is not None:
        # Steady state: one call into Rust (parse, signature, endorsement, claims).
        try:
            claims, failures = _core.verify_snp(entry.key, report, product, report_data)
        except (ParseError, VerificationError) as e:
            res.fail_from(e)
            return res
        res.claims = claims
        claims["endorsement_key"] = entry.claims
        if entry.ek.kind == "vlek":
            claims["csp_id"] = entry.ek.csp_id
        for code, message in failures:
            res.fail(code, message)
        return res

    # The chain failed: still parse and report the claims (the failure is already recorded).
    try:
        rpt = _core.SnpReport.parse(report)
    except (ParseError, VerificationError) as e:
        res.fail_from(e)
        return res
    resolved, mismatch = _resolve_product(product, rpt.cpuid_product, _leaf_product(vcek))
    if mismatch:
        res.fail("snp.report.product_mismatch", mismatch)
    # Only Turin's TCB layout differs, and Turin firmware emits v3+ reports (with CPUID).
    res.claims.update(rpt.claims(resolved or "Milan"))
    if report_data is not None:
        want = report_data.ljust(64, b"\x00")
        if rpt.report_data != want:
            res.fail(
                "snp.report.report_data_mismatch",
                f"REPORT_DATA {rpt.report_data.hex()}, expected {want.hex()}",
            )
    return res


def verify_tsm_evidence(outblob: bytes, auxblob: bytes | None, **kwargs: Any) -> VerifyResult:
    """Verify configfs-tsm evidence: ``outblob`` is the report, ``auxblob`` the certificate
    table the host attached (VCEK or VLEK, optionally ASK/ARK). Certificates passed in
    ``kwargs`` (``vcek``, ``cert_chain``) take precedence; everything else is as
    ``verify_report``. A malformed table is a failure, not an exception."""
    from sealgate.snp.certtable import parse_cert_table
    from sealgate.trust import to_pem

    if auxblob:
        try:
            table = parse_cert_table(auxblob)
        except ParseError as e:
            res = VerifyResult(platform="snp")
            res.fail_from(e)
            return res
        leaf = table.get("vcek") or table.get("vlek")
        if kwargs.get("vcek") is None and leaf is not None:
            kwargs["vcek"] = leaf
        chain = b"".join(to_pem(table[k]) for k in ("ask", "ark") if k in table)
        if kwargs.get("cert_chain") is None and chain:
            kwargs["cert_chain"] = chain
    return verify_report(outblob, **kwargs)
