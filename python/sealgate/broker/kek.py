"""Key-encryption keys: the provider interface, the local key file provider and the ring.

Model keys, token signing keys and the service's own secrets (``broker.auditkeys``) are
stored wrapped under a KEK (docs/threat-model.md, stolen database; docs/kek.md). A provider
owns one KEK and does three things with it: wrap, unwrap, and name it (``kek_id``, stored
next to every blob so the blob goes back to the KEK that made it). Two providers:

- ``LocalKeyFileProvider`` (``file:///PATH``): 32 random bytes in a 0600 file, created on
  first start; AES-256-GCM in this process.
- ``Pkcs11Provider`` (``pkcs11:…``, ``broker.pkcs11``): a non-extractable AES-256 key in a
  PKCS#11 token; CKM_AES_GCM inside the token.

A ``KekRing`` holds the configured KEK (``kek:``, the primary, which wraps everything new)
and the previous ones (``kek_previous:``, unwrap only) while ``sealgate kek rotate`` moves
the blobs from one to the other. A ``kek_id`` read from the database only ever selects a
provider the operator configured; it never names a module to load or a file to open.
"""

from __future__ import annotations

import abc
import hashlib
import os
import stat
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealgate.errors import SealgateError

KEK_SIZE = 32
_NONCE_SIZE = 12
#: HKDF (RFC 5869) info labels of the audit keys a file KEK derived before those keys were
#: stored secrets; ``broker.auditkeys`` uses them for the initial values under a file KEK,
#: so the MACs and checkpoints of existing deployments keep verifying.
AUDIT_MAC_LABEL = b"sealgate/v1 audit entry hmac-sha256"
CHECKPOINT_LABEL = b"sealgate/v1 audit checkpoint ed25519"


class KekError(SealgateError):
    """The KEK is unavailable, misconfigured, or a wrapped blob does not open."""


class KekProvider(abc.ABC):
    """Wraps and unwraps secrets under one KEK; AAD binds each blob to what it is."""

    @property
    @abc.abstractmethod
    def kek_id(self) -> str:
        """A stable, non-secret name of the KEK, stored with every blob it wraps."""

    @abc.abstractmethod
    def wrap(self, plaintext: bytes, aad: bytes) -> bytes: ...

    @abc.abstractmethod
    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...

    def close(self) -> None:  # noqa: B027 (a no-op is the right default)
        """Release what the provider holds (token sessions); it is unusable afterwards."""


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

    @property
    def path(self) -> Path:
        return self._path

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

    def derive(self, label: bytes) -> bytes:
        """HKDF-SHA256 of the KEK under ``label`` (32 bytes): the audit keys a file KEK
        deployment had before they were stored (``AUDIT_MAC_LABEL``, ``CHECKPOINT_LABEL``).
        Neither reveals the KEK or the other."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(self._key)

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


class KekRing(KekProvider):
    """The configured KEK (primary: wraps, and unwraps what it wrapped) and the previous
    ones (unwrap only), chosen by the ``kek_id`` the stored record names."""

    def __init__(self, primary: KekProvider, previous: Sequence[KekProvider] = ()) -> None:
        self.primary = primary
        self.previous = [p for p in previous if p.kek_id != primary.kek_id]
        self._by_id: dict[str, KekProvider] = {}
        for p in [primary, *self.previous]:
            self._by_id.setdefault(p.kek_id, p)

    @property
    def kek_id(self) -> str:
        return self.primary.kek_id

    @property
    def providers(self) -> list[KekProvider]:
        return [self.primary, *self.previous]

    def kek_ids(self) -> list[str]:
        return list(self._by_id)

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        return self.primary.wrap(plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes, kek_id: str = "") -> bytes:
        """Unwrap with the KEK ``kek_id`` names. ``""``: a record stored before its KEK was
        recorded (signing keys of older versions), wrapped under the KEK the deployment had
        then: the primary, or, when the operator has already moved that KEK to
        ``kek_previous``, one of those (AES-GCM authenticates, so trying is safe)."""
        if not kek_id:
            err: KekError | None = None
            for p in self.providers:
                try:
                    return p.unwrap(blob, aad)
                except KekError as e:
                    err = err or e
            assert err is not None
            raise err
        named = self._by_id.get(kek_id)
        if named is None:
            raise KekError(
                "broker.kek.unknown",
                f"the item was wrapped under KEK {kek_id[:80]} which is not configured "
                f"(configured: {', '.join(self._by_id)}); add it to kek_previous",
            )
        return named.unwrap(blob, aad)

    def close(self) -> None:
        for p in self.providers:
            p.close()


def as_ring(kek: KekProvider) -> KekRing:
    return kek if isinstance(kek, KekRing) else KekRing(kek)


def file_uri_path(uri: str) -> Path:
    """The local path of a ``file:///PATH`` (or ``file:/PATH``, RFC 8089 §2) URI."""
    if uri.startswith("file://"):
        rest = uri[len("file://") :]
        if not rest.startswith("/"):
            raise KekError(
                "broker.kek.uri_invalid", "file KEK URIs name a local path: file:///ABSOLUTE/PATH"
            )
    elif uri.startswith("file:/"):
        rest = uri[len("file:") :]
    else:
        raise KekError("broker.kek.uri_invalid", "file KEK URIs are file:///ABSOLUTE/PATH")
    if "?" in rest or "#" in rest:
        raise KekError("broker.kek.uri_invalid", "file KEK URIs have no query or fragment")
    path = urllib.parse.unquote(rest, errors="strict")
    if "\x00" in path or path.rstrip("/") == "":
        raise KekError("broker.kek.uri_invalid", "file KEK URI has no file path")
    return Path(path)


def default_kek_uri(data_dir: str | os.PathLike[str]) -> str:
    return (Path(data_dir).absolute() / "kek.key").as_uri()


def open_kek(uri: str, *, create: bool = True) -> KekProvider:
    """The provider a KEK URI names: ``file:///PATH`` or a PKCS#11 URI (RFC 7512).
    ``create``: make the key file or token object when absent (the service's first start;
    never for offline tools or unwrap-only KEKs)."""
    if uri.startswith("file:"):
        return LocalKeyFileProvider(file_uri_path(uri), create=create)
    if uri[:7].lower() == "pkcs11:":
        from sealgate.broker.pkcs11 import Pkcs11Provider

        return Pkcs11Provider(uri, create=create)
    scheme = uri.split(":", 1)[0][:16] if ":" in uri else ""
    raise KekError(
        "broker.kek.uri_invalid",
        f"unsupported KEK URI scheme {scheme!r}: use file:///PATH or pkcs11:…",
    )


def open_ring(primary: str, previous: Sequence[str] = (), *, create: bool = True) -> KekRing:
    """The ring of the configured KEK URIs. Previous KEKs are never created: they exist
    because something was wrapped under them."""
    opened: list[KekProvider] = []
    try:
        opened.append(open_kek(primary, create=create))
        for uri in previous:
            opened.append(open_kek(uri, create=False))
    except BaseException:
        for p in opened:
            p.close()
        raise
    return KekRing(opened[0], opened[1:])
