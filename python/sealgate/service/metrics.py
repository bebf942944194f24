"""Prometheus metrics (text exposition format 0.0.4) through ``prometheus_client``.

One process: each server has its own registry (a test process runs several servers).
``sealgate serve --workers N``: the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory under the data dir's ``run/`` before it starts the workers; every worker's
values then live in memory-mapped files there, and the one process that serves HTTP reads
them all with ``MultiProcessCollector`` when scraped (prometheus_client's multiprocess
mode), so ``/metrics`` covers every process, including workers that have exited.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

#: Latency histogram buckets in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: The variable prometheus_client reads, when it is first imported, to choose its
#: multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def multiprocess_dir(data_dir: Path) -> Path:
    return data_dir / "run" / "prometheus"


def reset_multiprocess_dir(directory: Path) -> None:
    """Before workers start: an empty directory (files left by an earlier run would be
    counted again), private to the service's user."""
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._rpcs = Counter(
            "sealgate_rpc",
            "gRPC calls by method and status code.",
            ("method", "code"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "sealgate_rpc_duration_seconds",
            "gRPC handling time.",
            ("method",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._decisions = Counter(
            "sealgate_key_decisions",
            "Keys granted or denied, by platform.",
            ("platform", "outcome"),
            registry=self.registry,
        )
        # The labelled children, looked up once: ``labels()`` takes a lock and builds a
        # key on every call, and rpc() and decision() run on the event loop for every call.
        # The label sets are bounded: method names of registered handlers, status names,
        # platform names and two outcomes.
        self._rpc_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._decision_children: dict[tuple[str, str], Counter] = {}

    def rpc(self, method: str, code: str, seconds: float) -> None:
        children = self._rpc_children.get((method, code))
        if children is None:
            children = (self._rpcs.labels(method, code), self._duration.labels(method))
            self._rpc_children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def decision(self, platform: str, outcome: str, n: int = 1) -> None:
        child = self._decision_children.get((platform, outcome))
        if child is None:
            # The series exists (at 0) from its first decision on, as with labels() alone.
            child = self._decision_children[(platform, outcome)] = self._decisions.labels(
                platform, outcome
            )
        if n:
            child.inc(n)

    def render(self) -> str:
        """The exposition text: this process's metrics, or with ``PROMETHEUS_MULTIPROC_DIR``
        set, those of every process that wrote there."""
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry).decode()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry).decode()
