"""Broker: KEK file, wrapped model keys, HPKE sealing, EAR tokens, audit chain."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from sealgate.broker.audit import AuditLog, decode_entry
from sealgate.broker.kek import KekError, LocalKeyFileProvider
from sealgate.broker.keys import ModelKeys
from sealgate.broker.tokens import EAR_PROFILE, ROTATION_GRACE, TokenError, TokenIssuer
from sealgate.errors import UsageError
from sealgate.protocol import runtime_binding
from sealgate.protocol.hpke import (
    MLKEM768_X25519,
    X25519,
    RuntimeKeyPair,
    SealError,
    jwk,
    jwk_thumbprint,
    release_info,
    seal,
)
from sealgate.storage.sqlite import SqliteStorage


@pytest.fixture
def st(tmp_path: Path) -> SqliteStorage:
    return SqliteStorage(tmp_path / "s.db")


@pytest.fixture
def kek(tmp_path: Path) -> LocalKeyFileProvider:
    return LocalKeyFileProvider(tmp_path / "kek.key")


def test_kek_file_created_0600_and_reused(tmp_path: Path) -> None:
    p = tmp_path / "d" / "kek.key"
    a = LocalKeyFileProvider(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    b = LocalKeyFileProvider(p)
    assert a.kek_id == b.kek_id
    blob = a.wrap(b"secret", b"aad")
    assert b.unwrap(blob, b"aad") == b"secret"
    with pytest.raises(KekError):
        b.unwrap(blob, b"other aad")
    os.chmod(p, 0o644)
    with pytest.raises(KekError) as e:
        LocalKeyFileProvider(p)
    assert e.value.code == "broker.kek.unsafe_permissions"


def test_model_keys_wrapped_and_bound_to_id_and_version(
    st: SqliteStorage, kek: LocalKeyFileProvider, tmp_path: Path
) -> None:
    mk = ModelKeys(st, kek)
    mk.create("llama", b"k" * 32, "demo", now=1)
    rec = mk.rotate("llama", None, now=2)
    assert rec.current_version == 2 and rec.versions == (1, 2)
    assert mk.material("llama", 1) == (1, b"k" * 32)
    v2 = mk.material("llama")
    assert v2[0] == 2 and len(v2[1]) == 32 and v2[1] != b"k" * 32
    raw = sqlite3.connect(tmp_path / "s.db").execute("SELECT wrapped FROM key_versions").fetchall()
    assert all(b"k" * 32 not in bytes(r[0]) for r in raw)
    # A wrapped blob moved to another version does not open (AAD binds id + version).
    c = sqlite3.connect(tmp_path / "s.db")
    c.execute(
        "UPDATE key_versions SET wrapped = (SELECT wrapped FROM key_versions WHERE version = 1)"
        " WHERE version = 2"
    )
    c.commit()
    with pytest.raises(KekError):
        mk.material("llama", 2)
    with pytest.raises(UsageError):
        mk.create("llama", None, "", now=3)
    with pytest.raises(UsageError):
        mk.create("bad id!", None, "", now=3)
    with pytest.raises(UsageError):
        mk.create("short", b"x", "", now=3)


@pytest.mark.parametrize("suite", [X25519, MLKEM768_X25519])
def test_hpke_seal_open_and_info_binding(suite: str) -> None:
    node = RuntimeKeyPair.generate(suite)
    info = release_info("llama", 2, "chal-1")
    sealed = seal(suite, node.public_bytes, b"m" * 32, info)
    assert node.open(sealed, info) == b"m" * 32
    for wrong in (release_info("llama", 1, "chal-1"), release_info("other", 2, "chal-1"),
                  release_info("llama", 2, "chal-2")):  # fmt: skip
        with pytest.raises(SealError):
            node.open(sealed, wrong)
    with pytest.raises(SealError):
        RuntimeKeyPair.generate(suite).open(sealed, info)
    with pytest.raises(UsageError):
        seal(suite, node.public_bytes[:-1], b"m", info)


_P = 2**255 - 19
#: Every 32-byte encoding of a small-order Curve25519 point under RFC 7748 §5 decoding:
#: 0, 1, the two order-8 points, p - 1, and p, p + 1 (non-canonical 0 and 1).
_LOW_ORDER = [
    v.to_bytes(32, "little")
    for v in (
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
        _P,
        _P + 1,
    )
]


@pytest.mark.parametrize("suite", [X25519, MLKEM768_X25519])
@pytest.mark.parametrize("point", range(len(_LOW_ORDER)))
def test_low_order_x25519_runtime_key_refused(suite: str, point: int) -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    low = _LOW_ORDER[point]
    # The list is right: X25519 with this peer key gives the all-zero secret (RFC 7748 §6.1),
    # which the library refuses.
    with pytest.raises(ValueError):
        x25519.X25519PrivateKey.generate().exchange(x25519.X25519PublicKey.from_public_bytes(low))
    good = RuntimeKeyPair.generate(suite).public_bytes
    bad = good[:-32] + low  # the hybrid: ML-KEM part fine, X25519 part of small order
    for fn in (lambda: jwk(suite, bad), lambda: seal(suite, bad, b"m", b"i")):
        with pytest.raises(UsageError) as e:
            fn()
        assert e.value.code == "broker.hpke.low_order_key"
    # Setting the masked top bit does not make it acceptable (RFC 7748 §5 ignores it).
    flipped = bad[:-1] + bytes([bad[-1] | 0x80])
    with pytest.raises(UsageError):
        jwk(suite, flipped)


def test_ordinary_x25519_keys_are_not_flagged() -> None:
    # 2p - 1 and 2^256 - 1 decode (top bit masked) to ordinary points: the library accepts
    # them, so must sealgate.
    for v in (2 * _P - 1, 2**256 - 1):
        assert jwk(X25519, v.to_bytes(32, "little"))["crv"] == "X25519"
    for _ in range(50):
        assert jwk(X25519, RuntimeKeyPair.generate().public_bytes)["kty"] == "OKP"


def test_jwk_thumbprint_rfc7638_example() -> None:
    # RFC 7638 §3.1 example key and thumbprint.
    key = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
        "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt"
        "-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
    }
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    node = RuntimeKeyPair.generate()
    assert jwk(X25519, node.public_bytes)["crv"] == "X25519"


def test_runtime_binding_is_sha512_of_nonce_and_key() -> None:
    import hashlib

    assert runtime_binding(b"n" * 32, b"k" * 32) == hashlib.sha512(b"n" * 32 + b"k" * 32).digest()


def test_tokens_ear_shape_rotation_and_expiry(st: SqliteStorage, kek: LocalKeyFileProvider) -> None:
    iss = TokenIssuer(st, kek, verifier_id="test", ttl=300)
    sub = {"tpm": {"ear.status": "affirming", "ear.trustworthiness-vector": {"executables": 2},
                   "ear.appraisal-policy-id": "policy:llama#1"}}  # fmt: skip
    tok, claims = iss.issue(nonce=b"n" * 32, runtime_jkt="abc", submods=sub)
    assert jwt.get_unverified_header(tok)["kid"] == iss.active_kid
    got = iss.verify(tok)
    assert got["eat_profile"] == EAR_PROFILE and got["cnf"] == {"jkt": "abc"}
    assert got["exp"] - got["iat"] == 300 and got["submods"] == sub
    old_kid = iss.active_kid
    iss.rotate()
    assert iss.active_kid != old_kid
    # An unexpired token signed by the retired key still verifies, also after a restart.
    assert TokenIssuer(st, kek).verify(tok)["jti"] == claims["jti"]
    kids = {k["kid"] for k in iss.jwks()["keys"]}
    assert kids == {old_kid, iss.active_kid}
    # Once every token it signed has expired, the retired key leaves the JWKS.
    assert {k["kid"] for k in iss.jwks(now=claims["iat"] + 10_000)["keys"]} == {iss.active_kid}
    with pytest.raises(TokenError) as e:
        iss.verify(tok, now=claims["exp"])
    assert e.value.code == "broker.token.expired"
    head, body, sig = tok.split(".")
    with pytest.raises(TokenError):
        iss.verify(f"{head}.{body}x.{sig}")
    with pytest.raises(TokenError):
        iss.verify("not a token")


def _audit(st: SqliteStorage, n: int) -> AuditLog:
    log = AuditLog(st)
    for i in range(n):
        log.append("attest.granted", "node-1", {"i": i, "codes": []}, at=1000 + i)
    return log


def test_audit_chain_detects_edit_delete_reorder(st: SqliteStorage, tmp_path: Path) -> None:
    log = _audit(st, 6)
    v = log.verify()
    assert v.ok and v.entries == 6
    assert decode_entry(log.list()[0].entry)["event"] == "attest.granted"
    db = sqlite3.connect(tmp_path / "s.db")
    orig = db.execute("SELECT entry FROM audit WHERE seq = 3").fetchone()[0]
    edited = bytes(orig).replace(b"node-1", b"node-X")
    db.execute("UPDATE audit SET entry = ? WHERE seq = 3", (edited,))
    db.commit()
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 3 and v.code == "audit.chain.hash_mismatch"
    db.execute("UPDATE audit SET entry = ? WHERE seq = 3", (orig,))
    db.execute("DELETE FROM audit WHERE seq = 4")
    db.commit()
    v = log.verify()
    assert not v.ok and v.first_bad_seq == 5
    # Reorder: swap two rows' contents (entries and hashes together).
    st2 = SqliteStorage(tmp_path / "t.db")
    log2 = _audit(st2, 4)
    db2 = sqlite3.connect(tmp_path / "t.db")
    r2 = db2.execute("SELECT entry, hash FROM audit WHERE seq = 2").fetchone()
    r3 = db2.execute("SELECT entry, hash FROM audit WHERE seq = 3").fetchone()
    db2.execute("UPDATE audit SET entry = ?, hash = ? WHERE seq = 2", r3)
    db2.execute("UPDATE audit SET entry = ?, hash = ? WHERE seq = 3", r2)
    db2.commit()
    v = log2.verify()
    assert not v.ok and v.first_bad_seq == 2


def _leaked(st: SqliteStorage, kek: LocalKeyFileProvider, kid: str) -> Any:
    """A signing key's private part, as whoever holds the database and the KEK has it."""
    from cryptography.hazmat.primitives import serialization
    from sealgate.broker.tokens import _aad

    rec = next(r for r in st.list_signing_keys() if r.kid == kid)
    return serialization.load_der_private_key(
        kek.unwrap(rec.wrapped_private, _aad(kid)), password=None
    )


def _claims(iat: int, exp: int, **extra: Any) -> dict[str, Any]:
    return {"eat_profile": EAR_PROFILE, "iat": iat, "exp": exp, "jti": "j", "cnf": {"jkt": "a"},
            **extra}  # fmt: skip


def test_a_retired_key_verifies_only_what_it_signed_before_retirement(
    st: SqliteStorage, kek: LocalKeyFileProvider
) -> None:
    now = int(time.time())
    iss = TokenIssuer(st, kek, ttl=3600)
    old = iss.active_kid
    key = _leaked(st, kek, old)
    iss.rotate(now=now - 1000)  # retired 1000 s ago, within the token lifetime

    def code(claims: dict[str, Any], at: int | None = None) -> str:
        tok = jwt.encode(claims, key, algorithm="ES256", headers={"kid": old})
        with pytest.raises(TokenError) as e:
            iss.verify(tok, now=at)
        return e.value.code

    # Dated before the retirement: still verifies (tokens it signed live on).
    tok = jwt.encode(_claims(now - 1100, now + 100), key, algorithm="ES256", headers={"kid": old})
    assert iss.verify(tok)["jti"] == "j"
    # Dated after it (beyond the grace for processes that had not seen the rotation yet).
    assert code(_claims(now - 1000 + ROTATION_GRACE + 1, now + 100)) == "broker.token.key_retired"
    # Ten years: no token outlives the maximum lifetime, whatever key signed it.
    assert code(_claims(now - 1100, now + 10 * 365 * 86400)) == "broker.token.invalid"
    # Once retired longer than the token lifetime the key verifies nothing at all, not
    # even the tokens it signed (they have expired).
    assert code(_claims(now - 1100, now + 100), at=now - 1000 + 3601) == "broker.token.key_retired"
    iss2 = TokenIssuer(st, kek, ttl=300)  # a shorter configured lifetime bounds it sooner
    with pytest.raises(TokenError) as e:
        iss2.verify(tok)
    assert e.value.code == "broker.token.key_retired"


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "4102444800"},
        {"iat": "1"},
        {"iat": True},
        {"exp": None},
        {"exp": 2**64},
        {"jti": 7},
        {"cnf": "abc"},
        {"cnf": {"jkt": 5}},
        {"cnf": {"jkt": "é"}},
    ],
)
def test_tokens_with_claims_of_the_wrong_type_are_invalid(
    st: SqliteStorage, kek: LocalKeyFileProvider, changes: dict[str, Any]
) -> None:
    iss = TokenIssuer(st, kek)
    now = int(time.time())
    tok = jwt.encode(
        {**_claims(now, now + 60), **changes},
        _leaked(st, kek, iss.active_kid),
        algorithm="ES256",
        headers={"kid": iss.active_kid},
    )
    with pytest.raises(TokenError) as e:
        iss.verify(tok)
    assert e.value.code in ("broker.token.invalid", "broker.token.expired")


def test_rotation_in_one_process_is_used_by_the_next_token_of_another(
    tmp_path: Path, kek: LocalKeyFileProvider
) -> None:
    """Two issuers on two connections to one database file, as two worker processes."""
    a = TokenIssuer(SqliteStorage(tmp_path / "w.db"), kek)
    b = TokenIssuer(SqliteStorage(tmp_path / "w.db"), kek)
    sub: dict[str, dict[str, Any]] = {}
    tok, _ = b.issue(nonce=b"n" * 32, runtime_jkt="abc", submods=sub)
    assert jwt.get_unverified_header(tok)["kid"] == a.active_kid
    new = a.rotate()
    tok, _ = b.issue(nonce=b"n" * 32, runtime_jkt="abc", submods=sub)
    assert jwt.get_unverified_header(tok)["kid"] == new == b.active_kid
    assert a.verify(tok)["cnf"] == {"jkt": "abc"}
    assert new in {k["kid"] for k in b.jwks()["keys"]}
