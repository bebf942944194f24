"""scripts/bench_service.py's replica harness: replicas on one database with one KEK, the
load spread round-robin with one sealgate-loadgen per replica, CPU of process trees.

The load generator is built by `make test` (cargo test --workspace --release); without it
the run test skips.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
from sealgate.testing.softnode import SoftwareCa

from tests.service.promtext import samples

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "target" / "release" / "sealgate-loadgen"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_service", ROOT / "scripts/bench_service.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tree_cpu_counts_descendants_and_reaped_children() -> None:
    """A child that burns CPU and exits is counted once reaped; a live grandchild's CPU is
    counted while it runs. Neither shows in the parent's own utime/stime."""
    bench = _bench()
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
    before = bench.tree_cpu(os.getpid())
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    assert bench.tree_cpu(os.getpid()) - before >= 0.25
    # A live descendant: a shell whose child burns, then sleeps until told to stop.
    script = burn + "import sys\nprint('done', flush=True)\nsys.stdin.read()\n"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"{sys.executable} -c \"$0\"", script],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
        assert bench.tree_cpu(proc.pid) >= 0.25
        own = bench._stat_fields(proc.pid)
        assert own is not None and sum(int(f) for f in own[11:13]) / os.sysconf("SC_CLK_TCK") < 0.25
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not LOADGEN.exists(), reason="sealgate-loadgen not built")
def test_replicas_share_one_database_and_split_the_paced_load(tmp_path: Path) -> None:
    """Two replicas on one SQLite file, the second with the first's KEK file: a model key
    imported through the first is released by both, every client flow opens it, and the
    paced load reaches each replica in its share (from each replica's own /metrics)."""
    bench = _bench()
    ca = SoftwareCa()
    base = {"ek_ca_roots": [str(ca.write(tmp_path / "ca.pem"))],
            "rate_limit": {"per_node_rps": 1e6, "burst": 1000000,
                           "per_peer_rps": 1e6, "peer_burst": 1000000}}  # fmt: skip
    dep = bench.Deployment("sqlite x2", None, 2, 1, {}, [])
    reps, kek = bench.start_replicas(tmp_path, dep, base, None)
    try:
        assert kek.read_bytes() == (reps[1].data_dir / "kek.key").read_bytes()
        addresses = [f"127.0.0.1:{r.port}" for r in reps]
        key = os.urandom(32)
        bench.configure(addresses[0], reps[0].data_dir / "operator-key.pem", "tpm", "k",
                        key, ca, None)  # fmt: skip
        setup = bench.rust_setup(addresses[0], "tpm", key, 4, ca, None, key_id="k", prefix="t")
        parts = []
        for i in range(2):
            clients = [c for g, c in enumerate(setup["clients"]) if g % 2 == i]
            mine = {**setup, "address": addresses[i], "clients": clients}
            path = tmp_path / f"setup-{i}.json"
            path.write_text(json.dumps(mine))
            parts.append((path, 2, 20.0, i / 40.0))
        r = bench.run_rust_many(LOADGEN, parts, 4, 40.0, 2.0)
        assert r["errors"] == 0, r["error_kinds"]
        assert 70 <= r["flows"] <= 82, r["flows"]
        assert len(r["clocks"]) == 2
        for rep in reps:
            url = f"http://127.0.0.1:{rep.http_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            granted = [
                v for name, labels, v in samples(text)
                if name == "sealgate_key_decisions_total" and ("outcome", "granted") in labels
            ]  # fmt: skip
            assert granted and 35 <= sum(granted) <= 41, granted
    finally:
        bench.stop_replicas(reps)
    assert all(rep.proc.returncode == 0 for rep in reps)
