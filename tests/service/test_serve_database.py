"""``database:`` in the configuration and ``sealgate serve --database URL``: SQLite by
default (today's file), any URL the storage layer opens; a password never in argv, never in
what the service prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sealgate.errors import UsageError
from sealgate.service.config import ServiceConfig, load_config
from sealgate.service.server import create_server
from sealgate.testing import postgres as pgtest

SEALGATE = str(Path(sys.executable).parent / "sealgate")
PYTHON = Path(__file__).resolve().parents[2] / "python"


def _run(args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALGATE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(PYTHON), **env},
        check=False,
    )


def test_default_database_is_the_data_dir_sqlite_file(tmp_path: Path) -> None:
    cfg = load_config(None, data_dir=tmp_path / "d", listen="127.0.0.1:0")
    assert cfg.database is None
    assert cfg.database_url.backend == "sqlite"
    assert Path(cfg.database_url.target) == (tmp_path / "d" / "sealgate.db").absolute()


def test_database_from_the_config_file(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "state.db"
    db.parent.mkdir()
    conf = tmp_path / "c.json"
    conf.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "d"),
                "listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "database": f"sqlite://{db}",
            }
        )
    )
    cfg = load_config(conf)
    srv = create_server(cfg)
    try:
        assert db.exists() and not cfg.db_path.exists()
    finally:
        srv.stop(grace=0)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://relative.db", "", "sqlite:///"])
def test_bad_database_urls_are_refused_with_a_code(tmp_path: Path, url: str) -> None:
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"data_dir": str(tmp_path), "database": url}))
    with pytest.raises(UsageError) as e:
        load_config(conf)
    assert e.value.code == "config.database.invalid"


def test_a_password_in_argv_is_refused_and_never_echoed(tmp_path: Path) -> None:
    r = _run(
        ["serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
         "--database", "postgresql://sealgate:hunter2secret@127.0.0.1:5432/db"]
    )  # fmt: skip
    assert r.returncode != 0
    assert "hunter2secret" not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.returncode == 2 and "password on the command line" in r.stderr
    assert not (tmp_path / "sealgate.db").exists()


def test_unreachable_postgres_at_start_is_a_coded_failure(tmp_path: Path) -> None:
    pytest.importorskip("sealgate.storage.postgres")
    # Nothing listens on port 1 of loopback.
    r = _run(
        ["serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0", "--database", "postgresql://sealgate@127.0.0.1:1/db"],
        timeout=90,
    )  # fmt: skip
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "storage.unavailable" in r.stdout + r.stderr


def test_a_password_in_the_config_file_is_shown_redacted(
    postgres_server: pgtest.PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("sealgate.storage.postgres")
    password = postgres_server.passfile.read_text().strip().rsplit(":", 1)[1]
    with_pw = pg_url.replace("sealgate@", f"sealgate:{password}@", 1)
    conf = tmp_path / "c.json"
    conf.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "d"),
                "listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "database": with_pw,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PGPASSFILE"}
    env["PYTHONPATH"] = str(PYTHON)
    env["PGPASSFILE"] = str(tmp_path / "no-passfile")  # the URL's password must do
    proc = subprocess.Popen(
        [SEALGATE, "serve", "--config", str(conf), "--grace", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving gRPC" in line, line
        assert "sealgate:***@" in line and password not in line
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert password not in out
    cfg = ServiceConfig(database=with_pw)
    assert password not in cfg.database_url.redacted()
