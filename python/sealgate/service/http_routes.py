"""The HTTP side port's routes: metrics, JWKS, health and the audit checkpoint."""

from __future__ import annotations

import threading

from sealgate.service.core import Verifier
from sealgate.service.metrics import CONTENT_TYPE, Metrics
from sealgate.service.sideport import Route


def http_routes(
    core: Verifier,
    metrics: Metrics,
    ready: threading.Event,
) -> dict[str, Route]:
    """The side port's GET routes: path → handler (run on a side port thread)."""

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

    return {
        "/metrics": metrics_page,
        "/.well-known/jwks.json": jwks,
        "/healthz": healthz,
        "/audit/checkpoint": checkpoint,
        "/audit/checkpoint-key": checkpoint_key,
    }
