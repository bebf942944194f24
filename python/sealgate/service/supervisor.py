"""Running the service as processes: one, or ``workers`` processes sharing the gRPC port
(SO_REUSEPORT) under a supervisor that stops them all when one exits or on SIGTERM/SIGINT.

``sealgate serve`` calls ``serve``; the announcements on stdout are the CLI's contract
(tests and scripts wait for "serving gRPC").
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from sealgate.errors import UsageError
from sealgate.service.config import ServiceConfig
from sealgate.service.metrics import MULTIPROC_ENV, multiprocess_dir, reset_multiprocess_dir

#: How long a worker that has not finished starting (interpreter, imports, storage, server)
#: may take to stop once asked, on top of the drain grace. A worker asked to stop while it
#: starts finishes building its server first; on a loaded host that alone can outlast the
#: grace, and killing it then turns a clean stop into a failure.
START_ALLOWANCE = 120.0


def serve(cfg: ServiceConfig, grace: float) -> int:
    """Serve until SIGTERM/SIGINT, then drain for up to ``grace`` seconds; the exit status."""
    if cfg.workers <= 1:
        return serve_one(cfg, grace, 0, reuse_port=False)
    return serve_many(cfg, grace)


def serve_one(
    cfg: ServiceConfig, grace: float, index: int, reuse_port: bool, ready: Any = None
) -> int:
    """One server process; ``ready`` (a multiprocessing Event, under the supervisor) is set
    once the server is built and serving."""
    from sealgate.service.server import create_server

    # Handlers first: a SIGTERM that arrives while the server is being built (a supervisor
    # stopping a worker that is still starting) is a request to stop, not a kill.
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    srv = create_server(cfg, http=index == 0, reuse_port=reuse_port)
    if ready is not None:
        ready.set()
    if index == 0:
        host = cfg.listen.rsplit(":", 1)[0]
        http_host = cfg.http_listen.rsplit(":", 1)[0]
        print(
            f"sealgate: serving gRPC on {host}:{srv.port} "
            f"({'TLS' if cfg.tls else 'plaintext'}, {max(cfg.workers, 1)} process(es)), "
            f"HTTP on {http_host}:{srv.http_port}, data in {cfg.data_dir}, database "
            f"{cfg.database_url.redacted()}, platforms "
            f"{', '.join(srv.core.platforms.available())}",
            flush=True,
        )
        if cfg.bootstrap_operator:
            print(f"sealgate: bootstrap operator key {cfg.bootstrap_operator_key}", flush=True)
    stop.wait()
    if index == 0:
        print("sealgate: draining", flush=True)
    srv.stop(grace=grace)
    if index == 0:
        print("sealgate: stopped", flush=True)
    return 0


def _worker_main(cfg: ServiceConfig, grace: float, index: int, ready: Any) -> None:
    sys.exit(serve_one(cfg, grace, index, reuse_port=True, ready=ready))


def serve_many(cfg: ServiceConfig, grace: float) -> int:
    """N processes on one port (SO_REUSEPORT). State is initialized here first (schema,
    KEK, token signing key, bootstrap operator key) so workers never race to create it."""
    import multiprocessing

    from sealgate.service.core import Verifier
    from sealgate.service.server import ensure_bootstrap_operator
    from sealgate.storage.url import open_storage

    if cfg.listen.endswith(":0"):
        raise UsageError("cli.serve.port_zero", "several workers need a fixed --listen port")
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = open_storage(cfg.database_url)
    Verifier(cfg, st)
    st.close()
    if cfg.bootstrap_operator:
        ensure_bootstrap_operator(cfg)
    # Every worker records its metrics in files under this directory (prometheus_client's
    # multiprocess mode, chosen by the variable when the worker first imports it; "spawn"
    # starts each worker with this environment); the first worker serves them all.
    mp_dir = multiprocess_dir(cfg.data_dir)
    reset_multiprocess_dir(mp_dir)
    os.environ[MULTIPROC_ENV] = str(mp_dir)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(cfg.workers)]
    procs = [
        ctx.Process(target=_worker_main, args=(cfg, grace, i, ready[i]), daemon=False)
        for i in range(cfg.workers)
    ]
    for p in procs:
        p.start()
    while not stop.wait(0.5):
        if any(not p.is_alive() for p in procs):
            print("sealgate: a worker exited; stopping", file=sys.stderr, flush=True)
            break
    serving = [e.is_set() for e in ready]  # as it was when we asked
    asked: set[int] = set()
    for i, p in enumerate(procs):
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGTERM)
            asked.add(i)
    # Deadlines from the moment we asked: a serving worker gets the drain grace, one still
    # starting also the start allowance (it builds its server, then stops at once).
    asked_at = time.monotonic()
    for i, p in enumerate(procs):
        allowance = grace + 5 + (0.0 if serving[i] else START_ALLOWANCE)
        p.join(max(0.0, asked_at + allowance - time.monotonic()))
        if p.is_alive():
            print(f"sealgate: worker {i} did not stop in time; killing it", file=sys.stderr)
            p.kill()
            p.join()
    # A worker that we asked to stop before its interpreter had installed its handler ends
    # by the signal's default action: it was stopped on request, not failed.
    stopped = {0} | {-signal.SIGTERM}
    failed = [
        (i, p.exitcode)
        for i, p in enumerate(procs)
        if p.exitcode != 0 and not (i in asked and p.exitcode in stopped)
    ]
    for i, code in failed:
        print(f"sealgate: worker {i} exited with status {code}", file=sys.stderr, flush=True)
    return 1 if failed else 0
