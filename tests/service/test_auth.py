"""Operator bearer tokens: every malformed claim is UNAUTHENTICATED with a code, never a crash."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sealgate._proto import admin_pb2
from sealgate.protocol.hpke import jwk_thumbprint
from sealgate.service.auth import (
    AUDIENCE,
    AuthError,
    OperatorAuth,
    generate_operator_key,
    public_jwk,
)

from tests.service.conftest import Env

NOW = int(time.time())
GOOD: dict[str, Any] = {
    "sub": "op",
    "aud": AUDIENCE,
    "iat": NOW,
    "exp": NOW + 600,
    "roles": ["admin"],
}


def _sign(private_pem: bytes, payload: bytes) -> str:
    """A token over raw payload bytes, so claims JSON cannot express (huge integers, NaN)
    can be signed too."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    kid = jwk_thumbprint(public_jwk(key.public_key()))
    return jwt.api_jws.encode(payload, key, algorithm="ES256", headers={"kid": kid})  # type: ignore[arg-type]


def _claims(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not _MISSING}).encode()


_MISSING = object()


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


CASES: list[tuple[str, bytes, str]] = [
    ("string exp", _claims(exp=str(NOW + 600)), "auth.token.invalid"),
    ("string iat", _claims(iat=str(NOW)), "auth.token.invalid"),
    ("both strings", _claims(iat=str(NOW), exp=str(NOW + 600)), "auth.token.invalid"),
    ("bool iat", _claims(iat=True), "auth.token.invalid"),
    ("bool exp", _claims(exp=True), "auth.token.expired"),
    ("null exp", _claims(exp=None), "auth.token.invalid"),
    ("list iat", _claims(iat=[NOW]), "auth.token.invalid"),
    ("float", _claims(iat=NOW + 0.5, exp=NOW + 600.5), ""),
    # NumericDates may be fractional (RFC 7519 §2); they count in whole seconds.
    ("float lifetime too long", _claims(exp=NOW + 3601.5), "auth.token.lifetime"),
    ("NaN exp", _claims(exp=float("nan")), "auth.token.invalid"),
    ("infinite exp", _claims(exp=float("inf")), "auth.token.invalid"),
    ("huge exp", _claims(exp=10**30), "auth.token.invalid"),
    ("huge iat", _claims(iat=2**64), "auth.token.invalid"),
    (
        "5000-digit exp",
        b'{"sub":"op","aud":"%s","iat":%d,"exp":%s}' % (AUDIENCE.encode(), NOW, b"9" * 5000),
        "auth.token.invalid",
    ),
    ("negative iat", _claims(iat=-1), "auth.token.invalid"),
    ("missing exp", _claims(exp=_MISSING), "auth.token.invalid"),
    ("missing iat", _claims(iat=_MISSING), "auth.token.invalid"),
    ("missing sub", _claims(sub=_MISSING), "auth.token.invalid"),
    ("missing aud", _claims(aud=_MISSING), "auth.token.invalid"),
    ("expired", _claims(iat=NOW - 1200, exp=NOW - 600), "auth.token.expired"),
    ("an hour and more", _claims(exp=NOW + 3601), "auth.token.lifetime"),
    ("roles not a list", _claims(roles="admin"), "auth.token.invalid"),
    ("payload not an object", b"[1, 2]", "auth.token.invalid"),
    ("payload not JSON", b"\xff\xfe", "auth.token.invalid"),
]


@pytest.fixture(scope="module")
def operator() -> tuple[OperatorAuth, bytes]:
    private, public = generate_operator_key()
    auth = OperatorAuth()
    auth.trust("test", public, ["admin"])
    return auth, private


@pytest.mark.parametrize(("payload", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator_token_claims_table(
    operator: tuple[OperatorAuth, bytes], payload: bytes, code: str
) -> None:
    auth, private = operator
    header = f"Bearer {_sign(private, payload)}"
    if not code:
        assert auth.authenticate(header, now=NOW).roles == {"admin"}
        return
    with pytest.raises(AuthError) as e:
        auth.authenticate(header, now=NOW)
    assert e.value.code == code and e.value.unauthenticated


def test_numeric_string_claims_are_unauthenticated_over_grpc(
    make_env: Callable[..., Env],
) -> None:
    env = make_env()
    private = env.cfg.bootstrap_operator_key.read_bytes()
    now = int(time.time())
    token = _sign(private, _claims(iat=str(now), exp=str(now + 600)))
    with pytest.raises(grpc.RpcError) as e:
        env.admin.ListNodes(
            admin_pb2.ListNodesRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "auth.token.invalid" in (e.value.details() or "")
    # The same claims as numbers are accepted: only the type was wrong.
    token = _sign(private, _claims(iat=now, exp=now + 600))
    env.admin.ListNodes(
        admin_pb2.ListNodesRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
