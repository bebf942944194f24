"""sealgate-loadgen (rust/loadgen), the service benchmark's load generator: its HPKE open
against keys sealed by sealgate.protocol.hpke, and short real runs against a live server.

`make test` builds the binary first (`cargo test --workspace --release` builds it for
rust/loadgen/tests/cli.rs); without it these tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from sealgate.protocol.hpke import X25519, release_info, seal

from tests.service.conftest import TPM_POLICY, Env, make_env  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "target" / "release" / "sealgate-loadgen"

pytestmark = pytest.mark.skipif(
    not LOADGEN.exists(),
    reason=f"{LOADGEN.relative_to(ROOT)} not built (cargo test --workspace --release builds it)",
)


def _bench() -> ModuleType:
    """scripts/bench_service.py, whose setup writer and runner the benchmark itself uses."""
    spec = importlib.util.spec_from_file_location(
        "bench_service", ROOT / "scripts/bench_service.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _selftest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOADGEN), "selftest-hpke", *args], capture_output=True, text=True, timeout=30
    )


def test_opens_what_python_seals() -> None:
    sk = x25519.X25519PrivateKey.generate()
    pk = sk.public_key().public_bytes_raw()
    key = bytes(range(32))
    info = release_info("model-a", 3, "challenge-1")
    sealed = seal(X25519, pk, key, info)
    out = _selftest(sk.private_bytes_raw().hex(), sealed.hex(), info.hex())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == key.hex()
    # Another info, another recipient, altered bytes: no plaintext.
    other = x25519.X25519PrivateKey.generate().private_bytes_raw()
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for sk_b, ct, inf in [
        (sk.private_bytes_raw(), sealed, release_info("model-a", 4, "challenge-1")),
        (other, sealed, info),
        (sk.private_bytes_raw(), flipped, info),
    ]:
        out = _selftest(sk_b.hex(), ct.hex(), inf.hex())
        assert out.returncode == 1 and "open failed" in out.stderr
        assert out.stdout == ""


def _server(make: Callable[..., Env], tmp_path: Path, platform: str) -> tuple[Env, Any]:
    """A live server with a policy for ``platform``; returns the env and the SNP node."""
    from sealgate.testing.softnode import SoftwareSnp, SoftwareTdx, SoftwareTpm

    snp_node = None
    if platform == "tpm":
        env = make()
        env.golden(SoftwareTpm(env.ca))
        policy: Any = TPM_POLICY["platforms"]
    elif platform == "tdx":
        roots = tmp_path / "intel-root.pem"
        roots.write_bytes(SoftwareTdx().root_pem())
        env = make(tdx_roots=[roots])
        policy = {"tdx": {"mr_td": [(b"\x5a" * 48).hex()], "tcb_statuses": ["UpToDate"]}}
    else:
        snp_node = SoftwareSnp()  # the synthetic world is cached per process (snp.world)
        env = make(**snp_node.write_trust(tmp_path))
        policy = {"snp": {"measurement": [snp_node.fields.measurement.hex()], "vmpl": [0],
                          "products": ["Milan"]}}  # fmt: skip
    env.policy("bench-model", {"platforms": policy})
    return env, snp_node


@pytest.mark.parametrize("platform", ["tpm", "tdx", "snp"])
def test_real_run_opens_every_key_and_a_wrong_key_counts_as_errors(
    make_env: Callable[..., Env],  # noqa: F811
    tmp_path: Path,
    platform: str,
) -> None:
    bench = _bench()
    env, snp_node = _server(make_env, tmp_path, platform)
    key = bytes(range(100, 132))
    env.key("bench-model", key)
    address = f"127.0.0.1:{env.server.port}"
    setup = bench.rust_setup(address, platform, key, 2, env.ca, snp_node)
    path = tmp_path / "loadgen.json"
    path.write_text(json.dumps(setup))
    # Paced, 20 flows/s over 2 nodes: under the server's default per-node rate limit.
    r = bench.run_rust(LOADGEN, path, 2, 20.0, 1.5)
    assert r["errors"] == 0, r["error_kinds"]
    assert r["flows"] >= 20
    assert r["p50_ms"] > 0 and r["client_cpu_s"] > 0
    if platform == "tpm":
        assert all(c > setup["clients"][i]["tpm"]["clock"] for i, c in enumerate(r["clocks"]))
    else:
        assert r["clocks"] == [None, None]
    # The same run expecting another key: every flow opens a key that is not it.
    setup["expected_key"] = bytes(32).hex()
    path.write_text(json.dumps(setup))
    r = bench.run_rust(LOADGEN, path, 2, 20.0, 1.0)
    assert r["flows"] == 0
    assert r["error_kinds"] == {"granted.key_mismatch": r["errors"]} and r["errors"] >= 10
