"""TPM verification benchmark (README "Benchmarks"). Prints figures; asserts nothing about speed.

For RSA-2048 and ECC P-256 AKs over 24 SHA-256 PCRs, in one process:
  - quotes/s through the Python API (`sealgate._core.verify_tpm_quote`, parsed AK reused),
  - the pure-Python reference doing the same checks (pyca/cryptography + hashlib),
  - the floor: the one bare signature verification, with the fastest library here
    (pyca/cryptography's OpenSSL and sealgate's aws-lc-rs backend, both measured).
Then replays/s of the largest event log (the published vectors when present, else the
project's) by the Rust core vs the pure-Python reference.

Targets: quote verification <= 1.2x the floor; replay >= 10x the reference.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sealgate import _core
from sealgate.testing import reference
from sealgate.testing.softtpm import SoftAk

ROOT = Path(__file__).resolve().parents[1]


def rate(fn: Callable[[], object], seconds: float = 1.5) -> float:
    """Calls per second of this thread's CPU time, best of 5 runs.

    CPU time (not wall time) so that load on the other core or preemption does not count
    against the function; best-of-5 discards runs disturbed by cache or frequency effects.
    """
    n = 1
    while True:  # calibrate to ~0.1 s
        t = time.thread_time()
        for _ in range(n):
            fn()
        dt = time.thread_time() - t
        if dt > 0.1:
            break
        n *= 2
    per_run = max(1, int(n * seconds / 5 / dt))
    best = 0.0
    for _ in range(5):
        t = time.thread_time()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / (time.thread_time() - t))
    return best


def paired(a: Callable[[], object], b: Callable[[], object], rounds: int = 9) -> float:
    """Median over interleaved rounds of time(a)/time(b): both run back to back in each
    round, so drifts in machine speed (shared host, frequency) cancel in the ratio."""
    n = max(200, int(rate(b, 0.3) * 0.05))
    ratios = []
    for _ in range(rounds):
        t = time.thread_time()
        for _ in range(n):
            a()
        ta = time.thread_time() - t
        t = time.thread_time()
        for _ in range(n):
            b()
        ratios.append(ta / (time.thread_time() - t))
    return statistics.median(ratios)


def bench_quotes() -> list[tuple[str, float, float, float, float, float]]:
    return [bench_one(kind) for kind in ("rsa", "ecc")]


def bench_one(kind: str) -> tuple[str, float, float, float, float, float]:
    selection = [("sha256", list(range(24)))]
    pcrs = {"sha256": {i: hashlib.sha256(bytes([i])).digest() for i in range(24)}}
    ak = SoftAk(kind)
    nonce = os.urandom(32)
    attest, sig = ak.quote(nonce, pcrs, selection)
    pub = _core.TpmPublic.parse(ak.tpm2b_public)
    res = _core.verify_tpm_quote(pub, attest, sig, pcrs, nonce)
    assert res.verified, res.failures
    pk = ak.key.public_key()
    assert reference.verify_quote(pk, attest, sig, pcrs, nonce)

    def sealgate_quote() -> None:
        _core.verify_tpm_quote(pub, attest, sig, pcrs, nonce)

    def ref_quote() -> None:
        reference.verify_quote(pk, attest, sig, pcrs, nonce)

    if isinstance(pk, rsa.RSAPublicKey):
        raw = sig[6:]
        rsa_pk = pk

        def pyca_bare() -> None:
            rsa_pk.verify(raw, attest, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = int.from_bytes(sig[6:38], "big"), int.from_bytes(sig[40:72], "big")
        der = encode_dss_signature(r, s)
        ec_pk = pk
        assert isinstance(ec_pk, ec.EllipticCurvePublicKey)

        def pyca_bare() -> None:
            ec_pk.verify(der, attest, ec.ECDSA(hashes.SHA256()))

    def awslc_bare() -> None:
        pub.verify_signature(attest, sig)

    q = rate(sealgate_quote)
    ref = rate(ref_quote)
    pyca = rate(pyca_bare)
    aws = rate(awslc_bare)
    fastest = awslc_bare if aws >= pyca else pyca_bare
    ratio = paired(sealgate_quote, fastest)
    return (f"{kind}-2048" if kind == "rsa" else "ecc-p256", q, ref, pyca, aws, ratio)


def largest_log() -> tuple[str, bytes]:
    shared = ROOT.parent / "shared" / "vectors" / "tpm" / "eventlogs"
    if shared.is_dir():
        logs = sorted(
            (p for p in shared.iterdir() if p.suffix == ".bin" or p.name == "sb_cert_eventlog"),
            key=lambda p: p.stat().st_size,
        )
        if logs:
            return logs[-1].name, logs[-1].read_bytes()
    p = ROOT / "vectors" / "tpm" / "swtpm-rsa" / "eventlog.bin"
    return p.name + " (project; published vectors absent)", p.read_bytes()


def main() -> int:
    print("sealgate TPM benchmark (single thread, CPU time, best of 5)")
    print(
        f"{'AK':10} {'sealgate q/s':>13} {'reference q/s':>14} {'pyca bare/s':>12} "
        f"{'aws-lc bare/s':>14} {'floor':>8} {'ratio':>6}"
    )
    for name, q, ref, pyca, aws, ratio in bench_quotes():
        print(
            f"{name:10} {q:13.0f} {ref:14.0f} {pyca:12.0f} {aws:14.0f} "
            f"{'aws-lc' if aws >= pyca else 'pyca':>8} {ratio:5.2f}x"
        )
    name, log = largest_log()
    r = rate(lambda: _core.replay_event_log(log))
    ref = rate(lambda: reference.replay(log))
    assert _core.replay_event_log(log) == reference.replay(log)
    print(
        f"replay {name} ({len(log)} B): sealgate {r:.0f}/s, reference {ref:.0f}/s, "
        f"speedup {r / ref:.1f}x"
    )
    print(
        "ratio = quote time / floor time, median of interleaved rounds (target <= 1.2x); "
        "replay target >= 10x the reference"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
