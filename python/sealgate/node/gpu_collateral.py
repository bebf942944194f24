"""GPU collateral a node carries itself: RIMs and OCSP responses from a local directory.

An air-gapped GPU node cannot reach NVIDIA's RIM service or OCSP responder, and the key
service may not either. ``sealgate collateral fetch nvidia --cache-dir DIR`` on a connected
machine fills ``DIR`` (``nvidia/rims/*.swidtag``, ``nvidia/ocsp/<certificate sha256>.der``);
copied to the node, :class:`LocalGpuCollateral` attaches to each ``GpuEvidence``

* the driver RIM and the VBIOS RIM whose versions are the report's (VBIOS RIM files named
  as NVIDIA names them must also agree with the report's project and SKUs), and
* the cached OCSP responses for the GPU's device chain and for those RIMs' signer chains.

Nothing here is trusted by the service for being sent: RIMs are verified against the NVIDIA
RIM root and responses against the chains they concern (``docs/gpu-composite.md``). The
node only chooses what to carry, within the bounds the service enforces (at most
``MAX_RIMS_PER_GPU`` RIMs of ``MAX_RIM_BYTES`` and ``MAX_OCSP_PER_GPU`` responses of
``MAX_RESPONSE_BYTES`` per GPU; more would make the service refuse the whole request).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sealgate import pki
from sealgate.collateral import CollateralCache
from sealgate.errors import SealgateError

#: As ``sealgate.service.gpus`` bounds them (a test keeps the two equal; the node does not
#: import the service).
MAX_RIMS_PER_GPU = 4
MAX_OCSP_PER_GPU = 8
#: RIM files looked at in the directory (a fetch stores two per driver/VBIOS version).
MAX_RIM_FILES = 256


class LocalGpuCollateral:
    """RIMs and OCSP responses under ``root`` (the collateral cache layout)."""

    def __init__(self, root: Path) -> None:
        self.cache = CollateralCache(Path(root))
        self.rim_dir = self.cache.root / "nvidia" / "rims"
        #: (name, size, mtime_ns) → (kind, version), or None for a file that is no RIM.
        self._peeked: dict[tuple[str, int, int], tuple[str, str] | None] = {}
        self._lock = threading.Lock()

    def _rims(self) -> list[tuple[Path, str, str]]:
        """(path, kind, version) of the RIM files, unverified, bounded in count and size."""
        from sealgate.nvgpu import rim

        try:
            files = sorted(self.rim_dir.iterdir())[:MAX_RIM_FILES]
        except OSError:
            return []
        out: list[tuple[Path, str, str]] = []
        for f in files:
            if f.suffix not in (".swidtag", ".xml") or f.is_symlink():
                continue
            try:
                st = f.stat()
                if not f.is_file() or st.st_size > rim.MAX_RIM_BYTES:
                    continue
                key = (f.name, st.st_size, st.st_mtime_ns)
                with self._lock:
                    known = key in self._peeked
                    got = self._peeked.get(key)
                if not known:
                    with open(f, "rb") as fh:
                        data = fh.read(rim.MAX_RIM_BYTES + 1)
                    try:
                        got = rim.peek(data)
                    except SealgateError:
                        got = None
                    with self._lock:
                        self._peeked[key] = got
            except OSError:
                continue
            if got is not None:
                out.append((f, got[0], got[1]))
        return out

    def select_rims(self, report: Any) -> list[bytes]:
        """The driver and VBIOS RIM for a parsed report (``sealgate.nvgpu.GpuReport``): the
        first file (by name) of each kind whose version is the report's."""
        from sealgate.nvgpu import rim

        want = {
            "driver": (report.driver_version or "").strip().lower(),
            "vbios": (report.vbios_version or "").strip().lower(),
        }
        chosen: dict[str, bytes] = {}
        for f, kind, version in self._rims():
            if kind in chosen or not want[kind] or version.strip().lower() != want[kind]:
                continue
            if kind == "vbios" and not rim.name_agrees(
                f.name, report.project, report.project_sku, report.chip_sku
            ):
                continue
            try:
                # Bounded read: the file may have grown since it was looked at.
                with open(f, "rb") as fh:
                    chosen[kind] = fh.read(rim.MAX_RIM_BYTES + 1)
            except OSError:
                continue
        return [b for b in chosen.values() if len(b) <= rim.MAX_RIM_BYTES][:MAX_RIMS_PER_GPU]

    def select_ocsp(self, cert_chain: bytes, rims: list[bytes]) -> list[bytes]:
        """Cached responses for the device chain, then for each RIM's signer chain, each
        once, at most ``MAX_OCSP_PER_GPU`` (device chain first: it is always needed)."""
        from sealgate.nvgpu import fetch, ocsp

        chains: list[list[pki.Certificate]] = []
        try:
            chains.append(pki.load_certificates(cert_chain, "GPU certificate chain"))
        except SealgateError:
            pass  # the verifier reports the bad chain itself
        for xml in rims:
            try:
                chains.append(fetch.rim_signer_chain(xml))
            except SealgateError:
                continue
        out: list[bytes] = []
        for chain in chains:
            try:
                found = fetch.cached_responses(self.cache, chain)
            except SealgateError:
                continue
            for r in found:
                if r not in out and len(r) <= ocsp.MAX_RESPONSE_BYTES:
                    out.append(r)
        return out[:MAX_OCSP_PER_GPU]

    def attach(self, ev: Any) -> None:
        """Add the RIMs and OCSP responses for one ``GpuEvidence`` (its report parsed here
        only to learn its versions; a report that does not parse gets nothing attached —
        the service reports it)."""
        from sealgate import nvgpu

        try:
            rep = nvgpu.parse_report(nvgpu.decode_report(bytes(ev.report)))
        except SealgateError:
            return
        rims = self.select_rims(rep)
        room = MAX_RIMS_PER_GPU - len(ev.rims)
        ev.rims.extend(rims[: max(room, 0)])
        resps = self.select_ocsp(bytes(ev.cert_chain), list(ev.rims))
        room = MAX_OCSP_PER_GPU - len(ev.ocsp_responses)
        ev.ocsp_responses.extend([r for r in resps if r not in ev.ocsp_responses][: max(room, 0)])
