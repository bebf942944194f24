"""Composite evidence: binding a node's GPU attestation reports to its CPU TEE evidence.

The node and the service both compute these; neither trusts the other's arithmetic.

For a challenge ``nonce`` and the node's runtime public key ``key``:

1. ``base = SHA-512(nonce ‖ key)`` — the binding without GPUs
   (:func:`sealgate.protocol.runtime_binding`).
2. GPU ``i`` (0-based, in the order the node sends them) is asked for an SPDM
   GET_MEASUREMENTS whose 32-byte requester nonce (DMTF DSP0274 §10.11, ``Nonce``) is
   ``SHA-256("sealgate gpu nonce v1" ‖ base ‖ u32_be(i))``: fresh for every challenge
   (``base`` covers the service's nonce) and distinct per GPU, so a report cannot be
   replayed from another challenge nor moved to another slot.
3. ``gpu_digest = SHA-256(SHA-256(report_0) ‖ … ‖ SHA-256(report_{n-1}))`` over the raw
   report bytes (SPDM request ‖ response, signature included).
4. With at least one GPU, the CPU evidence carries
   ``SHA-512(nonce ‖ key ‖ gpu_digest)`` where it carried ``base`` (SNP/TDX report_data,
   the first 32 bytes as TPM extraData, Azure HCL user data): the CPU TEE — the component
   with the hardware root the key release rests on — vouches for the exact GPU report set,
   so a report spliced from another machine, dropped or reordered changes the digest and
   breaks the CPU binding. Without GPUs the binding is ``base``, unchanged.

This follows the shape of Trustee's composite scheme (the CPU report data commits to a hash
of the device evidence; the device nonce derives from the challenge) with a domain-separated
per-device nonce. The nonce has a fixed length per challenge and ``gpu_digest`` a fixed
length, and the runtime key's length is fixed by its HPKE suite, so the concatenations are
unambiguous.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sealgate.errors import UsageError
from sealgate.protocol import runtime_binding

#: Domain separation for the per-GPU SPDM requester nonce.
GPU_NONCE_LABEL = b"sealgate gpu nonce v1"
#: SPDM 1.1 GET_MEASUREMENTS requester nonce length (DSP0274, 32 bytes).
GPU_NONCE_SIZE = 32
#: An HGX board has 8 GPUs (and 4 NVSwitches); as ``sealgate.nvgpu.MAX_DEVICES``, this
#: bounds the work a hostile client can ask for.
MAX_GPUS = 16


def _check_count(n: int) -> None:
    if n > MAX_GPUS:
        raise UsageError("gpu.evidence.too_many", f"{n} GPU reports (at most {MAX_GPUS})")


def gpu_nonce(base_binding: bytes, index: int) -> bytes:
    """The SPDM requester nonce GPU ``index`` must sign for this challenge."""
    if not 0 <= index < MAX_GPUS:
        raise UsageError("gpu.evidence.too_many", f"GPU index {index} (at most {MAX_GPUS})")
    return hashlib.sha256(GPU_NONCE_LABEL + base_binding + index.to_bytes(4, "big")).digest()


def gpu_nonces(base_binding: bytes, count: int) -> list[bytes]:
    _check_count(count)
    return [gpu_nonce(base_binding, i) for i in range(count)]


def gpu_digest(reports: Sequence[bytes]) -> bytes:
    """SHA-256 over the concatenated SHA-256 of each GPU report, in order."""
    _check_count(len(reports))
    h = hashlib.sha256()
    for r in reports:
        h.update(hashlib.sha256(r).digest())
    return h.digest()


def composite_binding(nonce: bytes, runtime_public_key: bytes, reports: Sequence[bytes]) -> bytes:
    """The 64-byte binding the CPU evidence must carry for this GPU report set."""
    if not reports:
        return runtime_binding(nonce, runtime_public_key)
    return hashlib.sha512(nonce + runtime_public_key + gpu_digest(reports)).digest()
