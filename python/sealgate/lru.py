"""One bounded, thread-safe LRU cache for every in-memory verification cache.

Verifiers cache what they derived from evidence (verified chains, loaded collateral,
memoised look-ups) so that steady state is cheap. Evidence is chosen by the attester, so
every such cache must be bounded in what an attester can make it hold: by entry count and
by (estimated) bytes. The caller states an entry's size when it stores it; an entry larger
than the whole byte budget is not stored at all, and storing evicts least recently used
entries until both bounds hold again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Per-entry bookkeeping charged on top of the caller's estimate (dict slot, tuple, node).
ENTRY_OVERHEAD = 128


class BoundedCache(Generic[K, V]):
    """LRU map bounded by ``max_entries`` and ``max_bytes`` (sizes as the caller states)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("cache bounds must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._d: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._d.get(key)
            if hit is None:
                return None
            self._d.move_to_end(key)
            return hit[0]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._d

    def put(self, key: K, value: V, size: int) -> bool:
        """Store ``value`` (``size``: its estimated bytes, key included); False when it is
        larger than the whole budget and was not stored."""
        cost = max(0, size) + ENTRY_OVERHEAD
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if cost > self.max_bytes:
                return False
            self._d[key] = (value, cost)
            self._bytes += cost
            while len(self._d) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, c) = self._d.popitem(last=False)
                self._bytes -= c
            return True

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)

    @property
    def bytes(self) -> int:
        """Bytes currently charged (estimates plus overhead)."""
        with self._lock:
            return self._bytes
