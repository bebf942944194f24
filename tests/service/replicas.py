"""Real ``sealgate serve`` processes sharing one database: a test cluster.

Each replica has its own data directory, ports (``127.0.0.1:0``, read back from its
announcement) and log file; all share the database URL, one KEK (the same file copied into
each data directory, as an operator would) and one operator key configured on every replica
(``operators:``, no bootstrap key). Every process started is stopped by its pid in
``close``, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sealgate._proto import admin_pb2_grpc, attestation_pb2_grpc
from sealgate.broker.kek import LocalKeyFileProvider
from sealgate.service.auth import generate_operator_key, mint_operator_token
from sealgate.testing.softnode import SoftwareCa

SEALGATE = str(Path(sys.executable).parent / "sealgate")
PYTHON = Path(__file__).resolve().parents[2] / "python"
_ANNOUNCE = re.compile(r"serving gRPC on [^ ]+:(\d+) .*HTTP on [^ ]+:(\d+),")
#: Generous limits: the tests send bursts from one address.
_RATE = {"per_node_rps": 10000, "burst": 10000, "per_peer_rps": 10000, "peer_burst": 10000}


@dataclass
class Replica:
    name: str
    data_dir: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    http_port: int = 0
    pid: int = 0
    #: Where this run's output starts in the log (a restarted replica appends).
    log_offset: int = 0
    channels: list[grpc.Channel] = field(default_factory=list)

    def channel(self) -> grpc.Channel:
        # A private subchannel pool: each channel its own connection (gRPC shares them
        # between channels to one target by default).
        ch = grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.channels.append(ch)
        return ch

    def attestation(self) -> attestation_pb2_grpc.AttestationStub:
        return attestation_pb2_grpc.AttestationStub(self.channel())

    def admin(self) -> admin_pb2_grpc.AdminStub:
        return admin_pb2_grpc.AdminStub(self.channel())

    def http(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout
            ) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    def health(self, service: str = "", timeout: float = 3) -> int:
        """One health check on a connection of its own (with several worker processes, a
        new connection may land on any of them)."""
        with grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            return int(resp.status)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Cluster:
    def __init__(
        self, base: Path, database: str, *, env: dict[str, str] | None = None, **cfg: Any
    ) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.database = database
        # This checkout's sources, whatever the working directory.
        self.env = {**os.environ, "PYTHONPATH": str(PYTHON), **(env or {})}
        self.ca = SoftwareCa()
        self.ca_pem = self.ca.write(base / "ek-ca.pem")
        priv, pub = generate_operator_key()
        self._operator_priv = priv
        (base / "operator.pub").write_bytes(pub)
        # One KEK for the deployment, copied to every replica.
        self.kek = base / "kek.key"
        LocalKeyFileProvider(self.kek)
        self.extra = cfg
        self.replicas: list[Replica] = []

    def token(self, roles: tuple[str, ...] = ("admin", "operator", "auditor")) -> str:
        return mint_operator_token(self._operator_priv, "ops", list(roles))

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token()}"),)

    def add(self, **overrides: Any) -> Replica:
        """A replica's directory and configuration (``overrides``: its own config keys)."""
        name = f"r{len(self.replicas)}"
        d = self.base / name
        d.mkdir()
        data = d / "data"
        data.mkdir(mode=0o700)
        shutil.copyfile(self.kek, data / "kek.key")
        os.chmod(data / "kek.key", 0o600)
        conf = {
            "listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
            "data_dir": str(data),
            "database": self.database,
            "bootstrap_operator": False,
            "operators": [
                {
                    "name": "ops",
                    "public_key": str(self.base / "operator.pub"),
                    "roles": ["admin", "operator", "auditor"],
                }
            ],
            "ek_ca_roots": [str(self.ca_pem)],
            "rate_limit": _RATE,
            **self.extra,
            **overrides,
        }
        path = d / "sealgate.json"
        path.write_text(json.dumps(conf))
        r = Replica(name, data, path, d / "serve.log")
        self.replicas.append(r)
        return r

    def spawn(self, r: Replica) -> None:
        r.log_offset = len(r.output())
        with r.log.open("ab") as log:
            r.proc = subprocess.Popen(
                [SEALGATE, "serve", "--config", str(r.config), "--grace", "2"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        r.pid = r.proc.pid

    def wait_serving(self, r: Replica, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _ANNOUNCE.search(r.output()[r.log_offset :])
            if m:
                r.port, r.http_port = int(m.group(1)), int(m.group(2))
                return
            if not r.alive:
                raise AssertionError(f"{r.name} exited: {r.output()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{r.name} not serving after {timeout}s: {r.output()[-2000:]}")

    def start(self, n: int, *, together: bool = True) -> list[Replica]:
        """Start ``n`` new replicas, all spawned before any is waited for (``together``:
        they race on an empty database as a fleet does)."""
        new = [self.add() for _ in range(n)]
        for r in new:
            self.spawn(r)
            if not together:
                self.wait_serving(r)
        for r in new:
            self.wait_serving(r)
        return new

    def kill(self, r: Replica) -> None:
        """SIGKILL: the host died (no drain, no last checkpoint)."""
        if r.proc is not None and r.proc.poll() is None:
            os.kill(r.pid, signal.SIGKILL)
            r.proc.wait(10)

    def stop(self, r: Replica, timeout: float = 20) -> int | None:
        for ch in r.channels:
            ch.close()
        r.channels.clear()
        if r.proc is None:
            return None
        if r.proc.poll() is None:
            os.kill(r.pid, signal.SIGTERM)
            try:
                r.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(r.pid, signal.SIGKILL)
                r.proc.wait(10)
        return r.proc.returncode

    def close(self) -> None:
        for r in self.replicas:
            try:
                self.stop(r)
            except Exception:  # the others are stopped all the same
                if r.proc is not None and r.proc.poll() is None:
                    os.kill(r.pid, signal.SIGKILL)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not yet
            if cond():
                return True
        time.sleep(step)
    with contextlib.suppress(Exception):
        return bool(cond())
    return False
