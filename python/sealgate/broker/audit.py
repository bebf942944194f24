"""The tamper-evident audit log (docs/audit.md).

Each entry is a map encoded as deterministic CBOR (RFC 8949 §4.2, ``cbor2`` canonical) and
chained as SHA-256(previous hash ‖ encoded entry); the chain is computed and checked in the
Rust core (``sealgate._core.audit_*``). The sequence number is inside the entry, so swapping
two rows breaks the chain even if their hashes are swapped too. Entries never hold key
material or tokens: ids, codes and decisions only.

The chain alone proves nothing about entries written by whoever can write the database: a
forged entry appended with a correct link, or a log rewritten from some entry on with every
later hash recomputed, is again a valid chain. Two keys outside the database close that:

- each entry carries ``mac`` = HMAC-SHA256 over its encoding without ``mac``, under a key of
  the KEK provider, so no entry can be made or changed without that key (entries written
  before MACs existed are accepted only as a prefix: once one entry has a MAC, every later
  one must);
- signed checkpoints (``broker.checkpoint``) anchor the head, so a cut tail, an emptied log
  or a rewritten prefix no longer matches what was signed.

An entry is at most ``MAX_ENTRY_BYTES``: its details come from requests, and whoever sends
them must not be able to grow the log (and every later list or verify) at will.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cbor2

from sealgate import _core
from sealgate.broker.checkpoint import (
    GENESIS,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    NoteVerifier,
    open_checkpoint,
)
from sealgate.storage import AuditAppend, AuditRow, Storage

#: Largest encoded entry. The largest real entry is an ``attest.decided`` that denies the
#: most keys one request may name (32 ids of ≤ 128 characters, each with its failure codes),
#: ≈ 10 KiB. An entry that would be larger is kept, never refused (refusing would let the
#: sender suppress the record of its own request), with its details cut down: strings to
#: ``_CUT_CHARS`` characters, lists and maps to ``_CUT_ITEMS`` items, each cut marked with
#: what was left out, plus the size and SHA-256 of the full details (``truncated``).
MAX_ENTRY_BYTES = 16 * 1024
_CUT_CHARS = 128
_CUT_ITEMS = 16
_CUT_DEPTH = 4
_MAC_KEY = bytes(cbor2.dumps("mac"))
#: Room left for the ``mac`` field (key, byte-string header and 32 bytes).
_MAC_ROOM = 48
#: Rows per verify batch, and the most bytes of entries one batch may hold: verification
#: holds one batch at a time, whatever the log's size.
VERIFY_BATCH = 1000
VERIFY_BATCH_BYTES = 1 << 20

#: HMAC-SHA256 of an entry's encoding without ``mac`` (``KekProvider.audit_mac``).
EntryMac = Callable[[bytes], bytes]


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    first_bad_seq: int
    code: str
    message: str
    #: Tree size of the largest checkpoint the chain was checked against (0: none).
    anchored: int = 0
    #: Whether entry MACs were checked (needs the KEK provider's audit key).
    authenticated: bool = False


def _dumps(doc: Any) -> bytes:
    return bytes(cbor2.dumps(doc, canonical=True))


def _cut(v: Any, depth: int = 0) -> Any:
    """``v`` with long strings, byte strings, lists and maps cut, each cut marked."""
    if isinstance(v, str):
        return v if len(v) <= _CUT_CHARS else f"{v[:_CUT_CHARS]}…[{len(v)} chars]"
    if isinstance(v, bytes):
        return v if len(v) <= _CUT_CHARS else f"{v[:_CUT_CHARS].hex()}…[{len(v)} bytes]"
    if isinstance(v, (list, tuple)):
        if depth >= _CUT_DEPTH:
            return f"…[{len(v)} items]"
        items = [_cut(x, depth + 1) for x in v[:_CUT_ITEMS]]
        if len(v) > _CUT_ITEMS:
            items.append(f"…[{len(v)} items]")
        return items
    if isinstance(v, dict):
        if depth >= _CUT_DEPTH:
            return f"…[{len(v)} items]"
        out = {_cut(k, depth + 1): _cut(x, depth + 1) for k, x in list(v.items())[:_CUT_ITEMS]}
        if len(v) > _CUT_ITEMS:
            out["…"] = f"{len(v)} items"
        return out
    return v


def encode_entry(
    seq: int,
    at: int,
    event: str,
    actor: str,
    details: dict[str, Any],
    mac: EntryMac | None = None,
) -> bytes:
    doc: dict[str, Any] = {
        "seq": seq,
        "time": at,
        "event": _cut(event),
        "actor": _cut(actor),
        "details": details,
    }
    body = _dumps(doc)
    if len(body) > MAX_ENTRY_BYTES - _MAC_ROOM:
        full = _dumps(details)
        marker = {"bytes": len(full), "sha256": hashlib.sha256(full).hexdigest()}
        doc["details"] = {"truncated": marker, "summary": _cut(details)}
        body = _dumps(doc)
        if len(body) > MAX_ENTRY_BYTES - _MAC_ROOM:
            doc["details"] = {"truncated": marker}
            body = _dumps(doc)
    if mac is None:
        return body
    # Deterministic CBOR orders map keys by their encoded bytes (RFC 8949 §4.2.1), and the
    # encoded "mac" sorts before every other key: the entry with its MAC is the body's map
    # with one more pair, first. Spliced, not encoded again: encoding is most of the cost of
    # an append, which runs under the write lock.
    assert body[0] == 0xA5  # a map of the five fields above
    return b"\xa6" + _MAC_KEY + _dumps(mac(body)) + body[1:]


def decode_entry(entry: bytes) -> dict[str, Any]:
    try:
        doc = cbor2.loads(entry)
    except Exception as e:  # cbor2 raises several types on bad input
        raise ValueError(f"audit entry is not CBOR ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise ValueError("audit entry is not a map")
    return doc


def entry_view(entry: bytes) -> dict[str, Any]:
    """An entry as shown to operators: time, event, actor and details, never more than
    about ``MAX_ENTRY_BYTES`` (entries written before the bound existed may be larger: their
    details are shown cut, as new entries are written)."""
    try:
        d = decode_entry(entry)
    except ValueError:
        return {"time": 0, "event": "<undecodable>", "actor": "", "details": {}}
    details = d.get("details", {})
    if len(entry) > MAX_ENTRY_BYTES:
        details = {"truncated": {"bytes": len(entry)}, "summary": _cut(details)}
    return {
        "time": d.get("time", 0) if isinstance(d.get("time"), int) else 0,
        "event": _cut(str(d.get("event", ""))),
        "actor": _cut(str(d.get("actor", ""))),
        "details": details,
    }


class AuditLog:
    def __init__(self, storage: Storage, mac: EntryMac | None = None) -> None:
        """``mac``: the KEK provider's entry MAC; without it entries are written unsigned
        and verification cannot check MACs (an auditor holding only the checkpoint key)."""
        self._st = storage
        self._mac = mac

    def pending(
        self, event: str, actor: str, details: dict[str, Any], at: int | None = None
    ) -> AuditAppend:
        """An entry to append inside another write's transaction (Storage ``audit=``)."""
        when = int(time.time()) if at is None else at
        mac = self._mac
        return (
            lambda seq: encode_entry(seq, when, event, actor, details, mac),
            _core.audit_link,
        )

    def append(
        self, event: str, actor: str, details: dict[str, Any], at: int | None = None
    ) -> AuditRow:
        return self._st.append_audit(*self.pending(event, actor, details, at))

    def list(self, after_seq: int = 0, limit: int = 100) -> list[AuditRow]:
        return self._st.list_audit(after_seq, limit)

    def verify_anchored(
        self,
        store: CheckpointStore | None,
        verifier: NoteVerifier,
        extra: Iterable[tuple[str, bytes]] = (),
    ) -> AuditVerdict:
        """``verify`` against every checkpoint in ``store`` and ``extra`` (name, note), each
        of which must carry ``verifier``'s signature. With ``store`` given, a store without
        checkpoints fails (``audit.checkpoint.missing``): the server writes one when it
        starts, so none means they were removed, and an unanchored chain proves nothing
        about its tail. ``store=None``: only ``extra`` (an auditor's own copy)."""
        try:
            notes = list(store.all()) if store is not None else []
        except CheckpointError as e:
            return self._fail(0, 0, e.code, e.message)
        except OSError as e:
            return self._fail(0, 0, "audit.checkpoint.unreadable", f"{e.filename}: {e.strerror}")
        if store is not None and not notes:
            return self._fail(
                0,
                0,
                "audit.checkpoint.missing",
                f"no checkpoint in {store.dir}: the chain's head is not anchored",
            )
        notes += list(extra)
        anchors: list[Checkpoint] = []
        for name, note in notes:
            try:
                anchors.append(open_checkpoint(note, verifier))
            except CheckpointError as e:
                return self._fail(0, 0, e.code, f"checkpoint {name}: {e.message}")
        return self.verify(anchors)

    def verify(self, anchors: Iterable[Checkpoint] = ()) -> AuditVerdict:
        """Recompute the chain in Rust batch by batch (one batch in memory at a time,
        carrying the last link), check each entry's sequence number and MAC, and that the
        chain holds every checkpoint's head at its size; report the first break."""
        heads: dict[int, bytes] = {}
        for cp in anchors:
            if heads.setdefault(cp.size, cp.root) != cp.root:
                return self._fail(
                    0,
                    cp.size,
                    "audit.chain.head_mismatch",
                    f"two checkpoints of size {cp.size} disagree",
                )
        top = max(heads, default=0)
        if heads.get(0, GENESIS) != GENESIS:
            return self._fail(
                0, 1, "audit.chain.head_mismatch", "checkpoint of size 0 is not empty"
            )
        prev: bytes | None = None
        count = 0
        macs_seen = False
        for rows in self._st.iter_audit(VERIFY_BATCH, VERIFY_BATCH_BYTES):
            bad = _core.audit_verify([r.entry for r in rows], [r.hash for r in rows], prev)
            if bad is not None:
                idx, (code, message) = bad
                # Rust counts from 0 within the batch; operators think in sequence numbers.
                message = re.sub(r"^entry \d+", f"entry {rows[idx].seq}", message)
                return self._fail(count + idx, rows[idx].seq, code, message, top)
            for r in rows:
                try:
                    doc: dict[str, Any] | None = decode_entry(r.entry)
                except ValueError:
                    doc = None
                # The chain covers content; the sequence inside each entry covers position.
                inner = doc.get("seq") if doc is not None else None
                if r.seq != count + 1 or inner != r.seq:
                    return self._fail(
                        count,
                        r.seq,
                        "audit.chain.sequence_gap",
                        f"row {r.seq} (entry seq {inner}) where {count + 1} was expected",
                        top,
                    )
                assert doc is not None
                tag = doc.pop("mac", None)
                if tag is None and macs_seen:
                    return self._fail(
                        count,
                        r.seq,
                        "audit.entry.unauthenticated",
                        f"entry {r.seq} has no MAC but earlier entries do: "
                        "it was not written by this service",
                        top,
                    )
                if tag is not None:
                    macs_seen = True
                    if self._mac is not None and not (
                        isinstance(tag, bytes) and hmac.compare_digest(tag, self._mac(_dumps(doc)))
                    ):
                        return self._fail(
                            count,
                            r.seq,
                            "audit.entry.bad_mac",
                            f"entry {r.seq}: MAC does not match its content "
                            "(written or changed without the audit key)",
                            top,
                        )
                want = heads.get(r.seq)
                if want is not None and want != r.hash:
                    return self._fail(
                        count,
                        r.seq,
                        "audit.chain.head_mismatch",
                        f"entry {r.seq} does not have the hash the checkpoint "
                        f"of size {r.seq} signed: the log was rewritten up "
                        "to there",
                        top,
                    )
                count += 1
            prev = rows[-1].hash
        if count < top:
            code = "audit.chain.empty" if count == 0 else "audit.chain.truncated"
            return self._fail(
                count,
                count + 1,
                code,
                f"the log has {count} entries but a checkpoint signed "
                f"{top}: entries {count + 1}..{top} are gone",
                top,
            )
        anchored = f"; anchored by a checkpoint at {top}" if heads else "; no checkpoint"
        if heads and count > top:
            anchored += f" ({count - top} later entries not yet anchored)"
        mac_note = "; entry MACs checked" if self._mac is not None else "; MACs not checked"
        return AuditVerdict(
            True,
            count,
            0,
            "",
            f"{count} entries chain correctly" + anchored + mac_note,
            top,
            self._mac is not None,
        )

    def _fail(
        self, entries: int, seq: int, code: str, message: str, anchored: int = 0
    ) -> AuditVerdict:
        return AuditVerdict(False, entries, seq, code, message, anchored, self._mac is not None)
