"""Model hashing benchmark (figures, not a timed test): one synthetic model of mixed file sizes
(default 4.5 GiB) under a temporary directory, page cache warm, hashed in one run by

* sealgate (``sealgate.oms.manifest.hash_model``): SHA-256 by files and by 1 GB shards, BLAKE3;
* ``model_signing`` 1.1.1's own hashing, same algorithms, its default parallelism
  (``hashing.Config()``; by files, by shards, BLAKE3);
* one ``sha256sum`` process over the same files.

Each is run ``--repeat`` times, interleaved round by round; the best run is reported with the
spread (max/min - 1) so the noise of a shared machine is visible, and with the CPU time per
byte (GiB per CPU-second, all threads), which other jobs' load barely moves. sealgate's
SHA-256 digests are checked against ``sha256sum``'s and ``model_signing``'s. The model is
deleted afterwards (docs/benchmarks.md).

    python scripts/bench_model_hash.py [--size-gib 4.5] [--repeat 3] [--json] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealgate.oms.manifest import Manifest, Serialization, hash_model
from sealgate.testing.machine import cpu_model, describe

MIB = 1 << 20
GIB = 1 << 30


def layout(total: int) -> list[int]:
    """File sizes for a model of about ``total`` bytes, mixed as real checkpoints mix them:
    ~400 small files (configs, tokenizers, 4 KiB..1 MiB, ~200 MiB in all), ~1/3 of the bytes in
    64..128 MiB shards, the rest in a few large weight files of 1.5, 1 and 0.5 GiB."""
    small = [(4 << 10) * (1 + (i * 7919) % 256) for i in range(400)]
    budget = total - sum(small)
    big: list[int] = []
    for s in (1536 * MIB, 1024 * MIB, 512 * MIB, 512 * MIB):
        if sum(big) + s <= budget * 2 // 3:
            big.append(s)
    medium: list[int] = []
    i = 0
    while sum(big) + sum(medium) + 128 * MIB <= budget:
        medium.append((64 + 16 * (i % 5)) * MIB)
        i += 1
    return big + medium + small


def build(root: Path, total: int) -> list[Path]:
    """Write the model: distinct bytes per file (a SHA-256-seeded block, varied per chunk) so no
    hasher can benefit from repeated content; written once, then read back into the cache."""
    block = bytearray(os.urandom(8 * MIB))
    files: list[Path] = []
    for i, size in enumerate(layout(total)):
        d = root / ("weights" if size >= 64 * MIB else f"extra/{i % 7}")
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"part-{i:04d}.bin"
        with open(p, "wb") as f:
            left, k = size, 0
            while left:
                n = min(left, len(block))
                block[:32] = hashlib.sha256(f"{i}:{k}".encode()).digest()
                f.write(memoryview(block)[:n])
                left -= n
                k += 1
        files.append(p)
    return files


def warm(files: list[Path]) -> None:
    buf = bytearray(8 * MIB)
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def _cpu() -> float:
    """CPU seconds used so far by this process (all threads) and its waited-for children."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rounds(
    cases: list[tuple[str, Callable[[], Any]]], repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
    """Every case once per round, ``repeat`` rounds: interleaved, so a burst of load from
    elsewhere on a shared machine hits all of them alike rather than one. Wall and CPU
    seconds per run: CPU time per byte is what a case costs, and barely moves with the load
    that other jobs put on the machine, which the wall time does."""
    wall: dict[str, list[float]] = {name: [] for name, _ in cases}
    cpu: dict[str, list[float]] = {name: [] for name, _ in cases}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, fn in cases:
            c0, t0 = _cpu(), time.perf_counter()
            results[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(_cpu() - c0)
    return wall, cpu, results


def sha256sum(root: Path, files: list[Path]) -> dict[str, str]:
    rel = [str(p.relative_to(root)) for p in files]
    res = subprocess.run(
        ["sha256sum", "--", *rel], cwd=root, check=True, capture_output=True, text=True
    )
    out = {}
    for line in res.stdout.splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.lstrip("*")] = digest
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=4.5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the model is written")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not 0.01 <= args.size_gib <= 64 or not 1 <= args.repeat <= 20:
        print("--size-gib must be 0.01..64 and --repeat 1..20", file=sys.stderr)
        return 2
    if shutil.which("sha256sum") is None:
        print("sha256sum (coreutils) is not installed", file=sys.stderr)
        return 2
    try:
        import model_signing
        from model_signing import hashing as ms
    except ImportError:
        print("model_signing is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="sealgate-bench-model-", dir=args.dir))
    try:
        root = tmp / "model"
        files = build(root, int(args.size_gib * GIB))
        total = sum(p.stat().st_size for p in files)
        warm(files)
        load_before = os.getloadavg()[0]

        config: Any = ms.Config  # untyped upstream

        def ours(ser: Serialization) -> Callable[[], Manifest]:
            return lambda: hash_model(root, ser, signature_name=None)

        cases: list[tuple[str, Callable[[], Any]]] = [
            ("sealgate sha256 files", ours(Serialization())),
            ("sealgate sha256 shards 1GB", ours(Serialization.shards())),
            ("sealgate blake3 files", ours(Serialization(hash_algorithm="blake3"))),
            ("model_signing sha256 files", lambda: config().hash(root)),
            (
                "model_signing sha256 shards 1GB",
                lambda: config().use_shard_serialization().hash(root),
            ),
            (
                "model_signing blake3",
                lambda: config().use_file_serialization(hashing_algorithm="blake3").hash(root),
            ),
            ("sha256sum (1 process)", lambda: sha256sum(root, files)),
        ]
        wall, cpu, results = rounds(cases, args.repeat)
        figures = {
            name: {
                "seconds": min(t),
                "gib_per_s": total / GIB / min(t),
                "spread": max(t) / min(t) - 1,
                "gib_per_cpu_s": total / GIB / min(cpu[name]),
            }
            for name, t in wall.items()
        }
        load_after = os.getloadavg()[0]

        # The figures are only worth something if everyone hashed the same bytes the same way.
        mine = {r.name: r.digest.hex() for r in results["sealgate sha256 files"].resources}
        if mine != results["sha256sum (1 process)"]:
            raise SystemExit("sealgate and sha256sum disagree")
        theirs = {
            rd.identifier: rd.digest.digest_hex
            for rd in results["model_signing sha256 files"].resource_descriptors()
        }
        if mine != theirs:
            raise SystemExit("sealgate and model_signing disagree")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = figures["sha256sum (1 process)"]["gib_per_s"]
    doc = {
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)),
        "model_signing": model_signing.__version__,
        "bytes": total,
        "files": len(files),
        "repeat": args.repeat,
        "load_1min": [round(load_before, 2), round(load_after, 2)],
        "figures": {k: {**v, "vs_sha256sum": v["gib_per_s"] / base} for k, v in figures.items()},
    }
    if args.json:
        print(json.dumps(doc))
        return 0
    print(
        f"{describe()}; {len(files)} files, {total / GIB:.2f} GiB, page cache warm, "
        f"best of {args.repeat}"
    )
    print(f"{'':34} {'GiB/s':>7} {'s':>7} {'x sha256sum':>12} {'spread':>7} {'GiB/cpu-s':>10}")
    for k, v in doc["figures"].items():
        print(
            f"{k:34} {v['gib_per_s']:7.2f} {v['seconds']:7.2f} {v['vs_sha256sum']:12.2f} "
            f"{v['spread']:7.1%} {v['gib_per_cpu_s']:10.2f}"
        )
    print(f"load average (1 min) before/after: {load_before:.2f} / {load_after:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
