"""Attestation result tokens: JWT (ES256) in EAR shape (draft-ietf-rats-ear).

Claims: ``eat_profile``, ``iat``, ``exp`` (default 5 minutes), ``jti``, ``ear.verifier-id``,
``eat_nonce`` (base64url of the challenge nonce), ``submods`` (one per platform, each with
``ear.status``, ``ear.trustworthiness-vector`` and ``ear.appraisal-policy-id``; composite
evidence adds one per component, ``<platform>/<component>``, with its status and vector),
and ``cnf`` (RFC 7800) with ``jkt``: the RFC 7638 thumbprint of the runtime key, so only the
holder of that key can use the token to fetch keys. The JWT header carries ``kid``.

Signing keys rotate: a new key signs from now on, in every process (rotation moves the
storage's configuration generation, which each issue checks); retired keys stay in the JWKS
and verify tokens dated before their retirement until every token they signed has expired
(retired_at + token lifetime), then nothing.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate import __version__
from sealgate.broker.kek import KekProvider, as_ring
from sealgate.errors import SealgateError
from sealgate.protocol.hpke import jwk_thumbprint
from sealgate.storage import SigningKeyRecord, Storage, StorageError, StorageUnavailable

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
DEFAULT_TTL = 300
#: Longest lifetime a token may be configured with; bounds how long retired keys stay.
MAX_TTL = 3600


class TokenError(SealgateError):
    """A token is malformed, expired, or not signed by one of our keys."""


class _KeyExists(Exception):
    """Another process made the first signing key first (``ensure_active``)."""


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ec_public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    nums = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64u(nums.x.to_bytes(32, "big")),
        "y": _b64u(nums.y.to_bytes(32, "big")),
    }


def signing_key_aad(kid: str) -> bytes:
    return b"sealgate/v1 token-signing-key\x00" + kid.encode()


#: The name tests and older callers import.
_aad = signing_key_aad


@dataclass(frozen=True)
class _Key:
    kid: str
    private: ec.EllipticCurvePrivateKey | None
    public: ec.EllipticCurvePublicKey
    jwk: dict[str, str]
    retired_at: int


@dataclass(frozen=True)
class _Keys:
    """One immutable snapshot of the signing keys, replaced whole (thread-safe reads)."""

    #: Storage.config_generation() read before these keys were.
    generation: int
    by_kid: dict[str, _Key]
    active: _Key | None


#: Largest NumericDate accepted: the I-JSON exact-integer range (RFC 7493 §2.2).
MAX_NUMERIC_DATE = 2**53 - 1

#: How long after its retirement a key's tokens may still be dated. Retirement is stamped
#: just before the rotating transaction commits; a process that read the configuration
#: generation before that commit signs with the retired key until its next read, i.e. its
#: token in flight. That token must stay good, a token dated later must not.
ROTATION_GRACE = 10


def numeric_date(value: object) -> int | None:
    """A JWT NumericDate (RFC 7519 §2) as an int, or None if it is not one.

    Integers and finite floats in 0..MAX_NUMERIC_DATE; never bool, string or null (PyJWT
    coerces numeric strings and bools with int(), so its own checks let them through).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not 0 <= value <= MAX_NUMERIC_DATE:
        return None
    return int(value)


class TokenIssuer:
    def __init__(
        self,
        storage: Storage,
        kek: KekProvider,
        verifier_id: str = "sealgate",
        ttl: int = DEFAULT_TTL,
        *,
        create: bool = True,
    ) -> None:
        """``create``: make the first signing key now if none is active (else the caller
        calls ``ensure_active`` with its audit entry)."""
        if not 1 <= ttl <= MAX_TTL:
            raise SealgateError("broker.token.bad_ttl", f"token TTL {ttl}s outside 1..{MAX_TTL}")
        self._st = storage
        self._kek = as_ring(kek)
        self.verifier_id = verifier_id
        self.ttl = ttl
        self._snap = _Keys(-1, {}, None)
        # Guards installing a reloaded snapshot (only ever held for the comparison).
        self._install_lock = threading.Lock()
        self.reload()
        if create:
            self.ensure_active()

    def ensure_active(self, record: Callable[[str], object] | None = None) -> None:
        """Make the first signing key unless one is active. Replicas starting together on
        an empty database must end with one key, not one each: the check and the insert
        share one write transaction, which ``record(kid)`` (the creation's audit entry)
        opens by appending to the audit chain. Appends serialize on every backend (the
        chain is linear), so the check after it sees any key a competitor committed; the
        loser rolls back, entry included, and loads the winner's key."""
        if self._snap.active is not None:
            return

        def check(kid: str) -> None:
            if record is not None:
                record(kid)
            if any(r.retired_at == 0 for r in self._st.list_signing_keys()):
                raise _KeyExists()

        try:
            with self._st.atomic():
                self.rotate(before_insert=check)
        except _KeyExists:
            pass
        except StorageError as e:
            # A competitor's append or insert won a unique constraint: its key is there.
            if isinstance(e, StorageUnavailable):
                raise
        self.reload()
        if self._snap.active is None:
            raise SealgateError("broker.token.no_key", "no active signing key")

    def reload(self) -> None:
        """Read the keys afresh. Keys already loaded keep their unwrapped private part (one
        KEK unwrap per key and process, not per reload)."""
        # No lock is held over the reads: on a remote database the hot path runs them on
        # the event loop's thread (sealgate.storage.bridge), where another call waiting for
        # that lock would block the holder too. Concurrent reloads each read, and the
        # snapshot of the newest generation wins, so a slower one never installs an older
        # snapshot over a newer.
        snap = self._load()
        with self._install_lock:
            if snap.generation >= self._snap.generation:
                self._snap = snap

    def _load(self) -> _Keys:
        # The generation first: a rotation committed between the two reads only costs
        # one more reload later, never a stale snapshot labelled current.
        generation = self._st.config_generation()
        prev = self._snap.by_kid
        keys: dict[str, _Key] = {}
        active: _Key | None = None
        for rec in self._st.list_signing_keys():
            old = prev.get(rec.kid)
            private: ec.EllipticCurvePrivateKey | None = None
            if rec.retired_at == 0:
                if old is not None and old.private is not None:
                    private = old.private
                else:
                    der = self._kek.unwrap(
                        rec.wrapped_private, signing_key_aad(rec.kid), rec.kek_id
                    )
                    loaded = serialization.load_der_private_key(der, password=None)
                    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
                    private = loaded
            if old is not None:
                k = _Key(rec.kid, private, old.public, old.jwk, rec.retired_at)
            else:
                pub_jwk = json.loads(rec.public_jwk)
                x = int.from_bytes(base64.urlsafe_b64decode(pub_jwk["x"] + "=="), "big")
                y = int.from_bytes(base64.urlsafe_b64decode(pub_jwk["y"] + "=="), "big")
                public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
                k = _Key(rec.kid, private, public, pub_jwk, rec.retired_at)
            keys[rec.kid] = k
            if private is not None:
                active = k
        return _Keys(generation, keys, active)

    def refresh(self, generation: int | None = None) -> None:
        """Reload if the keys changed since they were read: in any process, because every
        change to signing_keys moves ``Storage.config_generation`` (one indexed read, or
        none when the caller read the generation already)."""
        current = self._st.config_generation() if generation is None else generation
        if current != self._snap.generation:
            self.reload()

    def rotate(
        self, now: int | None = None, before_insert: Callable[[str], object] | None = None
    ) -> str:
        """Make a new signing key active; the old ones only verify from now on.
        ``before_insert(kid)`` runs just before the key is stored (in the caller's
        transaction: an audit entry written there serializes concurrent rotations, so each
        retires the one before it and one key stays active)."""
        key = ec.generate_private_key(ec.SECP256R1())
        pub = ec_public_jwk(key.public_key())
        kid = jwk_thumbprint(pub)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        wrapped = self._kek.wrap(der, signing_key_aad(kid))
        # Stamped after the (possibly remote) KEK wrap, as close to the commit as possible:
        # tokens the old key signs until other processes see the commit must not postdate
        # its retirement by more than ROTATION_GRACE.
        at = int(time.time()) if now is None else now
        rec = SigningKeyRecord(kid, wrapped, json.dumps(pub), at, 0, self._kek.kek_id)
        if before_insert is not None:
            before_insert(kid)
        self._st.add_signing_key(rec, retire_others_at=at)
        self.reload()
        return kid

    @property
    def active_kid(self) -> str:
        active = self._snap.active
        assert active is not None
        return active.kid

    def jwks(self, now: int | None = None) -> dict[str, Any]:
        """Public keys that may still verify an unexpired token."""
        at = int(time.time()) if now is None else now
        # Another worker process or replica may have rotated.
        self.refresh()
        out = []
        for k in self._snap.by_kid.values():
            if k.retired_at and k.retired_at + self.ttl < at:
                continue
            out.append({**k.jwk, "kid": k.kid, "use": "sig", "alg": "ES256"})
        return {"keys": out}

    def issue(
        self,
        *,
        nonce: bytes,
        runtime_jkt: str,
        submods: dict[str, dict[str, Any]],
        now: int | None = None,
        extra: dict[str, Any] | None = None,
        generation: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign a token with the current key. ``generation``: the caller's fresh read of
        ``Storage.config_generation`` (else this reads it), so a rotation made by another
        process is used from this token on."""
        self.refresh(generation)
        active = self._snap.active
        if active is None or active.private is None:
            raise SealgateError("broker.token.no_key", "no active signing key")
        at = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "eat_profile": EAR_PROFILE,
            "iat": at,
            "exp": at + self.ttl,
            "jti": uuid.uuid4().hex,
            "ear.verifier-id": {"developer": self.verifier_id, "build": f"sealgate {__version__}"},
            "eat_nonce": _b64u(nonce),
            "submods": submods,
            "cnf": {"jkt": runtime_jkt},
        }
        if extra:
            claims.update(extra)
        token = jwt.encode(claims, active.private, algorithm="ES256", headers={"kid": active.kid})
        return token, claims

    def verify(
        self, token: str, now: int | None = None, generation: int | None = None
    ) -> dict[str, Any]:
        """Signature (by kid), expiry, shape and the signing key's retirement; TokenError with
        a stable code otherwise. A retired key verifies only tokens dated before its
        retirement (+ ROTATION_GRACE), and nothing once it has been retired longer than the
        token lifetime: a leaked old key cannot mint tokens that verify."""
        at = int(time.time()) if now is None else now
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("broker.token.malformed", "token is not a JWT") from None
        kid = header.get("kid")
        # A key made by another process or replica moved the generation: no reload per
        # unknown kid (which any caller could send).
        self.refresh(generation)
        key = self._snap.by_kid.get(kid) if isinstance(kid, str) else None
        if header.get("alg") != "ES256" or key is None:
            raise TokenError("broker.token.unknown_key", "token not signed by a sealgate key")
        if key.retired_at and at > key.retired_at + self.ttl:
            raise TokenError(
                "broker.token.key_retired",
                "token signed by a key retired longer than the token lifetime",
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public,
                algorithms=["ES256"],
                options={"require": ["exp", "iat", "jti", "cnf"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("broker.token.expired", "token has expired") from None
        except jwt.PyJWTError as e:
            raise TokenError("broker.token.invalid", f"token rejected: {e}") from None
        iat, exp = numeric_date(claims["iat"]), numeric_date(claims["exp"])
        cnf = claims["cnf"]
        if (
            iat is None
            or exp is None
            or not isinstance(claims["jti"], str)
            or not isinstance(cnf, dict)
            or not isinstance(cnf.get("jkt"), str)
            # A thumbprint is base64url (RFC 7638 §3); hmac.compare_digest takes only ASCII str.
            or not cnf["jkt"].isascii()
        ):
            raise TokenError("broker.token.invalid", "token claims have the wrong types")
        if not 0 < exp - iat <= MAX_TTL:
            raise TokenError("broker.token.invalid", f"token lifetime outside 1..{MAX_TTL}s")
        if exp <= at:
            raise TokenError("broker.token.expired", "token has expired")
        if key.retired_at and iat > key.retired_at + ROTATION_GRACE:
            raise TokenError(
                "broker.token.key_retired", "token dated after its signing key was retired"
            )
        if claims.get("eat_profile") != EAR_PROFILE:
            raise TokenError("broker.token.invalid", "not an EAR token")
        return claims
