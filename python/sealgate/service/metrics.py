"""Prometheus text-format metrics (exposition format 0.0.4), no third-party client.

With ``sealgate serve --workers N`` only the first process serves HTTP; the others publish a
snapshot of their counters every second (``MetricsShare``) and the first adds them up when
scraped, so ``/metrics`` covers every process (at most a second behind for the others).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Latency histogram buckets in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rpcs: dict[tuple[str, str], int] = defaultdict(int)
        self._hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sum: dict[str, float] = defaultdict(float)
        self._decisions: dict[tuple[str, str], int] = defaultdict(int)

    def rpc(self, method: str, code: str, seconds: float) -> None:
        with self._lock:
            self._rpcs[(method, code)] += 1
            h = self._hist[method]
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-1] += 1
            self._sum[method] += seconds

    def decision(self, platform: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._decisions[(platform, outcome)] += n

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-able data (for ``render(others=...)`` in another process)."""
        with self._lock:
            return {
                "rpcs": [[m, c, n] for (m, c), n in self._rpcs.items()],
                "hist": {m: list(h) for m, h in self._hist.items()},
                "sum": dict(self._sum),
                "decisions": [[p, o, n] for (p, o), n in self._decisions.items()],
            }

    def _absorb(self, snap: dict[str, Any]) -> None:
        """Add another process's snapshot; anything malformed is skipped, not trusted."""
        try:
            for m, c, n in snap["rpcs"]:
                self._rpcs[(str(m), str(c))] += int(n)
            for m, h in snap["hist"].items():
                if len(h) == len(BUCKETS) + 1:
                    mine = self._hist[str(m)]
                    for i, v in enumerate(h):
                        mine[i] += int(v)
            for m, v in snap["sum"].items():
                self._sum[str(m)] += float(v)
            for p, o, n in snap["decisions"]:
                self._decisions[(str(p), str(o))] += int(n)
        except (KeyError, TypeError, ValueError, AttributeError):
            return

    def render(self, others: Iterable[dict[str, Any]] = ()) -> str:
        """Exposition text for this process plus ``others`` (snapshots of sibling workers)."""
        total = Metrics()
        total._absorb(self.snapshot())
        for snap in others:
            total._absorb(snap)
        return total._render()

    def _render(self) -> str:
        lines = [
            "# HELP sealgate_rpc_total gRPC calls by method and status code.",
            "# TYPE sealgate_rpc_total counter",
        ]
        with self._lock:
            for (m, c), n in sorted(self._rpcs.items()):
                lines.append(f'sealgate_rpc_total{{method="{m}",code="{c}"}} {n}')
            lines += [
                "# HELP sealgate_rpc_duration_seconds gRPC handling time.",
                "# TYPE sealgate_rpc_duration_seconds histogram",
            ]
            for m, h in sorted(self._hist.items()):
                for i, b in enumerate(BUCKETS):
                    lines.append(
                        f'sealgate_rpc_duration_seconds_bucket{{method="{m}",le="{b}"}} {h[i]}'
                    )
                lines.append(
                    f'sealgate_rpc_duration_seconds_bucket{{method="{m}",le="+Inf"}} {h[-1]}'
                )
                lines.append(
                    f'sealgate_rpc_duration_seconds_sum{{method="{m}"}} {self._sum[m]:.6f}'
                )
                lines.append(f'sealgate_rpc_duration_seconds_count{{method="{m}"}} {h[-1]}')
            lines += [
                "# HELP sealgate_key_decisions_total Keys granted or denied, by platform.",
                "# TYPE sealgate_key_decisions_total counter",
            ]
            for (p, o), n in sorted(self._decisions.items()):
                lines.append(f'sealgate_key_decisions_total{{platform="{p}",outcome="{o}"}} {n}')
        return "\n".join(lines) + "\n"


class MetricsShare:
    """Snapshots of worker processes' metrics in a private directory of the data dir."""

    def __init__(self, directory: Path, index: int) -> None:
        self.dir = directory
        self.index = index
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the publishing thread and stop() share one temp file

    @staticmethod
    def reset(directory: Path) -> None:
        """Before workers start: a fresh directory (old snapshots would be counted twice)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for f in directory.glob("metrics-*.json*"):
            f.unlink(missing_ok=True)

    def publish(self, metrics: Metrics) -> None:
        path = self.dir / f"metrics-{self.index}.json"
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        with self._lock:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(metrics.snapshot(), f)
            os.replace(tmp, path)  # readers see the old or the new snapshot, never half

    def start_publishing(self, metrics: Metrics, every: float = 1.0) -> None:
        def loop() -> None:
            while True:
                with contextlib.suppress(OSError):
                    self.publish(metrics)
                if self._stop.wait(every):
                    return

        threading.Thread(target=loop, name="sealgate-metrics", daemon=True).start()

    def stop(self, metrics: Metrics) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.publish(metrics)  # the last counts survive until the first worker stops

    def others(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in sorted(self.dir.glob("metrics-*.json")):
            if f.name == f"metrics-{self.index}.json":
                continue
            try:
                snap = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(snap, dict):
                out.append(snap)
        return out
