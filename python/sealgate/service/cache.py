"""What appraisal reads — reference values, policies, current model-key versions,
revocations — cached per configuration generation.

Every write to those tables bumps the storage's generation in the same transaction (SQLite:
triggers, migration 2), so one indexed read tells whether the cached view is current. A
change made through any process or replica takes effect at the next attestation that reads
the new generation. Key material is cached only wrapped; it is unwrapped per release.
"""

from __future__ import annotations

import threading

from sealgate.appraise import Policy, parse_policy
from sealgate.broker.models import ModelCheck, recheck
from sealgate.lru import BoundedCache
from sealgate.storage import (
    KeyVersionRecord,
    ModelRegistration,
    PolicyRecord,
    ReferenceValue,
    Revocation,
    Storage,
    bridge,
)

#: Bounds on memoized lookups per view. Only ids that exist are memoized (operators create
#: them, so they are few and short); an unknown id, which any client can send, is looked up
#: again each time and never stored.
MAX_ENTRIES = 4096
MAX_BYTES = 16 << 20


class ConfigView:
    """A lazily filled snapshot of one generation. Thread-safe: the memo caches are
    (``BoundedCache``), and two threads filling the same entry store equal values."""

    def __init__(self, storage: Storage, generation: int) -> None:
        self._st = storage
        self.generation = generation
        self._refs: BoundedCache[str, list[ReferenceValue]] = BoundedCache(MAX_ENTRIES, MAX_BYTES)
        self._policies: BoundedCache[str, tuple[PolicyRecord, Policy]] = BoundedCache(
            MAX_ENTRIES, MAX_BYTES
        )
        self._keys: BoundedCache[str, KeyVersionRecord] = BoundedCache(MAX_ENTRIES, MAX_BYTES)
        # (key id, version) → its registration and the current policy's verdict on it.
        self._models: BoundedCache[
            tuple[str, int], tuple[ModelRegistration | None, ModelCheck | None]
        ] = BoundedCache(MAX_ENTRIES, MAX_BYTES)
        self._revocations: BoundedCache[
            tuple[str, tuple[str, ...]], tuple[int, list[Revocation]]
        ] = BoundedCache(MAX_ENTRIES, MAX_BYTES)

    def revocation_state(
        self, platform: str, identities: list[str]
    ) -> tuple[int, list[Revocation]]:
        """``Storage.revocation_state``, memoized for this generation (revoking or lifting
        an identity moves it). Identities come from verified evidence or an enrolled node,
        so the entries are the fleet's own hardware, bounded all the same."""
        key = (platform, tuple(identities))
        hit = self._revocations.get(key)
        if hit is not None:
            return hit
        state = self._st.revocation_state(platform, identities)
        size = 64 + sum(2 * len(i) for i in identities) + 512 * len(state[1])
        self._revocations.put(key, state, size)
        return state

    def reference_values(self, platform: str) -> list[ReferenceValue]:
        refs = self._refs.get(platform)
        if refs is None:
            refs = self._st.list_reference_values(platform)
            size = sum(len(r.name) + len(r.value) + len(r.description) + 128 for r in refs)
            self._refs.put(platform, refs, len(platform) + size)
        return refs

    def policy(self, key_id: str) -> tuple[PolicyRecord, Policy] | None:
        hit = self._policies.get(key_id)
        if hit is not None:
            return hit
        rec = self._st.get_policy(key_id)
        if rec is None:
            return None
        # Stored policies were validated when put; parse once per generation.
        entry = (rec, parse_policy(rec.document))
        self._policies.put(key_id, entry, 2 * len(key_id) + 4 * len(rec.document))
        return entry

    def current_key(self, key_id: str) -> KeyVersionRecord | None:
        hit = self._keys.get(key_id)
        if hit is not None:
            return hit
        kv = self._st.get_current_key_version(key_id)
        if kv is not None:
            self._keys.put(key_id, kv, 2 * len(key_id) + 1024)
        return kv

    def model_gate_cached(self, key_id: str, version: int) -> bool:
        return self._models.get((key_id, version)) is not None

    def model_gate(
        self, key_id: str, version: int, policy: Policy
    ) -> tuple[ModelRegistration | None, ModelCheck | None]:
        """The model registered for a key version and whether ``policy`` (this
        generation's policy of ``key_id``) accepts its signer: verified once per generation
        (a policy edit or a registration moves it), not once per release. Only called for
        key ids that exist (``current_key`` found them), so entries are few."""
        hit = self._models.get((key_id, version))
        if hit is not None:
            return hit
        reg = self._st.get_model_registration(key_id, version)
        check = None
        if reg is not None and policy.model is not None:
            signers = policy.model.signers
            # Milliseconds or more (a bundle verification): off the event loop's thread
            # when the hot path runs there on a remote database (``bridge``).
            check = bridge.offload(lambda: recheck(reg, signers))
        entry = (reg, check)
        size = 2 * len(key_id) + 2048 + (len(reg.bundle) if reg is not None else 0)
        self._models.put((key_id, version), entry, size)
        return entry


class ConfigCache:
    def __init__(self, storage: Storage) -> None:
        self._st = storage
        self._view: ConfigView | None = None
        self._lock = threading.Lock()

    def view(self, generation: int | None = None) -> ConfigView:
        """The view of the generation storage holds now (one read), or of ``generation``
        when the caller has just read it."""
        gen = self._st.config_generation() if generation is None else generation
        view = self._view
        if view is None or view.generation != gen:
            with self._lock:
                view = self._view
                if view is None or view.generation != gen:
                    view = ConfigView(self._st, gen)
                    self._view = view
        return view
