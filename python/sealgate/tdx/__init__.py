"""Intel TDX evidence facade: quote + PCK chain + collateral → ``VerifyResult``.

Per-quote work (parse, quote signature, QE binding, QE report signature) runs in Rust
with the GIL released; the PCK chain, collateral signatures and TCB evaluation are verified
once and cached by a ``TdxVerifier`` (``verifier.py``), so steady state is two P-256
verifications plus comparisons. Certificates and CRLs go through ``sealgate.pki`` with
Intel's profile (``pck.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sealgate import _core
from sealgate.result import VerifyResult
from sealgate.tdx.collateral import (
    TdxCollateral,
    VerifiedCollateral,
    load_collateral_files,
    load_collateral_json,
)
from sealgate.tdx.pck import INTEL_SGX_ROOT_CA_SHA256, load_roots
from sealgate.tdx.verifier import TdxVerifier

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
    "TdxCollateral",
    "TdxVerifier",
    "VerifiedCollateral",
    "load_collateral_files",
    "load_collateral_json",
    "load_roots",
    "quote_cached",
    "replay_ccel",
    "verify_quote",
]


def replay_ccel(ccel: bytes) -> list[bytes]:
    """RTMR0..3 replayed from a CCEL area (padding after the log is ignored)."""
    return _core.replay_ccel(ccel)


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
    verifier: TdxVerifier | None = None,
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
    nextUpdate allows. ``verifier``: the ``TdxVerifier`` whose caches to use (default: a
    fresh one, so nothing is kept after the call).
    """
    return (verifier or TdxVerifier()).verify_quote(
        quote,
        collateral=collateral,
        roots=roots,
        at=at,
        allow_missing_crl=allow_missing_crl,
        ccel=ccel,
        report_data=report_data,
        trust_dir=trust_dir,
        cache_dir=cache_dir,
        prefer_cached=prefer_cached,
        collateral_max_age=collateral_max_age,
    )


def quote_cached(
    quote: bytes,
    *,
    collateral: bytes | None = None,
    roots: list[bytes] | None = None,
    trust_dir: Path | None = None,
    cache_dir: Path | None = None,
    verifier: TdxVerifier | None = None,
) -> bool:
    """Whether ``verify_quote`` with ``verifier`` would find the quote's PCK chain and its
    collateral (cached for the FMSPC, else ``collateral`` as JSON) verified in memory
    (``TdxVerifier.quote_cached``); a fresh verifier has nothing cached."""
    return (verifier or TdxVerifier()).quote_cached(
        quote, collateral=collateral, roots=roots, trust_dir=trust_dir, cache_dir=cache_dir
    )
