"""Re-wrapping every stored blob under another KEK (``sealgate kek rotate``).

Each item (model key version, token signing key, service secret) is unwrapped with the KEK
its row names, wrapped under the target, and written back only if the row still holds the
blob that was read (``Storage.rewrap`` is conditional): so the move is safe to interrupt at
any point (a killed run leaves every row wrapped under one KEK or the other, each naming
its own) and to run again (rows already under the target are not listed), and a row that
changed meanwhile is simply listed again. The old KEK must stay configured
(``kek_previous``) until the run reports nothing left. Audited: ``kek.rotation.started``
and ``kek.rotation.completed`` (or ``kek.rotation.failed``) with counts and KEK ids, never
key material.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sealgate.broker.audit import AuditLog
from sealgate.broker.auditkeys import secret_aad
from sealgate.broker.kek import KekError, KekProvider, KekRing
from sealgate.broker.keys import key_aad
from sealgate.broker.tokens import signing_key_aad
from sealgate.errors import SealgateError
from sealgate.storage import Storage, WrappedItem

#: Rounds in a row in which every listed item changed under us before giving up.
_MAX_IDLE_ROUNDS = 5


def item_aad(item: WrappedItem) -> bytes:
    if item.kind == "key_version":
        return key_aad(item.ref[0], int(item.ref[1]))
    if item.kind == "signing_key":
        return signing_key_aad(item.ref[0])
    return secret_aad(item.ref[0])


@dataclass
class RotationResult:
    target: str
    sources: list[str]
    moved: dict[str, int] = field(
        default_factory=lambda: {"key_version": 0, "signing_key": 0, "secret": 0}
    )
    #: Items that changed between listing and writing back (listed again).
    retried: int = 0
    remaining: int = 0
    batches: int = 0

    def doc(self) -> dict[str, object]:
        return {
            "target_kek_id": self.target,
            "source_kek_ids": self.sources,
            "moved": dict(self.moved),
            "moved_total": sum(self.moved.values()),
            "retried": self.retried,
            "remaining": self.remaining,
            "batches": self.batches,
        }


def rotate(
    st: Storage,
    ring: KekRing,
    target: KekProvider,
    audit: AuditLog,
    *,
    actor: str = "kek-rotate",
    batch: int = 100,
    progress: Callable[[RotationResult], None] | None = None,
) -> RotationResult:
    """Move every item not wrapped under ``target`` to it; ``ring`` unwraps them."""
    res = RotationResult(target.kek_id, [k for k in ring.kek_ids() if k != target.kek_id])
    audit.append(
        "kek.rotation.started",
        actor,
        {"target_kek_id": target.kek_id, "source_kek_ids": res.sources, "batch": batch},
    )
    idle = 0
    try:
        while True:
            items = st.list_wrapped(exclude_kek_id=target.kek_id, limit=batch)
            if not items:
                break
            res.batches += 1
            moved_before = sum(res.moved.values())
            for item in items:
                aad = item_aad(item)
                plain = ring.unwrap(item.wrapped, aad, item.kek_id)
                if st.rewrap(item, target.wrap(plain, aad), target.kek_id):
                    res.moved[item.kind] += 1
                else:
                    res.retried += 1
            if progress is not None:
                progress(res)
            if sum(res.moved.values()) == moved_before:
                idle += 1
                if idle >= _MAX_IDLE_ROUNDS:
                    raise SealgateError(
                        "broker.kek.rotation_stalled",
                        f"{len(items)} items changed under every attempt to re-wrap them",
                    )
                time.sleep(0.05 * idle)
            else:
                idle = 0
    except (SealgateError, KekError) as e:
        res.remaining = len(st.list_wrapped(exclude_kek_id=target.kek_id, limit=1_000_000))
        audit.append("kek.rotation.failed", actor, {**res.doc(), "code": e.code})
        raise
    res.remaining = 0
    audit.append("kek.rotation.completed", actor, res.doc())
    return res
