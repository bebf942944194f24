"""Background upkeep of one server process, off the request path.

- **WAL checkpoints** every second. SQLite's default makes the COMMIT that crosses 1000 WAL
  pages copy them into the database and fsync while it still holds the write lock that
  every writer in every worker process queues behind; here a separate connection does it
  with a PASSIVE checkpoint, which waits for nobody (``Storage.checkpoint``).
- **Expired challenges and enrollments** are deleted every ``purge_every`` seconds, in
  small transactions (``Storage.purge_expired``). Every Challenge adds a row; without this
  the table, its index and every insert into it would grow for as long as the service runs.

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
        checkpoint_every: float = 1.0,
        purge_every: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.st = storage
        self.checkpoint_every = checkpoint_every
        self.purge_every = purge_every
        self.clock = clock
        self.purged = 0
        self._next_purge = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        now = self.clock()
        try:
            if now >= self._next_purge:
                self._next_purge = now + self.purge_every
                self.purged += self.st.purge_expired(int(now))
            self.st.checkpoint()
        except Exception as e:
            log.warning("housekeeping failed (%s); next round retries", type(e).__name__)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.checkpoint_every):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="sealgate-housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
