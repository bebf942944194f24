"""Signed checkpoints of the audit chain's head, in the C2SP signed-note shape.

The hash chain (``broker.audit``) shows an edited, reordered or deleted entry *inside* the
log, but not one cut off its end, a log emptied, or a log rewritten from some entry on with
every later hash recomputed: all of those are again a valid chain. A checkpoint anchors the
head with a key that is not in the database (the KEK provider's checkpoint signer): "the
log had ``size`` entries and the last one chained to ``root``". A verifier then requires the
chain to hold that hash at that sequence number.

Format: a C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) as a C2SP signed note
(https://c2sp.org/signed-note) with an Ed25519 signature (RFC 8032)::

    <origin>
    <tree size, decimal>
    <root hash, base64>

    — <key name> <base64(key hash (4 bytes) ‖ signature (64 bytes))>

The tree size is the sequence number of the last entry (entries are numbered from 1, so it
is the number of entries); the "root hash" is, for now, that entry's chain link
SHA-256(prev ‖ entry). The key name is the origin and the key hash is the first 4 bytes of
SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key); the public key is published as a signed-note
verifier key ``<name>+<key hash hex>+<base64(0x01 ‖ public key)>``, so Go's
``golang.org/x/mod/sumdb/note`` and the witnesses built on it read both. When the log grows
into an RFC 9162 Merkle tree (inclusion and consistency proofs), the third line becomes the
Merkle tree head and the origin changes (``<verifier id>/audit-tlog``): checkpoints of the
chain and of the tree can never be mistaken for each other.
"""

from __future__ import annotations

import abc
import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealgate.errors import SealgateError
from sealgate.storage import Storage

log = logging.getLogger("sealgate.service")

#: Chain link size (SHA-256) and the link before the first entry (``rust/verify/src/audit.rs``).
HASH_SIZE = 32
GENESIS = bytes(HASH_SIZE)
#: signed-note signature type for Ed25519 (C2SP signed-note "Signature types").
_ALG_ED25519 = 0x01
#: A checkpoint is three short lines and a few signatures; anything larger is not one of
#: ours (bounded reading of files an attacker may have replaced).
MAX_NOTE_BYTES = 16 * 1024
#: The Go reference implementation refuses notes with more than 100 signatures; so do we.
_MAX_SIGNATURES = 100
#: Checkpoints kept besides ``latest`` (newest first); older ones are deleted.
HISTORY = 64
_NAME_OK = re.compile(r"^[^\s+]+$")
_EM_DASH = "\u2014"


class CheckpointError(SealgateError):
    """A checkpoint or verifier key that is missing, malformed or does not verify."""


class CheckpointSigner(abc.ABC):
    """Signs checkpoints; the KEK provider hands one out (a PKCS#11 provider signs in the
    token). Only the raw Ed25519 public key and signatures cross this interface."""

    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key (RFC 8032 §5.1.5)."""

    @abc.abstractmethod
    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        """The note text that is signed (tlog-checkpoint lines 1 to 3, each ending in LF)."""
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\n".encode()


@dataclass(frozen=True)
class NoteVerifier:
    """A signed-note verifier key: name and Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key)

    def encode(self) -> str:
        """``<name>+<key hash hex>+<base64(0x01 ‖ key)>`` (signed-note verifier key)."""
        material = base64.b64encode(bytes([_ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{material}"


def log_origin(verifier_id: str) -> str:
    """The checkpoint origin (and key name) of this verifier's audit chain.

    A key name may hold neither whitespace nor ``+`` (signed-note "Signatures"); other
    characters of the verifier id outside a conservative set become ``-``.
    """
    safe = re.sub(r"[^A-Za-z0-9._:/-]", "-", verifier_id)[:120] or "sealgate"
    return f"{safe}/audit"


def key_hash(name: str, public_key: bytes) -> bytes:
    """signed-note key ID: SHA-256(key name ‖ 0x0A ‖ signature type ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ALG_ED25519]) + public_key).digest()[:4]


def _bad(message: str) -> CheckpointError:
    return CheckpointError("audit.checkpoint.malformed", message)


def parse_verifier_key(text: str) -> NoteVerifier:
    """Parse a verifier key as published on ``/audit/checkpoint-key``."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not _NAME_OK.match(parts[0]):
        raise CheckpointError(
            "audit.checkpoint.bad_key", "verifier key is not <name>+<hash>+<base64 key>"
        )
    name, hash_hex, material = parts
    try:
        raw = base64.b64decode(material, validate=True)
        want = bytes.fromhex(hash_hex)
    except (binascii.Error, ValueError):
        raise CheckpointError("audit.checkpoint.bad_key", "verifier key encoding") from None
    if len(raw) != 1 + 32 or raw[0] != _ALG_ED25519 or len(hash_hex) != 8:
        raise CheckpointError("audit.checkpoint.bad_key", "not an Ed25519 verifier key")
    v = NoteVerifier(name, raw[1:])
    if v.key_hash != want:
        raise CheckpointError("audit.checkpoint.bad_key", "verifier key hash does not match")
    return v


def sign_note(text: bytes, name: str, signer: CheckpointSigner) -> bytes:
    """A signed note: ``text`` (ending in LF), a blank line, one signature line by ``name``."""
    if not text.endswith(b"\n") or not _NAME_OK.match(name):
        raise ValueError("note text must end with a newline; key names have no space or +")
    blob = base64.b64encode(key_hash(name, signer.public_key()) + signer.sign(text)).decode()
    return text + f"\n{_EM_DASH} {name} {blob}\n".encode()


def open_note(note: bytes, verifier: NoteVerifier) -> str:
    """The text of a signed note that carries a valid signature by ``verifier``.

    Signatures by other keys are ignored, as signed-note requires; one by ``verifier`` must
    be there and verify. Checked before anything in the text is interpreted.
    """
    if len(note) > MAX_NOTE_BYTES:
        raise _bad(f"checkpoint exceeds {MAX_NOTE_BYTES} bytes")
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("checkpoint is not UTF-8") from None
    # signed-note: no control characters but newline; text and signatures split at the
    # last blank line; the note ends with a newline.
    if any(ord(c) < 0x20 and c != "\n" for c in text) or not text.endswith("\n"):
        raise _bad("checkpoint has control characters or no final newline")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise _bad("checkpoint has no signature block")
    body, sigs = text[: cut + 1], text[cut + 2 :]
    sig_lines = sigs[:-1].split("\n")
    if len(sig_lines) > _MAX_SIGNATURES:
        raise _bad(f"more than {_MAX_SIGNATURES} signatures")
    parsed: list[tuple[str, bytes]] = []
    for line in sig_lines:  # every line well-formed, known key or not
        m = re.fullmatch(_EM_DASH + r" ([^\s+]+) (\S+)", line)
        if m is None:
            raise _bad("malformed signature line")
        try:
            blob = base64.b64decode(m.group(2), validate=True)
        except binascii.Error:
            raise _bad("signature is not base64") from None
        if len(blob) < 4:
            raise _bad("signature shorter than its key hash")
        parsed.append((m.group(1), blob))
    public = Ed25519PublicKey.from_public_bytes(verifier.public_key)
    for name, blob in parsed:
        if name != verifier.name or blob[:4] != verifier.key_hash:
            continue
        try:
            if len(blob) != 4 + 64:
                raise InvalidSignature
            public.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise CheckpointError(
                "audit.checkpoint.bad_signature",
                f"checkpoint signature by {verifier.name} does not verify",
            ) from None
        return body
    raise CheckpointError(
        "audit.checkpoint.bad_signature",
        f"checkpoint carries no signature by {verifier.name}+{verifier.key_hash.hex()}",
    )


def parse_checkpoint(text: str) -> Checkpoint:
    """The tlog-checkpoint lines of a note's text (extension lines after the third are
    allowed and ignored, as c2sp.org/tlog-checkpoint says)."""
    lines = text[:-1].split("\n") if text.endswith("\n") else []
    if len(lines) < 3 or any(not line for line in lines):
        raise _bad("checkpoint needs origin, size and root hash lines")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", size_s):
        raise _bad("tree size is not a decimal number")
    try:
        root = base64.b64decode(root_s, validate=True)
    except binascii.Error:
        raise _bad("root hash is not base64") from None
    if len(root) != HASH_SIZE:
        raise _bad(f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
    return Checkpoint(origin, int(size_s), root)


def sign_checkpoint(cp: Checkpoint, signer: CheckpointSigner) -> bytes:
    """The checkpoint as a note signed by the key named after its origin."""
    return sign_note(cp.body(), cp.origin, signer)


def open_checkpoint(note: bytes, verifier: NoteVerifier) -> Checkpoint:
    """A checkpoint signed by ``verifier``, whose name must be the checkpoint's origin."""
    cp = parse_checkpoint(open_note(note, verifier))
    if cp.origin != verifier.name:
        raise CheckpointError(
            "audit.checkpoint.bad_signature",
            f"checkpoint origin {cp.origin[:64]!r} is not the key's log {verifier.name!r}",
        )
    return cp


class CheckpointStore:
    """Checkpoints on disk, outside the database: ``latest`` plus the newest ``HISTORY``
    earlier ones (``<size>.checkpoint``), each 0600 and replaced atomically (write a temp
    file, fsync, rename(2)). Writers in several processes serialize on an flock; ``latest``
    never moves to a smaller tree size."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def latest_path(self) -> Path:
        return self.dir / "latest"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the lock

    def _write_file(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            data = f.read(MAX_NOTE_BYTES + 1)
        if len(data) > MAX_NOTE_BYTES:
            raise _bad(f"{path.name} exceeds {MAX_NOTE_BYTES} bytes")
        return data

    def latest(self) -> bytes | None:
        try:
            return self.read(self.latest_path)
        except FileNotFoundError:
            return None

    def all(self) -> list[tuple[str, bytes]]:
        """(file name, note) of ``latest`` and every kept earlier checkpoint."""
        out: list[tuple[str, bytes]] = []
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".checkpoint"))
        except FileNotFoundError:
            return out
        latest = self.latest()
        if latest is not None:
            out.append(("latest", latest))
        for name in names[-HISTORY - 1 :]:
            with contextlib.suppress(FileNotFoundError):
                out.append((name, self.read(self.dir / name)))
        return out

    def publish(self, cp: Checkpoint, note: bytes, verifier: NoteVerifier) -> bool:
        """Make ``note`` (for ``cp``) the latest unless a larger one is there already."""
        with self._locked():
            cur = self.latest()
            if cur is not None:
                with contextlib.suppress(CheckpointError):
                    if open_checkpoint(cur, verifier).size >= cp.size:
                        return False
            self._write_file(self.dir / f"{cp.size:020d}.checkpoint", note)
            self._write_file(self.latest_path, note)
            kept = sorted(n for n in os.listdir(self.dir) if n.endswith(".checkpoint"))
            for old in kept[:-HISTORY]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir / old)
        return True


class Checkpointer:
    """Signs the chain's head now and then (``run_once``), after checking that the head
    still extends the last checkpoint: a log cut below, or rewritten before, what was
    already anchored is never signed again (the refusal is logged with its code and kept
    in ``refused``; ``audit verify`` names the break)."""

    def __init__(
        self, storage: Storage, signer: CheckpointSigner, store: CheckpointStore, origin: str
    ) -> None:
        """``origin``: the log's name (``log_origin``) unless ``store`` already has one."""
        self.st = storage
        self.signer = signer
        self.store = store
        # A log keeps the origin of its first checkpoint (the key name is part of the key
        # hash, so a changed verifier id must not orphan the checkpoints already given out).
        with contextlib.suppress(OSError, CheckpointError):
            first = (self.store.latest() or b"").split(b"\n", 1)[0].decode()
            if first and _NAME_OK.match(first):
                origin = first
        self.origin = origin
        self.verifier = NoteVerifier(origin, signer.public_key())
        self.refused = ""
        self._seen: tuple[int, bytes] | None = None
        self._lock = threading.Lock()

    def run_once(self) -> Checkpoint | None:
        """Sign and publish the current head if it moved; the new checkpoint, or None."""
        with self._lock:
            size, root = self.st.audit_head()
            if self._seen == (size, root):
                return None
            last_note = self.store.latest()
            if last_note is not None:
                try:
                    last = open_checkpoint(last_note, self.verifier)
                except CheckpointError as e:
                    return self._refuse(e.code, "the latest checkpoint does not verify")
                if last.size > size:
                    return self._refuse(
                        "audit.chain.truncated" if size else "audit.chain.empty",
                        f"the log has {size} entries, the last checkpoint {last.size}",
                    )
                if last.size == size and last.root == root:
                    self._seen = (size, root)
                    return None
                at = self.st.audit_hash_at(last.size) if last.size else GENESIS
                if at != last.root:
                    return self._refuse(
                        "audit.chain.head_mismatch",
                        f"entry {last.size} no longer has the checkpointed hash",
                    )
            cp = Checkpoint(self.origin, size, root)
            self.store.publish(cp, sign_checkpoint(cp, self.signer), self.verifier)
            self._seen = (size, root)
            self.refused = ""
            return cp

    def _refuse(self, code: str, why: str) -> Checkpoint | None:
        if self.refused != code:
            log.error("audit checkpoint not written (%s): %s", code, why)
        self.refused = code
        return None
