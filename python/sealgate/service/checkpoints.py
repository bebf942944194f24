"""The audit checkpoint thread of one server process (``broker.checkpoint``).

Every ``every`` seconds the chain's head is signed if it moved, and once more when the
server stops cleanly, so a clean stop leaves nothing unanchored. Entries appended since the
last checkpoint are what an attacker with write access to the database could still cut
off unseen: ``every`` bounds that window. Signing costs one indexed read, one Ed25519
signature (≈ 50 µs) and two small file writes, and happens only when the head moved.
With several worker processes each runs one; the store's flock and its "never smaller"
rule keep ``latest`` monotonic. Replicas sharing a database each keep their own store (in
their data directory) of the one chain: every replica signs with the same key (from the
shared KEK) heads of the same append-only chain, so a checkpoint one replica wrote stays a
prefix of what any other reads, whoever appended the entries since.
"""

from __future__ import annotations

import logging
import threading

from sealgate.broker.checkpoint import Checkpointer

log = logging.getLogger("sealgate.service")

#: Seconds between checkpoints while entries are appended.
CHECKPOINT_EVERY = 2.0


class CheckpointThread:
    def __init__(self, checkpointer: Checkpointer, every: float = CHECKPOINT_EVERY) -> None:
        self.checkpointer = checkpointer
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self.checkpointer.run_once()
        except Exception as e:
            # The type only: messages may carry paths.
            log.warning("audit checkpoint failed (%s); next round retries", type(e).__name__)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.every):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="sealgate-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and anchor the head one last time (call before closing storage)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.run_once()
