"""Token-bucket rate limits per node id and per peer address (Attestation calls)."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Token bucket per key (node id, else peer address)."""

    def __init__(self, rps: float, burst: int) -> None:
        self.rps = rps
        self.burst = burst
        self._lock = threading.Lock()
        self._b: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._b.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rps)
            if tokens < 1.0:
                self._b[key] = (tokens, now)
                return False
            self._b[key] = (tokens - 1.0, now)
            if len(self._b) > 100_000:  # bounded memory: drop idle full buckets
                self._b = {k: v for k, v in self._b.items() if now - v[1] < 60}
            return True
