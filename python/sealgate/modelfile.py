"""Encrypted model files: chunked AES-256-GCM, streamed in constant memory.

Layout::

    "SGMODEL" 0x01 | header length (u32 BE) | header | chunk 0 | chunk 1 | ... | final chunk

The header is deterministic CBOR (RFC 8949 §4.2): format version, key id, key version,
chunk size and a random 32-byte salt; version 2 adds ``root_digest``, the OMS root
digest of the signed model the file belongs to (its data key is then the model-bound key,
``sealgate.broker.models.bound_key``). Version 1 files (no root digest) are still read.
Each file gets its own key,
``HKDF-SHA256(model key, salt, "sealgate model v1" ‖ SHA-256(magic ‖ header))``, so GCM
nonces can be a plain chunk counter. Every chunk is ``AES-256-GCM(nonce = i as 96-bit BE,
AAD = SHA-256(magic ‖ header) ‖ i (u64 BE) ‖ final flag)``: editing the header, reordering,
dropping or duplicating chunks, truncating the file (the last chunk must carry the final
flag) or appending data after the final chunk is detected. Non-final chunks hold exactly
``chunk_size`` bytes of plaintext; the final one 0..chunk_size.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealgate.errors import SealgateError

MAGIC = b"SGMODEL\x01"
FORMAT_VERSION = 1
#: Header version of files bound to a signed model (``root_digest`` present).
FORMAT_VERSION_MODEL = 2
TAG = 16
DEFAULT_CHUNK = 1 << 20
#: Chunk sizes accepted: small enough to bound memory, large enough to keep overhead low.
MIN_CHUNK, MAX_CHUNK = 1 << 10, 64 << 20
#: Headers are a few dozen bytes; anything larger is not ours.
MAX_HEADER = 4096
#: OMS root digests: SHA-256 (32 bytes) today; a range so a future 48/64-byte one still fits.
MIN_ROOT_DIGEST, MAX_ROOT_DIGEST = 16, 64
#: GCM with a counter nonce: stay far below 2^32 chunks per file key.
MAX_CHUNKS = 1 << 31


class ModelFileError(SealgateError):
    """The file is not a sealgate model file or fails authentication."""


@dataclass(frozen=True)
class Header:
    key_id: str
    key_version: int
    chunk_size: int
    salt: bytes
    raw: bytes
    #: The signed model's OMS root digest (version 2), else b"".
    root_digest: bytes = b""

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(MAGIC + self.raw).digest()


def _file_key(model_key: bytes, h: Header) -> AESGCM:
    if len(model_key) != 32:
        raise ModelFileError("model.key.bad_size", f"model keys are 32 bytes, got {len(model_key)}")
    hkdf = HKDF(hashes.SHA256(), 32, h.salt, b"sealgate model v1" + h.digest)
    return AESGCM(hkdf.derive(model_key))


def _aad(h: Header, i: int, final: bool) -> bytes:
    return h.digest + struct.pack(">QB", i, 1 if final else 0)


def _nonce(i: int) -> bytes:
    return i.to_bytes(12, "big")


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    model_key: bytes,
    key_id: str,
    key_version: int,
    chunk_size: int = DEFAULT_CHUNK,
    root_digest: bytes | None = None,
) -> Header:
    """Encrypt ``src``. ``root_digest``: the file belongs to that signed model and
    ``model_key`` is the model-bound data key (the header records the digest, and the
    header is authenticated with every chunk)."""
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ModelFileError("model.file.bad_chunk_size", f"chunk size {chunk_size} out of range")
    fields: dict[str, object] = {
        "v": FORMAT_VERSION,
        "key_id": key_id,
        "key_version": key_version,
        "chunk_size": chunk_size,
        "salt": os.urandom(32),
    }
    if root_digest is not None:
        if not MIN_ROOT_DIGEST <= len(root_digest) <= MAX_ROOT_DIGEST:
            raise ModelFileError("model.file.bad_header", "root digest of the wrong size")
        fields["v"] = FORMAT_VERSION_MODEL
        fields["root_digest"] = root_digest
    raw = cbor2.dumps(fields, canonical=True)
    h = parse_header_bytes(raw)
    aead = _file_key(model_key, h)
    dst.write(MAGIC + struct.pack(">I", len(raw)) + raw)
    i = 0
    cur = _read_full(src, chunk_size)
    while True:
        nxt = _read_full(src, chunk_size) if len(cur) == chunk_size else b""
        final = not nxt
        dst.write(aead.encrypt(_nonce(i), cur, _aad(h, i, final)))
        if final:
            return h
        i += 1
        if i >= MAX_CHUNKS:
            raise ModelFileError("model.file.too_large", "too many chunks for one file key")
        cur = nxt


def _read_full(src: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = src.read(n - len(buf))
        if not part:
            break
        buf += part
    return bytes(buf)


def parse_header_bytes(raw: bytes) -> Header:
    try:
        doc = cbor2.loads(raw)
    except Exception:
        raise ModelFileError("model.file.bad_header", "header is not CBOR") from None
    version = doc.get("v") if isinstance(doc, dict) else None
    expected = {"v", "key_id", "key_version", "chunk_size", "salt"}
    if version == FORMAT_VERSION_MODEL:
        expected.add("root_digest")
    if (
        not isinstance(doc, dict)
        or version not in (FORMAT_VERSION, FORMAT_VERSION_MODEL)
        or set(doc) != expected
        or not isinstance(doc.get("key_id"), str)
        or not isinstance(doc.get("key_version"), int)
        or not isinstance(doc.get("chunk_size"), int)
        or not isinstance(doc.get("salt"), bytes)
        or len(doc["salt"]) != 32
        or not MIN_CHUNK <= doc["chunk_size"] <= MAX_CHUNK
    ):
        raise ModelFileError("model.file.bad_header", "header fields missing or out of range")
    root = doc.get("root_digest", b"")
    if version == FORMAT_VERSION_MODEL and (
        not isinstance(root, bytes) or not MIN_ROOT_DIGEST <= len(root) <= MAX_ROOT_DIGEST
    ):
        raise ModelFileError("model.file.bad_header", "root digest missing or of the wrong size")
    return Header(doc["key_id"], doc["key_version"], doc["chunk_size"], doc["salt"], raw, root)


def read_header(src: BinaryIO) -> Header:
    head = _read_full(src, len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
        raise ModelFileError("model.file.not_sealgate", "not a sealgate model file")
    (n,) = struct.unpack(">I", head[len(MAGIC) :])
    if n > MAX_HEADER:
        raise ModelFileError("model.file.bad_header", f"header of {n} bytes")
    raw = _read_full(src, n)
    if len(raw) != n:
        raise ModelFileError("model.file.truncated", "file ends inside the header")
    return parse_header_bytes(raw)


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key_for: Callable[[str, int], bytes],
    expect_root_digest: bytes | None = None,
) -> Header:
    """Decrypt chunk by chunk; each chunk is written only after it authenticates.

    ``expect_root_digest``: the file must belong to that signed model (header version 2
    with that digest), checked before anything is decrypted. A wrong digest in the header
    is also caught by authentication (the header is in every chunk's AAD), but a released
    key derived for another model fails only as ``chunk_invalid``; this names it."""
    h = read_header(src)
    if expect_root_digest is not None and h.root_digest != expect_root_digest:
        got = h.root_digest.hex() or "none (not bound to a model)"
        raise ModelFileError(
            "model.file.model_mismatch",
            f"the file is encrypted for model root digest {got}, not {expect_root_digest.hex()}",
        )
    aead = _file_key(key_for(h.key_id, h.key_version), h)
    block = h.chunk_size + TAG
    i = 0
    cur = _read_full(src, block)
    while True:
        if len(cur) < TAG:
            raise ModelFileError("model.file.truncated", f"file ends at chunk {i} (no final chunk)")
        nxt = _read_full(src, block) if len(cur) == block else b""
        final = not nxt
        try:
            plain = aead.decrypt(_nonce(i), cur, _aad(h, i, final))
        except InvalidTag:
            if final and len(cur) == block:
                # A full-size chunk at EOF that is not marked final: chunks were cut off.
                try:
                    aead.decrypt(_nonce(i), cur, _aad(h, i, False))
                except InvalidTag:
                    pass
                else:
                    raise ModelFileError(
                        "model.file.truncated", f"file ends after chunk {i} without the final chunk"
                    ) from None
            raise ModelFileError(
                "model.file.chunk_invalid",
                f"chunk {i} fails authentication (edited, reordered or wrong key)",
            ) from None
        dst.write(plain)
        if final:
            return h
        i += 1
        cur = nxt
