"""The TDX verifier object: Intel's PKI profile and every memo a verification reuses.

Per-quote work (parse, quote signature, QE binding, QE report signature) runs in Rust with
the GIL released. What does not depend on the quote's own bytes beyond its PCK chain is
derived once and kept here, in caches bounded by entries and bytes (evidence is the
attester's choice): verified PCK chains by certificate fingerprints and root set, loaded
collateral by digest of its input, verified collateral and checked PCK CRLs by the
collateral's digest, TCB evaluations by the platform's TCB values. Steady state is two
P-256 verifications plus comparisons. A service holds one verifier for its lifetime; the
module functions in ``sealgate.tdx`` build one per call unless given one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sealgate import _core, pki
from sealgate.errors import (
    ChainError,
    CollateralError,
    ParseError,
    SealgateError,
    VerificationError,
)
from sealgate.lru import BoundedCache
from sealgate.result import VerifyResult
from sealgate.tdx import collateral as coll_mod
from sealgate.tdx.collateral import CheckedCrl, TdxCollateral, VerifiedCollateral
from sealgate.tdx.pck import (
    CHAIN_CACHE_BYTES,
    CHAIN_CACHE_SIZE,
    PckInfo,
    build_pck_info,
    chain_key,
    chain_verifier,
    check_time,
    load_roots,
    revokes,
)
from sealgate.tdx.tcb import TcbResult, evaluate

Roots = tuple[list[pki.Certificate], tuple[str, ...]]
PckKey = tuple[tuple[bytes, ...] | bytes, tuple[str, ...]]

#: Loaded-collateral objects kept for reuse (so repeated loads share verification results),
#: keyed by a digest of the input; bounded by count and by the bytes they hold (a node
#: chooses what collateral it sends, and each distinct body would otherwise stay).
LOADED_CACHE_SIZE = 256
LOADED_CACHE_BYTES = 64 << 20
#: TCB evaluations kept (one per platform TCB and collateral).
TCB_CACHE_SIZE = 4096


class TdxVerifier:
    """Verifies TDX quotes with Intel's hierarchy; owns the caches (thread-safe)."""

    def __init__(
        self,
        *,
        chain_entries: int = CHAIN_CACHE_SIZE,
        chain_bytes: int = CHAIN_CACHE_BYTES,
        loaded_entries: int = LOADED_CACHE_SIZE,
        loaded_bytes: int = LOADED_CACHE_BYTES,
    ) -> None:
        self.pki = chain_verifier()
        #: By (certificate fingerprints | digest of the PEM bytes, root set).
        self._pck: BoundedCache[PckKey, PckInfo] = BoundedCache(chain_entries, chain_bytes)
        #: Root sets by their bytes (operator-supplied: a handful), bounded all the same.
        self._roots: BoundedCache[tuple[bytes, ...], Roots] = BoundedCache(64, 16 << 20)
        #: Trust-directory roots by (directory, modification time).
        self._trust: BoundedCache[tuple[str, int], list[bytes]] = BoundedCache(16, 4 << 20)
        self._loaded: BoundedCache[bytes, TdxCollateral] = BoundedCache(
            loaded_entries, loaded_bytes
        )
        #: Cached collateral files loaded, by (path, mtime, size).
        self._files: BoundedCache[tuple[str, int, int], TdxCollateral] = BoundedCache(
            1024, 64 << 20
        )
        self._verified: BoundedCache[tuple[bytes, tuple[str, ...]], VerifiedCollateral] = (
            BoundedCache(loaded_entries, loaded_bytes)
        )
        #: PCK CRLs checked against a PCK CA: (collateral digest, CA fingerprint).
        self._crls: BoundedCache[tuple[bytes, str], CheckedCrl] = BoundedCache(
            loaded_entries, loaded_bytes
        )
        self._tcb: BoundedCache[tuple[Any, ...], TcbResult] = BoundedCache(TCB_CACHE_SIZE, 16 << 20)

    # --- inputs ----------------------------------------------------------------------

    def load_roots(self, roots: list[bytes]) -> Roots:
        """``tdx.pck.load_roots``, cached by the roots' bytes."""
        key = tuple(roots)
        hit = self._roots.get(key)
        if hit is None:
            hit = load_roots(roots)
            self._roots.put(key, hit, 2 * sum(len(b) for b in roots))
        return hit

    def trust_dir_roots(self, trust_dir: Path | None) -> list[bytes]:
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
        hit = self._trust.get(key)
        if hit is None:
            hit = [c.der for c in store.roots("tdx")]
            self._trust.put(key, hit, sum(len(d) for d in hit))
        return hit

    def load_collateral_json(self, data: bytes) -> TdxCollateral:
        """``collateral.load_collateral_json``, the same object for the same body."""
        if len(data) > coll_mod.MAX_COLLATERAL_LEN:
            return coll_mod.load_collateral_json(data)  # refused before hashing it
        key = coll_mod.json_key(data)
        hit = self._loaded.get(key)
        if hit is None:
            hit = coll_mod.load_collateral_json(data)
            self._loaded.put(key, hit, len(data))
        return hit

    def load_collateral_files(
        self,
        tcb_info: bytes,
        qe_identity: bytes,
        tcb_signing_chain: bytes,
        pck_crl: bytes | None = None,
        root_crl: bytes | None = None,
    ) -> TdxCollateral:
        """``collateral.load_collateral_files``, the same object for the same inputs."""
        parts = [tcb_info, qe_identity, tcb_signing_chain, pck_crl, root_crl]
        key = coll_mod.files_key(parts)
        hit = self._loaded.get(key)
        if hit is None:
            hit = coll_mod.load_collateral_files(
                tcb_info, qe_identity, tcb_signing_chain, pck_crl, root_crl
            )
            self._loaded.put(key, hit, sum(len(p or b"") for p in parts))
        return hit

    def loaded(self, data: bytes) -> TdxCollateral | None:
        """The collateral ``load_collateral_json(data)`` returned before, if still cached."""
        return self._loaded.get(coll_mod.json_key(data))

    def load_cached(self, fmspc: bytes, cache_dir: Path | None = None) -> TdxCollateral | None:
        """Collateral cached on disk for ``fmspc`` (``tdx.fetch``), or None.

        The file is re-read only when its mtime or size changes, so a verifier serving from
        the cache pays one ``stat`` per quote and the loaded object keeps its results.
        """
        from sealgate.tdx.fetch import cache_file, load_cached

        path = cache_file(fmspc, cache_dir)
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path), st.st_mtime_ns, st.st_size)
        hit = self._files.get(key)
        if hit is None:
            hit = load_cached(fmspc, cache_dir)
            if hit is None:
                return None
            self._files.put(key, hit, hit.size)
        return hit

    # --- derived, cached -------------------------------------------------------------

    def pck_cached(self, chain_pem: bytes, roots_key: tuple[str, ...]) -> PckInfo | None:
        """The verified chain for these certificates and roots, if already in memory."""
        hit = self._pck.get((hashlib.sha256(chain_pem).digest(), roots_key))
        if hit is not None:
            return hit
        try:
            return self._pck.get((chain_key(chain_pem), roots_key))
        except (ChainError, ParseError):
            return None

    def pck_info(
        self, chain_pem: bytes, roots: list[pki.Certificate], roots_key: tuple[str, ...]
    ) -> PckInfo:
        """The verified PCK chain of a quote's certification data, cached by the
        certificates' fingerprints and the root set, and in front of that by the digest of
        the chain's bytes: bytes seen before passed ``chain_key``'s shape checks, and a
        repeat costs one SHA-256 instead of decoding the PEM again."""
        raw: PckKey = (hashlib.sha256(chain_pem).digest(), roots_key)
        hit = self._pck.get(raw)
        if hit is not None:
            return hit
        fps = chain_key(chain_pem)
        key: PckKey = (fps, roots_key)
        hit = self._pck.get(key)
        if hit is None:
            hit = build_pck_info(self.pki, chain_pem, roots)
            size = 2 * sum(len(c.der) for c in hit.chain.certs)
            self._pck.put(key, hit, size + 32 * len(fps) + 1024)
        self._pck.put(raw, hit, 256)
        return hit

    def verified(
        self, c: TdxCollateral, roots: list[pki.Certificate], roots_key: tuple[str, ...]
    ) -> VerifiedCollateral:
        """``c`` verified under ``roots`` (cached by its digest and the root set)."""
        key = (c.digest, roots_key)
        hit = self._verified.get(key)
        if hit is None:
            hit = c.verify(self.pki, roots)
            self._verified.put(key, hit, 2 * c.size)
        return hit

    def pck_crl(self, c: TdxCollateral, pck: PckInfo) -> CheckedCrl | None:
        """``c``'s PCK CRL checked against the quote's (verified) PCK CA, cached per CA."""
        if c.pck_crl is None:
            return None
        key = (c.digest, pck.ca_fp)
        hit = self._crls.get(key)
        if hit is None:
            hit = CheckedCrl.check(self.pki, c.pck_crl, pck.chain.certs[1], "PCK CRL")
            self._crls.put(key, hit, 2 * len(c.pck_crl))
        return hit

    def _tcb_result(
        self, c: TdxCollateral, v: VerifiedCollateral, q: _core.TdxQuote, pck: PckInfo
    ) -> TcbResult:
        key = (c.digest, pck.ext.cpusvn_components, pck.ext.pcesvn, q.tcb_key)
        hit = self._tcb.get(key)
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
            self._tcb.put(key, hit, 1024)
        return hit

    def clear(self) -> None:
        for cache in (
            self._pck,
            self._roots,
            self._trust,
            self._loaded,
            self._files,
            self._verified,
            self._crls,
            self._tcb,
        ):
            cache.clear()
        self.pki.clear()

    # --- verification ----------------------------------------------------------------

    def verify_quote(
        self,
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
        """``sealgate.tdx.verify_quote`` (which documents the arguments) with this
        verifier's caches."""
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
            blobs = roots if roots is not None else self.trust_dir_roots(trust_dir)
            root_certs, roots_key = self.load_roots(blobs)
            pck = self.pck_info(q.pck_chain, root_certs, roots_key)
        except (ChainError, ParseError) as e:
            res.fail(e.code if e.code.startswith("tdx.") else "tdx.pck.chain_invalid", e.message)
        res.errors.extend(q.verify(pck.key if pck else None))
        if pck is None:
            return res
        ext = pck.ext
        claims.update(pck.claims)
        try:
            check_time(pck.chain, when, "tdx.pck.expired")
        except ChainError as e:
            res.fail_from(e)

        # --- Collateral ---
        node_coll = collateral
        if collateral is None or prefer_cached:
            coll = self.load_cached(ext.fmspc, cache_dir) or collateral
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
            v = self.verified(coll, root_certs, roots_key)
        except (CollateralError, ChainError, ParseError) as e:
            res.fail_from(e)
            return res
        if v.fmspc != ext.fmspc:
            res.fail(
                "tdx.collateral.fmspc_mismatch",
                f"TCB info is for FMSPC {v.fmspc.hex()}, the PCK certificate says "
                f"{ext.fmspc.hex()}",
            )
            return res
        if v.pce_id != ext.pceid:
            res.fail(
                "tdx.collateral.pceid_mismatch",
                f"TCB info is for PCE-ID {v.pce_id.hex()}, the PCK certificate says "
                f"{ext.pceid.hex()}",
            )
        if not v.valid_from <= when <= v.valid_until:  # slow path only when outside a window
            for w in v.windows:
                try:
                    w.check(when)
                except CollateralError as e:
                    res.fail_from(e)
            try:
                check_time(v.tcb_chain, when, "tdx.collateral.expired")
            except ChainError as e:
                res.fail_from(e)
        self._check_revocation(res, coll, v, pck, when, allow_missing_crl)
        if collateral_max_age is not None:
            self._check_age(res, coll, v, pck, when - collateral_max_age)
        if node_coll is not None and node_coll.digest != coll.digest:
            self._node_revocations(res, node_coll, root_certs, roots_key, pck)

        try:
            tcb = self._tcb_result(coll, v, q, pck)
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
        self,
        res: VerifyResult,
        coll: TdxCollateral,
        v: VerifiedCollateral,
        pck: PckInfo,
        when: datetime,
        allow_missing_crl: bool,
    ) -> None:
        leaf = pck.chain.leaf
        try:
            crl = self.pck_crl(coll, pck)
        except CollateralError as e:
            res.fail_from(e)
        else:
            if crl is None:
                if not allow_missing_crl:
                    res.fail("tdx.collateral.crl_missing", "no PCK CRL supplied")
            else:
                try:
                    crl.window.check(when)
                except CollateralError as e:
                    res.fail_from(e)
                if crl.revokes(leaf):
                    res.fail(
                        "tdx.pck.revoked",
                        f"PCK certificate serial {leaf.serial:x} is on the PCK CRL",
                    )
        root_crl = v.root_crl
        if root_crl is None:
            if not allow_missing_crl:
                res.fail("tdx.collateral.crl_missing", "no Intel SGX Root CA CRL supplied")
            return
        for ca in pck.chain.certs[1:-1]:
            if root_crl.revokes(ca):
                res.fail("tdx.pck.revoked", f"PCK CA serial {ca.serial:x} is on the Root CA CRL")
        for cert in v.tcb_chain.certs[:-1]:
            if root_crl.revokes(cert):
                res.fail(
                    "tdx.collateral.revoked",
                    f"TCB signing certificate serial {cert.serial:x} is on the Root CA CRL",
                )

    def _check_age(
        self,
        res: VerifyResult,
        coll: TdxCollateral,
        v: VerifiedCollateral,
        pck: PckInfo,
        oldest: datetime,
    ) -> None:
        """TCB info, QE identity and PCK CRL issued no earlier than ``oldest``. The Root CA
        CRL is left to its nextUpdate: Intel re-issues it about yearly, not with the rest."""
        windows = [w for w in v.windows if w.what in ("TCB info", "QE identity")]
        try:
            crl = self.pck_crl(coll, pck)
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
        self,
        res: VerifyResult,
        node: TdxCollateral,
        roots: list[pki.Certificate],
        roots_key: tuple[str, ...],
        pck: PckInfo,
    ) -> None:
        """A PCK CRL the node sent alongside the verifier's collateral may add a revocation
        (when Intel signed it); it never replaces the verifier's and its defects are not
        the verifier's failures."""
        try:
            self.verified(node, roots, roots_key)
            crl = self.pck_crl(node, pck)
        except SealgateError:
            return
        leaf = pck.chain.leaf
        if crl is not None and revokes(crl.crl, leaf):
            res.fail("tdx.pck.revoked", f"PCK certificate serial {leaf.serial:x} is on the PCK CRL")

    def quote_cached(
        self,
        quote: bytes,
        *,
        collateral: bytes | None = None,
        roots: list[bytes] | None = None,
        trust_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> bool:
        """Whether ``verify_quote`` would find the quote's PCK chain and its collateral
        (cached for the FMSPC, else ``collateral`` as JSON) verified in memory. Cheap: a
        quote parse, hashing and look-ups. A service runs the misses off its event loop."""
        try:
            q = _core.TdxQuote.parse(quote)
            blobs = roots if roots is not None else self.trust_dir_roots(trust_dir)
            _, roots_key = self.load_roots(blobs)
            pck = self.pck_cached(q.pck_chain, roots_key)
            if pck is None:
                return False
            colls = [c for c in [self.load_cached(pck.ext.fmspc, cache_dir)] if c is not None]
            if collateral is not None:
                node = self.loaded(collateral)
                if node is None:
                    return False
                colls.append(node)
        except (SealgateError, ValueError, OSError):
            return False
        for c in colls:
            if (c.digest, roots_key) not in self._verified:
                return False
            if c.pck_crl is not None and (c.digest, pck.ca_fp) not in self._crls:
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
