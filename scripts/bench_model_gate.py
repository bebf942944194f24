"""Cost of the release gate for signed models (README "Signed models"), per operation.

- ``bound_key``: the HKDF-SHA256 model binding, paid once per granted model key per release;
- ``recheck``: verifying a registration's stored bundle under a policy's signers (key
  signer, a manifest of ``--files`` resources), paid once per configuration generation per
  key version (the verdict is cached with the policy), not per release.

    PYTHONPATH=python python scripts/bench_model_gate.py [--files 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate.broker.models import bound_key, recheck
from sealgate.oms.sign import sign_model
from sealgate.oms.signers import KeySigner
from sealgate.oms.verify import verify_signature
from sealgate.storage import ModelRegistration


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    args = ap.parse_args()
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.files):
            Path(d, f"f{i}.bin").write_bytes(os.urandom(64))
        bundle = sign_model(d, private_key_pem=priv)
    signers = [KeySigner(pub)]
    vs = verify_signature(bundle, signers)
    reg = ModelRegistration(
        "m", 1, vs.root_digest, "sha256", "{}", "1.0", "m", bundle, int(time.time()), "op"
    )
    print(f"cpu: {_cpu()} ({os.cpu_count()} cpus)")
    print(f"bundle: {len(bundle)} bytes, {args.files} resources")
    hkdf = _per_call_us(lambda: bound_key(b"K" * 32, "m", 1, vs.root_digest), 20000)
    print(f"bound_key: {hkdf:.1f} us")
    print(f"recheck: {_per_call_us(lambda: recheck(reg, signers), 200):.0f} us")


if __name__ == "__main__":
    main()
