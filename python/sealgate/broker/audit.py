"""The tamper-evident audit log (issue #5 §4).

Each entry is a map encoded as deterministic CBOR (RFC 8949 §4.2, ``cbor2`` canonical) and
chained as SHA-256(previous hash ‖ encoded entry); the chain is computed and checked in the
Rust core (``sealgate._core.audit_*``). The sequence number is inside the entry, so swapping
two rows breaks the chain even if their hashes are swapped too. Entries never hold key
material or tokens: ids, codes and decisions only.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import cbor2

from sealgate import _core
from sealgate.storage import AuditAppend, AuditRow, Storage


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    first_bad_seq: int
    code: str
    message: str


def encode_entry(seq: int, at: int, event: str, actor: str, details: dict[str, Any]) -> bytes:
    doc = {"seq": seq, "time": at, "event": event, "actor": actor, "details": details}
    return bytes(cbor2.dumps(doc, canonical=True))


def decode_entry(entry: bytes) -> dict[str, Any]:
    doc = cbor2.loads(entry)
    if not isinstance(doc, dict):
        raise ValueError("audit entry is not a map")
    return doc


class AuditLog:
    def __init__(self, storage: Storage) -> None:
        self._st = storage

    def pending(
        self, event: str, actor: str, details: dict[str, Any], at: int | None = None
    ) -> AuditAppend:
        """An entry to append inside another write's transaction (Storage ``audit=``)."""
        when = int(time.time()) if at is None else at
        return (lambda seq: encode_entry(seq, when, event, actor, details), _core.audit_link)

    def append(
        self, event: str, actor: str, details: dict[str, Any], at: int | None = None
    ) -> AuditRow:
        return self._st.append_audit(*self.pending(event, actor, details, at))

    def list(self, after_seq: int = 0, limit: int = 100) -> list[AuditRow]:
        return self._st.list_audit(after_seq, limit)

    def verify(self) -> AuditVerdict:
        """Recompute the chain in Rust batch by batch; report the first entry that breaks."""
        prev: bytes | None = None
        expected_seq = 1
        count = 0
        for rows in self._st.iter_audit():
            bad = _core.audit_verify([r.entry for r in rows], [r.hash for r in rows], prev)
            if bad is not None:
                idx, code, message = bad
                # Rust counts from 0 within the batch; operators think in sequence numbers.
                message = re.sub(r"^entry \d+", f"entry {rows[idx].seq}", message)
                return AuditVerdict(False, count + idx, rows[idx].seq, code, message)
            for r in rows:
                # The chain covers content; the sequence inside each entry covers position.
                try:
                    inner = decode_entry(r.entry).get("seq")
                except ValueError:
                    inner = None
                if r.seq != expected_seq or inner != r.seq:
                    return AuditVerdict(
                        False,
                        count,
                        r.seq,
                        "audit.chain.sequence_gap",
                        f"row {r.seq} (entry seq {inner}) where {expected_seq} was expected",
                    )
                expected_seq += 1
                count += 1
            prev = rows[-1].hash
        return AuditVerdict(True, count, 0, "", f"{count} entries chain correctly")
