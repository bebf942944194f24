"""Service benchmark (issue #5 §9): full flows per second and latency percentiles.

One flow = Challenge → fresh evidence (a software TPM quote over the new binding, signed by
an AK enrolled like a TPM's: EK certificate chain + MakeCredential/ActivateCredential; or
SNP/TDX evidence from the synthetic vendor hierarchies) → Attest (verify, appraise, seal,
token, audit) → unseal the granted key with HPKE.

The server runs as its own process(es) (`sealgate serve`, SQLite WAL, local KEK file) on
loopback. The load generator is `--client-procs` processes (default 2, one per core: a
single Python process's GIL would cap the clients, not the server), each running its
clients as coroutines on grpcio's asyncio client, each client its own enrolled node.
Server and load generator share this machine's two cores, as the issue asks; CPU per flow
is reported for both.

Two kinds of run:
- closed loop (`--levels 1,8,32`): each client starts its next flow when the last ends, so
  the server is saturated: this measures capacity, and latency ≈ clients / throughput.
- paced (`--paced 32@300`): 32 clients offer 300 flows/s in all on a fixed schedule;
  latency counts from when a flow was due, so time spent queued behind a slow server is
  included (no coordinated omission). This is the "≥ 300 flows/s with p99 ≤ 50 ms" check.

Bounded: each run lasts `--seconds` and stops by itself.

    python scripts/bench_service.py [--platform tpm|snp|tdx] [--seconds 6]
        [--levels 1,8,32] [--paced 32@300] [--server-workers 2] [--client-procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from sealgate._proto import admin_pb2, admin_pb2_grpc, attestation_pb2, attestation_pb2_grpc
from sealgate.node.agent import PLATFORMS, NodeAgent
from sealgate.service.auth import mint_operator_token
from sealgate.testing.softnode import SoftwareCa, SoftwareSnp, SoftwareTdx, SoftwareTpm

BIN = Path(sys.executable).parent / "sealgate"
KEY = "bench-model"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_probe() -> float:
    """Milliseconds of CPU for a fixed pure-Python loop (best of 3).

    This VM's cores run at very different speeds from minute to minute (the same loop has
    taken from 1 to 2.3 times its best time here), so every run is reported with the probe taken
    just before it: figures from runs with different probes are not comparable.
    """
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        x = 0
        for i in range(1_000_000):
            x += i
        best = min(best, time.process_time() - t)
    return best * 1000


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (/proc/PID/stat 14-15)."""
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


async def run_clients(
    address: str,
    agents: list[tuple[int, NodeAgent]],
    total: int,
    rate: float | None,
    start: float,
    seconds: float,
) -> tuple[list[float], int]:
    """This process's share of a run: ``agents`` are (global index, agent) of ``total``.

    Each client is a coroutine on this process's event loop (grpcio's asyncio client: no
    thread per client, so the load generator's own overhead stays small). A flow is the node
    agent's: ``Challenge`` → ``build_attest`` (fresh runtime key, evidence over the binding)
    → ``Attest`` → ``unseal``.

    Closed loop (``rate`` None): a client starts its next flow as soon as the last ends.
    Paced: client g's k-th flow is due at start + (k·total + g) / rate (time.monotonic is
    CLOCK_MONOTONIC, shared by every process); a client that falls behind starts late and
    its latency still counts from the due time.
    """
    lat: list[float] = []
    errors = 0
    stop_at = start + seconds

    async def client(g: int, agent: NodeAgent) -> None:
        nonlocal errors
        # One connection per client, as each node is its own machine: a local subchannel
        # pool stops grpcio from sharing one TCP connection between channels, and with
        # several connections SO_REUSEPORT spreads them over the server's processes.
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            stub = attestation_pb2_grpc.AttestationStub(channel)
            k = 0
            while True:
                if rate is None:
                    due = max(time.monotonic(), start)
                else:
                    due = start + (k * total + g) / rate
                    k += 1
                if due >= stop_at:
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    ch = await stub.Challenge(
                        attestation_pb2.ChallengeRequest(
                            platform=PLATFORMS[agent.collector.platform], node_id=agent.node_id
                        ),
                        timeout=30,
                    )
                    resp = await stub.Attest(agent.build_attest(ch, [KEY]), timeout=30)
                    got = agent.unseal(resp.token, resp.expires_at, resp.granted, resp.denied)
                    ok = KEY in got.keys
                except Exception:
                    ok = False
                if ok:
                    lat.append(time.monotonic() - due)
                else:
                    errors += 1

    await asyncio.gather(*(client(g, a) for g, a in agents))
    return lat, errors


def loadgen(conn: Connection, setup: dict[str, Any]) -> None:
    """A load-generator process: builds its clients, then runs what the parent sends."""
    ch = grpc.insecure_channel(setup["address"])
    mine: list[int] = setup["clients"]
    platform = setup["platform"]
    agents: list[tuple[int, NodeAgent]] = []
    if platform == "tpm":
        ca = SoftwareCa(pem=setup["ca"])
        for g in mine:
            a = NodeAgent(ch, f"bench-{g}", SoftwareTpm(ca))
            a.enroll()  # EK chain + MakeCredential/ActivateCredential, like a TPM
            agents.append((g, a))
    elif platform == "tdx":
        node = SoftwareTdx()
        agents = [(g, NodeAgent(ch, f"td-{g}", node)) for g in mine]
    else:
        cvm = SoftwareSnp(portable=setup["snp"])
        agents = [(g, NodeAgent(ch, f"cvm-{g}", cvm)) for g in mine]
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd is None:
            break
        total, rate, start, seconds = cmd
        c0 = os.times()
        mine_now = [ga for ga in agents if ga[0] < total]
        lat, errors = asyncio.run(
            run_clients(setup["address"], mine_now, total, rate, start, seconds)
        )
        c1 = os.times()
        conn.send((lat, errors, c1.user - c0.user + c1.system - c0.system))
    ch.close()


def run(
    procs: list[tuple[Connection, multiprocessing.process.BaseProcess]],
    total: int,
    rate: float | None,
    seconds: float,
) -> dict[str, float]:
    start = time.monotonic() + 0.2
    for conn, _ in procs:
        conn.send((total, rate, start, seconds))
    lat: list[float] = []
    errors = 0
    cpu = 0.0
    for conn, _ in procs:
        part, bad, used = conn.recv()
        lat.extend(part)
        errors += bad
        cpu += used
    wall = max(time.monotonic(), start + seconds) - start
    lat.sort()

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "clients": total,
        "offered_per_s": rate or 0.0,
        "flows": len(lat),
        "errors": errors,
        "flows_per_s": len(lat) / wall,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
        "client_cpu_s": cpu,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--levels", default="1,8,32", help="closed-loop client counts")
    ap.add_argument(
        "--paced",
        default="32@300",
        help="paced runs CLIENTS@FLOWS_PER_S[,...] (offered load; '' for none)",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--platform",
        choices=["tpm", "snp", "tdx"],
        default="tpm",
        help="tpm: software AK enrolled like a TPM's; snp/tdx: synthetic vendor hierarchies",
    )
    ap.add_argument("--server-threads", type=int, default=8, help="gRPC threads per process")
    ap.add_argument("--server-workers", type=int, default=2, help="server processes (SO_REUSEPORT)")
    ap.add_argument("--client-procs", type=int, default=2, help="load-generator processes")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    paced = [(int(c), float(r)) for c, r in (x.split("@") for x in args.paced.split(",") if x)]
    runs: list[tuple[int, float | None]] = [(n, None) for n in levels]
    runs += [(c, r) for c, r in paced]
    most = max(n for n, _ in runs)
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp_s:
        tmp = Path(tmp_s)
        ca = SoftwareCa()
        port = _port()
        snp_roots: Path | None = None
        tdx_roots: Path | None = None
        snp_node = SoftwareSnp() if args.platform == "snp" else None
        if snp_node is not None:
            snp_roots = tmp / "amd-roots.pem"
            snp_roots.write_bytes(snp_node.root_pem())
        if args.platform == "tdx":
            tdx_roots = tmp / "intel-root.pem"
            tdx_roots.write_bytes(SoftwareTdx().root_pem())
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
                    "workers": args.server_workers,
                    "rate_limit": {
                        "per_node_rps": 1e6,
                        "burst": 1000000,
                        "per_peer_rps": 1e6,
                        "peer_burst": 1000000,
                    },
                }
            )
        )
        server = subprocess.Popen(
            [str(BIN), "serve", "--config", str(tmp / "cfg.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs: list[tuple[Connection, multiprocessing.process.BaseProcess]] = []
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if "serving" not in line:
                print(f"server failed: {line}", file=sys.stderr)
                return 1
            address = f"127.0.0.1:{port}"
            ch = grpc.insecure_channel(address)
            token = mint_operator_token(
                (tmp / "data" / "operator-key.pem").read_bytes(), "bench", ["admin"]
            )
            md = (("authorization", f"Bearer {token}"),)
            admin = admin_pb2_grpc.AdminStub(ch)
            admin.GenerateModelKey(admin_pb2.GenerateModelKeyRequest(key_id=KEY), metadata=md)
            policy: dict[str, object]
            if args.platform == "tpm":
                refs = {"platform": "tpm", "set_name": "golden",
                        "values": SoftwareTpm(ca).pcr_reference_values()}  # fmt: skip
                admin.BulkAddReferenceValues(
                    admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(refs)), metadata=md
                )
                policy = {"platforms": {"tpm": {
                    "reference_sets": ["golden"],
                    "required_selection": "sha256:0,1,2,3,4,5,6,7"}}}  # fmt: skip
            elif args.platform == "tdx":
                policy = {"platforms": {"tdx": {"mr_td": [(b"\x5a" * 48).hex()],
                                                "tcb_statuses": ["UpToDate"]}}}  # fmt: skip
            else:
                assert snp_node is not None
                policy = {"platforms": {"snp": {
                    "measurement": [snp_node.fields.measurement.hex()], "vmpl": [0],
                    "products": ["Milan"]}}}  # fmt: skip
            admin.PutPolicy(
                admin_pb2.PutPolicyRequest(key_id=KEY, json=json.dumps(policy)), metadata=md
            )
            ch.close()
            ctx = multiprocessing.get_context("spawn")
            nprocs = max(1, min(args.client_procs, most))
            for p in range(nprocs):
                parent, child = ctx.Pipe()
                setup = {
                    "address": address,
                    "platform": args.platform,
                    "ca": ca.to_pem(),
                    "snp": snp_node.to_portable() if snp_node is not None else None,
                    "clients": list(range(p, most, nprocs)),
                }
                proc = ctx.Process(target=loadgen, args=(child, setup), daemon=True)
                proc.start()
                procs.append((parent, proc))
            for conn, _ in procs:
                if conn.recv() != "ready":
                    raise RuntimeError("load generator failed to start")
            run(procs, 1, None, 1.0)  # warm-up
            results = []
            for n, rate in runs:
                probe = host_probe()
                s0 = _cpu(server.pid)
                r = run(procs, n, rate, args.seconds)
                r["probe_ms"] = probe
                s1 = _cpu(server.pid)
                flows = max(1.0, r["flows"])
                r["server_cpu_ms_per_flow"] = (s1 - s0) / flows * 1000
                r["client_cpu_ms_per_flow"] = r.pop("client_cpu_s") / flows * 1000
                results.append(r)
        finally:
            for conn, lg in procs:
                try:
                    conn.send(None)
                except OSError:
                    pass
                lg.join(timeout=10)
                if lg.is_alive():
                    lg.kill()
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
        f"sealgate service benchmark, {args.platform} ({os.cpu_count()} cores shared by "
        f"{args.server_workers} server and {nprocs} load-generator processes; flow = "
        "Challenge + fresh evidence + Attest + unseal)"
    )
    head = ("clients", "offered", "flows/s", "p50 ms", "p99 ms", "mean ms", "flows", "errors",
            "server cpu ms/flow", "loadgen cpu ms/flow", "probe ms")  # fmt: skip
    print("  ".join(f"{h:>8}" for h in head))
    for r in results:
        offered = f"{r['offered_per_s']:.0f}/s" if r["offered_per_s"] else "max"
        row = (f"{r['clients']:.0f}", offered, f"{r['flows_per_s']:.1f}",
               f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['mean_ms']:.2f}",
               f"{r['flows']:.0f}", f"{r['errors']:.0f}",
               f"{r['server_cpu_ms_per_flow']:.2f}",
               f"{r['client_cpu_ms_per_flow']:.2f}", f"{r['probe_ms']:.0f}")  # fmt: skip
        print("  ".join(f"{c:>8}" for c in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
