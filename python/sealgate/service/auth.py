"""Operator authentication and per-method roles (README "Service", docs/threat-model.md).

Operators present ``authorization: Bearer <JWT>``: ES256 (or EdDSA) signed by an operator
key the server trusts, ``kid`` = the RFC 7638 thumbprint of that key, ``aud`` =
``sealgate-admin``, a ``roles`` list, and a short life (``exp - iat`` ≤ MAX_OPERATOR_TTL).
The roles a token may carry are capped by the key's configured roles. A call without valid
credentials is UNAUTHENTICATED; a valid caller without the method's role PERMISSION_DENIED.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sealgate.broker.tokens import ec_public_jwk, numeric_date
from sealgate.errors import SealgateError
from sealgate.protocol.hpke import jwk_thumbprint

AUDIENCE = "sealgate-admin"
#: Operator tokens are short-lived: at most an hour between iat and exp.
MAX_OPERATOR_TTL = 3600

READ = frozenset({"admin", "operator", "auditor"})
WRITE = frozenset({"admin", "operator"})
KEYS = frozenset({"admin"})

#: Which roles may call each Admin method. Model keys are admin-only; auditors read.
METHOD_ROLES: dict[str, frozenset[str]] = {
    "AddReferenceValue": WRITE,
    "ListReferenceValues": READ,
    "RemoveReferenceValue": WRITE,
    "BulkAddReferenceValues": WRITE,
    "PutPolicy": WRITE,
    "GetPolicy": READ,
    "ListPolicies": READ,
    "DeletePolicy": WRITE,
    "ImportModelKey": KEYS,
    "GenerateModelKey": KEYS,
    "RotateModelKey": KEYS,
    "ListModelKeys": READ,
    # Binding a model decides what a key decrypts: admin only, like the keys themselves.
    "RegisterModel": KEYS,
    "ListModels": READ,
    "ListNodes": READ,
    "RevokeNode": WRITE,
    "ForgetNode": WRITE,
    "RevokeIdentity": WRITE,
    "ListRevocations": READ,
    # Lifting undoes a refusal: admin only, like model keys.
    "LiftRevocation": KEYS,
    "ListAudit": READ,
    "VerifyAudit": READ,
    "RotateSigningKey": KEYS,
}


class AuthError(SealgateError):
    def __init__(self, code: str, message: str, unauthenticated: bool) -> None:
        super().__init__(code, message)
        self.unauthenticated = unauthenticated


@dataclass(frozen=True)
class Principal:
    subject: str
    key_name: str
    roles: frozenset[str]


def public_jwk(key: Any) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return ec_public_jwk(key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        x = base64.urlsafe_b64encode(key.public_bytes_raw()).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x}
    raise SealgateError("auth.key.unsupported", "operator keys are P-256 or Ed25519")


@dataclass(frozen=True)
class _Trusted:
    name: str
    key: Any
    roles: frozenset[str]
    alg: str


class OperatorAuth:
    def __init__(self) -> None:
        self._keys: dict[str, _Trusted] = {}

    def trust(self, name: str, public_pem: bytes, roles: list[str]) -> str:
        key = serialization.load_pem_public_key(public_pem)
        kid = jwk_thumbprint(public_jwk(key))
        alg = "ES256" if isinstance(key, ec.EllipticCurvePublicKey) else "EdDSA"
        self._keys[kid] = _Trusted(name, key, frozenset(roles), alg)
        return kid

    def authenticate(self, authorization: str | None, now: int | None = None) -> Principal:
        if not authorization:
            raise AuthError("auth.token.missing", "no bearer token", True)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("auth.token.malformed", "authorization must be 'Bearer <jwt>'", True)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("auth.token.malformed", "bearer token is not a JWT", True) from None
        trusted = self._keys.get(str(header.get("kid")))
        if trusted is None:
            raise AuthError("auth.token.unknown_key", "token not signed by a trusted key", True)
        try:
            claims = jwt.decode(
                token,
                trusted.key,
                algorithms=[trusted.alg],
                audience=AUDIENCE,
                options={"require": ["exp", "iat", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("auth.token.expired", "bearer token has expired", True) from None
        except jwt.PyJWTError as e:
            raise AuthError("auth.token.invalid", f"bearer token rejected: {e}", True) from None
        # PyJWT's own checks coerce with int(), so "123" and true pass them: the claims
        # must be NumericDates (RFC 7519 §2) before any arithmetic on them.
        iat, exp = numeric_date(claims["iat"]), numeric_date(claims["exp"])
        if iat is None or exp is None:
            raise AuthError("auth.token.invalid", "iat and exp must be NumericDates", True)
        at = int(time.time()) if now is None else now
        if exp <= at:
            raise AuthError("auth.token.expired", "bearer token has expired", True)
        if exp - iat > MAX_OPERATOR_TTL or iat > at + 60:
            raise AuthError("auth.token.lifetime", "operator tokens live at most an hour", True)
        roles = claims.get("roles", [])
        if not isinstance(roles, list):
            raise AuthError("auth.token.invalid", "roles must be a list", True)
        effective = frozenset(str(r) for r in roles) & trusted.roles
        return Principal(str(claims["sub"]), trusted.name, effective)

    @staticmethod
    def authorize(principal: Principal, method: str) -> None:
        allowed = METHOD_ROLES.get(method)
        if allowed is None or not principal.roles & allowed:
            raise AuthError(
                "auth.role.denied",
                f"{principal.subject} ({', '.join(sorted(principal.roles)) or 'no role'}) may "
                f"not call {method}; needs one of {', '.join(sorted(allowed or ()))}",
                False,
            )


def mint_operator_token(
    private_pem: bytes, subject: str, roles: list[str], ttl: int = 600, now: int | None = None
) -> str:
    """`sealgate admin token`: a short-lived bearer token from a local operator key."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise SealgateError("auth.key.unsupported", "operator keys are P-256 or Ed25519")
    if not 1 <= ttl <= MAX_OPERATOR_TTL:
        raise SealgateError("auth.token.lifetime", f"ttl must be 1..{MAX_OPERATOR_TTL}")
    at = int(time.time()) if now is None else now
    kid = jwk_thumbprint(public_jwk(key.public_key()))
    alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "EdDSA"
    claims = {
        "sub": subject,
        "aud": AUDIENCE,
        "iat": at,
        "exp": at + ttl,
        "roles": roles,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def generate_operator_key() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new P-256 operator key."""
    key = ec.generate_private_key(ec.SECP256R1())
    priv = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return priv, pub
