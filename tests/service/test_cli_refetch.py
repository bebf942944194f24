"""``sealgate node request-keys`` saves a session; ``sealgate node refetch`` uses it.

The CLI runs in-process (``sealgate.cli.main``) against a live loopback server; the TPM is
``SoftwareTpm`` standing in for tpm2-tools, except in the last test, which drives a real
swtpm through the ``sealgate`` binary.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sealgate._proto import admin_pb2
from sealgate.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main
from sealgate.errors import UsageError
from sealgate.node.session import FORMAT, MAX_SESSION_BYTES, read_session
from sealgate.protocol.hpke import MLKEM768_X25519, X25519, RuntimeKeyPair
from sealgate.testing.softnode import SoftwareTpm
from sealgate.testing.swtpm import Swtpm, tools_available

from tests.service.conftest import TPM_POLICY, Env

KEY = b"K" * 32


class Cli:
    """Runs ``sealgate`` in-process against ``env``."""

    def __init__(self, env: Env, cap: pytest.CaptureFixture[bytes]) -> None:
        self.addr = f"127.0.0.1:{env.server.port}"
        self.cap = cap

    def __call__(self, *argv: str) -> tuple[int, bytes, str]:
        """(exit code, stdout bytes, stderr text)."""
        self.cap.readouterr()
        rc = main([*argv[:2], "--server", self.addr, *argv[2:]])
        out, err = self.cap.readouterr()
        return rc, out, err.decode()

    def request_keys(self, out: Path, *keys: str, suite: str = X25519) -> tuple[int, bytes, str]:
        ids = [a for k in keys for a in ("--key-id", k)]
        flags = f"--platform tpm --node-id n1 --suite {suite}".split()
        return self("node", "request-keys", *flags, "--out", str(out), *ids)

    def refetch(
        self, session: Path, out: str, *keys: str, as_json: bool = False
    ) -> tuple[int, bytes, str]:
        ids = [a for k in keys for a in ("--key-id", k)]
        flags = ["--json"] if as_json else []
        return self("node", "refetch", "--session", str(session), "--out", out, *ids, *flags)


@pytest.fixture
def cli_for(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> Callable[[Env], Cli]:
    def make(env: Env) -> Cli:
        tpm = SoftwareTpm(env.ca)
        monkeypatch.setattr("sealgate.node.tpm.Tpm2ToolsCollector", lambda **_kw: tpm)
        env.golden(tpm)
        env.key("llama", KEY)
        env.policy("llama", TPM_POLICY)
        env.key("secret", b"S" * 32)  # no policy: never granted
        return Cli(env, capsysbinary)

    return make


@pytest.fixture
def cli(env: Env, cli_for: Callable[[Env], Cli]) -> Cli:
    return cli_for(env)


def _session_doc(d: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((d / "session.json").read_bytes())
    return doc


def _write_session(path: Path, doc: object, mode: int = 0o600) -> None:
    """``doc`` as JSON, or as it is when it is already bytes or text."""
    if isinstance(doc, str):
        doc = doc.encode()
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    os.chmod(path, mode)


def _assert_no_secrets(text: str | bytes, doc: dict[str, Any]) -> None:
    blob = text.encode() if isinstance(text, str) else text
    assert doc["token"].encode() not in blob
    assert doc["runtime_private_key"].encode() not in blob


@pytest.mark.parametrize("suite", [X25519, MLKEM768_X25519])
def test_request_keys_then_refetch_gives_the_same_key(cli: Cli, tmp_path: Path, suite: str) -> None:
    first = tmp_path / "first"
    rc, out, err = cli.request_keys(first, "llama", suite=suite)
    assert rc == EXIT_OK, err
    assert (first / "llama@1.key").read_bytes() == KEY
    token = (first / "token.jwt").read_text()
    doc = _session_doc(first)
    assert (first / "session.json").stat().st_mode & 0o777 == 0o600
    assert set(doc) == {"format", "node_id", "suite", "token", "expires_at", "runtime_private_key"}
    assert (doc["format"], doc["node_id"], doc["suite"]) == (FORMAT, "n1", suite)
    assert doc["token"] == token and doc["expires_at"] > time.time()
    assert len(base64.b64decode(doc["runtime_private_key"])) == (32 if suite == X25519 else 96)
    _assert_no_secrets(out + err.encode(), doc)

    # The session directory or the file itself; into another directory, with --json.
    again = tmp_path / "again"
    rc, out, err = cli.refetch(first / "session.json", str(again), "llama", as_json=True)
    assert rc == EXIT_OK, err
    summary = json.loads(out)
    assert summary["granted"] == {"llama": 1} and summary["denied"] == {}
    assert summary["token_expires_at"] == doc["expires_at"]
    for name in ("llama@1.key", "llama.key"):
        assert (again / name).read_bytes() == KEY
        assert (again / name).stat().st_mode & 0o777 == 0o600
    assert not (again / "session.json").exists() and not (again / "token.jwt").exists()
    _assert_no_secrets(out + err.encode(), doc)

    rc, out, err = cli.refetch(first, "-", "llama")
    assert (rc, out) == (EXIT_OK, KEY), err
    assert "granted llama (version 1)" in err
    _assert_no_secrets(err, doc)


def test_refetch_of_an_ungranted_key_is_denied(cli: Cli, tmp_path: Path) -> None:
    assert cli.request_keys(tmp_path / "s", "llama")[0] == EXIT_OK
    rc, out, err = cli.refetch(tmp_path / "s", str(tmp_path / "o"), "llama", "secret")
    assert rc == EXIT_REJECTED, err
    text = out.decode()
    assert "granted llama (version 1)" in text
    assert "denied  secret: policy.key.no_policy" in text
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["llama.key", "llama@1.key"]


def test_expired_token_is_refused_locally_and_by_the_server(
    make_env: Callable[..., Env], cli_for: Callable[[Env], Cli], tmp_path: Path
) -> None:
    cli = cli_for(make_env(token_ttl=1))
    s = tmp_path / "s"
    assert cli.request_keys(s, "llama")[0] == EXIT_OK
    time.sleep(2.1)
    rc, _, err = cli.refetch(s, str(tmp_path / "o"), "llama")
    assert rc == EXIT_REJECTED and "cli.node.session_expired" in err
    # A session claiming a later expiry gets past the local check; the server still refuses.
    doc = _session_doc(s)
    _write_session(s / "session.json", {**doc, "expires_at": int(time.time()) + 3600})
    rc, _, err = cli.refetch(s, str(tmp_path / "o"), "llama")
    assert rc == EXIT_REJECTED and "broker.token.expired" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("suite", [X25519, MLKEM768_X25519])
def test_session_with_another_runtime_key_is_refused(cli: Cli, tmp_path: Path, suite: str) -> None:
    s = tmp_path / "s"
    assert cli.request_keys(s, "llama", suite=suite)[0] == EXIT_OK
    doc = _session_doc(s)
    other = RuntimeKeyPair.generate(suite).to_private_bytes()
    _write_session(
        s / "session.json", {**doc, "runtime_private_key": base64.b64encode(other).decode()}
    )
    rc, _, err = cli.refetch(s, str(tmp_path / "o"), "llama")
    assert rc == EXIT_REJECTED and "broker.token.key_mismatch" in err
    assert not (tmp_path / "o").exists()


def test_session_readable_by_others_is_refused(cli: Cli, tmp_path: Path) -> None:
    s = tmp_path / "s"
    assert cli.request_keys(s, "llama")[0] == EXIT_OK
    os.chmod(s / "session.json", 0o644)
    rc, _, err = cli.refetch(s, str(tmp_path / "o"), "llama")
    assert rc == EXIT_USAGE and "mode 0644" in err
    with pytest.raises(UsageError) as e:
        read_session(s)
    assert e.value.code == "cli.node.session_mode"
    assert not (tmp_path / "o").exists()


_GOOD_KEY = base64.b64encode(bytes(range(32))).decode()
_GOOD = {
    "format": FORMAT,
    "node_id": "n1",
    "suite": X25519,
    "token": "a.b.c",
    "expires_at": 4102444800,
    "runtime_private_key": _GOOD_KEY,
}
_MALFORMED = "cli.node.session_malformed"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("{not json", _MALFORMED),
        ("[]", _MALFORMED),
        (b"\xff\xfe{}", _MALFORMED),
        ({k: v for k, v in _GOOD.items() if k != "token"}, _MALFORMED),
        ({**_GOOD, "extra": 1}, _MALFORMED),
        ({**_GOOD, "format": "sealgate.node.session/2"}, _MALFORMED),
        ({**_GOOD, "suite": "p256"}, _MALFORMED),
        ({**_GOOD, "token": ""}, _MALFORMED),
        ({**_GOOD, "node_id": 7}, _MALFORMED),
        ({**_GOOD, "expires_at": "4102444800"}, _MALFORMED),
        ({**_GOOD, "expires_at": True}, _MALFORMED),
        ({**_GOOD, "runtime_private_key": "not base64!"}, _MALFORMED),
        ({**_GOOD, "runtime_private_key": base64.b64encode(bytes(31)).decode()}, _MALFORMED),
        ({**_GOOD, "suite": MLKEM768_X25519}, _MALFORMED),  # a 32-byte key for the hybrid
        ("x" * (MAX_SESSION_BYTES + 1), "cli.node.session_too_large"),
        (None, "cli.node.session_missing"),
    ],
)
def test_malformed_session_is_refused_with_its_code(
    cli: Cli, tmp_path: Path, content: object, code: str
) -> None:
    path = tmp_path / "session.json"
    if content is not None:
        _write_session(path, content)
    with pytest.raises(UsageError) as e:
        read_session(tmp_path)
    assert e.value.code == code
    assert "a.b.c" not in e.value.message and _GOOD_KEY not in e.value.message
    rc, out, _ = cli.refetch(tmp_path, str(tmp_path / "o"), "llama")
    assert (rc, out) == (EXIT_USAGE, b"")
    assert not (tmp_path / "o").exists()


def test_the_well_formed_table_row_loads(tmp_path: Path) -> None:
    """The malformed rows above each break one thing in a session that does load."""
    _write_session(tmp_path / "session.json", _GOOD)
    s = read_session(tmp_path)
    assert (s.node_id, s.token, s.expires_at, s.runtime.suite) == (
        "n1",
        "a.b.c",
        4102444800,
        X25519,
    )


@pytest.mark.swtpm
def test_swtpm_node_request_keys_then_refetch_via_the_binary(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed")
    ca = tmp_path / "ca"
    tpm = Swtpm(tmp_path / "tpm", ca_dir=ca)
    tpm.start()
    try:
        env = make_env(
            ek_ca_roots=[ca / "swtpm-localca-rootca-cert.pem"],
            ek_ca_intermediates=[ca / "issuercert.pem"],
        )
        values = {f"sha256:{i}": "00" * 32 for i in range(8)}  # a fresh swtpm, no log
        env.admin.BulkAddReferenceValues(
            admin_pb2.BulkAddReferenceValuesRequest(
                document=json.dumps({"platform": "tpm", "set_name": "golden", "values": values})
            ),
            metadata=env.md,
        )
        env.key("llama", KEY)
        env.policy("llama", TPM_POLICY)
        binary = str(Path(sys.executable).parent / "sealgate")
        addr = f"127.0.0.1:{env.server.port}"

        def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [binary, "node", *argv, "--server", addr],
                capture_output=True,
                timeout=120,
                check=False,
            )

        keys = tmp_path / "keys"
        state = tmp_path / "state"
        r = run(*"request-keys --platform tpm --node-id sw --key-id llama".split(),
                "--tcti", tpm.tcti, "--state", str(state), "--out", str(keys))  # fmt: skip
        assert r.returncode == EXIT_OK, r.stderr
        assert (keys / "session.json").stat().st_mode & 0o777 == 0o600
        tpm.stop()  # refetch needs no TPM
        r = run("refetch", "--session", str(keys), "--key-id", "llama", "--out", "-")
        assert (r.returncode, r.stdout) == (EXIT_OK, KEY), r.stderr
    finally:
        tpm.stop()
