"""A throwaway PostgreSQL server for tests, benchmarks and the demo.

One cluster per instance: ``initdb`` into a directory the ``postgres`` OS user owns (the
server refuses to run as root, https://www.postgresql.org/docs/15/server-start.html), one
postmaster started directly (not through ``pg_ctl``) with ``setpriv`` so the process we hold
IS the postmaster: ``stop``/``stop_fast``/``kill`` signal that pid (and, for ``kill``, its
process group, which holds every backend) and never a process found by name. The shutdown
modes are PostgreSQL's (https://www.postgresql.org/docs/15/server-shutdown.html): SIGTERM
smart, SIGINT fast, SIGQUIT immediate; SIGKILL is the "host died" case crash tests need.

Access: TCP on 127.0.0.1 only, ``scram-sha-256`` for every TCP login (pg_hba.conf,
https://www.postgresql.org/docs/15/auth-pg-hba-conf.html); the role ``sealgate`` has a random
password that lives only in a 0600 passfile (https://www.postgresql.org/docs/15/libpq-pgpass.html)
exported as ``PGPASSFILE`` by ``env()``, so it is never in a URL, argv or a log. Setup uses
the superuser over the unix socket, which sits in a 0700 directory only ``postgres`` (and
root) can enter, with ``trust`` for that socket only.

``fsync`` stays on unless asked: kill -9 tests rely on a committed transaction surviving.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

PG_BIN = Path(os.environ.get("SEALGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
ROLE = "sealgate"
#: sun_path is 108 bytes on Linux (unix(7)); PostgreSQL appends "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 80


def available() -> bool:
    """True when the server binaries are installed (and, as root, the ``postgres`` user exists
    to run them)."""
    if not all((PG_BIN / b).is_file() for b in ("initdb", "postgres")):
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return False
        return shutil.which("setpriv") is not None
    return True


class PostgresError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostgresServer:
    """One PostgreSQL cluster. ``start()`` creates it on first use; ``stop()`` always ends the
    postmaster it started, by pid. Usable as a context manager (stop and remove on exit)."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        fsync: bool = True,
        max_connections: int = 200,
        shared_buffers: str = "64MB",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.fsync = fsync
        self.max_connections = max_connections
        self.shared_buffers = shared_buffers
        self.settings = dict(settings or {})
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None
        self._own_root = False
        self._password = secrets.token_urlsafe(24)

    # -- paths ---------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self._root is None:
            raise PostgresError("server not initialised (call start())")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def passfile(self) -> Path:
        # Outside the postgres-owned tree: it is the client's file.
        return self.base_dir / "pgpass"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def _as_pg(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        # setpriv execs (no fork), so the Popen pid is the postmaster's own pid.
        return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "--"]

    def _pg_can_reach(self, path: Path) -> bool:
        if os.geteuid() != 0:
            return True
        r = subprocess.run(
            [*self._as_pg(), "test", "-x", str(path), "-a", "-w", str(path)],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return r.returncode == 0

    def _make_root(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        candidate = self.base_dir / "pg"
        if len(str(candidate / "sock")) <= _MAX_SOCKET_DIR and self._pg_can_reach(self.base_dir):
            candidate.mkdir(exist_ok=True)
            self._root = candidate
        else:
            # pytest's tmp_path lives under a 0700 root-owned directory the postgres user
            # cannot traverse (and may be too long for a socket path): use our own.
            self._root = Path(tempfile.mkdtemp(prefix="sgpg-"))
            self._own_root = True
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self._root, pw.pw_uid, pw.pw_gid)
        os.chmod(self._root, 0o700)

    def _run_pg(self, argv: list[str], *, timeout: float = 120) -> None:
        r = subprocess.run(
            [*self._as_pg(), *argv],
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd="/",
            env=self._server_env(),
        )
        if r.returncode != 0:
            raise PostgresError(
                f"{Path(argv[0]).name} failed: {r.stderr.decode(errors='replace')[-600:]}"
            )

    @staticmethod
    def _server_env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return env

    # -- lifecycle -----------------------------------------------------------------------

    def _initdb(self) -> None:
        pwfile = self.root / "superuser.pw"
        # initdb needs a superuser password to set scram for host logins; nobody uses it
        # (the superuser logs in over the 0700 unix socket only).
        pwfile.write_text(secrets.token_urlsafe(24) + "\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run_pg(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_USER,
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ]
                + ([] if self.fsync else ["--no-sync"])
            )
        finally:
            pwfile.unlink(missing_ok=True)
        sock = self.socket_dir
        sock.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(sock, pw.pw_uid, pw.pw_gid)
        # Only loopback TCP with SCRAM, and the private socket for setup.
        hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        (self.data_dir / "pg_hba.conf").write_text(hba)
        conf: dict[str, str] = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{sock}'",
            "unix_socket_permissions": "0700",
            "max_connections": str(self.max_connections),
            "shared_buffers": f"'{self.shared_buffers}'",
            "password_encryption": "'scram-sha-256'",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
            "dynamic_shared_memory_type": "posix",
        }
        conf.update(self.settings)
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write("\n# sealgate test server\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            for p in (self.data_dir / "pg_hba.conf", self.data_dir / "postgresql.conf"):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def start(self, *, timeout: float = 60) -> PostgresServer:
        """Start the server (initialising the cluster on first use). A restart reuses the same
        port and data directory."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        first = self._root is None
        if first:
            self._make_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if not self.port:
            self.port = _free_port()
        log = self.log_file.open("ab")
        try:
            if os.geteuid() == 0:
                pw = pwd.getpwnam(PG_USER)
                os.chown(self.log_file, pw.pw_uid, pw.pw_gid)
            self.proc = subprocess.Popen(
                [
                    *self._as_pg(),
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                env=self._server_env(),
                # Its own process group: kill() reaches every backend with one killpg.
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
            if first or not self.passfile.exists():
                self._setup_role()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise PostgresError(f"postgres exited during start-up: {self._log_tail()}")
            r = subprocess.run(
                [
                    str(PG_BIN / "pg_isready"),
                    "-q",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    PG_USER,
                ],
                capture_output=True,
                timeout=10,
                check=False,
                env=self._server_env(),
            )
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise PostgresError(f"postgres not ready after {timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"

    def psql(self, sql: str, *, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the private unix socket (setup only). The SQL goes
        on stdin, not argv."""
        r = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                PG_USER,
                "-d",
                dbname,
            ],
            input=sql.encode(),
            capture_output=True,
            timeout=60,
            check=False,
            env=self._server_env(),
        )
        if r.returncode != 0:
            # The SQL itself is not echoed: setup SQL carries the role password.
            raise PostgresError(f"psql failed: {r.stderr.decode(errors='replace')[-400:]}")
        return r.stdout.decode()

    def _setup_role(self) -> None:
        # A literal, not a parameter: CREATE ROLE takes no bind parameters. token_urlsafe
        # gives [A-Za-z0-9_-] only, so no quoting issue.
        self.psql(
            f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
            f"CREATE ROLE {ROLE} LOGIN CREATEDB; END IF; END$$;\n"
            f"ALTER ROLE {ROLE} PASSWORD '{self._password}';\n"
        )
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            # hostname:port:database:username:password (libpq-pgpass)
            f.write(f"127.0.0.1:{self.port}:*:{ROLE}:{self._password}\n")
        os.chmod(self.passfile, 0o600)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._reap_group(proc.pid)
        self.proc = None

    def _reap_group(self, pgid: int, timeout: float = 10) -> None:
        """Wait until no process of the postmaster's group remains (a backend still attached
        to the old shared memory makes the next start refuse)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def stop(self, *, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint, exit); SIGKILL if it hangs."""
        self._signal(signal.SIGINT, timeout)

    def stop_fast(self, *, timeout: float = 30) -> None:
        self.stop(timeout=timeout)

    def stop_immediate(self, *, timeout: float = 30) -> None:
        """SIGQUIT: exit without a checkpoint (crash recovery on the next start)."""
        self._signal(signal.SIGQUIT, timeout)

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend (the host lost power)."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._reap_group(proc.pid)
        self.proc = None

    def restart(self, *, timeout: float = 60) -> PostgresServer:
        """Stop (fast) if running and start again on the same port and data directory."""
        self.stop()
        return self.start(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        """Stop and remove the cluster directory."""
        self.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self.passfile.unlink(missing_ok=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- clients -------------------------------------------------------------------------

    def url(self, dbname: str = "sealgate") -> str:
        """The libpq URI for ``dbname`` as role ``sealgate``; no password (see ``env()``)."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "sealgate") -> str:
        """The same over the server's unix socket (``trust``: only ``postgres`` and root can
        enter its 0700 directory), as a client on the database's own host connects."""
        return f"postgresql://{ROLE}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def env(self) -> dict[str, str]:
        """Environment additions for clients: ``PGPASSFILE`` naming the 0600 passfile."""
        return {"PGPASSFILE": str(self.passfile)}

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by ``sealgate``; returns its URL."""
        if not name_ok(name):
            raise ValueError(f"database name {name!r}: letters, digits, underscore only")
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE};")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        if not name_ok(name):
            raise ValueError(f"database name {name!r}: letters, digits, underscore only")
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")

    def backend_pids(self, dbname: str | None = None) -> list[int]:
        """Pids of client backends (for tests that terminate sessions)."""
        where = "backend_type = 'client backend' AND pid <> pg_backend_pid()"
        if dbname is not None:
            if not name_ok(dbname):
                raise ValueError(f"database name {dbname!r}")
            where += f" AND datname = '{dbname}'"
        # dbname checked by name_ok: letters, digits, underscore only.
        out = self.psql(f"SELECT pid FROM pg_stat_activity WHERE {where};")  # noqa: S608
        return [int(x) for x in out.split()]

    def terminate_backends(self, dbname: str) -> None:
        """pg_terminate_backend for every session on ``dbname`` (an admin kicking clients)."""
        if not name_ok(dbname):
            raise ValueError(f"database name {dbname!r}")
        # dbname checked by name_ok: letters, digits, underscore only.
        where = f"datname = '{dbname}' AND pid <> pg_backend_pid()"
        self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where};")  # noqa: S608


def name_ok(name: str) -> bool:
    return bool(name) and name[0].isalpha() and name.replace("_", "").isalnum() and len(name) < 64


__all__ = ["PostgresError", "PostgresServer", "available", "name_ok"]
