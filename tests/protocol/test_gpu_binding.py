"""The composite binding of GPU reports to the CPU evidence (sealgate.protocol.gpu_binding)."""

from __future__ import annotations

import hashlib

import pytest
from sealgate.errors import UsageError
from sealgate.protocol import runtime_binding
from sealgate.protocol.gpu_binding import (
    GPU_NONCE_SIZE,
    MAX_GPUS,
    composite_binding,
    gpu_digest,
    gpu_nonce,
    gpu_nonces,
)

NONCE = bytes(range(32))
KEY = b"\x42" * 32
R0, R1 = b"report zero", b"report one"


def test_no_gpus_is_the_plain_binding() -> None:
    assert composite_binding(NONCE, KEY, []) == runtime_binding(NONCE, KEY)


def test_binding_matches_the_documented_formula() -> None:
    inner = hashlib.sha256(hashlib.sha256(R0).digest() + hashlib.sha256(R1).digest()).digest()
    assert gpu_digest([R0, R1]) == inner
    assert composite_binding(NONCE, KEY, [R0, R1]) == hashlib.sha512(NONCE + KEY + inner).digest()
    assert len(composite_binding(NONCE, KEY, [R0])) == 64


def test_nonce_matches_the_documented_formula() -> None:
    base = runtime_binding(NONCE, KEY)
    want = hashlib.sha256(b"sealgate gpu nonce v1" + base + (1).to_bytes(4, "big")).digest()
    assert gpu_nonce(base, 1) == want
    assert len(want) == GPU_NONCE_SIZE


def test_reorder_drop_splice_change_the_binding() -> None:
    good = composite_binding(NONCE, KEY, [R0, R1])
    assert composite_binding(NONCE, KEY, [R1, R0]) != good
    assert composite_binding(NONCE, KEY, [R0]) != good
    assert composite_binding(NONCE, KEY, [R0, b"report from elsewhere"]) != good
    assert composite_binding(NONCE, KEY, []) != good


def test_nonces_distinct_per_gpu_and_per_challenge() -> None:
    base = runtime_binding(NONCE, KEY)
    other = runtime_binding(b"\x00" * 32, KEY)
    ns = gpu_nonces(base, 8)
    assert len(set(ns)) == 8
    assert not set(ns) & set(gpu_nonces(other, 8))


def test_bounded() -> None:
    with pytest.raises(UsageError) as e:
        gpu_digest([b""] * (MAX_GPUS + 1))
    assert e.value.code == "gpu.evidence.too_many"
    for bad in (-1, MAX_GPUS):
        with pytest.raises(UsageError):
            gpu_nonce(b"x", bad)
    with pytest.raises(UsageError):
        gpu_nonces(b"x", MAX_GPUS + 1)
