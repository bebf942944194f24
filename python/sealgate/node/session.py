"""The node session file: what ``sealgate node refetch`` needs to call ReleaseKey again.

``request-keys`` writes it (0600) next to ``token.jwt``. It holds the result token, its
expiry, the HPKE suite, the node id and the runtime private key the token is bound to
(``cnf.jkt``), so it is as sensitive as the model keys themselves. Loading fails closed:
a file another user could read, unknown or missing fields, or a key of the wrong length
are refused with a ``cli.node.session_*`` code. Messages never carry the token or the key.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from sealgate.documents import load_document
from sealgate.errors import SealgateError, UsageError
from sealgate.protocol.hpke import SUITES, RuntimeKeyPair

SESSION_FILE = "session.json"
FORMAT = "sealgate.node.session/1"
# A token is a few KB and the largest private key 96 B; anything far bigger is not ours.
MAX_SESSION_BYTES = 64 << 10

_FIELDS = {"format", "node_id", "suite", "token", "expires_at", "runtime_private_key"}


@dataclass(frozen=True)
class NodeSession:
    node_id: str
    token: str
    expires_at: int
    runtime: RuntimeKeyPair

    def dump(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "node_id": self.node_id,
                "suite": self.runtime.suite,
                "token": self.token,
                "expires_at": self.expires_at,
                "runtime_private_key": base64.b64encode(self.runtime.to_private_bytes()).decode(),
            },
            indent=2,
        ).encode()

    def check_unexpired(self, now: float | None = None) -> None:
        """The server refuses an expired token too; checking first saves the round trip."""
        now = time.time() if now is None else now
        if now >= self.expires_at:
            raise SealgateError(
                "cli.node.session_expired",
                f"the session's token expired at {self.expires_at} (now {int(now)}); "
                "run request-keys again",
            )


def _malformed(path: Path, why: str) -> UsageError:
    return UsageError("cli.node.session_malformed", f"session file {str(path)!r}: {why}")


def parse_session(path: Path, data: bytes) -> NodeSession:
    """Session bytes → NodeSession; every field is required and nothing else is allowed."""
    doc = load_document(
        data,
        code="cli.node.session_malformed",
        what=f"session file {str(path)!r}",
        yaml_ok=False,
        max_bytes=MAX_SESSION_BYTES,
    )
    if not isinstance(doc, dict):
        raise _malformed(path, "not a JSON object")
    if set(doc) != _FIELDS:
        missing, extra = sorted(_FIELDS - set(doc)), sorted(set(doc) - _FIELDS)
        raise _malformed(path, f"missing fields {missing}, unknown fields {extra}")
    if doc["format"] != FORMAT:
        raise _malformed(path, f"format is {str(doc['format'])[:40]!r}, expected {FORMAT!r}")
    if not isinstance(doc["suite"], str) or doc["suite"] not in SUITES:
        raise _malformed(path, f"suite {str(doc['suite'])[:40]!r} is not one of {list(SUITES)}")
    for name in ("node_id", "token", "runtime_private_key"):
        if not isinstance(doc[name], str) or not doc[name]:
            raise _malformed(path, f"{name} must be a non-empty string")
    exp = doc["expires_at"]
    if not isinstance(exp, int) or isinstance(exp, bool) or exp <= 0:
        raise _malformed(path, "expires_at must be a positive integer (Unix seconds)")
    try:
        raw = base64.b64decode(doc["runtime_private_key"], validate=True)
        runtime = RuntimeKeyPair.from_private_bytes(doc["suite"], raw)
    except (ValueError, UsageError):  # binascii.Error, and non-ASCII text (a ValueError)
        raise _malformed(path, f"runtime_private_key is not a {doc['suite']} key") from None
    return NodeSession(doc["node_id"], doc["token"], exp, runtime)


def read_session(path: Path) -> NodeSession:
    """Read a session file (or ``DIR/session.json``), refusing one readable by others.

    The mode is checked on the open descriptor, so the file checked is the file read;
    O_NONBLOCK keeps a FIFO in its place from hanging the open."""
    if path.is_dir():
        path = path / SESSION_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(
            "cli.node.session_missing", f"cannot read session file {str(path)!r}: {e.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError("cli.node.session_missing", f"{str(path)!r} is not a regular file")
        if st.st_mode & 0o077:
            raise UsageError(
                "cli.node.session_mode",
                f"session file {str(path)!r} has mode 0{st.st_mode & 0o777:o}; it holds a "
                "private key and must not be accessible to others (chmod 600)",
            )
        data = f.read(MAX_SESSION_BYTES + 1)
    if len(data) > MAX_SESSION_BYTES:
        raise UsageError(
            "cli.node.session_too_large",
            f"session file {str(path)!r} exceeds {MAX_SESSION_BYTES} B",
        )
    return parse_session(path, data)
