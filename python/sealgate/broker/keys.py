"""Model keys: import, generate, rotate; stored wrapped under the KEK.

The AAD of each wrapped version binds the key id and version, so a blob copied to another
key or version row does not open. Key material leaves only sealed to an attested node.
"""

from __future__ import annotations

import os
import re
import struct

from sealgate.broker.kek import KekProvider, as_ring
from sealgate.errors import UsageError
from sealgate.storage import KeyVersionRecord, ModelKeyRecord, Storage, StorageError

MODEL_KEY_SIZE = 32  # AES-256
_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


def key_aad(key_id: str, version: int) -> bytes:
    kid = key_id.encode()
    return b"sealgate/v1 model-key" + struct.pack(">H", len(kid)) + kid + struct.pack(">I", version)


def check_key_id(key_id: str) -> None:
    """The one rule for model key ids, wherever a key id enters (key and policy admin,
    Attest, ReleaseKey): 1-128 characters of ``[A-Za-z0-9._:/-]``, starting alphanumeric.
    UsageError ``broker.key.bad_id`` otherwise (INVALID_ARGUMENT over gRPC)."""
    # fullmatch: "$" would also match before a trailing newline.
    if len(key_id) > 128 or not _KEY_ID_RE.fullmatch(key_id):
        raise UsageError(
            "broker.key.bad_id",
            f"key id {key_id[:64]!r} must be 1-128 chars of [A-Za-z0-9._:/-], starting alnum",
        )


class ModelKeys:
    def __init__(self, storage: Storage, kek: KekProvider) -> None:
        self._st = storage
        # Wraps under the configured KEK; unwraps with the one each version names.
        self._kek = as_ring(kek)

    def _record(self, key_id: str, version: int, material: bytes, now: int) -> KeyVersionRecord:
        if len(material) != MODEL_KEY_SIZE:
            raise UsageError(
                "broker.key.bad_size", f"model keys are {MODEL_KEY_SIZE} bytes, got {len(material)}"
            )
        wrapped = self._kek.wrap(material, key_aad(key_id, version))
        return KeyVersionRecord(key_id, version, wrapped, self._kek.kek_id, now)

    def create(
        self, key_id: str, material: bytes | None, description: str, now: int
    ) -> ModelKeyRecord:
        check_key_id(key_id)
        material = material if material is not None else os.urandom(MODEL_KEY_SIZE)
        try:
            return self._st.add_key_version(
                key_id, self._record(key_id, 1, material, now), description, create=True
            )
        except StorageError as e:
            raise UsageError(e.code, e.message) from None

    def rotate(self, key_id: str, material: bytes | None, now: int) -> ModelKeyRecord:
        cur = self._st.get_model_key(key_id)
        if cur is None:
            raise UsageError("broker.key.not_found", f"no model key {key_id!r}")
        material = material if material is not None else os.urandom(MODEL_KEY_SIZE)
        rec = self._record(key_id, cur.current_version + 1, material, now)
        try:
            return self._st.add_key_version(key_id, rec, cur.description, create=False)
        except StorageError as e:
            raise UsageError(e.code, e.message) from None

    def get(self, key_id: str) -> ModelKeyRecord | None:
        return self._st.get_model_key(key_id)

    def list(self) -> list[ModelKeyRecord]:
        return self._st.list_model_keys()

    def current(self, key_id: str) -> tuple[int, bytes] | None:
        """(version, plaintext) of the current version, or None if there is no such key."""
        kv = self._st.get_current_key_version(key_id)
        if kv is None:
            return None
        return kv.version, self.unwrap(kv)

    def unwrap(self, kv: KeyVersionRecord) -> bytes:
        """The plaintext of a stored version (the AAD checks it belongs to its row)."""
        return self._kek.unwrap(kv.wrapped, key_aad(kv.key_id, kv.version), kv.kek_id)

    def material(self, key_id: str, version: int | None = None) -> tuple[int, bytes]:
        """The plaintext key (current version unless given), for sealing only."""
        if version is None:
            rec = self._st.get_model_key(key_id)
            if rec is None:
                raise UsageError("broker.key.not_found", f"no model key {key_id!r}")
            version = rec.current_version
        kv = self._st.get_key_version(key_id, version)
        if kv is None:
            raise UsageError("broker.key.not_found", f"no version {version} of key {key_id!r}")
        return version, self.unwrap(kv)
