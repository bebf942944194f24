"""Model file format: round trip, and truncation/reordering/tampering detected."""

from __future__ import annotations

import io
import os

import pytest
from sealgate.modelfile import MAGIC, ModelFileError, decrypt_stream, encrypt_stream, read_header

KEY = b"\x07" * 32
CHUNK = 1024


def _enc(data: bytes) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, KEY, "llama", 3, chunk_size=CHUNK)
    return out.getvalue()


def _dec(blob: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, lambda kid, v: key)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = _enc(data)
    assert _dec(blob) == data
    h = read_header(io.BytesIO(blob))
    assert (h.key_id, h.key_version, h.chunk_size) == ("llama", 3, CHUNK)


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 4], "big")
    head_end = len(MAGIC) + 4 + n
    body = blob[head_end:]
    step = CHUNK + 16
    return blob[:head_end], [body[i : i + step] for i in range(0, len(body), step)]


def test_tampering_detected() -> None:
    data = os.urandom(3 * CHUNK + 10)
    blob = _enc(data)
    head, chunks = _chunks(blob)
    cases = {
        "model.file.truncated": [head + b"".join(chunks[:2]), head + b"".join(chunks[:3]),
                                 head + chunks[0][:10]],
        "model.file.chunk_invalid": [head + chunks[1] + chunks[0] + b"".join(chunks[2:]),
                                     head + chunks[0] + chunks[0] + b"".join(chunks[2:]),
                                     blob + b"x" * 20, blob[:-1] + bytes([blob[-1] ^ 1])],
        "model.file.not_sealgate": [b"plain text model"],
    }  # fmt: skip
    for code, blobs in cases.items():
        for bad in blobs:
            with pytest.raises(ModelFileError) as e:
                _dec(bad)
            assert e.value.code == code
    # An edited header (e.g. another key version) changes the file key and every AAD.
    edited = blob.replace(b"key_version\x03", b"key_version\x04", 1)
    assert edited != blob
    with pytest.raises(ModelFileError):
        _dec(edited)
    with pytest.raises(ModelFileError):
        _dec(blob, key=b"\x08" * 32)


def test_constant_memory_streaming() -> None:
    """Chunks are processed one at a time: a 1000-chunk file never needs a big buffer."""
    data = os.urandom(1000 * CHUNK)
    blob = _enc(data)

    class Counting(io.BytesIO):
        biggest = 0

        def read(self, n: int | None = -1) -> bytes:
            got = super().read(n)
            Counting.biggest = max(Counting.biggest, len(got))
            return got

    out = io.BytesIO()
    decrypt_stream(Counting(blob), out, lambda k, v: KEY)
    assert out.getvalue() == data and Counting.biggest <= CHUNK + 16
