"""Key-encryption keys: the provider interface and the local key file provider.

Model keys and token signing keys are stored wrapped with AES-256-GCM under a KEK
(docs/threat-model.md, stolen database). The provider owns the KEK; the first one is a
local file created 0600 on first start; a PKCS#11 provider implements the same interface
later.

The provider also holds the audit log's keys, which must not be in the database an attacker
of the log can write: the MAC key of audit entries and the Ed25519 key that signs audit
checkpoints (``broker.checkpoint``). The file provider derives both from the KEK with HKDF
(RFC 5869) under labels of their own, so there is no second secret to back up and lose,
and neither derived key reveals the KEK or the other; a PKCS#11 provider keeps them as
token objects (CKM_SHA256_HMAC, CKM_EDDSA) instead.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealgate.broker.checkpoint import CheckpointSigner
from sealgate.errors import SealgateError

KEK_SIZE = 32
_NONCE_SIZE = 12
#: HKDF info labels of the keys derived from a file KEK (distinct, versioned).
_AUDIT_MAC_LABEL = b"sealgate/v1 audit entry hmac-sha256"
_CHECKPOINT_LABEL = b"sealgate/v1 audit checkpoint ed25519"


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

    @abc.abstractmethod
    def audit_mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 (RFC 2104) of ``data`` under the audit entry key."""

    @abc.abstractmethod
    def checkpoint_signer(self) -> CheckpointSigner:
        """The Ed25519 key that signs audit checkpoints."""


class Ed25519Signer(CheckpointSigner):
    """A checkpoint signer over an Ed25519 private key held in memory."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def public_key(self) -> bytes:
        return self._pub

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _derive(kek: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(kek)


class LocalKeyFileProvider(KekProvider):
    """A 32-byte AES-256-GCM KEK in a file, created with mode 0600 if absent.

    A file readable by group or others is refused: a KEK others can read protects nothing.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self._path = Path(path)
        self._key = self._load_or_create(create)
        self._aead = AESGCM(self._key)
        # Identifies the KEK in stored records without revealing it.
        self._id = "file:" + hashlib.sha256(b"sealgate kek id" + self._key).hexdigest()[:16]
        # Keyed once; each MAC copies it (saves re-keying on every audit append).
        self._mac = hmac.new(_derive(self._key, _AUDIT_MAC_LABEL), digestmod=hashlib.sha256)
        self._signer = Ed25519Signer(
            Ed25519PrivateKey.from_private_bytes(_derive(self._key, _CHECKPOINT_LABEL))
        )

    def _load_or_create(self, create: bool) -> bytes:
        if not create and not self._path.exists():
            # Offline tools read a data directory; they never invent a KEK for it.
            raise KekError("broker.kek.missing", f"no KEK file at {self._path}")
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

    def audit_mac(self, data: bytes) -> bytes:
        h = self._mac.copy()
        h.update(data)
        return h.digest()

    def checkpoint_signer(self) -> CheckpointSigner:
        return self._signer
