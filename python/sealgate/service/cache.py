"""What appraisal reads — reference values, policies, current model-key versions — cached
per configuration generation.

Every write to those tables bumps the storage's generation in the same transaction (SQLite:
triggers, migration 2), so one indexed read tells whether the cached view is current. A
change made through any process or replica takes effect at the next attestation that reads
the new generation. Key material is cached only wrapped; it is unwrapped per release.
"""

from __future__ import annotations

import threading

from sealgate.appraise import Policy, parse_policy
from sealgate.storage import KeyVersionRecord, PolicyRecord, ReferenceValue, Storage

#: Bound on memoized lookups per view: key ids come from clients, and a flood of unknown
#: ids must not grow memory without limit.
MAX_ENTRIES = 4096


class ConfigView:
    """A lazily filled snapshot of one generation. Thread-safe: entries are only added,
    and two threads filling the same entry store equal values."""

    def __init__(self, storage: Storage, generation: int) -> None:
        self._st = storage
        self.generation = generation
        self._refs: dict[str, list[ReferenceValue]] = {}
        self._policies: dict[str, tuple[PolicyRecord, Policy] | None] = {}
        self._keys: dict[str, KeyVersionRecord | None] = {}

    def reference_values(self, platform: str) -> list[ReferenceValue]:
        refs = self._refs.get(platform)
        if refs is None:
            refs = self._st.list_reference_values(platform)
            if len(self._refs) < MAX_ENTRIES:
                self._refs[platform] = refs
        return refs

    def policy(self, key_id: str) -> tuple[PolicyRecord, Policy] | None:
        if key_id in self._policies:
            return self._policies[key_id]
        rec = self._st.get_policy(key_id)
        # Stored policies were validated when put; parse once per generation.
        entry = (rec, parse_policy(rec.document)) if rec is not None else None
        if len(self._policies) < MAX_ENTRIES:
            self._policies[key_id] = entry
        return entry

    def current_key(self, key_id: str) -> KeyVersionRecord | None:
        if key_id in self._keys:
            return self._keys[key_id]
        kv = self._st.get_current_key_version(key_id)
        if len(self._keys) < MAX_ENTRIES:
            self._keys[key_id] = kv
        return kv


class ConfigCache:
    def __init__(self, storage: Storage) -> None:
        self._st = storage
        self._view: ConfigView | None = None
        self._lock = threading.Lock()

    def view(self) -> ConfigView:
        """The view of the generation storage holds now (one read)."""
        gen = self._st.config_generation()
        view = self._view
        if view is None or view.generation != gen:
            with self._lock:
                view = self._view
                if view is None or view.generation != gen:
                    view = ConfigView(self._st, gen)
                    self._view = view
        return view
