"""KEK benchmark (figures, not a timed test): wraps and unwraps per second of a 32-byte secret,
one thread, for the local key file and for a SoftHSM2 token (``sealgate.testing.softhsm``,
a throwaway token under a temporary directory). Each phase is bounded (``--seconds``, at
most 200 000 operations). Prints the CPU model with the figures (docs/kek.md).

    python scripts/bench_kek.py [--seconds 1.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sealgate.broker.kek import KekProvider, LocalKeyFileProvider
from sealgate.broker.pkcs11 import Pkcs11Provider
from sealgate.testing import softhsm
from sealgate.testing.machine import cpu_model


def rates(prov: KekProvider, seconds: float) -> dict[str, float]:
    secret = os.urandom(32)
    blob = prov.wrap(secret, b"aad")
    out: dict[str, float] = {}
    for op in ("wrap", "unwrap"):
        n, t0 = 0, time.perf_counter()
        while n < 200_000 and time.perf_counter() - t0 < seconds:
            if op == "wrap":
                prov.wrap(secret, b"aad")
            elif prov.unwrap(blob, b"aad") != secret:
                raise SystemExit("unwrap returned another secret")
            n += 1
        out[op] = n / (time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not softhsm.available():
        print(f"SoftHSM2 is not installed ({softhsm.MODULE})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-kek-") as tmp:
        hsm = softhsm.make_softhsm(Path(tmp) / "hsm", ("bench",))
        providers: dict[str, KekProvider] = {
            "file": LocalKeyFileProvider(Path(tmp) / "kek.key"),
            "softhsm2": Pkcs11Provider(hsm.uri("bench", f"kek-{uuid.uuid4().hex[:8]}")),
        }
        try:
            figures = {name: rates(p, args.seconds) for name, p in providers.items()}
        finally:
            for p in providers.values():
                p.close()
    doc = {"cpu": cpu_model(), "ops_per_s": figures}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"CPU: {doc['cpu']}, one thread, 32-byte secrets")
        for name, r in figures.items():
            print(f"  {name:9} wrap {r['wrap']:>10,.0f}/s  unwrap {r['unwrap']:>10,.0f}/s")
        f, h = figures["file"], figures["softhsm2"]
        wrap, unwrap = h["wrap"] / f["wrap"], h["unwrap"] / f["unwrap"]
        print(f"  softhsm2/file: wrap {wrap:.3f}, unwrap {unwrap:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
