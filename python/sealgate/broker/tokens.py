"""Attestation result tokens: JWT (ES256) in EAR shape (draft-ietf-rats-ear).

Claims: ``eat_profile``, ``iat``, ``exp`` (default 5 minutes), ``jti``, ``ear.verifier-id``,
``eat_nonce`` (base64url of the challenge nonce), ``submods`` (one per platform, each with
``ear.status``, ``ear.trustworthiness-vector`` and ``ear.appraisal-policy-id``), and ``cnf``
(RFC 7800) with ``jkt``: the RFC 7638 thumbprint of the runtime key, so only the holder of
that key can use the token to fetch keys. The JWT header carries ``kid``.

Signing keys rotate: a new key signs from now on; retired keys stay in the JWKS until every
token they signed has expired (retired_at + max token lifetime).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate import __version__
from sealgate.broker.hpke import jwk_thumbprint
from sealgate.broker.kek import KekProvider
from sealgate.errors import SealgateError
from sealgate.storage import SigningKeyRecord, Storage

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
DEFAULT_TTL = 300
#: Longest lifetime a token may be configured with; bounds how long retired keys stay.
MAX_TTL = 3600


class TokenError(SealgateError):
    """A token is malformed, expired, or not signed by one of our keys."""


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


def _aad(kid: str) -> bytes:
    return b"sealgate/v1 token-signing-key\x00" + kid.encode()


@dataclass(frozen=True)
class _Key:
    kid: str
    private: ec.EllipticCurvePrivateKey | None
    public: ec.EllipticCurvePublicKey
    jwk: dict[str, str]
    retired_at: int


class TokenIssuer:
    def __init__(
        self,
        storage: Storage,
        kek: KekProvider,
        verifier_id: str = "sealgate",
        ttl: int = DEFAULT_TTL,
    ) -> None:
        if not 1 <= ttl <= MAX_TTL:
            raise SealgateError("broker.token.bad_ttl", f"token TTL {ttl}s outside 1..{MAX_TTL}")
        self._st = storage
        self._kek = kek
        self.verifier_id = verifier_id
        self.ttl = ttl
        self._keys: dict[str, _Key] = {}
        self._active: _Key | None = None
        self.reload()
        if self._active is None:
            self.rotate()

    def reload(self) -> None:
        keys: dict[str, _Key] = {}
        active: _Key | None = None
        for rec in self._st.list_signing_keys():
            pub_jwk = json.loads(rec.public_jwk)
            private: ec.EllipticCurvePrivateKey | None = None
            if rec.retired_at == 0:
                der = self._kek.unwrap(rec.wrapped_private, _aad(rec.kid))
                loaded = serialization.load_der_private_key(der, password=None)
                assert isinstance(loaded, ec.EllipticCurvePrivateKey)
                private = loaded
            x = int.from_bytes(base64.urlsafe_b64decode(pub_jwk["x"] + "=="), "big")
            y = int.from_bytes(base64.urlsafe_b64decode(pub_jwk["y"] + "=="), "big")
            public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            k = _Key(rec.kid, private, public, pub_jwk, rec.retired_at)
            keys[rec.kid] = k
            if private is not None:
                active = k
        self._keys = keys
        self._active = active

    def rotate(self, now: int | None = None) -> str:
        """Make a new signing key active; the old ones only verify from now on."""
        at = int(time.time()) if now is None else now
        key = ec.generate_private_key(ec.SECP256R1())
        pub = ec_public_jwk(key.public_key())
        kid = jwk_thumbprint(pub)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        rec = SigningKeyRecord(kid, self._kek.wrap(der, _aad(kid)), json.dumps(pub), at, 0)
        self._st.add_signing_key(rec, retire_others_at=at)
        self.reload()
        return kid

    @property
    def active_kid(self) -> str:
        assert self._active is not None
        return self._active.kid

    def jwks(self, now: int | None = None) -> dict[str, Any]:
        """Public keys that may still verify an unexpired token."""
        at = int(time.time()) if now is None else now
        # Another worker process or replica may have rotated: read the keys afresh (rare call).
        self.reload()
        out = []
        for k in self._keys.values():
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
    ) -> tuple[str, dict[str, Any]]:
        if self._active is None or self._active.private is None:
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
        token = jwt.encode(
            claims, self._active.private, algorithm="ES256", headers={"kid": self._active.kid}
        )
        return token, claims

    def verify(self, token: str, now: int | None = None) -> dict[str, Any]:
        """Signature (by kid), expiry and shape; TokenError with a stable code otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("broker.token.malformed", "token is not a JWT") from None
        kid = header.get("kid")
        if isinstance(kid, str) and kid not in self._keys:
            self.reload()  # signed by a key another worker or replica made since we loaded
        if header.get("alg") != "ES256" or not isinstance(kid, str) or kid not in self._keys:
            raise TokenError("broker.token.unknown_key", "token not signed by a sealgate key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._keys[kid].public,
                algorithms=["ES256"],
                options={"require": ["exp", "iat", "jti", "cnf"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("broker.token.expired", "token has expired") from None
        except jwt.PyJWTError as e:
            raise TokenError("broker.token.invalid", f"token rejected: {e}") from None
        if now is not None and claims["exp"] <= now:
            raise TokenError("broker.token.expired", "token has expired")
        if claims.get("eat_profile") != EAR_PROFILE:
            raise TokenError("broker.token.invalid", "not an EAR token")
        return claims
