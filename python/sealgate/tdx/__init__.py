"""Intel TDX evidence facade: quote + PCK chain + collateral → ``VerifyResult``.

Per-quote work (parse, quote signature, QE binding, QE report signature) runs in Rust
with the GIL released; the PCK chain, collateral signatures and TCB evaluation are verified
once and cached in memory (``pck.py``, ``collateral.py``), so steady state is two P-256
verifications plus comparisons.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from sealgate import _core
from sealgate.errors import (
    ChainError,
    CollateralError,
    ParseError,
    SealgateError,
    VerificationError,
)
from sealgate.lru import BoundedCache
from sealgate.result import VerifyResult
from sealgate.tdx.collateral import (
    TdxCollateral,
    VerifiedCollateral,
    load_collateral_files,
    load_collateral_json,
)
from sealgate.tdx.pck import (
    INTEL_SGX_ROOT_CA_SHA256,
    PckInfo,
    fingerprint,
    load_certificate,
    load_pem_chain,
    pck_info,
)
from sealgate.tdx.tcb import TcbResult, evaluate

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
    "TdxCollateral",
    "load_collateral_files",
    "load_collateral_json",
    "load_roots",
    "quote_cached",
    "replay_ccel",
    "verify_quote",
]

#: Loaded root sets by their bytes (operator-supplied: a handful), bounded all the same.
_ROOTS: BoundedCache[tuple[bytes, ...], tuple[list[x509.Certificate], tuple[str, ...]]] = (
    BoundedCache(64, 16 << 20)
)


def load_roots(roots: list[bytes]) -> tuple[list[x509.Certificate], tuple[str, ...]]:
    """Trusted roots from PEM/DER blobs (cached): (certificates, fingerprints key).

    Caller-supplied roots are trusted as given (tests with a synthetic hierarchy rely on
    it); roots from the trust directory are pinned by ``sealgate.trust``.
    """
    key = tuple(roots)
    hit = _ROOTS.get(key)
    if hit is not None:
        return hit
    certs: list[x509.Certificate] = []
    for blob in roots:
        if blob.count(b"-----BEGIN CERTIFICATE-----") > 1:
            certs.extend(load_pem_chain(blob, "roots"))
        else:
            certs.append(load_certificate(blob))
    out = (certs, tuple(sorted(fingerprint(c) for c in certs)))
    _ROOTS.put(key, out, 2 * sum(len(b) for b in roots))
    return out


_TRUST_CACHE: BoundedCache[tuple[str, int], list[bytes]] = BoundedCache(16, 4 << 20)


def _trust_dir_roots(trust_dir: Path | None) -> list[bytes]:
    """Pinned Intel SGX Root CA certificates from the trust directory (``sealgate.trust``
    re-checks the pin on load). Cached per directory modification time."""
    from sealgate import trust

    store = trust.TrustStore(trust_dir)
    d = store.root / "tdx" / "roots"
    try:
        mtime = d.stat().st_mtime_ns
    except OSError:
        mtime = -1
    key = (str(d), mtime)
    hit = _TRUST_CACHE.get(key)
    if hit is None:
        hit = [c.der for c in store.roots("tdx")]
        _TRUST_CACHE.put(key, hit, sum(len(d) for d in hit))
    return hit


def _cached_collateral(cache_dir: Path | None, fmspc: bytes) -> TdxCollateral | None:
    from sealgate.tdx.fetch import load_cached

    return load_cached(fmspc, cache_dir)


def replay_ccel(ccel: bytes) -> list[bytes]:
    """RTMR0..3 replayed from a CCEL area (padding after the log is ignored)."""
    return _core.replay_ccel(ccel)


def _tcb(v: VerifiedCollateral, q: _core.TdxQuote, pck: PckInfo) -> TcbResult:
    key = (pck.ext.cpusvn_components, pck.ext.pcesvn, q.tcb_key)
    hit: TcbResult | None = v.tcb_cache.get(key)
    if hit is None:
        mr_signer, prod_id, isv_svn, misc, attrs = q.qe_report
        hit = evaluate(
            v.tcb_info,
            v.qe_identity,
            sgx_components=pck.ext.cpusvn_components,
            pcesvn=pck.ext.pcesvn,
            tee_tcb_svn=q.tee_tcb_svn,
            mr_signer_seam=q.mr_signer_seam,
            seam_attributes=q.seam_attributes,
            qe_mr_signer=mr_signer,
            qe_isv_prod_id=prod_id,
            qe_isv_svn=isv_svn,
            qe_misc_select=misc,
            qe_attributes=attrs,
        )
        if len(v.tcb_cache) > 4096:
            v.tcb_cache.clear()
        v.tcb_cache[key] = hit
    return hit


_SPANS: dict[int, tuple[VerifiedCollateral, datetime, datetime]] = {}


def _span(v: VerifiedCollateral) -> tuple[datetime, datetime]:
    hit = _SPANS.get(id(v))
    if hit is None or hit[0] is not v:
        lo, hi = v.valid_span()
        if len(_SPANS) > 1024:
            _SPANS.clear()
        _SPANS[id(v)] = (v, lo, hi)
        return lo, hi
    return hit[1], hit[2]


def verify_quote(
    quote: bytes,
    *,
    collateral: TdxCollateral | None = None,
    roots: list[bytes] | None = None,
    at: datetime | None = None,
    allow_missing_crl: bool = False,
    ccel: bytes | None = None,
    report_data: bytes | None = None,
    trust_dir: Path | None = None,
    cache_dir: Path | None = None,
    prefer_cached: bool = False,
    collateral_max_age: timedelta | None = None,
) -> VerifyResult:
    """Verify a TDX quote v4/v5 and return every failure with the claims that were read.

    ``roots``: trusted Intel SGX Root CA certificates (PEM/DER); default: the pinned root in
    the trust directory. ``collateral``: TCB info, QE identity, CRLs; default: the
    collateral cache entry for the quote's FMSPC. ``at``: verification time (default now).
    ``prefer_cached``: use the cache entry when there is one, ``collateral`` only otherwise
    (a verifier's own collateral is not the attester's choice; a PCK CRL in ``collateral``
    can still add a revocation). ``collateral_max_age``: refuse TCB info and QE identity
    issued, and a PCK CRL updated, longer ago than this (``tdx.collateral.stale``): a
    validly signed CRL from before a revocation must not pass for as long as its
    nextUpdate allows.
    """
    res = VerifyResult(platform="tdx")
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        q = _core.TdxQuote.parse(quote)
    except ParseError as e:
        res.fail_from(e)
        return res
    claims: dict[str, Any] = q.claims()
    res.claims = claims
    if report_data is not None and q.report_data != report_data.ljust(64, b"\x00"):
        res.fail(
            "tdx.quote.report_data_mismatch",
            f"report_data {q.report_data.hex()}, expected {report_data.hex()}",
        )
    if ccel is not None:
        _check_ccel(res, q, ccel)

    # --- PCK chain (verified once per chain and root set) ---
    pck: PckInfo | None = None
    try:
        blobs = roots if roots is not None else _trust_dir_roots(trust_dir)
        root_certs, roots_key = load_roots(blobs)
        pck = pck_info(q.pck_chain, root_certs, roots_key)
    except (ChainError, ParseError) as e:
        res.fail(
            e.code if e.code.startswith("tdx.") else "tdx.pck.chain_invalid",
            e.message,
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # cryptography parses extensions and keys lazily; a malformed PCK chain surfaces here.
        res.fail("tdx.pck.chain_invalid", f"PCK chain unreadable: {e}")
    res.errors.extend(q.verify(pck.key if pck else None))
    if pck is None:
        return res
    ext = pck.ext
    claims.update(pck.claims)
    try:
        pck.chain.check_time(when, "tdx.pck.expired")
    except ChainError as e:
        res.fail_from(e)

    # --- Collateral ---
    node_coll = collateral
    if collateral is None or prefer_cached:
        coll = _cached_collateral(cache_dir, ext.fmspc) or collateral
    else:
        coll = collateral
    if coll is None:
        res.fail(
            "tdx.collateral.missing",
            f"no TDX collateral for FMSPC {ext.fmspc.hex()} (supply it or run "
            "`sealgate collateral fetch tdx`)",
        )
        return res
    try:
        v = coll.verified(root_certs, roots_key)
    except (CollateralError, ChainError, ParseError) as e:
        res.fail_from(e)
        return res
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
        res.fail("tdx.collateral.invalid", f"collateral unreadable: {e}")
        return res
    if v.fmspc != ext.fmspc:
        res.fail(
            "tdx.collateral.fmspc_mismatch",
            f"TCB info is for FMSPC {v.fmspc.hex()}, the PCK certificate says {ext.fmspc.hex()}",
        )
        return res
    if v.pce_id != ext.pceid:
        res.fail(
            "tdx.collateral.pceid_mismatch",
            f"TCB info is for PCE-ID {v.pce_id.hex()}, the PCK certificate says {ext.pceid.hex()}",
        )
    lo, hi = _span(v)
    if not lo <= when <= hi:  # slow path only when something is outside its window
        for w in v.windows:
            try:
                w.check(when)
            except CollateralError as e:
                res.fail_from(e)
        try:
            v.tcb_chain.check_time(when, "tdx.collateral.expired")
        except ChainError as e:
            res.fail_from(e)
    try:
        _check_revocation(res, coll, v, pck, when, allow_missing_crl)
        if collateral_max_age is not None:
            _check_age(res, coll, v, pck, when - collateral_max_age)
        if node_coll is not None and node_coll is not coll:
            _node_revocations(res, node_coll, root_certs, roots_key, pck)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        res.fail("tdx.collateral.invalid", f"PCK CRL unreadable: {e}")

    try:
        tcb = _tcb(v, q, pck)
    except SealgateError as e:
        res.fail_from(e)
        return res
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        # Signed but structurally odd TCB info/QE identity: fail closed, never a traceback.
        res.fail("tdx.collateral.invalid", f"TCB info / QE identity shape: {type(e).__name__}")
        return res
    for code, message in tcb.failures:
        res.fail(code, message)
    claims["tcb_status"] = tcb.status or None
    claims["advisory_ids"] = list(tcb.advisory_ids)
    claims["qe_status"] = tcb.qe_status
    claims["tdx_module_status"] = tcb.tdx_module_status
    claims["tcb_date"] = tcb.tcb_date
    return res


def _check_revocation(
    res: VerifyResult,
    coll: TdxCollateral,
    v: VerifiedCollateral,
    pck: PckInfo,
    when: datetime,
    allow_missing_crl: bool,
) -> None:
    try:
        crl = coll.pck_crl_for(v, pck.chain.certs[1], pck.ca_fp)
    except CollateralError as e:
        res.fail_from(e)
        crl = None
    else:
        if crl is None:
            if not allow_missing_crl:
                res.fail("tdx.collateral.crl_missing", "no PCK CRL supplied")
        else:
            try:
                crl.window.check(when)
            except CollateralError as e:
                res.fail_from(e)
            issuer, serial = pck.serials[0]
            if crl.revokes(issuer, serial):
                res.fail("tdx.pck.revoked", f"PCK certificate serial {serial:x} is on the PCK CRL")
    root_crl = v.root_crl
    if root_crl is None:
        if not allow_missing_crl:
            res.fail("tdx.collateral.crl_missing", "no Intel SGX Root CA CRL supplied")
        return
    for issuer, serial in pck.serials[1:]:
        if root_crl.revokes(issuer, serial):
            res.fail("tdx.pck.revoked", f"PCK CA serial {serial:x} is on the Root CA CRL")
    for issuer, serial in v.tcb_serials:
        if root_crl.revokes(issuer, serial):
            res.fail(
                "tdx.collateral.revoked",
                f"TCB signing certificate serial {serial:x} is on the Root CA CRL",
            )


def _check_age(
    res: VerifyResult, coll: TdxCollateral, v: VerifiedCollateral, pck: PckInfo, oldest: datetime
) -> None:
    """TCB info, QE identity and PCK CRL issued no earlier than ``oldest``. The Root CA
    CRL is left to its nextUpdate: Intel re-issues it about yearly, not with the rest."""
    windows = [w for w in v.windows if w.what in ("TCB info", "QE identity")]
    try:
        crl = coll.pck_crl_for(v, pck.chain.certs[1], pck.ca_fp)
    except CollateralError:
        crl = None  # already reported by the revocation check
    if crl is not None:
        windows.append(crl.window)
    for w in windows:
        if w.issued < oldest:
            res.fail(
                "tdx.collateral.stale",
                f"{w.what} issued {w.issued.isoformat()} is older than the accepted "
                f"{oldest.isoformat()}; refresh the collateral",
            )


def _node_revocations(
    res: VerifyResult,
    node: TdxCollateral,
    roots: list[x509.Certificate],
    roots_key: tuple[str, ...],
    pck: PckInfo,
) -> None:
    """A PCK CRL the node sent alongside the verifier's collateral may add a revocation
    (when Intel signed it); it never replaces the verifier's and its defects are not
    the verifier's failures."""
    try:
        crl = node.pck_crl_for(node.verified(roots, roots_key), pck.chain.certs[1], pck.ca_fp)
    except (SealgateError, ValueError, TypeError, UnsupportedAlgorithm):
        return
    issuer, serial = pck.serials[0]
    if crl is not None and crl.revokes(issuer, serial):
        res.fail("tdx.pck.revoked", f"PCK certificate serial {serial:x} is on the PCK CRL")


def quote_cached(
    quote: bytes,
    *,
    collateral: bytes | None = None,
    roots: list[bytes] | None = None,
    trust_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> bool:
    """Whether ``verify_quote`` would find the quote's PCK chain and its collateral
    (cached for the FMSPC, else ``collateral`` as JSON) verified in memory. Cheap: a quote
    parse, hashing and look-ups. A service runs the misses off its event loop."""
    from sealgate.tdx.collateral import loaded
    from sealgate.tdx.pck import pck_cached

    try:
        q = _core.TdxQuote.parse(quote)
        blobs = roots if roots is not None else _trust_dir_roots(trust_dir)
        _, roots_key = load_roots(blobs)
        pck = pck_cached(q.pck_chain, roots_key)
        if pck is None:
            return False
        colls = [c for c in [_cached_collateral(cache_dir, pck.ext.fmspc)] if c is not None]
        if collateral is not None:
            node = loaded(collateral)
            if node is None:
                return False
            colls.append(node)
    except (SealgateError, ValueError, OSError):
        return False
    for c in colls:
        v = c._verified.get(roots_key)
        if v is None or (c.pck_crl is not None and pck.ca_fp not in v.pck_crls):
            return False
    return bool(colls)


def _check_ccel(res: VerifyResult, q: _core.TdxQuote, ccel: bytes) -> None:
    try:
        replayed, mismatch = q.check_ccel(ccel)
    except (ParseError, VerificationError) as e:
        res.fail_from(e)
        return
    res.claims["ccel"] = {f"rtmr{i}": r.hex() for i, r in enumerate(replayed)}
    if mismatch is not None:
        res.errors.append(mismatch)
