"""The HTTP side port's routes: metrics, JWKS, health and the audit checkpoint."""

from __future__ import annotations

import threading

from sealgate.service.core import Verifier
from sealgate.service.metrics import CONTENT_TYPE, Metrics
from sealgate.service.readiness import Readiness
from sealgate.service.sideport import Route
from sealgate.storage import StorageUnavailable

_UNAVAILABLE = (503, b"storage unavailable\n", "text/plain")


def http_routes(
    core: Verifier,
    metrics: Metrics,
    ready: threading.Event,
    readiness: Readiness | None = None,
) -> dict[str, Route]:
    """The side port's GET routes: path → handler (run on a side port thread).

    ``/healthz`` is liveness (200 until the server drains); ``/readyz`` is readiness: 503
    while draining or while this process cannot reach its storage (``Readiness``)."""

    def storage_route(route: Route) -> Route:
        def run() -> tuple[int, bytes, str]:
            try:
                return route()
            except StorageUnavailable:
                if readiness is not None:
                    readiness.failed()
                return _UNAVAILABLE

        return run

    def metrics_page() -> tuple[int, bytes, str]:
        return 200, metrics.render().encode(), CONTENT_TYPE

    def jwks() -> tuple[int, bytes, str]:
        return 200, core.jwks_json().encode(), "application/jwk-set+json"

    def checkpoint() -> tuple[int, bytes, str]:
        # The latest signed checkpoint of the audit chain (C2SP tlog-checkpoint); auditors
        # keep copies to check the log against later.
        note = core.checkpoints.latest()
        if note is None:
            return 404, b"no checkpoint yet\n", "text/plain"
        return 200, note, "text/plain; charset=utf-8"

    def checkpoint_key() -> tuple[int, bytes, str]:
        return 200, (core.checkpoint_key() + "\n").encode(), "text/plain; charset=utf-8"

    def healthz() -> tuple[int, bytes, str]:
        ok = ready.is_set()
        return (200 if ok else 503), (b"ok\n" if ok else b"draining\n"), "text/plain"

    def readyz() -> tuple[int, bytes, str]:
        if not ready.is_set():
            return 503, b"draining\n", "text/plain"
        if readiness is not None and not readiness.ready:
            return _UNAVAILABLE
        return 200, b"ready\n", "text/plain"

    return {
        "/metrics": metrics_page,
        "/.well-known/jwks.json": storage_route(jwks),
        "/healthz": healthz,
        "/readyz": readyz,
        "/audit/checkpoint": checkpoint,
        "/audit/checkpoint-key": checkpoint_key,
    }
