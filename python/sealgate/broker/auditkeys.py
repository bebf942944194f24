"""The audit log's two keys, kept as secrets in the database wrapped under the KEK.

The audit entry MAC key (HMAC-SHA256, RFC 2104) and the Ed25519 seed (RFC 8032) that signs
audit checkpoints must not be writable by whoever can write the database (``broker.audit``),
and must be the same on every replica and after a KEK rotation. They are stored in the
``secrets`` table wrapped under the KEK ring, with an AAD naming each, created by the first
start (the first writer wins, so replicas starting together agree) and re-wrapped by
``sealgate kek rotate`` like every other blob: they no longer depend on the KEK's value, so a
KEK in an HSM (whose value cannot be read, hence derived from) works like a file.

Upgrade: a deployment with a file KEK had both keys derived from the KEK with HKDF (labels
in ``broker.kek``); their initial values are those derivations, so its MACs and checkpoint
key stay valid. With no file KEK configured the derivation is impossible: if the log
already holds MAC'd entries the service refuses to start (``broker.audit_keys.missing``)
rather than start a second, unverifiable key; otherwise the keys are random.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealgate.broker.audit import EntryMac, decode_entry
from sealgate.broker.checkpoint import CheckpointSigner
from sealgate.broker.kek import (
    AUDIT_MAC_LABEL,
    CHECKPOINT_LABEL,
    KekError,
    KekRing,
    LocalKeyFileProvider,
)
from sealgate.errors import SealgateError
from sealgate.storage import SecretRecord, Storage

MAC_KEY_ROW = "audit.entry-mac-key"
CHECKPOINT_SEED_ROW = "audit.checkpoint-seed"
_SIZE = 32


def secret_aad(name: str) -> bytes:
    """The AAD of a stored secret: a blob moved to another secret's row does not open."""
    return b"sealgate/v1 service-secret\x00" + name.encode()


class Ed25519Signer(CheckpointSigner):
    """A checkpoint signer over an Ed25519 private key held in memory."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def public_key(self) -> bytes:
        return self._pub

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@dataclass(frozen=True)
class AuditKeys:
    mac_key: bytes = field(repr=False)
    checkpoint_seed: bytes = field(repr=False)

    def mac(self) -> EntryMac:
        """HMAC-SHA256 under the entry key, keyed once (each MAC copies the keyed state:
        no re-keying on every append, which runs under the write lock)."""
        keyed = hmac.new(self.mac_key, digestmod=hashlib.sha256)

        def entry_mac(data: bytes) -> bytes:
            h = keyed.copy()
            h.update(data)
            return h.digest()

        return entry_mac

    def signer(self) -> CheckpointSigner:
        return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(self.checkpoint_seed))


def legacy_audit_keys(kek: LocalKeyFileProvider) -> AuditKeys:
    """The keys a file KEK deployment derived before they were stored."""
    return AuditKeys(kek.derive(AUDIT_MAC_LABEL), kek.derive(CHECKPOINT_LABEL))


def _file_kek(ring: KekRing) -> LocalKeyFileProvider | None:
    """The file KEK the audit keys were derived from: the primary, or one the operator
    moved to ``kek_previous`` before the keys were stored."""
    for p in ring.providers:
        if isinstance(p, LocalKeyFileProvider):
            return p
    return None


def _log_has_macs(st: Storage) -> bool:
    # Once one entry has a MAC every later one does (broker.audit): the last one tells.
    seq, _ = st.audit_head()
    if seq == 0:
        return False
    rows = st.list_audit(seq - 1, 1)
    if not rows:
        return True  # an entry we cannot read: assume the worst
    try:
        return "mac" in decode_entry(rows[-1].entry)
    except ValueError:
        return True


def _open(ring: KekRing, rec: SecretRecord) -> bytes:
    value = ring.unwrap(rec.wrapped, secret_aad(rec.name), rec.kek_id)
    if len(value) != _SIZE:
        raise KekError(
            "broker.kek.unwrap_failed", f"secret {rec.name} holds {len(value)} bytes, not {_SIZE}"
        )
    return value


def load_audit_keys(st: Storage, ring: KekRing, *, create: bool = True) -> AuditKeys:
    """Get (or, with ``create``, make and store) both audit keys. Without ``create``
    (offline tools) nothing is written: missing secrets are derived from a file KEK when
    there is one, else ``broker.audit_keys.missing``."""
    stored = {n: st.get_secret(n) for n in (MAC_KEY_ROW, CHECKPOINT_SEED_ROW)}
    if all(r is not None for r in stored.values()):
        mac, seed = (_open(ring, r) for r in stored.values() if r is not None)
        return AuditKeys(mac, seed)
    file_kek = _file_kek(ring)
    if file_kek is not None:
        initial = legacy_audit_keys(file_kek)
    elif _log_has_macs(st) or not create:
        raise SealgateError(
            "broker.audit_keys.missing",
            "the audit log has MAC'd entries but the database holds no audit keys, and no "
            "file KEK is configured to derive them from: configure the deployment's file KEK "
            "(kek or kek_previous) for the first start after the upgrade",
        )
    else:
        initial = AuditKeys(os.urandom(_SIZE), os.urandom(_SIZE))
    values = {MAC_KEY_ROW: initial.mac_key, CHECKPOINT_SEED_ROW: initial.checkpoint_seed}
    out: dict[str, bytes] = {}
    for name, rec in stored.items():
        if rec is not None:
            out[name] = _open(ring, rec)
        elif not create:
            out[name] = values[name]
        else:
            mine = SecretRecord(
                name, ring.wrap(values[name], secret_aad(name)), ring.kek_id, int(time.time())
            )
            kept = st.put_secret(mine)
            # Another replica may have stored its value first: that one is the key.
            out[name] = values[name] if kept.wrapped == mine.wrapped else _open(ring, kept)
    return AuditKeys(out[MAC_KEY_ROW], out[CHECKPOINT_SEED_ROW])
