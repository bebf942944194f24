"""Service benchmark (issue #5 §9): full RCAR flows per second and latency percentiles.

One flow = Challenge → fresh evidence (a software TPM quote over the new binding, signed by
an AK enrolled like a TPM's: EK certificate chain + MakeCredential/ActivateCredential) →
Attest (verify, appraise, seal, token, audit) → unseal the granted key with HPKE.

The server runs as its own process (`sealgate serve`, SQLite WAL, local KEK file) on
loopback; the load generator runs in this process with 1, 8 and 32 concurrent clients
(threads, one enrolled node each). Both share this machine's cores, as the issue asks.
Bounded: each level runs for a fixed time and stops by itself.

    python scripts/bench_service.py [--seconds 6] [--levels 1,8,32]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from sealgate._proto import admin_pb2, admin_pb2_grpc
from sealgate.node.agent import NodeAgent
from sealgate.service.auth import mint_operator_token
from sealgate.testing.softnode import SoftwareCa, SoftwareSnp, SoftwareTdx, SoftwareTpm

BIN = Path(sys.executable).parent / "sealgate"
KEY = "bench-model"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (/proc/PID/stat 14-17)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(x) for x in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:13])
    return total / os.sysconf("SC_CLK_TCK")


def run_level(channel: grpc.Channel, agents: list[NodeAgent], seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(agent: NodeAgent) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                res = agent.attest([KEY], auto_enroll=False)
                ok = KEY in res.keys
            except Exception:
                ok = False
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                bad += 1
        with lock:
            lat.extend(mine)
            errors += bad

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "clients": len(agents),
        "flows": len(lat),
        "errors": errors,
        "flows_per_s": len(lat) / wall,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--platform",
        choices=["tpm", "snp", "tdx"],
        default="tpm",
        help="tpm: software AK enrolled like a TPM's; snp/tdx: synthetic vendor hierarchies",
    )
    ap.add_argument("--server-threads", type=int, default=4, help="gRPC threads per process")
    ap.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="server processes (SO_REUSEPORT); the machine has 2 cores",
    )
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp_s:
        tmp = Path(tmp_s)
        ca = SoftwareCa()
        port = _port()
        snp_roots: Path | None = None
        tdx_roots: Path | None = None
        if args.platform == "snp":
            snp_roots = tmp / "amd-roots.pem"
            snp_roots.write_bytes(SoftwareSnp().root_pem())
        tdx_node = SoftwareTdx() if args.platform == "tdx" else None
        if tdx_node is not None:
            tdx_roots = tmp / "intel-root.pem"
            tdx_roots.write_bytes(tdx_node.root_pem())
        (tmp / "cfg.json").write_text(
            json.dumps(
                {
                    "listen": f"127.0.0.1:{port}",
                    "http_listen": f"127.0.0.1:{_port()}",
                    "data_dir": str(tmp / "data"),
                    "ek_ca_roots": [str(ca.write(tmp / "ca.pem"))],
                    "snp_roots": [str(snp_roots)] if snp_roots else [],
                    "tdx_roots": [str(tdx_roots)] if tdx_roots else [],
                    "max_workers": args.server_threads,
                    "rate_limit": {"per_node_rps": 1e6, "burst": 1000000},
                }
            )
        )
        server = subprocess.Popen(
            [str(BIN), "serve", "--config", str(tmp / "cfg.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if "serving" not in line:
                print(f"server failed: {line}", file=sys.stderr)
                return 1
            ch = grpc.insecure_channel(f"127.0.0.1:{port}")
            token = mint_operator_token(
                (tmp / "data" / "operator-key.pem").read_bytes(), "bench", ["admin"]
            )
            md = (("authorization", f"Bearer {token}"),)
            admin = admin_pb2_grpc.AdminStub(ch)
            admin.GenerateModelKey(admin_pb2.GenerateModelKeyRequest(key_id=KEY), metadata=md)
            agents: list[NodeAgent] = []
            if args.platform == "tpm":
                nodes = [SoftwareTpm(ca) for _ in range(max(levels))]
                refs = {"platform": "tpm", "set_name": "golden",
                        "values": nodes[0].pcr_reference_values()}  # fmt: skip
                admin.BulkAddReferenceValues(
                    admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(refs)), metadata=md
                )
                policy: dict[str, object] = {"platforms": {"tpm": {
                    "reference_sets": ["golden"],
                    "required_selection": "sha256:0,1,2,3,4,5,6,7"}}}  # fmt: skip
                agents = [NodeAgent(ch, f"bench-{i}", n) for i, n in enumerate(nodes)]
                for a in agents:
                    a.enroll()  # EK chain + MakeCredential/ActivateCredential, like a TPM
            elif tdx_node is not None:
                policy = {"platforms": {"tdx": {"mr_td": [(b"\x5a" * 48).hex()],
                                                "tcb_statuses": ["UpToDate"]}}}  # fmt: skip
                agents = [NodeAgent(ch, f"td-{i}", tdx_node) for i in range(max(levels))]
            else:
                snp_node = SoftwareSnp()
                policy = {"platforms": {"snp": {
                    "measurement": [snp_node.fields.measurement.hex()], "vmpl": [0],
                    "products": ["Milan"]}}}  # fmt: skip
                agents = [NodeAgent(ch, f"cvm-{i}", snp_node) for i in range(max(levels))]
            admin.PutPolicy(
                admin_pb2.PutPolicyRequest(key_id=KEY, json=json.dumps(policy)), metadata=md
            )
            run_level(ch, agents[:1], 1.0)  # warm-up
            results = []
            for n in levels:
                s0, c0 = _cpu(server.pid), os.times()
                r = run_level(ch, agents[:n], args.seconds)
                s1, c1 = _cpu(server.pid), os.times()
                flows = max(1.0, r["flows"])
                r["server_cpu_ms_per_flow"] = (s1 - s0) / flows * 1000
                r["client_cpu_ms_per_flow"] = (
                    (c1.user - c0.user + c1.system - c0.system) / flows * 1000
                )
                results.append(r)
            ch.close()
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"sealgate service benchmark, {args.platform} ({os.cpu_count()} cores, server + load "
        "generator on this machine; flow = Challenge + fresh evidence + Attest + unseal)"
    )
    head = ("clients", "flows/s", "p50 ms", "p99 ms", "mean ms", "flows", "errors",
            "server cpu ms/flow", "loadgen cpu ms/flow")  # fmt: skip
    print("  ".join(f"{h:>8}" for h in head))
    for r in results:
        row = (f"{r['clients']:.0f}", f"{r['flows_per_s']:.1f}", f"{r['p50_ms']:.2f}",
               f"{r['p99_ms']:.2f}", f"{r['mean_ms']:.2f}", f"{r['flows']:.0f}",
               f"{r['errors']:.0f}", f"{r['server_cpu_ms_per_flow']:.2f}",
               f"{r['client_cpu_ms_per_flow']:.2f}")  # fmt: skip
        print("  ".join(f"{c:>8}" for c in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
