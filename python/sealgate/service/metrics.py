"""Prometheus text-format metrics (exposition format 0.0.4), no third-party client."""

from __future__ import annotations

import threading
from collections import defaultdict

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

    def render(self) -> str:
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
