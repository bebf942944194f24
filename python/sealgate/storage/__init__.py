"""Persistent state behind one interface (README "Storage and security").

``Storage`` is what the broker and service need; ``SqliteStorage`` is the embedded default
(WAL) and a PostgreSQL backend implements the same methods with the same schema. Every
method that must be atomic across threads, processes and replicas says so: nonces and
enrollments are consumed with a conditional UPDATE whose row count decides, and audit
entries are appended inside a write transaction that reads the previous link.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal


class StorageError(Exception):
    """A storage invariant was violated (duplicate id, missing row)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StorageUnavailable(StorageError):
    """The database cannot be reached or refused service (connection lost, server shutting
    down, pool exhausted). Nothing of the failed call was committed; the caller answers
    ``UNAVAILABLE`` and may retry. The message never carries the connection string."""

    def __init__(self, message: str) -> None:
        super().__init__("storage.unavailable", message)


@dataclass(frozen=True)
class Challenge:
    id: str
    nonce: bytes
    platform: str
    node_id: str
    created_at: int
    expires_at: int


@dataclass(frozen=True)
class AttestInputs:
    """What an Attest reads before verifying, in one round trip (``attest_inputs``)."""

    #: The live, unused challenge, or None.
    challenge: Challenge | None
    #: The enrolled node of that id, or None.
    node: Node | None
    #: ``config_generation()`` as of the same read.
    generation: int


@dataclass(frozen=True)
class ReferenceValue:
    id: str
    platform: str
    set_name: str
    name: str
    value: str
    description: str
    created_at: int


@dataclass(frozen=True)
class PolicyRecord:
    key_id: str
    document: str
    revision: int
    updated_at: int


@dataclass(frozen=True)
class ModelKeyRecord:
    key_id: str
    current_version: int
    versions: tuple[int, ...]
    description: str
    created_at: int
    rotated_at: int


@dataclass(frozen=True)
class KeyVersionRecord:
    key_id: str
    version: int
    #: AES-256-GCM nonce ‖ ciphertext under the KEK (see broker.keys).
    wrapped: bytes
    kek_id: str
    created_at: int


@dataclass(frozen=True)
class ModelRegistration:
    """The signed model bound to one key version (OMS v1.0): what the server verified at
    registration, and the bundle itself so it can be re-read and re-verified."""

    key_id: str
    version: int
    #: The in-toto subject digest of the OMS statement (the manifest's root digest).
    root_digest: bytes
    hash_algorithm: str
    #: The verified signer identity (``VerifiedSignature.signer``) as canonical JSON.
    signer_json: str
    format_version: str
    model_name: str
    bundle: bytes
    registered_at: int
    registered_by: str


@dataclass(frozen=True)
class Enrollment:
    id: str
    node_id: str
    ek_fingerprint: str
    ek_ca_fingerprint: str
    ak_public: bytes
    ak_name: bytes
    #: SHA-256 of the credential secret; the secret itself is never stored.
    secret_hash: bytes
    created_at: int
    expires_at: int


@dataclass(frozen=True)
class Node:
    node_id: str
    platform: str
    #: SHA-256 of the EK certificate, and of the root CA certificate it chains to.
    ek_fingerprint: str
    ek_ca_fingerprint: str
    ak_name: bytes
    ak_public: bytes
    enrolled_at: int
    revoked: bool
    revoked_at: int


@dataclass(frozen=True)
class AttestationRecord:
    """What a token stands for, so ReleaseKey can re-appraise under the current policy."""

    jti: str
    node_id: str
    platform: str
    challenge_id: str
    claims_json: str
    runtime_key_jkt: str
    issued_at: int
    expires_at: int
    #: The key ids granted at Attest: all that ReleaseKey may ever serve for this token.
    granted_key_ids: tuple[str, ...] = ()
    #: The highest revocation ``seq`` when the attestation was decided: a revocation of one
    #: of its identities with a higher seq (even one lifted since) kills the token.
    revocation_mark: int = 0


@dataclass(frozen=True)
class Revocation:
    """A hardware identity refused at enrollment, Attest and ReleaseKey (see
    ``sealgate.service.platforms.identities``). Rows are never deleted: lifting one sets
    ``lifted_at``, and tokens decided before its ``seq`` stay dead."""

    seq: int
    platform: str
    #: ``kind:hex``, e.g. ``ek:<sha256>``, ``chip_id:<hex>``, ``ppid:<hex>``.
    identity: str
    #: The node id it was revoked through (informational; may be empty).
    node_id: str
    reason: str
    revoked_at: int
    revoked_by: str
    #: 0 while in force.
    lifted_at: int = 0
    lifted_by: str = ""


@dataclass(frozen=True)
class AuditRow:
    seq: int
    entry: bytes
    hash: bytes


@dataclass(frozen=True)
class SigningKeyRecord:
    kid: str
    #: PKCS#8 private key, wrapped under the KEK like model keys.
    wrapped_private: bytes
    public_jwk: str
    created_at: int
    #: 0 while active; else when it stopped signing (its JWK stays until tokens expire).
    retired_at: int
    #: The KEK it is wrapped under ("" for keys stored before this was recorded: the KEK
    #: the deployment had then).
    kek_id: str = ""


@dataclass(frozen=True)
class SecretRecord:
    """A service secret that is not a model or signing key (the audit entry MAC key, the
    audit checkpoint signing seed), wrapped under the KEK so it moves with the database and
    re-wraps with ``kek rotate``."""

    name: str
    wrapped: bytes
    kek_id: str
    created_at: int


#: The kinds of wrapped blobs the database holds (``Storage.list_wrapped``).
WrappedKind = Literal["key_version", "signing_key", "secret"]


@dataclass(frozen=True)
class WrappedItem:
    """One wrapped blob, named so it can be re-wrapped in place: ``ref`` is
    ``(key_id, version)`` for a model key version, ``(kid,)`` for a signing key and
    ``(name,)`` for a secret."""

    kind: WrappedKind
    ref: tuple[str, ...]
    wrapped: bytes
    kek_id: str


#: Default byte budget of one page of audit entries (list and verify hold one at a time).
AUDIT_PAGE_BYTES = 1 << 20

#: A pending audit append: (encode the entry for a sequence number, chain link function).
#: Passed to writes that must be recorded in the same transaction as the audit entry.
AuditAppend = tuple[Callable[[int], bytes], Callable[[bytes, bytes], bytes]]


class Storage(abc.ABC):
    """The persistence interface. Implementations must be safe for concurrent threads."""

    #: Whether calls wait on a network round trip (a database server) rather than a local
    #: file: the service then runs even its hot path in the thread pool, so the asyncio
    #: event loop never waits on the database.
    remote: bool = False

    # -- challenges -------------------------------------------------------------------
    @abc.abstractmethod
    def create_challenge(self, ch: Challenge, audit: AuditAppend | None = None) -> None:
        """Store a challenge (and its audit entry, atomically, when given)."""

    @abc.abstractmethod
    def consume_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        """Mark a live, unused challenge used and return it; None if unknown, used or expired.

        Atomic: of any number of concurrent callers (threads, processes, replicas) at most
        one gets the challenge.
        """

    @abc.abstractmethod
    def purge_expired(self, now: int, batch: int = 200) -> int:
        """Delete challenges, enrollments and attestation records (their tokens) that expired
        before ``now`` (used or not: past expiry they can never be used again; the audit log
        keeps what happened), in
        transactions of at most ``batch`` rows so writers on the hot path never wait long (here a
        batch of 500 held the write lock 1 to 2 ms, one of 200 0.6 to 1.3 ms, and either up to
        5 to 8 ms when its COMMIT also checkpointed the WAL).
        Returns how many rows went."""

    @abc.abstractmethod
    def atomic(self) -> AbstractContextManager[None]:
        """One write transaction around several calls on this thread: every Storage call
        inside joins it (as a savepoint), and all of it commits on normal exit or none of it
        on an exception. Admin changes use it to commit the change and its audit entry
        together."""

    @abc.abstractmethod
    def config_generation(self) -> int:
        """A counter that moves whenever reference values, policies, model keys or token
        signing keys change (in the changing transaction), so readers may cache those per
        generation."""

    # -- reference values -------------------------------------------------------------
    @abc.abstractmethod
    def add_reference_values(self, values: list[ReferenceValue]) -> None: ...

    @abc.abstractmethod
    def list_reference_values(
        self, platform: str | None = None, set_name: str | None = None
    ) -> list[ReferenceValue]: ...

    @abc.abstractmethod
    def remove_reference_value(self, rv_id: str) -> bool: ...

    # -- policies ---------------------------------------------------------------------
    @abc.abstractmethod
    def put_policy(self, key_id: str, document: str, now: int) -> PolicyRecord: ...

    @abc.abstractmethod
    def get_policy(self, key_id: str) -> PolicyRecord | None: ...

    @abc.abstractmethod
    def list_policies(self) -> list[PolicyRecord]: ...

    @abc.abstractmethod
    def delete_policy(self, key_id: str) -> bool: ...

    # -- model keys -------------------------------------------------------------------
    @abc.abstractmethod
    def add_key_version(
        self, key_id: str, version: KeyVersionRecord, description: str, create: bool
    ) -> ModelKeyRecord:
        """Store a new version and make it current. ``create`` requires the key to be new;
        otherwise the key must exist and ``version.version`` must be current + 1."""

    @abc.abstractmethod
    def get_model_key(self, key_id: str) -> ModelKeyRecord | None: ...

    @abc.abstractmethod
    def list_model_keys(self) -> list[ModelKeyRecord]: ...

    @abc.abstractmethod
    def get_key_version(self, key_id: str, version: int) -> KeyVersionRecord | None: ...

    @abc.abstractmethod
    def get_current_key_version(self, key_id: str) -> KeyVersionRecord | None:
        """The current version of a model key in one query (the release hot path)."""

    # -- registered models ------------------------------------------------------------
    @abc.abstractmethod
    def add_model_registration(self, reg: ModelRegistration) -> tuple[ModelRegistration, bool]:
        """Bind a signed model to an existing key version unless one is bound already.
        Returns the registration in force and whether it is new (the first writer wins,
        across replicas). StorageError ``storage.model_key.not_found`` if the version does
        not exist."""

    @abc.abstractmethod
    def get_model_registration(self, key_id: str, version: int) -> ModelRegistration | None: ...

    @abc.abstractmethod
    def list_model_registrations(self, key_id: str | None = None) -> list[ModelRegistration]:
        """Every registration (of ``key_id`` when given), by key id and version."""

    # -- TPM enrollment and nodes -----------------------------------------------------
    @abc.abstractmethod
    def create_enrollment(self, e: Enrollment) -> None: ...

    @abc.abstractmethod
    def consume_enrollment(self, enrollment_id: str, now: int) -> Enrollment | None:
        """Atomic single use, like ``consume_challenge``."""

    @abc.abstractmethod
    def upsert_node(self, node: Node) -> None: ...

    @abc.abstractmethod
    def get_node(self, node_id: str) -> Node | None: ...

    @abc.abstractmethod
    def get_node_by_ak(self, ak_name: bytes) -> Node | None: ...

    @abc.abstractmethod
    def list_nodes(self) -> list[Node]: ...

    @abc.abstractmethod
    def revoke_node(self, node_id: str, now: int) -> Node | None: ...

    @abc.abstractmethod
    def delete_node(self, node_id: str) -> Node | None:
        """Remove a node (its revocations stay); the removed node, or None."""

    # -- identity revocations ---------------------------------------------------------
    @abc.abstractmethod
    def add_revocation(self, r: Revocation) -> tuple[Revocation, bool]:
        """Revoke ``(r.platform, r.identity)`` (``r.seq`` is assigned here, ascending).
        Returns the revocation in force and whether it is new: an identity already revoked
        keeps its first revocation."""

    @abc.abstractmethod
    def lift_revocation(
        self, platform: str, identity: str, now: int, actor: str
    ) -> Revocation | None:
        """Lift the revocation in force; None if there is none."""

    @abc.abstractmethod
    def list_revocations(self, include_lifted: bool = False) -> list[Revocation]: ...

    @abc.abstractmethod
    def revocation_state(
        self, platform: str, identities: list[str]
    ) -> tuple[int, list[Revocation]]:
        """The highest revocation seq so far (0 if none) and every revocation, in force or
        lifted, of one of ``identities`` (one indexed read: the attestation hot path)."""

    # -- attestation results ----------------------------------------------------------
    @abc.abstractmethod
    def get_attestation(self, jti: str) -> AttestationRecord | None: ...

    @abc.abstractmethod
    def get_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        """A live, unused challenge, without consuming it (``complete_attestation`` does)."""

    @abc.abstractmethod
    def attest_inputs(self, challenge_id: str, node_id: str, now: int) -> AttestInputs:
        """``get_challenge``, ``get_node`` and ``config_generation`` in one statement (one
        round trip on a database server; an Attest's first read)."""

    @abc.abstractmethod
    def complete_attestation(
        self,
        challenge_id: str,
        now: int,
        audit: AuditAppend,
        record: AttestationRecord | None = None,
    ) -> bool:
        """Consume the challenge and, in the same transaction, store ``record`` (if any) and
        append ``audit``. False, with nothing written, if the challenge is no longer live and
        unused: of any number of concurrent callers at most one completes."""

    # -- audit ------------------------------------------------------------------------
    @abc.abstractmethod
    def append_audit(
        self, make_entry: Callable[[int], bytes], link: Callable[[bytes, bytes], bytes]
    ) -> AuditRow:
        """Append one entry atomically: ``make_entry(seq)`` encodes it for the next sequence
        number and ``link(prev_hash, entry)`` chains it (genesis prev = 32 zero bytes)."""

    @abc.abstractmethod
    def list_audit(
        self, after_seq: int = 0, limit: int = 1000, max_bytes: int = AUDIT_PAGE_BYTES
    ) -> list[AuditRow]:
        """Entries after ``after_seq`` in order: at most ``limit``, and no more once their
        entries add up to ``max_bytes`` (at least one, so a caller paging by the last
        sequence number always moves on)."""

    @abc.abstractmethod
    def iter_audit(
        self, batch: int = 1000, max_bytes: int = AUDIT_PAGE_BYTES
    ) -> Iterator[list[AuditRow]]:
        """The whole log as ``list_audit`` pages, each read in its own query (no read
        transaction held across the walk, so WAL checkpoints are not held back)."""

    @abc.abstractmethod
    def audit_head(self) -> tuple[int, bytes]:
        """(sequence number, hash) of the last entry; (0, 32 zero bytes) when empty."""

    @abc.abstractmethod
    def audit_hash_at(self, seq: int) -> bytes | None:
        """The stored hash of entry ``seq``, or None if there is no such entry."""

    # -- token signing keys -----------------------------------------------------------
    @abc.abstractmethod
    def add_signing_key(self, rec: SigningKeyRecord, retire_others_at: int) -> None:
        """Store a new active key and retire every active one at ``retire_others_at``."""

    @abc.abstractmethod
    def list_signing_keys(self) -> list[SigningKeyRecord]: ...

    # -- service secrets and re-wrapping ----------------------------------------------
    @abc.abstractmethod
    def get_secret(self, name: str) -> SecretRecord | None: ...

    @abc.abstractmethod
    def put_secret(self, rec: SecretRecord) -> SecretRecord:
        """Store ``rec`` unless a secret of that name exists; return the one stored (the
        first writer wins, so replicas starting together agree on one secret)."""

    @abc.abstractmethod
    def list_wrapped(self, exclude_kek_id: str, limit: int = 100) -> list[WrappedItem]:
        """Up to ``limit`` wrapped blobs (model key versions, signing keys, secrets) whose
        KEK is not ``exclude_kek_id``, in a stable order."""

    @abc.abstractmethod
    def rewrap(self, item: WrappedItem, wrapped: bytes, kek_id: str) -> bool:
        """Replace ``item``'s blob and KEK id, only if it is still wrapped as listed
        (same blob): False, with nothing written, if it changed meanwhile."""

    @abc.abstractmethod
    def close(self) -> None: ...


__all__ = [
    "AUDIT_PAGE_BYTES",
    "AttestationRecord",
    "AuditAppend",
    "AuditRow",
    "Challenge",
    "Enrollment",
    "KeyVersionRecord",
    "ModelKeyRecord",
    "ModelRegistration",
    "Node",
    "PolicyRecord",
    "ReferenceValue",
    "Revocation",
    "SecretRecord",
    "SigningKeyRecord",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "WrappedItem",
    "WrappedKind",
]
