"""The service verifies cache misses off its event loop; its memo caches stay bounded."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from sealgate._proto import attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.lru import BoundedCache
from sealgate.result import VerifyResult
from sealgate.service.cache import ConfigCache
from sealgate.service.config import ServiceConfig
from sealgate.service.platforms import (
    PlatformRegistry,
    PlatformVerifier,
    TpmVerifier,
    VerifyContext,
)
from sealgate.service.server import create_server
from sealgate.storage import bridge
from sealgate.storage.sqlite import SqliteStorage


class _Recording(PlatformVerifier):
    name = "snp"

    def __init__(self) -> None:
        self.is_warm = False
        self.threads: list[str] = []
        self.bridged: list[bool] = []

    def available(self) -> bool:
        return True

    def warm(self, evidence: Any) -> bool:
        return self.is_warm

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        self.threads.append(threading.current_thread().name)
        self.bridged.append(bridge.active())
        res = VerifyResult("snp")
        res.fail("snp.test.recorded", "recorded")
        return res


def _miss_then_hit(tmp_path: Path, database: str | None = None) -> _Recording:
    rec = _Recording()
    cfg = ServiceConfig(listen="127.0.0.1:0", data_dir=tmp_path / "d", database=database)
    srv = create_server(cfg, http=False, platforms=PlatformRegistry([TpmVerifier(), rec]))
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    try:
        stub = attestation_pb2_grpc.AttestationStub(ch)
        for warm in (False, True):
            rec.is_warm = warm
            c = stub.Challenge(attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_SNP))
            resp = stub.Attest(
                attestation_pb2.AttestRequest(
                    challenge_id=c.challenge_id,
                    key_ids=["m"],
                    runtime_public_key=b"\x01" * 32,
                    evidence=attestation_pb2.Evidence(snp=attestation_pb2.SnpEvidence(report=b"r")),
                ),
                timeout=10,
            )
            assert resp.evidence_failures[0].code == "snp.test.recorded"
    finally:
        ch.close()
        srv.stop(grace=1)
    return rec


def test_cache_misses_run_in_the_pool_hits_on_the_loop(tmp_path: Path) -> None:
    rec = _miss_then_hit(tmp_path)
    miss, hit = rec.threads
    assert miss.startswith("sealgate_") and hit == "sealgate-grpc", rec.threads  # pool, loop
    assert rec.bridged == [False, False]  # SQLite: inline on the loop


def test_on_postgres_hits_run_on_the_loop_under_the_bridge(tmp_path: Path, pg_url: str) -> None:
    """A database server: the warm Attest still runs on the event loop's thread, as a
    bridged call whose round trips the loop awaits (no thread hand-off); the cold one in the
    pool, where storage calls block their thread."""
    rec = _miss_then_hit(tmp_path, pg_url)
    miss, hit = rec.threads
    assert miss.startswith("sealgate_") and hit == "sealgate-grpc", rec.threads
    assert rec.bridged == [False, True]


def test_unknown_key_ids_are_not_memoized(tmp_path: Path) -> None:
    st = SqliteStorage(tmp_path / "db.sqlite")
    view = ConfigCache(st).view()
    for i in range(20):
        kid = f"{i}-" + "k" * (1 << 20)
        assert view.policy(kid) is None and view.current_key(kid) is None
    assert len(view._policies) == 0 and len(view._keys) == 0


def test_bounded_cache_bounds_entries_and_bytes() -> None:
    c: BoundedCache[int, bytes] = BoundedCache(3, 10_000)
    for i in range(10):
        c.put(i, b"x", 100)
    assert len(c) == 3 and c.get(9) == b"x" and c.get(0) is None
    assert not c.put(99, b"big", 20_000) and c.get(99) is None
    for i in range(3):
        c.put(100 + i, b"y", 4_000)
    assert c.bytes <= 10_000 and len(c) == 2
    with pytest.raises(ValueError):
        BoundedCache(0, 1)


def test_configured_crl_paths_are_checked_at_start(tmp_path: Path) -> None:
    from sealgate.errors import UsageError
    from sealgate.service.config import load_config
    from sealgate.service.platforms import SnpVerifier, default_verifiers

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"snp_crls: [{tmp_path / 'missing.crl'}]\nsnp_allow_missing_crl: true\n"
        "tdx_collateral_max_age: 86400\n"
    )
    cfg = load_config(cfg_file)
    assert cfg.snp_allow_missing_crl and cfg.tdx_collateral_max_age == 86400
    with pytest.raises(UsageError) as e:
        default_verifiers(cfg)
    assert e.value.code == "config.invalid"
    (tmp_path / "missing.crl").write_bytes(b"")
    snp = [v for v in default_verifiers(cfg) if isinstance(v, SnpVerifier)]
    assert snp and snp[0].allow_missing_crl
    cfg.tdx_collateral_max_age = 60
    with pytest.raises(UsageError):
        default_verifiers(cfg)


def test_tdx_adapter_keeps_its_verifier_between_requests(tmp_path: Path) -> None:
    """The TDX adapter's verifier object lives as long as the adapter: after one miss
    (verified in the pool), the same quote and collateral are a hit (on the loop)."""
    from datetime import UTC, datetime, timedelta

    from sealgate.service.platforms import TdxVerifier
    from sealgate.testing.tdx import FakeIntel

    intel = FakeIntel(seed=b"adapter-cache", issue_date=datetime.now(UTC) - timedelta(days=1))
    root = tmp_path / "root.pem"
    root.write_bytes(intel.root_pem)
    quote = intel.quote(b"\x07" * 32)
    ev = attestation_pb2.TdxEvidence(quote=quote, collateral=intel.collateral_json())
    adapter = TdxVerifier(roots=[root], collateral_dir=tmp_path / "cache")
    assert not adapter.warm(ev)
    res = adapter.verify(ev, VerifyContext(binding=b"\x07" * 32, roots=[root]))
    assert res.verified, res.errors
    assert adapter.warm(ev)
    assert not TdxVerifier(roots=[root], collateral_dir=tmp_path / "cache").warm(ev)
