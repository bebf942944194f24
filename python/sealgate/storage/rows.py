"""Rows → records, shared by both backends: each decoder takes a row in the column order its
queries select, and normalises driver types (SQLite returns ``bytes``/``int``, psycopg
``bytes``/``memoryview`` and ``int``) so both backends hand out identical records."""

from __future__ import annotations

import json
from typing import Any

from sealgate.storage import (
    AttestationRecord,
    AttestInputs,
    AuditRow,
    Challenge,
    Enrollment,
    KeyVersionRecord,
    ModelRegistration,
    Node,
    Revocation,
    SecretRecord,
    SigningKeyRecord,
)

Row = tuple[Any, ...]


def challenge(rows: list[Row]) -> Challenge | None:
    """The one row of a challenge query (id, nonce, platform, node_id, created, expires)."""
    if len(rows) != 1:
        return None
    r = rows[0]
    return Challenge(r[0], bytes(r[1]), r[2], r[3], int(r[4]), int(r[5]))


#: ``Storage.attest_inputs``: the generation row always, the challenge and node columns
#: NULL when there is none (config_generation holds exactly one row).
ATTEST_INPUTS = (
    "SELECT g.generation, c.id, c.nonce, c.platform, c.node_id, c.created_at, c.expires_at,"
    " n.node_id, n.platform, n.ek_fingerprint, n.ek_ca_fingerprint, n.ak_name, n.ak_public,"
    " n.enrolled_at, n.revoked, n.revoked_at"
    " FROM config_generation g"
    " LEFT JOIN challenges c ON c.id = ? AND c.used = 0 AND c.expires_at > ?"
    " LEFT JOIN nodes n ON n.node_id = ?"
)


def attest_inputs(rows: list[Row]) -> AttestInputs:
    r = rows[0]
    ch = challenge([r[1:7]]) if r[1] is not None else None
    return AttestInputs(ch, node(r[7:16]) if r[7] is not None else None, int(r[0]))


def key_version(r: Row) -> KeyVersionRecord:
    """(key_id, version, wrapped, kek_id, created_at)."""
    return KeyVersionRecord(r[0], int(r[1]), bytes(r[2]), r[3], int(r[4]))


def enrollment(r: Row) -> Enrollment:
    """(id, node_id, ek_fingerprint, ek_ca_fingerprint, ak_public, ak_name, secret_hash,
    created_at, expires_at)."""
    return Enrollment(
        r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), int(r[7]), int(r[8])
    )


def node(r: Row) -> Node:
    """(node_id, platform, ek_fingerprint, ek_ca_fingerprint, ak_name, ak_public,
    enrolled_at, revoked, revoked_at)."""
    return Node(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), int(r[6]), bool(r[7]), int(r[8]))


def revocation(r: Row) -> Revocation:
    """(seq, platform, identity, node_id, reason, revoked_at, revoked_by, lifted_at,
    lifted_by)."""
    return Revocation(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], int(r[7]), r[8])


def attestation(r: Row) -> AttestationRecord:
    """(jti, node_id, platform, challenge_id, claims, runtime_key_jkt, issued_at, expires_at,
    granted_keys as a JSON list, revocation_mark)."""
    granted = tuple(str(k) for k in json.loads(r[8]))
    return AttestationRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), int(r[7]), granted, int(r[9])
    )


def audit_row(r: Row) -> AuditRow:
    """(seq, entry, hash)."""
    return AuditRow(int(r[0]), bytes(r[1]), bytes(r[2]))


def signing_key(r: Row) -> SigningKeyRecord:
    """(kid, wrapped_private, public_jwk, created_at, retired_at, kek_id)."""
    return SigningKeyRecord(r[0], bytes(r[1]), r[2], int(r[3]), int(r[4]), r[5])


def secret(r: Row) -> SecretRecord:
    """(name, wrapped, kek_id, created_at)."""
    return SecretRecord(r[0], bytes(r[1]), r[2], int(r[3]))


# Model registrations: the same statements on both backends, written with SQLite's ``?``
# placeholders; PostgreSQL's are ``postgres_params`` of them. Only the column list and
# placeholders are shared (no value is ever formatted into SQL).
_MODEL_REGISTRATION_SELECT = (
    "SELECT key_id, version, root_digest, hash_algorithm, signer, format_version,"
    " model_name, bundle, registered_at, registered_by FROM model_registrations"
)
MODEL_REGISTRATION_BY_VERSION = _MODEL_REGISTRATION_SELECT + " WHERE key_id = ? AND version = ?"
MODEL_REGISTRATIONS_ALL = _MODEL_REGISTRATION_SELECT + " ORDER BY key_id, version"
MODEL_REGISTRATIONS_OF_KEY = _MODEL_REGISTRATION_SELECT + " WHERE key_id = ? ORDER BY version"
MODEL_REGISTRATION_INSERT = (
    "INSERT INTO model_registrations (key_id, version, root_digest, hash_algorithm,"
    " signer, format_version, model_name, bundle, registered_at, registered_by)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def postgres_params(sql: str) -> str:
    """A statement above with psycopg's ``%s`` placeholders (the statements hold no other
    ``?`` or ``%``)."""
    return sql.replace("?", "%s")


def model_registration_params(reg: ModelRegistration) -> tuple[Any, ...]:
    """The values of ``MODEL_REGISTRATION_INSERT``, in its column order."""
    return (
        reg.key_id,
        reg.version,
        reg.root_digest,
        reg.hash_algorithm,
        reg.signer_json,
        reg.format_version,
        reg.model_name,
        reg.bundle,
        reg.registered_at,
        reg.registered_by,
    )


def model_registration(r: Row) -> ModelRegistration:
    """(key_id, version, root_digest, hash_algorithm, signer, format_version, model_name,
    bundle, registered_at, registered_by)."""
    return ModelRegistration(
        r[0], int(r[1]), bytes(r[2]), r[3], r[4], r[5], r[6], bytes(r[7]), int(r[8]), r[9]
    )
