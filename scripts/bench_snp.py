"""SEV-SNP verification throughput vs the bare P-384 floor, measured in the same run.

Prints reports verified per second through the public API (``sealgate.snp.verify_report``
with one ``SnpVerifier``, whose chain cache is warm after the first call) and the bare
ECDSA P-384/SHA-384 verification rate of each library reachable from Python:
pyca/cryptography (OpenSSL) and sealgate's Rust backend (aws-lc-rs, called on a pre-parsed
report). The faster one is the floor; the ratio is
API time per report / floor time per verify (target: <= 1.15).

    .venv/bin/python scripts/bench_snp.py [--seconds 3] [--reports 64]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sealgate import _core, snp
from sealgate.testing.snp import VALID_AT, SyntheticNode


def rates(fns: dict[str, Callable[[int], None]], n_items: int, seconds: float) -> dict[str, float]:
    """Calls per second of each fn(i), i cycling through n_items.

    The functions are measured interleaved, in short batches, so a change in machine load
    affects all of them alike; time is this thread's CPU time (time spent descheduled on a
    shared machine does not count) and each rate uses the fastest batch.
    """
    best = dict.fromkeys(fns, float("inf"))
    deadline = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < deadline:
        for name, fn in fns.items():
            t0 = time.thread_time()
            for i in range(n_items):
                fn(i)
            best[name] = min(best[name], time.thread_time() - t0)
    return {name: n_items / t for name, t in best.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0, help="time per measured function")
    ap.add_argument("--reports", type=int, default=16, help="distinct reports per batch")
    args = ap.parse_args()

    node = SyntheticNode.load()
    reports = [node.report(os.urandom(64)) for _ in range(args.reports)]
    roots = [node.ark_pem]
    no_trust = Path("/nonexistent/sealgate-trust")
    verifier = snp.SnpVerifier()  # a service's verifier: chains cached across calls

    def api(i: int) -> None:
        res = snp.verify_report(
            reports[i],
            vcek=node.vcek_der,
            cert_chain=node.cert_chain,
            roots=roots,
            at=VALID_AT,
            trust_dir=no_trust,
            verifier=verifier,
        )
        if not res.verified:
            raise SystemExit(f"benchmark report rejected: {res.errors}")

    api(0)  # verifies and caches the chain

    # pyca/cryptography: the same key and the same signed bytes, DER signature precomputed.
    pub = node.key.public_key()
    signed = [r[:0x2A0] for r in reports]
    ders = [
        utils.encode_dss_signature(
            int.from_bytes(r[0x2A0:0x2E8], "little"), int.from_bytes(r[0x2E8:0x330], "little")
        )
        for r in reports
    ]
    alg = ec.ECDSA(hashes.SHA384())

    def pyca(i: int) -> None:
        pub.verify(ders[i], signed[i], alg)

    # sealgate Rust backend (aws-lc-rs): a parsed key and pre-parsed reports, one call each.
    key = _core.SnpKey.from_sec1(pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    parsed = [_core.SnpReport.parse(r) for r in reports]

    def rust(i: int) -> None:
        if parsed[i].verify_signature(key) is not None:
            raise SystemExit("rust floor: signature rejected")

    r = rates({"pyca": pyca, "rust": rust, "api": api}, len(reports), args.seconds)
    r_pyca, r_rust, r_api = r["pyca"], r["rust"], r["api"]
    floor_name, floor = max(
        ("pyca/cryptography", r_pyca), ("rust/aws-lc-rs", r_rust), key=lambda x: x[1]
    )
    print(f"bare P-384 verify, pyca/cryptography : {r_pyca:8.0f} /s")
    print(f"bare P-384 verify, sealgate Rust     : {r_rust:8.0f} /s")
    print(f"floor ({floor_name})  : {floor:8.0f} /s")
    print(f"snp.verify_report, chain cached      : {r_api:8.0f} reports/s")
    print(f"ratio (API time / floor time)        : {floor / r_api:8.3f}  (target <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
