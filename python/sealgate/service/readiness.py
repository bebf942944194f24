"""Readiness: whether this process can serve calls that need the database.

Liveness (``/healthz``) says the process runs; readiness says a load balancer should send
it calls. With the state in a shared database (PostgreSQL) a replica that cannot reach it
answers every stateful call ``UNAVAILABLE``: it should leave the balancer's pool until the
database is back, and come back by itself, without a restart.

A probe thread runs a cheap query (``Storage.config_generation``: one indexed read) every
``every`` seconds, bounded by ``timeout`` (a database that accepts the connection and then
never answers must not leave readiness stuck at "ready"). A call that fails with
``StorageUnavailable`` reports it here (``failed``): readiness drops at once and the probe
runs now, so it also comes back as soon as the database answers again. Changes go to
``on_change`` (the server sets every gRPC health service name, grpc/doc/health-checking.md,
and ``/readyz`` reads ``ready``). With ``serve --workers N`` each process probes for itself.

The probe's failure is logged by type only, once per outage (driver messages may carry
host names or users).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures

log = logging.getLogger("sealgate.service")

#: Seconds between probes, and the longest a probe may take before it counts as failed.
PROBE_EVERY = 1.0
PROBE_TIMEOUT = 2.0


class Readiness:
    def __init__(
        self,
        probe: Callable[[], object],
        on_change: Callable[[bool], None],
        *,
        every: float = PROBE_EVERY,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self._probe = probe
        self._on_change = on_change
        self.every = every
        self.timeout = timeout
        self._ready = True
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # One probe at a time, on its own thread: a probe stuck past its timeout is not
        # waited for, and no second one starts until it returns (bounded threads).
        self._runner = futures.ThreadPoolExecutor(1, thread_name_prefix="sealgate-readiness")
        self._pending: futures.Future[object] | None = None
        #: Probes run and failed so far (tests, metrics).
        self.probes = 0
        self.failures = 0

    @property
    def ready(self) -> bool:
        return self._ready

    def _set(self, ok: bool, why: str = "") -> None:
        with self._lock:
            if ok == self._ready:
                return
            self._ready = ok
        if ok:
            log.warning("storage reachable again: ready")
        else:
            log.error("storage unavailable (%s): not ready", why)
        try:
            self._on_change(ok)
        except Exception as e:  # never take the probe down
            log.error("readiness change not applied (%s)", type(e).__name__)

    def failed(self) -> None:
        """A call found the storage unavailable: not ready now, probe again at once."""
        self._set(False, "a call failed")
        self._wake.set()

    def check(self) -> bool:
        """Probe once (bounded by ``timeout``), update readiness, and return it."""
        self.probes += 1
        if self._pending is None or self._pending.done():
            self._pending = self._runner.submit(self._probe)
        try:
            self._pending.result(timeout=self.timeout)
        except futures.TimeoutError:
            self.failures += 1
            self._set(False, "probe timed out")
            return False
        except Exception as e:
            self.failures += 1
            self._set(False, type(e).__name__)
            return False
        self._set(True)
        return True

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.every)
                self._wake.clear()
                if self._stop.is_set():
                    return
                self.check()

        self._thread = threading.Thread(target=loop, name="sealgate-readiness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
        self._runner.shutdown(wait=False, cancel_futures=True)
