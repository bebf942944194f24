"""Key-encryption keys: the provider interface and the local key file provider.

Model keys and token signing keys are stored wrapped with AES-256-GCM under a KEK (issue #5
§4). The provider owns the KEK; the first one is a local file created 0600 on first start;
a PKCS#11 provider implements the same interface later.
"""

from __future__ import annotations

import abc
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealgate.errors import SealgateError

KEK_SIZE = 32
_NONCE_SIZE = 12


class KekError(SealgateError):
    """The KEK is unavailable, has unsafe permissions, or a wrapped blob does not open."""


class KekProvider(abc.ABC):
    """Wraps and unwraps secrets; AAD binds each blob to what it is (key id, version)."""

    @property
    @abc.abstractmethod
    def kek_id(self) -> str: ...

    @abc.abstractmethod
    def wrap(self, plaintext: bytes, aad: bytes) -> bytes: ...

    @abc.abstractmethod
    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...


class LocalKeyFileProvider(KekProvider):
    """A 32-byte AES-256-GCM KEK in a file, created with mode 0600 if absent.

    A file readable by group or others is refused: a KEK others can read protects nothing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._key = self._load_or_create()
        self._aead = AESGCM(self._key)
        # Identifies the KEK in stored records without revealing it.
        self._id = "file:" + hashlib.sha256(b"sealgate kek id" + self._key).hexdigest()[:16]

    def _load_or_create(self) -> bytes:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEK_SIZE))
        st = self._path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KekError(
                "broker.kek.unsafe_permissions",
                f"KEK file {self._path} is accessible by group/others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it",
            )
        data = self._path.read_bytes()
        if len(data) != KEK_SIZE:
            raise KekError(
                "broker.kek.bad_size", f"KEK file holds {len(data)} bytes, expected {KEK_SIZE}"
            )
        return data

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < _NONCE_SIZE + 16:
            raise KekError("broker.kek.unwrap_failed", "wrapped blob too short")
        try:
            return self._aead.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], aad)
        except InvalidTag:
            raise KekError(
                "broker.kek.unwrap_failed", "wrapped blob does not open under this KEK"
            ) from None
