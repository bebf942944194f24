"""Benchmark (figures, not a timed test): NVIDIA RIM verification and matching cost.

Uses the published RIMs and report in ../shared/vectors/nvidia-gpu (exits 0 with a note when
absent). Figures: parse + XML-DSig + chain per RIM; compare() of the 33 active measurements;
RimSource.find over the 10 published RIMs once loaded.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sealgate import pki
from sealgate.nvgpu.rim import RimSource, compare, parse_rim

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEALGATE_SHARED_VECTORS", ROOT.parent / "shared" / "vectors"))
V = SHARED / "nvidia-gpu"


def _blocks(report_hex: str) -> dict[int, bytes]:
    """SPDM 1.1 MEASUREMENTS blocks (DSP0274 §10.11) {index: value}; benchmark-local."""
    b = bytes.fromhex(report_hex.strip())
    off = 41
    n, off = b[off], off + 4
    out: dict[int, bytes] = {}
    for _ in range(n):
        size = int.from_bytes(b[off + 2 : off + 4], "little")
        vsize = int.from_bytes(b[off + 5 : off + 7], "little")
        out[b[off]] = b[off + 7 : off + 7 + vsize]
        off += 4 + size
    return out


def _per_call(fn: object, n: int) -> float:
    assert callable(fn)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> int:
    if not V.is_dir():
        print(f"{V} is absent; nothing to measure")
        return 0
    root = pki.load_certificates((V / "roots" / "verifier_RIM_root.pem").read_bytes())
    at = datetime(2024, 6, 1, tzinfo=UTC)
    t = V / "h100-drv545-testrims"
    d = (t / "Driver_RIM_test_no_gpu.swidtag").read_bytes()
    v = (t / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()
    blocks = _blocks((t / "attestationReport.txt").read_text())
    dr, vr = parse_rim(d, roots=root, at=at), parse_rim(v, roots=root, at=at)
    src = RimSource(roots=root, dirs=[V / "rims", t])
    src.find("driver", "545.00", at=at)
    parse = _per_call(lambda: parse_rim(d, roots=root, at=at), 200)
    cmp_ = _per_call(lambda: compare(blocks, dr, vr), 20000)
    find = _per_call(
        lambda: src.find("vbios", "96.00.5E.00.01", at=at, project="1010", project_sku="0200"),
        20000,
    )
    print(f"parse_rim + XML-DSig + chain (20 KiB driver RIM): {parse * 1e3:.2f} ms")
    print(f"compare, 33 active measurements:                 {cmp_ * 1e6:.1f} us")
    print(f"RimSource.find over 10 loaded RIMs:               {find * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
