"""Cost of ``sealgate.oms.verify.verify_signature`` per signer kind on the published
model_signing fixtures (../shared/vectors/model-signing): thread CPU time, best of 5 rounds.
No model hashing (that is scripts/bench_model_hash.py).
Usage: PYTHONPATH=python python scripts/bench_model_signature.py
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sealgate.oms.signers import CertificateSigner, KeySigner, Signer, SigstoreSigner
from sealgate.oms.verify import verify_signature

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "model-signing"
AT = datetime(2026, 12, 1, tzinfo=UTC)


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} is absent", file=sys.stderr)
        return 2
    keys = SHARED / "keys"
    root = (SHARED / "sigstore" / "trusted_root.json").read_bytes()
    key = KeySigner((keys / "signing-key-pub.pem").read_bytes())
    ca = CertificateSigner((keys / "ca-cert.pem").read_bytes())
    keyless = SigstoreSigner("stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2", root)
    cases: list[tuple[str, str, Signer]] = [
        ("key (P-384)", "v1.0.1-elliptic-key", key),
        ("certificate (RSA-3072 CAs)", "v1.0.1-certificate", ca),
        ("sigstore keyless", "v1.0.1-sigstore", keyless),
    ]
    for name, vec, signer in cases:
        bundle = (SHARED / vec / "model.sig").read_bytes()
        for _ in range(5):
            verify_signature(bundle, [signer], at=AT)
        best = float("inf")
        for _ in range(5):
            n = 50
            t = time.thread_time()
            for _ in range(n):
                verify_signature(bundle, [signer], at=AT)
            best = min(best, (time.thread_time() - t) / n)
        print(f"{name:28s} {best * 1e3:6.2f} ms  ({1 / best:6.0f}/s, one thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
