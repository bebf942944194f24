"""The service side of composite GPU evidence: which collateral the GPU verifier gets.

Per Attest, every GPU is verified (``sealgate.nvgpu.GpuVerifier``) with

* RIMs (``sealgate.nvgpu.rim.RimSource``): those the node sent with the evidence, then the
  operator's ``nvgpu_rim_dirs``, then the collateral cache's ``nvidia/rims``
  (``sealgate collateral fetch nvidia``), each verified against the NVIDIA RIM root
  (``nvgpu_rim_roots``, default: the trust directory's pinned ``nvidia-rim-root``);
* OCSP responses (RFC 6960): those the node sent for that GPU (one pool for its device
  chain and its RIMs' signer chains), then the cached ones for its device chain and — through
  ``RimSource.cached_ocsp`` — for the signer chain of each RIM used.

A RIM is an NVIDIA-signed reference (its signature, not its carrier, makes it trusted), so
the RIMs of all GPUs in one request form one pool. Parsing and verifying a signed SWID tag
costs milliseconds, so sources are kept across requests, keyed by the RIM bytes sent and
the state of the directories (a fetch that adds a RIM changes the key), in a bounded LRU.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sealgate import pki
from sealgate.collateral import CollateralCache
from sealgate.errors import SealgateError, VerificationError
from sealgate.protocol.gpu_binding import gpu_nonce
from sealgate.result import VerifyResult
from sealgate.service.config import ServiceConfig

#: RIMs one GPU may carry: its driver and VBIOS RIM, and a spare of each (a node in the
#: middle of an update may hold two candidate versions).
MAX_RIMS_PER_GPU = 4
#: OCSP responses one GPU may carry: NVIDIA's device chain has five certificates, four of
#: them below the anchor, each needing one response; twice that leaves room for the RIM
#: chain's responses without letting a node send an unbounded list.
MAX_OCSP_PER_GPU = 8
#: RIM sources kept across requests (each holds its parsed RIMs), and the RIM bytes sent by
#: nodes they may hold together: a hostile node sending a new RIM set each time evicts older
#: sources instead of growing the cache.
MAX_SOURCES = 32
MAX_CACHED_BLOB_BYTES = 16 << 20
#: Files listed per RIM directory (``RimSource`` reads at most as many).
_MAX_DIR_FILES = 4096


class GpuCollateralError(VerificationError):
    """GPU collateral sent with the evidence exceeds the bounds (``gpu.evidence.too_large``)."""


def check_bounds(gpus: Sequence[Any]) -> None:
    """Refuse oversized collateral before anything is parsed: RIM and OCSP counts per GPU
    and each blob's size (``sealgate.nvgpu.rim.MAX_RIM_BYTES``,
    ``sealgate.nvgpu.ocsp.MAX_RESPONSE_BYTES``)."""
    from sealgate.nvgpu import ocsp, rim

    for i, g in enumerate(gpus):
        rims, resps = list(g.rims), list(g.ocsp_responses)
        if len(rims) > MAX_RIMS_PER_GPU or len(resps) > MAX_OCSP_PER_GPU:
            raise GpuCollateralError(
                "gpu.evidence.too_large",
                f"gpu{i}: {len(rims)} RIM(s) and {len(resps)} OCSP response(s); at most "
                f"{MAX_RIMS_PER_GPU} and {MAX_OCSP_PER_GPU}",
            )
        if any(len(r) > rim.MAX_RIM_BYTES for r in rims) or any(
            len(r) > ocsp.MAX_RESPONSE_BYTES for r in resps
        ):
            raise GpuCollateralError(
                "gpu.evidence.too_large",
                f"gpu{i}: a RIM over {rim.MAX_RIM_BYTES} or an OCSP response over "
                f"{ocsp.MAX_RESPONSE_BYTES} bytes",
            )


def _dir_state(d: Path) -> tuple[Any, ...]:
    """What identifies a directory's RIMs without reading them: names, sizes, mtimes."""
    try:
        entries = sorted(d.iterdir())[:_MAX_DIR_FILES]
    except OSError:
        return (str(d), None)
    out: list[Any] = [str(d)]
    for f in entries:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _load_pems(paths: Sequence[Path]) -> list[bytes]:
    return [f.read_bytes() for p in paths for f in (sorted(p.iterdir()) if p.is_dir() else [p])]


class GpuCollateral:
    """The GPU verifier and its collateral for one service (thread-safe)."""

    def __init__(self, cfg: ServiceConfig) -> None:
        from sealgate import nvgpu
        from sealgate.nvgpu import rim

        self.cfg = cfg
        roots = _load_pems(cfg.nvgpu_roots)
        self.verifier = nvgpu.GpuVerifier(roots=roots or None)
        rim_pems = _load_pems(cfg.nvgpu_rim_roots)
        self.rim_roots: list[pki.Certificate] = (
            [c for pem in rim_pems for c in pki.load_certificates(pem, "nvgpu_rim_roots")]
            if rim_pems
            else rim.rim_roots()
        )
        self.cache = CollateralCache(cfg.collateral_dir)
        self.dirs = [Path(d) for d in cfg.nvgpu_rim_dirs]
        self._sources: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._blob_bytes = 0
        self._lock = threading.Lock()

    def rim_source(self, blobs: Sequence[bytes]) -> Any:
        """The (cached) RimSource for the RIMs sent plus the directories as they are now."""
        from sealgate.nvgpu.rim import RimSource

        uniq = sorted({hashlib.sha256(b).digest(): b for b in blobs}.items())
        dirs = [*self.dirs, self.cache.root / "nvidia" / "rims"]
        key = (tuple(h for h, _ in uniq), tuple(_dir_state(d) for d in dirs))
        with self._lock:
            hit = self._sources.get(key)
            if hit is not None:
                self._sources.move_to_end(key)
                return hit[0]
        src = RimSource.from_places(
            roots=self.rim_roots,
            rim_dirs=self.dirs,
            cache_root=self.cache.root,
            blobs=[(f"evidence RIM {h.hex()[:16]}", b) for h, b in uniq],
        )
        size = sum(len(b) for _, b in uniq)
        with self._lock:
            if key not in self._sources:
                self._sources[key] = (src, size)
                self._blob_bytes += size
            while self._sources and (
                len(self._sources) > MAX_SOURCES or self._blob_bytes > MAX_CACHED_BLOB_BYTES
            ):
                _, (_, n) = self._sources.popitem(last=False)
                self._blob_bytes -= n
        return src

    def ocsp_for(self, g: Any) -> list[bytes]:
        """The responses the node sent for this GPU, then the cached ones for its chain
        (deduplicated; ``check_chain`` uses the first that matches each certificate)."""
        from sealgate.nvgpu import fetch, ocsp

        out = [bytes(r) for r in g.ocsp_responses]
        try:
            chain = pki.load_certificates(bytes(g.cert_chain), "GPU certificate chain")
        except SealgateError:
            chain = []  # the verifier reports the bad chain itself
        for r in fetch.cached_responses(self.cache, chain):
            if r not in out:
                out.append(r)
        return out[: ocsp.MAX_RESPONSES]

    def verify(
        self, base: bytes, gpus: Sequence[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Verify each entry for its own challenge nonce (``gpu_nonce(base, i)``, GPU or
        NVSwitch alike), then the set: one claim set per entry, in order, each with its
        ``kind``, and the set's verdict (distinct devices, protected-PCIe topology:
        ``sealgate.nvgpu.check_set``, the checks ``verify_devices`` makes).

        An entry's kind comes from its certificate chain (``switch.kind_of``: the proto
        has no kind field, and needs none — the composite binding covers every entry by
        its index whatever it is), and the verified chain must agree (``check_kind``)."""
        from sealgate import nvgpu
        from sealgate.nvgpu.switch import SwitchVerifier, kind_of

        rims = self.rim_source([bytes(r) for g in gpus for r in g.rims])
        switches = SwitchVerifier(self.verifier.chains)
        out: list[dict[str, Any]] = []
        devices: list[dict[str, Any]] = []
        for i, g in enumerate(gpus):
            chain = bytes(g.cert_chain)
            kind = kind_of(None, chain)
            try:
                if kind == nvgpu.KIND_NVSWITCH:
                    r = switches.verify(
                        bytes(g.report),
                        chain,
                        nonce=gpu_nonce(base, i),
                        rims=rims,
                        ocsp=self.ocsp_for(g),
                    )
                else:
                    r = self.verifier.verify(
                        nvgpu.GpuEvidence(bytes(g.report), chain),
                        nonce=gpu_nonce(base, i),
                        rims=rims,
                        ocsp=self.ocsp_for(g),
                    )
            except SealgateError as e:
                r = VerifyResult(nvgpu.PLATFORM)
                r.fail_from(e)
            nvgpu.check_kind(r, kind)
            r.claims["kind"] = kind
            devices.append(r.claims)
            out.append(
                {
                    "kind": kind,
                    "verified": r.verified,
                    "errors": [f.code for f in r.errors],
                    "claims": r.claims,
                }
            )
        topo = VerifyResult(nvgpu.PLATFORM)
        nvgpu.check_set(topo, devices)
        return out, {
            "verified": topo.verified,
            "errors": [f.code for f in topo.errors],
            "messages": [f.message for f in topo.errors],
            "claims": topo.claims.get("topology"),
        }


#: The EAR submod member holding what a relying party needs about one GPU.
SUBMOD_CLAIM = "sealgate.gpu"


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def token_claims(item: Any) -> dict[str, Any]:
    """What the EAR token says about one GPU (its ``<platform>/gpu<i>`` submod, next to
    ``ear.status`` and the trustworthiness vector): the verifier's verdict and codes, the
    device identity (leaf certificate digest, FWID), the driver and VBIOS versions and
    SKUs, which RIMs the measurements were compared with (id, version, status) and the
    indices that differed, and the revocation state of the device chain and of each RIM's
    signer chain. Measurement values, certificates and OCSP details stay in the stored
    attestation record; every list here is bounded by what the verifier produced."""
    item = item if isinstance(item, dict) else {}
    c = item.get("claims")
    c = c if isinstance(c, dict) else {}
    cert = c.get("certificate")
    cert = cert if isinstance(cert, dict) else {}
    rim = c.get("rim")
    rim = rim if isinstance(rim, dict) else {}
    rev = c.get("revocation")
    rev = rev if isinstance(rev, dict) else {}

    def rim_entry(kind: str) -> dict[str, Any] | None:
        r = rim.get(kind)
        if not isinstance(r, dict):
            return None
        return {
            "id": _s(r.get("id")),
            "version": _s(r.get("version")),
            "status": _s(r.get("status")),
        }

    def rev_entry(e: Any) -> dict[str, Any]:
        e = e if isinstance(e, dict) else {}
        out: dict[str, Any] = {"checked": e.get("checked") is True, "status": _s(e.get("status"))}
        if "id" in e:
            out["id"] = _s(e.get("id"))
        return out

    rims_rev = rev.get("rims")
    mism = c.get("mismatched_indices")
    return {
        "verified": item.get("verified") is True,
        "errors": [e for e in item.get("errors") or [] if isinstance(e, str)],
        "driver_version": _s(c.get("driver_version")),
        "vbios_version": _s(c.get("vbios_version")),
        "chip_sku": _s(c.get("chip_sku")),
        "project": _s(c.get("project")),
        "project_sku": _s(c.get("project_sku")),
        "fwid": _s(c.get("fwid")),
        "device_certificate_sha256": _s(cert.get("leaf_sha256")),
        "nonce_checked": c.get("nonce_checked") is True,
        "rim": {
            "driver": rim_entry("driver"),
            "vbios": rim_entry("vbios"),
            "status": _s(rim.get("status")),
        },
        "measurements_compared": c.get("measurements_compared") is True,
        "mismatched_indices": [
            m["index"]
            for m in (mism if isinstance(mism, list) else [])
            if isinstance(m, dict) and isinstance(m.get("index"), int)
        ],
        "revocation": {
            "checked": rev.get("checked") is True,
            "status": _s(rev.get("status")),
            "device": rev_entry(rev.get("device")),
            "rims": {
                k: rev_entry(v)
                for k, v in (rims_rev.items() if isinstance(rims_rev, dict) else [])
                if k in ("driver", "vbios")
            },
        },
    }


def switch_token_claims(item: Any, topology: Any) -> dict[str, Any]:
    """What the EAR token says about one NVSwitch (its ``<platform>/nvswitch<j>`` submod):
    the verdict and codes, its PDI and VBIOS version, the RIM compared, the device chain's
    and the RIM chain's revocation, and the set's topology verdict (the same on every
    switch: whether the GPUs and the switches name each other)."""
    base = token_claims(item)
    item = item if isinstance(item, dict) else {}
    c = item.get("claims")
    c = c if isinstance(c, dict) else {}
    topo = topology if isinstance(topology, dict) else {}
    tc = topo.get("claims")
    tc = tc if isinstance(tc, dict) else {}
    return {
        "kind": "nvswitch",
        "verified": base["verified"],
        "errors": base["errors"],
        "pdi": _s(c.get("pdi")),
        "vbios_version": base["vbios_version"],
        "position_id": c.get("position_id") if isinstance(c.get("position_id"), int) else None,
        "device_certificate_sha256": base["device_certificate_sha256"],
        "nonce_checked": base["nonce_checked"],
        "rim": {"vbios": base["rim"]["vbios"], "status": base["rim"]["status"]},
        "measurements_compared": base["measurements_compared"],
        "mismatched_indices": base["mismatched_indices"],
        "revocation": base["revocation"],
        "topology": {
            "verified": topo.get("verified") is True,
            "errors": [e for e in topo.get("errors") or [] if isinstance(e, str)],
            "ppcie": tc.get("ppcie") if isinstance(tc.get("ppcie"), bool) else None,
            "switch_side_checked": tc.get("switch_side_checked") is True,
        },
    }


def add_token_claims(
    submods: dict[str, dict[str, Any]], platform: str, gpus: Any, topology: Any = None
) -> None:
    """Put :func:`token_claims` into each ``<platform>/gpu<i>`` submod the appraisal made
    and :func:`switch_token_claims` into each ``<platform>/nvswitch<j>`` (``i`` counts GPUs
    and ``j`` switches, in evidence order, as ``sealgate.appraise.gpu`` names them; each
    says its ``entry``, the evidence index its nonce was derived from). A device no key's
    policy appraised has no submod, and gets none: an EAR submod carries an appraisal
    status."""
    if not isinstance(gpus, list):
        return
    counts = {"gpu": 0, "nvswitch": 0}
    for entry, item in enumerate(gpus):
        kind = item.get("kind", "gpu") if isinstance(item, dict) else "gpu"
        kind = kind if kind in counts else "gpu"
        sub = submods.get(f"{platform}/{kind}{counts[kind]}")
        counts[kind] += 1
        if sub is not None:
            claims = (
                switch_token_claims(item, topology) if kind == "nvswitch" else token_claims(item)
            )
            sub[SUBMOD_CLAIM] = {**claims, "entry": entry}
