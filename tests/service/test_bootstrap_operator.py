"""``bootstrap_operator: false``: the data dir's admin key is neither created nor trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
from sealgate.errors import UsageError
from sealgate.service.auth import AuthError, generate_operator_key, mint_operator_token
from sealgate.service.config import OperatorKey, ServiceConfig
from sealgate.service.server import build_auth, ensure_bootstrap_operator


def _cfg(tmp_path: Path, **kw: object) -> ServiceConfig:
    priv, pub = generate_operator_key()
    (tmp_path / "alice.pem").write_bytes(pub)
    (tmp_path / "alice-key.pem").write_bytes(priv)
    cfg = ServiceConfig(
        data_dir=tmp_path / "data",
        operators=[OperatorKey("alice", tmp_path / "alice.pem", ["admin"])],
    )
    cfg.data_dir.mkdir()
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_bootstrap_key_trusted_by_default(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    auth = build_auth(cfg)
    tok = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "boot", ["admin"])
    assert auth.authenticate(f"Bearer {tok}").key_name == "bootstrap"


def test_bootstrap_key_disabled(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, bootstrap_operator=False)
    build_auth(cfg)
    assert not cfg.bootstrap_operator_key.exists()
    # A key left from an earlier start (or stolen from a backup) no longer works.
    ensure_bootstrap_operator(cfg)
    auth = build_auth(cfg)
    tok = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "boot", ["admin"])
    with pytest.raises(AuthError) as e:
        auth.authenticate(f"Bearer {tok}")
    assert e.value.unauthenticated
    alice = mint_operator_token((tmp_path / "alice-key.pem").read_bytes(), "alice", ["admin"])
    assert auth.authenticate(f"Bearer {alice}").key_name == "alice"


def test_bootstrap_disabled_needs_operators(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, bootstrap_operator=False, operators=[])
    with pytest.raises(UsageError) as e:
        build_auth(cfg)
    assert e.value.code == "config.invalid"
