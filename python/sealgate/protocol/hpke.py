"""Sealing model keys to a node's runtime key with HPKE (RFC 9180, base mode).

Backed by ``cryptography.hazmat.primitives.hpke`` (single-shot: output is ``enc ‖ ct``).
Suites:

- ``x25519``: DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM (the default);
  runtime public key = the 32-byte X25519 key.
- ``mlkem768-x25519``: the ML-KEM-768 + X25519 hybrid KEM / HKDF-SHA256 / AES-256-GCM;
  runtime public key = ML-KEM-768 encapsulation key (1184 B) ‖ X25519 key (32 B).

``info`` (RFC 9180 §5.1) binds what the sealed bytes are: key id, key version and the
challenge id, so a sealed key cannot be presented as another key, version or attestation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from sealgate.errors import SealgateError, UsageError

X25519 = "x25519"
MLKEM768_X25519 = "mlkem768-x25519"
SUITES = (X25519, MLKEM768_X25519)

_X25519_LEN = 32
_MLKEM768_EK_LEN = 1184

_SUITE = {
    X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}


class SealError(SealgateError):
    """A sealed key does not open (wrong key, wrong info, corrupted)."""


def release_info(key_id: str, version: int, challenge_id: str) -> bytes:
    """HPKE ``info``: a fixed label then length-prefixed key id, version, challenge id."""
    kid = key_id.encode()
    cid = challenge_id.encode()
    return (
        b"sealgate/v1 key-release\x00"
        + struct.pack(">H", len(kid))
        + kid
        + struct.pack(">I", version)
        + struct.pack(">H", len(cid))
        + cid
    )


_P25519 = 2**255 - 19
#: The u-coordinates (mod p) of the small-order points of Curve25519: 0 (order 2), 1 and
#: p - 1 (order 4), and the two order-8 points ("Which Curve25519 public keys are weak?",
#: cr.yp.to/ecdh.html). With one of them as the peer key every X25519 output is all zero.
_LOW_ORDER_U = frozenset(
    {
        0,
        1,
        _P25519 - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    }
)


def _check_x25519(data: bytes) -> None:
    """Refuse a small-order X25519 public key (RFC 7748 §6.1: the shared secret would be all
    zero, so HPKE's DH fails and nothing secret binds the sealed key to the node). The u
    value is decoded as RFC 7748 §5 does: top bit masked, reduced mod p; so p and p + 1,
    the non-canonical encodings of 0 and 1, are caught too."""
    u = (int.from_bytes(data, "little") & ((1 << 255) - 1)) % _P25519
    if u in _LOW_ORDER_U:
        raise UsageError(
            "broker.hpke.low_order_key",
            "X25519 runtime public key is of small order (RFC 7748 §6.1): refused",
        )


def _check_len(data: bytes, want: int, suite: str) -> None:
    if len(data) != want:
        raise UsageError(
            "broker.hpke.bad_public_key",
            f"{suite} runtime public key is {len(data)} bytes, expected {want}",
        )


def load_public_key(suite: str, data: bytes) -> Any:
    if suite == X25519:
        _check_len(data, _X25519_LEN, suite)
        _check_x25519(data)
        return x25519.X25519PublicKey.from_public_bytes(data)
    if suite == MLKEM768_X25519:
        _check_len(data, _MLKEM768_EK_LEN + _X25519_LEN, suite)
        _check_x25519(data[_MLKEM768_EK_LEN:])
        try:
            pq = mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_EK_LEN])
        except ValueError:
            raise UsageError("broker.hpke.bad_public_key", "invalid ML-KEM-768 key") from None
        return hpke.MLKEM768X25519PublicKey(
            pq, x25519.X25519PublicKey.from_public_bytes(data[_MLKEM768_EK_LEN:])
        )
    raise UsageError("broker.hpke.unsupported_suite", f"unknown HPKE suite {suite!r}")


def seal(suite: str, runtime_public_key: bytes, plaintext: bytes, info: bytes) -> bytes:
    return bytes(_SUITE[suite].encrypt(plaintext, load_public_key(suite, runtime_public_key), info))


def jwk(suite: str, runtime_public_key: bytes) -> dict[str, str]:
    """The runtime key as a JWK. X25519 per RFC 8037 (OKP); the hybrid has no registered
    JWK type yet, so sealgate names it ``OKP``/``MLKEM768-X25519`` with the raw key in x."""
    load_public_key(suite, runtime_public_key)  # validates length and encoding
    crv = "X25519" if suite == X25519 else "MLKEM768-X25519"
    x = base64.urlsafe_b64encode(runtime_public_key).rstrip(b"=").decode()
    return {"crv": crv, "kty": "OKP", "x": x}


def jwk_thumbprint(key: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, lexicographic, no whitespace; base64url."""
    required = {
        "OKP": ("crv", "kty", "x"),
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
    }[key["kty"]]
    canon = json.dumps({k: key[k] for k in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canon.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class RuntimeKeyPair:
    """The node side: an ephemeral key pair that receives sealed keys."""

    suite: str
    private: Any
    public_bytes: bytes
    # The component private keys (ML-KEM first, as in the public key): the hybrid HPKE key
    # object does not give its halves back, and to_private_bytes needs them.
    parts: tuple[Any, ...] = ()

    # An ML-KEM-768 private key is stored as its FIPS 203 seed d ‖ z (64 B), the form
    # cryptography's private_bytes_raw() returns and from_seed_bytes() takes.
    _MLKEM768_SEED_LEN = 64

    @classmethod
    def generate(cls, suite: str = X25519) -> RuntimeKeyPair:
        pq = mlkem.MLKEM768PrivateKey.generate() if suite == MLKEM768_X25519 else None
        return cls._from_keys(suite, x25519.X25519PrivateKey.generate(), pq)

    @classmethod
    def _from_keys(
        cls, suite: str, xk: x25519.X25519PrivateKey, pq: mlkem.MLKEM768PrivateKey | None
    ) -> RuntimeKeyPair:
        xpub = xk.public_key().public_bytes_raw()
        if suite == X25519:
            return cls(suite, xk, xpub, (xk,))
        if suite == MLKEM768_X25519 and pq is not None:
            priv = hpke.MLKEM768X25519PrivateKey(pq, xk)
            return cls(suite, priv, pq.public_key().public_bytes_raw() + xpub, (pq, xk))
        raise UsageError("broker.hpke.unsupported_suite", f"unknown HPKE suite {suite!r}")

    def to_private_bytes(self) -> bytes:
        """The private key, raw: X25519 (32 B), or for the hybrid the ML-KEM-768 seed
        (d ‖ z, 64 B, FIPS 203 §7.1) ‖ X25519 (32 B), in the public key's order."""
        if not self.parts:  # built by hand from a private key object: nothing to serialize
            raise UsageError("broker.hpke.no_private_parts", "key pair has no serializable parts")
        return b"".join(k.private_bytes_raw() for k in self.parts)

    @classmethod
    def from_private_bytes(cls, suite: str, data: bytes) -> RuntimeKeyPair:
        """Inverse of :meth:`to_private_bytes`; the length must be exactly the suite's."""
        want = {X25519: _X25519_LEN, MLKEM768_X25519: cls._MLKEM768_SEED_LEN + _X25519_LEN}
        if suite not in want:
            raise UsageError("broker.hpke.unsupported_suite", f"unknown HPKE suite {suite!r}")
        if len(data) != want[suite]:
            raise UsageError(
                "broker.hpke.bad_private_key",
                f"{suite} runtime private key is {len(data)} bytes, expected {want[suite]}",
            )
        xk = x25519.X25519PrivateKey.from_private_bytes(data[-_X25519_LEN:])
        pq = None
        if suite == MLKEM768_X25519:
            pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(data[: cls._MLKEM768_SEED_LEN])
        return cls._from_keys(suite, xk, pq)

    def open(self, sealed: bytes, info: bytes) -> bytes:
        try:
            return bytes(_SUITE[self.suite].decrypt(sealed, self.private, info))
        except Exception:
            raise SealError("broker.hpke.open_failed", "sealed key does not open") from None
