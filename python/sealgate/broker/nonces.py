"""Challenges: 32 random bytes, single-use, short TTL (README "gRPC API", Challenge)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

from sealgate.storage import AuditAppend, Challenge, Storage

NONCE_SIZE = 32
DEFAULT_TTL = 60


class Challenges:
    def __init__(self, storage: Storage, ttl: int = DEFAULT_TTL) -> None:
        self._st = storage
        self.ttl = ttl

    def issue(
        self,
        platform: str,
        node_id: str,
        now: int | None = None,
        audit: Callable[[Challenge], AuditAppend] | None = None,
    ) -> Challenge:
        """A new challenge; ``audit`` makes its audit entry, written in the same transaction."""
        at = int(time.time()) if now is None else now
        ch = Challenge(
            uuid.uuid4().hex, os.urandom(NONCE_SIZE), platform, node_id, at, at + self.ttl
        )
        # Expired rows are deleted by the server's housekeeping thread
        # (sealgate.service.housekeeping), in small batches off the request path.
        self._st.create_challenge(ch, audit(ch) if audit is not None else None)
        return ch

    def live(self, challenge_id: str, now: int | None = None) -> Challenge | None:
        """The challenge if still live and unused, without consuming it: Attest consumes it
        in the transaction that records its decision (``Storage.complete_attestation``)."""
        at = int(time.time()) if now is None else now
        return self._st.get_challenge(challenge_id, at)

    def consume(self, challenge_id: str, now: int | None = None) -> Challenge | None:
        at = int(time.time()) if now is None else now
        return self._st.consume_challenge(challenge_id, at)
