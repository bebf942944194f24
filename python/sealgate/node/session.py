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
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter
from pydantic_core import PydanticCustomError

from sealgate.documents import STRICT, load_document, validate
from sealgate.errors import SealgateError, UsageError
from sealgate.protocol.hpke import SUITES, RuntimeKeyPair

SESSION_FILE = "session.json"
FORMAT = "sealgate.node.session/1"
# A token is a few KB and the largest private key 96 B; anything far bigger is not ours.
MAX_SESSION_BYTES = 64 << 10


def _one_of(*allowed: str) -> AfterValidator:
    def check(v: str) -> str:
        if v not in allowed:
            # The allowed values only: a session file's values may be secret.
            raise PydanticCustomError("one_of", "must be one of {allowed}", {"allowed": allowed})
        return v

    return AfterValidator(check)


class _SessionDoc(BaseModel):
    """Every field is required and nothing else is allowed."""

    model_config = STRICT
    format: Annotated[str, _one_of(FORMAT)]
    node_id: Annotated[str, Field(min_length=1)]
    suite: Annotated[str, _one_of(*SUITES)]
    token: Annotated[str, Field(min_length=1)]
    #: Unix seconds.
    expires_at: Annotated[int, Field(gt=0)]
    #: Base64 of the suite's private key (checked after the schema, per suite).
    runtime_private_key: Annotated[str, Field(min_length=1)]


_SESSION = TypeAdapter(_SessionDoc)
_FIELDS = set(_SessionDoc.model_fields)


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
    d = validate(
        _SESSION, doc, code="cli.node.session_malformed", what=f"session file {str(path)!r}"
    )
    try:
        raw = base64.b64decode(d.runtime_private_key, validate=True)
        runtime = RuntimeKeyPair.from_private_bytes(d.suite, raw)
    except (ValueError, UsageError):  # binascii.Error, and non-ASCII text (a ValueError)
        raise _malformed(path, f"runtime_private_key is not a {d.suite} key") from None
    return NodeSession(d.node_id, d.token, d.expires_at, runtime)


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
