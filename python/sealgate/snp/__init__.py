"""AMD SEV-SNP evidence facade: report + endorsement key + chain → ``VerifyResult``.

Layers (docs/architecture.md): the report is parsed and its signature checked in Rust
(``sealgate._core``, GIL released); the AMD chain is verified by the PKI layer under AMD's
profile (``sealgate.snp.certs``) once and kept by a verifier object (``SnpVerifier``) by
certificate fingerprints together with the window in which it is valid, so a steady-state
verification costs one P-384 verify plus a few dictionary look-ups. The VCEK's AMD
extensions are read here, once per chain; comparing them with each report (hwID =
CHIP_ID, SPLs = REPORTED_TCB, product), settling the product line and checking
REPORT_DATA are decisions of the Rust verify crate (``sealgate_verify::snp``), reached
through ``_core.verify_snp`` and ``SnpReport.check_unendorsed``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealgate import _core
from sealgate.collateral import CollateralCache
from sealgate.errors import ChainError, ParseError, SealgateError, UsageError, VerificationError
from sealgate.lru import BoundedCache
from sealgate.pki import (
    MAX_CRL_LEN,
    Certificate,
    Crl,
    load_certificate,
    load_certificates,
    load_crl,
    pem_blocks,
    to_pem,
)
from sealgate.result import VerifyResult
from sealgate.snp import kds
from sealgate.snp.certs import (
    AmdChain,
    AmdChainVerifier,
    EndorsementKey,
    Revocation,
    parse_endorsement_key,
)
from sealgate.trust import TrustStore

__all__ = [
    "PRODUCTS",
    "CrlSource",
    "Revocation",
    "SnpVerifier",
    "chain_cached",
    "endorsed_claims",
    "verify_report",
    "verify_tsm_evidence",
]

log = logging.getLogger("sealgate.snp")

PRODUCTS = kds.PRODUCTS
#: Verified chains kept in memory: a verifier sees one per chip/TCB. Entries are keyed by
#: certificate fingerprints, so their size does not depend on how the attester pads its
#: evidence; the byte bound is a second guard (an entry is a few KiB).
CHAIN_CACHE_SIZE = 4096
CHAIN_CACHE_BYTES = 64 << 20
#: Certificates one bundle from the evidence (``cert_chain``) may hold. AMD's cert_chain
#: holds two (ASK or ASVK, then the ARK); four leaves room for both intermediates and a
#: spare. Every candidate carrying the intermediate's name costs an RSA-4096 verification,
#: so the attester must not choose how many there are.
MAX_BUNDLE_CERTS = 4
#: ``SnpVerifier.cached_entry``'s memo of chain-cache keys: entries and bytes held.
KEY_MEMO_SIZE = 256
KEY_MEMO_BYTES = 8 << 20


@dataclass(frozen=True)
class _Entry:
    key: _core.SnpKey
    chain: AmdChain
    ek: EndorsementKey
    claims: dict[str, Any]


ChainCache = BoundedCache[tuple[Any, ...], _Entry]


def new_chain_cache() -> ChainCache:
    """A chain cache for one verifier (``SnpVerifier(chain_cache=...)``).

    Keyed by the inputs' fingerprints (leaf, bundle certificates, roots, CRLs, product,
    trust/cache directories). A hit is used only when the verification time falls inside
    the chain's validity window (all certificates and the CRL); otherwise the chain is built
    again and fails with the precise reason. Below it, the verifier's ``AmdChainVerifier``
    keeps verified signatures by (certificate, issuer) fingerprint, so rebuilding a chain
    from known certificates does no RSA work."""
    return BoundedCache(CHAIN_CACHE_SIZE, CHAIN_CACHE_BYTES)


def _load_cert(data: bytes, what: str) -> Certificate:
    return load_certificate(_leaf_der(data, what), what)


def _leaf_der(data: bytes, what: str) -> bytes:
    """The DER of the leaf certificate of ``data`` (``_split_leaf``)."""
    return _split_leaf(data, what)[0]


def _split_leaf(data: bytes, what: str) -> tuple[bytes, list[bytes]]:
    """A VCEK/VLEK given as DER, as one PEM block, or as a PEM bundle whose first
    certificate is the VCEK/VLEK and whose others are its chain (the format Azure's
    certificate endpoint serves: VCEK, ASK, ARK): (the leaf's DER, the chain's DERs).
    Nothing but whitespace may surround the blocks."""
    if data.lstrip().startswith(b"-----BEGIN"):
        blocks = _pem_ders(data, what, 1 + MAX_BUNDLE_CERTS)
        if not blocks:
            raise ParseError("x509.format.invalid", f"{what}: no certificate")
        return blocks[0], blocks[1:]
    return data, []


def _pem_ders(data: bytes, what: str, limit: int) -> list[bytes]:
    """The certificates of a PEM bundle from evidence: at most ``limit``, and nothing but
    whitespace outside the blocks (padding would otherwise ride along unnoticed)."""
    n = data.count(b"-----BEGIN")
    if n > limit:
        raise ChainError(
            "snp.chain.too_many_certificates",
            f"{what} holds {n} PEM blocks; at most {limit} certificates are accepted",
        )
    return pem_blocks(data, strict=True)


def _bundle_ders(data: bytes | None, what: str) -> list[bytes]:
    if data is None:
        return []
    if data.lstrip().startswith(b"-----BEGIN"):
        return _pem_ders(data, what, MAX_BUNDLE_CERTS)
    return [data]  # one DER certificate; the parser refuses anything after it


def _certs(data: bytes | None, what: str) -> list[Certificate]:
    return [] if data is None else load_certificates(data, what)


def _fp(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


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


@dataclass(frozen=True)
class _Inputs:
    """The chain inputs split into DER certificates, and the cache key they determine."""

    leaf: bytes
    bundle: list[bytes]
    key: tuple[Any, ...]


#: The certificates of (VCEK/VLEK input, cert chain input) split into DER with their
#: fingerprints, by the inputs themselves: evidence repeats the same VCEK (bundle) and
#: chain for every report of a chip, and splitting PEM and hashing every certificate was
#: most of the per-report cost in front of a chain-cache hit. Keyed by the bytes (Python
#: hashes a bytes object once and compares equal keys by memcmp), so a hit costs no
#: SHA-256; only successful splits are kept. Bounded by count and bytes (the attester
#: chooses the bytes); a pure function of them, so one memo serves every verifier.
_SPLITS: BoundedCache[tuple[bytes, bytes | None], tuple[bytes, list[bytes], tuple[Any, ...]]] = (
    BoundedCache(256, 16 << 20)
)
#: Root fingerprints by the roots' bytes (a verifier's configuration: a handful).
_ROOT_FPS: BoundedCache[tuple[bytes, ...], tuple[bytes, ...]] = BoundedCache(64, 4 << 20)


def _split_inputs(
    leaf_der: bytes, cert_chain: bytes | None
) -> tuple[bytes, list[bytes], tuple[Any, ...]]:
    """(leaf DER, chain DERs, (leaf fingerprint, sorted chain fingerprints))."""
    memo_key = (leaf_der, cert_chain)
    hit = _SPLITS.get(memo_key)
    if hit is not None:
        return hit
    leaf, with_leaf = _split_leaf(leaf_der, "VCEK/VLEK")
    bundle = with_leaf + _bundle_ders(cert_chain, "cert chain")
    if len(bundle) > MAX_BUNDLE_CERTS:
        # The same bound as for one bundle: the attester must not choose how many
        # candidate intermediates cost an RSA-4096 verification.
        raise ChainError(
            "snp.chain.too_many_certificates",
            f"the VCEK bundle and cert chain hold {len(bundle)} chain certificates; at most "
            f"{MAX_BUNDLE_CERTS} are accepted",
        )
    fps = (_fp(leaf), tuple(sorted({_fp(d) for d in bundle})))
    out = (leaf, bundle, fps)
    size = 2 * (len(leaf_der) + len(cert_chain or b"") + len(leaf) + sum(len(d) for d in bundle))
    _SPLITS.put(memo_key, out, size + 64 * len(bundle))
    return out


def _root_fps(roots: list[bytes] | None) -> tuple[bytes, ...]:
    if not roots:
        return ()
    key = tuple(roots)
    hit = _ROOT_FPS.get(key)
    if hit is None:
        hit = tuple(_fp(r) for r in roots)
        _ROOT_FPS.put(key, hit, 2 * sum(len(r) for r in roots) + 32 * len(roots))
    return hit


def _inputs(
    leaf_der: bytes,
    cert_chain: bytes | None,
    roots: list[bytes] | None,
    crl: bytes | None,
    product: str | None,
    trust_dir: Path | None,
    cache: CollateralCache | None,
    revocation: Revocation | None,
) -> _Inputs:
    leaf, bundle, (leaf_fp, bundle_fps) = _split_inputs(leaf_der, cert_chain)
    key = (
        leaf_fp,
        bundle_fps,
        _root_fps(roots),
        _fp(crl) if crl is not None else None,
        product,
        trust_dir,
        cache and cache.root,
        revocation.key if revocation is not None else None,
    )
    return _Inputs(leaf, bundle, key)


def chain_cached(
    vcek: bytes | None,
    *,
    cert_chain: bytes | None = None,
    roots: list[bytes] | None = None,
    crl: bytes | None = None,
    product: str | None = None,
    at: datetime | None = None,
    trust_dir: Path | None = None,
    cache_dir: Path | None = None,
    revocation: Revocation | None = None,
    chain_cache: ChainCache | None = None,
    verifier: SnpVerifier | None = None,
) -> bool:
    """Whether ``verify_report`` with these arguments would find its chain verified in
    memory (cheap: hashing, no parsing or signature work). A service runs the misses,
    which may cost RSA verifications, off its event loop. Without ``verifier`` or
    ``chain_cache`` there is no memory to find it in."""
    if vcek is None:
        return False
    v = _verifier(verifier, chain_cache)
    if revocation is None:
        revocation = v.default_revocation()
    try:
        inp = _inputs(
            vcek,
            cert_chain,
            roots,
            crl,
            product,
            trust_dir,
            CollateralCache(cache_dir) if cache_dir is not None else None,
            revocation,
        )
    except SealgateError:
        return False
    e = v.chains.get(inp.key)
    when = at if at is not None else datetime.now(UTC)
    return e is not None and e.chain.not_before <= when <= e.chain.not_after


def _valid_hit(chain_cache: ChainCache, inp: _Inputs, at: datetime) -> _Entry | None:
    """The verified chain for these inputs when it is in memory and ``at`` falls inside
    its validity window (otherwise it is verified again and fails with the reason)."""
    hit = chain_cache.get(inp.key)
    if hit is not None and hit.chain.not_before <= at <= hit.chain.not_after:
        return hit
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
    revocation: Revocation | None,
    verifier: SnpVerifier,
) -> _Entry:
    """Verified chain for a leaf, from the verifier's chain cache or verified now."""
    inp = _inputs(leaf_der, cert_chain, roots, crl, product, trust_dir, cache, revocation)
    chain_cache = verifier.chains
    hit = _valid_hit(chain_cache, inp, at)
    if hit is not None:
        return hit
    leaf = load_certificate(inp.leaf, "VCEK/VLEK")
    candidates = [load_certificate(d, "cert chain") for d in inp.bundle]
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
    # Without a revocation source of its own (the CLI), the cached CRL stands in for one
    # the caller did not pass; with one, that source already covers the cache.
    if revocation is None and crl_obj is None and line:
        data = _cached_file(cache, *kds.crl_cache_parts(line, ek0.kind))
        if data is not None:
            crl_obj = load_crl(data, f"cached {line} CRL")
    chain = verifier.amd.verify_chain(
        leaf, candidates, explicit, product, at, crl_obj, revocation=revocation
    )
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
    # Parsed certificates hold their DER a few times over (tbs, fields); the verifier's own
    # CRLs are shared between entries and not charged to each.
    size = 3 * sum(len(c.der) for c in (leaf, chain.intermediate, chain.root))
    if crl_obj is not None and chain.crl is crl_obj:
        size += len(crl_obj.der)
    chain_cache.put(inp.key, entry, size + 64 * len(inp.key[1]))
    return entry


def endorsed_claims(claims: dict[str, Any], entry: _Entry) -> dict[str, Any]:
    """A verified report's claims (``_core.verify_snp`` / ``_core.verify_azure``) with what
    its endorsement key's verified chain says: ``endorsement_key`` and, for a VLEK, the
    ``csp_id``."""
    claims["endorsement_key"] = entry.claims
    if entry.ek.kind == "vlek":
        claims["csp_id"] = entry.ek.csp_id
    return claims


class CrlSource:
    """The verifier's own AMD CRLs, for ``SnpVerifier(crls=...)`` (or
    ``verify_report(revocation=source.revocation())``).

    ``paths``: CRL files (DER or PEM) or directories of them, as configured; when none is
    configured, every product's CRLs in the collateral cache (``cache_dir``, which
    ``sealgate collateral fetch snp`` fills). Files are looked at again at most every
    ``RESCAN_SECONDS`` and re-read when their size or modification time changed, so a
    refreshed CRL takes effect without a restart. A file that does not parse as a CRL is
    left out (and logged): the verifier then holds no CRL for that ARK, which fails
    closed unless ``allow_missing``.
    """

    RESCAN_SECONDS = 1.0

    def __init__(
        self,
        paths: Sequence[Path] = (),
        cache_dir: Path | None = None,
        *,
        allow_missing: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.cache = CollateralCache(cache_dir)
        self.allow_missing = allow_missing
        self._loaded: dict[Path, tuple[tuple[int, int], Crl | None]] = {}
        self._current = Revocation((), allow_missing)
        self._scanned = -1e9
        self._lock = threading.Lock()

    def files(self) -> list[tuple[Path, str | None]]:
        """(file, the hierarchy it is for: "vcek", "vlek" or None for both)."""
        if not self.paths:
            return [
                (self.cache.path("snp", *kds.crl_cache_parts(p, kind)), kind)
                for p in PRODUCTS
                for kind in ("vcek", "vlek")
            ]
        out: list[tuple[Path, str | None]] = []
        for p in self.paths:
            files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
            out.extend((f, None) for f in files)
        return out

    def revocation(self) -> Revocation:
        if time.monotonic() - self._scanned < self.RESCAN_SECONDS:
            return self._current
        with self._lock:
            if time.monotonic() - self._scanned >= self.RESCAN_SECONDS:
                self._rescan()
            return self._current

    def _rescan(self) -> None:
        crls: list[Crl] = []
        by_kind: list[tuple[str, Crl]] = []
        seen: dict[Path, tuple[tuple[int, int], Crl | None]] = {}
        try:
            files = self.files()
        except OSError as e:
            log.warning("cannot list the configured SNP CRLs: %s", e.strerror)
            files = []
        for f, kind in files:
            try:
                st = f.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            old = self._loaded.get(f)
            crl = old[1] if old is not None and old[0] == stamp else self._read(f)
            seen[f] = (stamp, crl)
            if crl is not None and kind is None:
                crls.append(crl)
            elif crl is not None and kind is not None:
                by_kind.append((kind, crl))
        self._loaded = seen
        self._current = Revocation(tuple(crls), self.allow_missing, tuple(by_kind))
        self._scanned = time.monotonic()

    @staticmethod
    def _read(f: Path) -> Crl | None:
        try:
            with open(f, "rb") as fh:
                data = fh.read(MAX_CRL_LEN + 1)
            return load_crl(data, str(f))
        except OSError as e:
            log.warning("cannot read the SNP CRL %s: %s", f, e.strerror)
        except SealgateError as e:
            log.warning("the SNP CRL %s is unusable: %s", f, e.code)
        return None


class SnpVerifier:
    """One SEV-SNP verifier's state, for its lifetime: the verified chains
    (``chains``, a ``new_chain_cache()``), AMD's chain verifier with its signature memo
    (``amd``) and, optionally, the verifier's own CRLs (``crls``), which then decide
    revocation for every call that passes none. Thread-safe: the caches lock themselves.
    """

    def __init__(
        self, *, crls: CrlSource | None = None, chain_cache: ChainCache | None = None
    ) -> None:
        self.chains: ChainCache = chain_cache if chain_cache is not None else new_chain_cache()
        self.amd = AmdChainVerifier()
        self.crls = crls
        #: ``cached_entry``'s memo: its arguments themselves → the chain-cache key they
        #: determine (a pure function of them), so a steady-state look-up is two dict
        #: look-ups. Bounded by count and bytes (the attester chooses the bytes) and
        #: dropped whole when full; read without the lock (a dict read is atomic).
        self._keys: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._keys_bytes = 0
        self._keys_lock = threading.Lock()

    def default_revocation(self) -> Revocation | None:
        return self.crls.revocation() if self.crls is not None else None

    def clear(self) -> None:
        """Forget every verified chain and signature (operators after a trust change)."""
        self.chains.clear()
        self.amd.clear()
        with self._keys_lock:
            self._keys.clear()
            self._keys_bytes = 0

    def verify_report(self, report: bytes, **kwargs: Any) -> VerifyResult:
        """``sealgate.snp.verify_report`` with this verifier's caches."""
        return verify_report(report, verifier=self, **kwargs)

    def chain_cached(self, vcek: bytes | None, **kwargs: Any) -> bool:
        """``sealgate.snp.chain_cached`` against this verifier's chain cache."""
        return chain_cached(vcek, verifier=self, **kwargs)

    def cached_entry(
        self,
        vcek: bytes,
        *,
        cert_chain: bytes | None,
        roots: list[bytes] | None,
        at: datetime,
        trust_dir: Path | None,
        cache_dir: Path | None,
    ) -> _Entry | None:
        """The verified chain ``verify_report(report, vcek=vcek, cert_chain=cert_chain,
        roots=roots, at=at, trust_dir=trust_dir, cache_dir=cache_dir, verifier=self)``
        would use, when it is in memory (no parsing or signature work; None otherwise, and
        for inputs that do not split: ``verify_report`` then says why). For callers that
        verify the report in their own call into Rust with ``entry.key`` and add
        ``endorsed_claims``."""
        revocation = self.default_revocation()
        memo = (
            vcek,
            cert_chain,
            tuple(roots) if roots else (),
            trust_dir,
            cache_dir,
            revocation.key if revocation is not None else None,
        )
        key = self._keys.get(memo)
        if key is None:
            try:
                key = _inputs(
                    vcek,
                    cert_chain,
                    roots,
                    None,
                    None,
                    trust_dir,
                    CollateralCache(cache_dir) if cache_dir is not None else None,
                    revocation,
                ).key
            except SealgateError:
                return None
            size = len(vcek) + len(cert_chain or b"") + sum(len(r) for r in roots or ()) + 256
            with self._keys_lock:
                if len(self._keys) >= KEY_MEMO_SIZE or self._keys_bytes + size > KEY_MEMO_BYTES:
                    self._keys.clear()
                    self._keys_bytes = 0
                self._keys[memo] = key
                self._keys_bytes += size
        hit = self.chains.get(key)
        if hit is not None and hit.chain.not_before <= at <= hit.chain.not_after:
            return hit
        return None


def _verifier(verifier: SnpVerifier | None, chain_cache: ChainCache | None) -> SnpVerifier:
    if verifier is None:
        return SnpVerifier(chain_cache=chain_cache)
    if chain_cache is not None and chain_cache is not verifier.chains:
        raise ValueError("pass a verifier or a chain cache, not both")
    return verifier


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
    revocation: Revocation | None = None,
    chain_cache: ChainCache | None = None,
    verifier: SnpVerifier | None = None,
) -> VerifyResult:
    """Verify an SEV-SNP attestation report; every failure is in the result, never raised.

    ``vcek``: VCEK or VLEK certificate (PEM or DER; when absent, the VCEK is looked up in the
    collateral cache by product/chip/TCB). ``cert_chain``: PEM bundle with the ASK/ASVK and
    ARK in any order. ``roots``: explicitly trusted roots (otherwise only pinned ARKs from
    the chain, trust directory or cache). ``crl``: AMD's per-product CRL (else the cached
    one, if any). ``at``: verification time (default now). ``report_data``: expected
    REPORT_DATA (shorter values are zero-padded to 64 bytes). ``revocation``: the
    verifier's own CRLs (``CrlSource.revocation()``); when given, they decide revocation and
    ``crl`` can only add to them (default: ``verifier``'s source, if it has one).
    ``verifier``: the ``SnpVerifier`` whose chain cache and signature memo to use;
    ``chain_cache``: a chain cache for a fresh one. Without either, every call verifies its
    chain from scratch.
    """
    v = _verifier(verifier, chain_cache)
    if revocation is None:
        revocation = v.default_revocation()
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
        p = parsed.product(product)
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
        entry = _chain_for(
            vcek,
            cert_chain,
            roots,
            crl,
            product,
            when,
            trust_dir,
            cache,
            revocation,
            v,
        )
    except (ChainError, ParseError, VerificationError) as e:
        res.fail_from(e)

    if entry is not None:
        # Steady state: one call into Rust (parse, signature, endorsement, claims).
        try:
            claims, failures = _core.verify_snp(entry.key, report, product, report_data)
        except (ParseError, VerificationError) as e:
            res.fail_from(e)
            return res
        res.claims = endorsed_claims(claims, entry)
        res.errors.extend(failures)
        return res

    # The chain failed: still parse and report the claims (the failure is already recorded).
    try:
        rpt = _core.SnpReport.parse(report)
    except (ParseError, VerificationError) as e:
        res.fail_from(e)
        return res
    claims, failures = rpt.check_unendorsed(product, _leaf_product(vcek), report_data)
    res.claims.update(claims)
    res.errors.extend(failures)
    return res


def verify_tsm_evidence(outblob: bytes, auxblob: bytes | None, **kwargs: Any) -> VerifyResult:
    """Verify configfs-tsm evidence: ``outblob`` is the report, ``auxblob`` the certificate
    table the host attached (VCEK or VLEK, optionally ASK/ARK). Certificates passed in
    ``kwargs`` (``vcek``, ``cert_chain``) take precedence; everything else is as
    ``verify_report``. A malformed table is a failure, not an exception."""
    from sealgate.snp.certtable import parse_cert_table

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
