"""Server upkeep off the request path: purging expired challenges and enrollments."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sealgate.service.config import load_config
from sealgate.service.housekeeping import Housekeeper
from sealgate.service.server import create_server
from sealgate.storage import Challenge
from sealgate.storage.sqlite import SqliteStorage


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_purges_expired_rows(tmp_path: Path) -> None:
    st = SqliteStorage(tmp_path / "s.db")
    clock = _Clock(1000.0)
    hk = Housekeeper(st, clock=clock)
    st.create_challenge(Challenge("a", b"n" * 32, "tpm", "", 900, 1001))
    hk.run_once()  # t=1000: "a" is still live
    assert hk.purged == 0 and st.get_challenge("a", 1000) is not None
    clock.t = 1010.0
    hk.run_once()
    assert hk.purged == 1 and st.get_challenge("a", 900) is None
    st.close()


def test_a_failing_round_is_logged_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = SqliteStorage(tmp_path / "s.db")
    hk = Housekeeper(st, clock=_Clock(5000.0))
    calls = 0

    def broken(now: int, batch: int = 200) -> int:
        nonlocal calls
        calls += 1
        raise OSError("/secret/path: disk I/O error")

    st.purge_expired = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, "sealgate.service"):
        hk.run_once()
        hk.run_once()
    assert calls == 2
    assert "OSError" in caplog.text and "/secret/path" not in caplog.text
    st.close()


def test_server_runs_housekeeping_and_stops_it(tmp_path: Path) -> None:
    cfg = load_config(None, data_dir=tmp_path, listen="127.0.0.1:0")
    srv = create_server(cfg, http=False)
    hk = srv._housekeeper
    assert hk is not None and hk._thread is not None and hk._thread.is_alive()
    srv.stop(0)
    assert not hk._thread.is_alive()


def test_purges_attestation_records_once_their_tokens_expired(tmp_path: Path) -> None:
    from sealgate._core import audit_link
    from sealgate.storage import AttestationRecord

    st = SqliteStorage(tmp_path / "s.db")
    clock = _Clock(1000.0)
    hk = Housekeeper(st, clock=clock)
    st.create_challenge(Challenge("c", b"n" * 32, "tpm", "", 900, 5000))
    rec = AttestationRecord("j", "", "tpm", "c", "{}", "jkt", 950, 1250, ("k",))
    assert st.complete_attestation("c", 960, (lambda seq: b"e", audit_link), rec)
    hk.run_once()
    assert st.get_attestation("j") == rec
    clock.t = 1251.0
    hk.run_once()
    assert hk.purged == 1 and st.get_attestation("j") is None
    st.close()
