"""TDX: collateral age bound, verifier-side collateral, bounded caches keyed by fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sealgate import tdx
from sealgate.errors import ChainError, ParseError
from sealgate.lru import BoundedCache
from sealgate.result import VerifyResult
from sealgate.tdx.fetch import store
from sealgate.tdx.pck import chain_key
from sealgate.testing.tdx import DEFAULT_FMSPC, FakeIntel, Platform

ISSUED = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


def _codes(res: VerifyResult) -> list[str]:
    return sorted({e.code for e in res.errors})


def test_old_but_validly_signed_collateral_is_refused_with_an_age_bound() -> None:
    old = FakeIntel(issue_date=ISSUED, revoked_serials=())
    quote, roots = old.quote(b"x"), [old.root_pem]
    at = ISSUED + timedelta(days=20)
    # Without a bound (the CLI default) it verifies: nextUpdate is far away.
    assert tdx.verify_quote(quote, collateral=old.collateral(), roots=roots, at=at).verified
    res = tdx.verify_quote(
        quote, collateral=old.collateral(), roots=roots, at=at, collateral_max_age=WEEK
    )
    assert _codes(res) == ["tdx.collateral.stale"]
    assert {e.message.split(" issued")[0] for e in res.errors} == {
        "TCB info", "QE identity", "PCK CRL"
    }  # fmt: skip
    fresh = tdx.verify_quote(
        quote, collateral=old.collateral(), roots=roots, at=ISSUED + timedelta(days=2),
        collateral_max_age=WEEK,
    )  # fmt: skip
    assert fresh.verified, fresh.errors


def test_cached_collateral_is_preferred_and_node_crls_only_add(tmp_path: Path) -> None:
    serial = Platform().serial
    node = FakeIntel(issue_date=ISSUED, revoked_serials=())
    mine = FakeIntel(issue_date=ISSUED, revoked_serials=(serial,))
    store(mine.collateral(), DEFAULT_FMSPC, tmp_path)
    quote, roots = node.quote(b"x"), [node.root_pem]
    kw: dict[str, Any] = {"roots": roots, "at": ISSUED + timedelta(days=1), "cache_dir": tmp_path}
    # As before, without prefer_cached the node's collateral is used.
    assert tdx.verify_quote(quote, collateral=node.collateral(), **kw).verified
    res = tdx.verify_quote(quote, collateral=node.collateral(), prefer_cached=True, **kw)
    assert _codes(res) == ["tdx.pck.revoked"]
    store(node.collateral(), DEFAULT_FMSPC, tmp_path)
    res = tdx.verify_quote(quote, collateral=mine.collateral(), prefer_cached=True, **kw)
    assert _codes(res) == ["tdx.pck.revoked"]


def test_pck_chain_key_is_fingerprints_and_refuses_padding() -> None:
    intel = FakeIntel()
    _, chain = intel.pck_chain(Platform())
    assert chain_key(chain) == chain_key(chain.replace(b"\n", b"\r\n") + b"\n\n\x00")
    with pytest.raises(ParseError) as e:
        chain_key(chain.rstrip(b"\x00") + b"A" * 4096)
    assert e.value.code == "tdx.format.trailing_bytes"
    with pytest.raises(ChainError) as c:
        chain_key(chain.rstrip(b"\x00") * 3)
    assert c.value.code == "tdx.pck.chain_invalid"


def test_quote_cached_tells_hits_from_misses() -> None:
    intel = FakeIntel(seed=b"warm-check")
    quote, body = intel.quote(b"w"), intel.collateral_json()
    v = tdx.TdxVerifier()
    assert not tdx.quote_cached(quote, collateral=body, roots=[intel.root_pem], verifier=v)
    res = tdx.verify_quote(
        quote, collateral=v.load_collateral_json(body), roots=[intel.root_pem], verifier=v
    )
    assert res.verified, res.errors
    assert tdx.quote_cached(quote, collateral=body, roots=[intel.root_pem], verifier=v)
    assert not tdx.quote_cached(quote, collateral=body + b" ", roots=[intel.root_pem], verifier=v)


def test_loaded_collateral_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    small: BoundedCache[bytes, object] = BoundedCache(256, 3 << 20)
    v = tdx.TdxVerifier()
    monkeypatch.setattr(v, "_loaded", small)
    body = FakeIntel().collateral_json()
    for i in range(8):  # padded copies: distinct bodies of ~1 MiB each
        v.load_collateral_json(body + b" " * ((1 << 20) + i))
    assert small.bytes <= 3 << 20 and len(small) <= 3


def test_cli_max_collateral_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sealgate.cli import main

    old = FakeIntel(issue_date=ISSUED, revoked_serials=())
    (tmp_path / "q").write_bytes(old.quote(b"x"))
    (tmp_path / "c.json").write_bytes(old.collateral_json())
    (tmp_path / "r.pem").write_bytes(old.root_pem)
    at = (ISSUED + timedelta(days=20)).isoformat()

    def cli(*extra: str) -> tuple[int, list[str]]:
        rc = main(["verify", "tdx", "--quote", str(tmp_path / "q"),
                   "--collateral", str(tmp_path / "c.json"), "--roots", str(tmp_path / "r.pem"),
                   "--at", at, *extra])  # fmt: skip
        doc = json.loads(capsys.readouterr().out)
        return rc, sorted({e["code"] for e in doc.get("errors", [])} or {doc.get("code", "")})

    assert cli() == (0, [""])
    assert cli("--max-collateral-age", "7") == (1, ["tdx.collateral.stale"])
    assert cli("--max-collateral-age", "30") == (0, [""])
    assert cli("--max-collateral-age", "0")[0] == 2
