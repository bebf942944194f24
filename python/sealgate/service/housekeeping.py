"""Background upkeep of one server process, off the request path.

Expired challenges and enrollments, and attestation records whose tokens expired, are
deleted every ``every`` seconds, in small transactions under the write lock
(``Storage.purge_expired``). Every Challenge adds a row, every Attest that verifies another.
This replaces a purge that ran inline in every 1000th Challenge: one DELETE of all rows
expired over an hour before, unbatched and outside the write lock, on the event loop that
serves every other call (and enrollments were never purged).

WAL checkpoints are left where SQLite puts them, in the COMMIT that crosses 1000 WAL pages:
that COMMIT still holds the service's write lock, so no other writer can append while it
copies, the checkpoint completes and the next writer restarts the WAL from its start. A
PASSIVE checkpoint from a background thread was tried and measured worse: writers appended
during it, it never caught up, and under continuous load the WAL grew to the 64 MB bound
set for it, whose checkpoint then stalled a request for seconds.

A failure is logged (its type only: messages may carry paths or SQL) and retried on the next
round; upkeep never takes the server down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sealgate.storage import Storage

log = logging.getLogger("sealgate.service")


class Housekeeper:
    def __init__(
        self,
        storage: Storage,
        *,
        every: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.st = storage
        self.every = every
        self.clock = clock
        self.purged = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self.purged += self.st.purge_expired(int(self.clock()))
        except Exception as e:
            log.warning("housekeeping failed (%s); next round retries", type(e).__name__)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.every):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="sealgate-housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
