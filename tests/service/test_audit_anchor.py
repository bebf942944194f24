"""Attacks on the audit log of a real data directory, edited with sqlite3 as an attacker who
can write the database would, found online (VerifyAudit) and offline (``sealgate audit
verify``); checkpoints on the HTTP side port; key ids validated at the door."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cbor2
import grpc
import pytest
from sealgate import _core
from sealgate._proto import (
    admin_pb2,
    admin_pb2_grpc,
    attestation_pb2,
    attestation_pb2_grpc,
    common_pb2,
)
from sealgate.broker.audit import encode_entry
from sealgate.broker.checkpoint import open_checkpoint, parse_verifier_key, sign_checkpoint
from sealgate.broker.kek import LocalKeyFileProvider
from sealgate.cli import main as cli_main
from sealgate.service.auth import mint_operator_token
from sealgate.service.checkpoints import CHECKPOINT_EVERY
from sealgate.service.config import ServiceConfig
from sealgate.service.server import RunningServer, create_server

#: Entries a deployment's first start writes: signing_key.created, service.started.
START = 2


def _cfg(tmp: Path) -> ServiceConfig:
    return ServiceConfig(listen="127.0.0.1:0", http_listen="127.0.0.1:0", data_dir=tmp / "data")


@contextmanager
def _serve(
    cfg: ServiceConfig,
) -> Iterator[tuple[RunningServer, admin_pb2_grpc.AdminStub, tuple[tuple[str, str], ...]]]:
    srv = create_server(cfg)
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    token = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "test", ["admin"])
    try:
        yield srv, admin_pb2_grpc.AdminStub(ch), (("authorization", f"Bearer {token}"),)
    finally:
        ch.close()
        srv.stop(grace=1)


def _changes(admin: admin_pb2_grpc.AdminStub, md: tuple[tuple[str, str], ...], n: int) -> None:
    for i in range(n):
        admin.GenerateModelKey(admin_pb2.GenerateModelKeyRequest(key_id=f"k{i}"), metadata=md)


# -- the attacks: sqlite3 on the database file -------------------------------------------


def _db(cfg: ServiceConfig) -> sqlite3.Connection:
    return sqlite3.connect(cfg.db_path, isolation_level=None)


def truncate_tail(cfg: ServiceConfig) -> None:
    with _db(cfg) as c:
        c.execute("DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 3 FROM audit)")


def empty_log(cfg: ServiceConfig) -> None:
    with _db(cfg) as c:
        c.execute("DELETE FROM audit")


def rewrite_and_rechain(cfg: ServiceConfig) -> None:
    """Change who made entry 2 and recompute every later hash: the chain is valid again."""
    with _db(cfg) as c:
        rows = c.execute("SELECT seq, entry, hash FROM audit ORDER BY seq").fetchall()
        doc = cbor2.loads(rows[1][1])
        doc["actor"] = "mallory@nowhere"
        entries = [bytes(r[1]) for r in rows]
        entries[1] = cbor2.dumps(doc, canonical=True)
        hashes = _core.audit_chain(entries[1:], bytes(rows[0][2]))
        for (seq, _, _), e, h in zip(rows[1:], entries[1:], hashes, strict=True):
            c.execute("UPDATE audit SET entry = ?, hash = ? WHERE seq = ?", (e, h, seq))


def append_forged(cfg: ServiceConfig) -> None:
    """A well-formed, correctly chained entry the service never wrote."""
    with _db(cfg) as c:
        seq, prev = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        e = encode_entry(
            seq + 1, int(time.time()), "admin.key.created", "alice@ops", {"key_id": "x"}
        )
        c.execute(
            "INSERT INTO audit (seq, entry, hash) VALUES (?, ?, ?)",
            (seq + 1, e, _core.audit_link(bytes(prev), e)),
        )


ATTACKS: list[tuple[Callable[[ServiceConfig], None], str]] = [
    (truncate_tail, "audit.chain.truncated"),
    (empty_log, "audit.chain.empty"),
    (rewrite_and_rechain, "audit.entry.bad_mac"),
    (append_forged, "audit.entry.unauthenticated"),
]
IDS = [a[0].__name__ for a in ATTACKS]


def _offline(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    rc = cli_main(["audit", "verify", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("attack", "code"), ATTACKS, ids=IDS)
def test_attack_is_found_online(
    tmp_path: Path, attack: Callable[[ServiceConfig], None], code: str
) -> None:
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (srv, admin, md):
        _changes(admin, md, 6)
        srv.core.checkpointer.run_once()  # the checkpoint thread's next round
        ok = admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=md)
        assert ok.ok and ok.entries == START + 6, ok.message
        attack(cfg)
        r = admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=md)
        assert not r.ok and r.message.startswith(code + ":"), r.message


@pytest.mark.parametrize(("attack", "code"), ATTACKS, ids=IDS)
def test_attack_is_found_offline(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    attack: Callable[[ServiceConfig], None],
    code: str,
) -> None:
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (_srv, admin, md):
        _changes(admin, md, 6)
    # A clean stop anchored everything, so the stopped log verifies as it is ...
    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir))
    assert rc == 0 and doc["anchored"] == doc["entries"] == START + 6 and doc["authenticated"], doc
    attack(cfg)
    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir))
    assert rc == 1 and doc["code"] == code, doc


def test_an_auditor_with_a_kept_checkpoint_finds_a_rollback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The auditor keeps /audit/checkpoint and the key; the attacker then rewrites the log
    and also removes every checkpoint and the KEK from the data directory."""
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (srv, admin, md):
        _changes(admin, md, 5)
        srv.core.checkpointer.run_once()
        base = f"http://127.0.0.1:{srv.http_port}"
        with urllib.request.urlopen(base + "/audit/checkpoint", timeout=10) as r:  # noqa: S310
            note = r.read()
            assert r.headers["Content-Type"].startswith("text/plain")
        with urllib.request.urlopen(base + "/audit/checkpoint-key", timeout=10) as r:  # noqa: S310
            vkey = r.read().decode()
    cp = open_checkpoint(note, parse_verifier_key(vkey))
    assert cp.size == START + 5 and cp.origin == "sealgate/audit"
    kept, key = tmp_path / "kept.checkpoint", tmp_path / "audit.vkey"
    kept.write_bytes(note)
    key.write_text(vkey)
    auditor = ["--checkpoint", str(kept), "--checkpoint-key", str(key)]

    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir), *auditor)
    assert rc == 0 and doc["anchored"] == doc["entries"] == START + 5, doc

    rewrite_and_rechain(cfg)
    shutil.rmtree(cfg.audit_checkpoint_dir)
    cfg.kek_path.unlink()
    # Without the KEK the MACs cannot be checked; the kept checkpoint still finds it.
    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir), *auditor)
    assert rc == 1 and doc["code"] == "audit.chain.head_mismatch", doc
    assert doc["first_bad_seq"] == START + 5 and not doc["authenticated"]
    truncate_tail(cfg)
    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir), *auditor)
    assert rc == 1 and doc["code"] == "audit.chain.truncated", doc
    # Without a checkpoint nothing anchors the head: that is a failure, not a pass.
    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir), "--checkpoint-key", str(key))
    assert rc == 1 and doc["code"] == "audit.checkpoint.missing", doc
    rc = cli_main(["audit", "verify", "--data-dir", str(cfg.data_dir)])
    assert rc == 2 and "no KEK" in capsys.readouterr().err


def test_a_checkpoint_that_does_not_verify_is_its_own_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (srv, admin, md):
        _changes(admin, md, 2)
        srv.core.checkpointer.run_once()
        latest = srv.core.checkpoints.latest_path
        good = latest.read_bytes()
        # A checkpoint claiming fewer entries, with the signature of the real one.
        latest.write_bytes(good.replace(b"\n%d\n" % (START + 2), b"\n%d\n" % (START + 1), 1))
        r = admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=md)
        assert not r.ok and r.message.startswith("audit.checkpoint.bad_signature:"), r.message
        latest.write_bytes(b"not a checkpoint")
        r = admin.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=md)
        assert not r.ok and r.message.startswith("audit.checkpoint.malformed:"), r.message
        latest.write_bytes(good)
    # One signed by another key (an attacker who rewrote the log and signed its own head).
    other = LocalKeyFileProvider(tmp_path / "other.key").checkpoint_signer()
    latest.write_bytes(
        sign_checkpoint(open_checkpoint(good, srv.core.checkpointer.verifier), other)
    )
    rc, doc = _offline(capsys, "--data-dir", str(cfg.data_dir))
    assert rc == 1 and doc["code"] == "audit.checkpoint.bad_signature", doc


def test_clean_stop_anchors_the_last_entries(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (srv, admin, md):
        _changes(admin, md, 3)
        store, verifier = srv.core.checkpoints, srv.core.checkpointer.verifier
    note = store.latest()
    assert note is not None and open_checkpoint(note, verifier).size == START + 3
    with _db(cfg) as c:
        assert c.execute("SELECT MAX(seq) FROM audit").fetchone()[0] == START + 3


# -- unauthenticated amplification ------------------------------------------------------


def test_huge_key_ids_are_refused_at_the_door_and_add_nothing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (srv, _admin, _md):
        ch = grpc.insecure_channel(
            f"127.0.0.1:{srv.port}", options=[("grpc.max_send_message_length", 8 << 20)]
        )
        stub = attestation_pb2_grpc.AttestationStub(ch)
        size0 = sum(len(r.entry) for r in srv.storage.list_audit(0, 1000))
        big = ["k" * 500_000, *("x" * 100_000 for _ in range(5))]
        refused = 0
        for i in range(20):
            c = stub.Challenge(
                attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_SNP), timeout=10
            )
            req = attestation_pb2.AttestRequest(
                challenge_id=c.challenge_id,
                node_id=f"n{i}",
                evidence=attestation_pb2.Evidence(snp=attestation_pb2.SnpEvidence(report=b"x")),
                runtime_public_key=bytes(range(1, 33)),
                key_ids=big,
            )
            with pytest.raises(grpc.RpcError) as e:
                stub.Attest(req, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "broker.key.bad_id" in str(e.value.details())
            refused += 1
        for bad in (["ok", "bad\n"], ["-lead"], ["a" * 129], [""]):
            with pytest.raises(grpc.RpcError) as e:
                stub.ReleaseKey(
                    attestation_pb2.ReleaseKeyRequest(
                        token="t", runtime_public_key=bytes(32), key_ids=bad
                    ),
                    timeout=10,
                )
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "broker.key.bad_id" in str(e.value.details())
        ch.close()
        grown = sum(len(r.entry) for r in srv.storage.list_audit(0, 1000)) - size0
        assert refused == 20 and grown < 20 * 1024, grown


def test_list_audit_pages_through_huge_old_entries(tmp_path: Path) -> None:
    """Entries written before the bound (key ids copied whole) no longer break ListAudit."""
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (_srv, admin, md):
        with _db(cfg) as c:
            seq, prev = c.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            prev = bytes(prev)
            for s in range(seq + 1, seq + 6):
                doc = {"seq": s, "time": 1, "event": "attest.denied", "actor": "-",
                       "details": {"keys": ["k" * 2_000_000]}}  # fmt: skip
                e = cbor2.dumps(doc, canonical=True)
                prev = _core.audit_link(prev, e)
                c.execute("INSERT INTO audit (seq, entry, hash) VALUES (?, ?, ?)", (s, e, prev))
        seen: list[int] = []
        after = 0
        for _ in range(10):
            page = admin.ListAudit(
                admin_pb2.ListAuditRequest(after_seq=after, limit=1000), metadata=md
            ).entries
            if not page:
                break
            assert all(len(e.details_json) < 64 * 1024 for e in page)
            seen += [e.seq for e in page]
            after = page[-1].seq
        assert seen == list(range(1, seq + 6))
        big = json.loads(
            admin.ListAudit(admin_pb2.ListAuditRequest(after_seq=seq, limit=1), metadata=md)
            .entries[0]
            .details_json
        )
        assert big["truncated"]["bytes"] > 2_000_000


def test_a_running_server_checkpoints_new_entries_by_itself(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with _serve(cfg) as (srv, admin, md):
        _changes(admin, md, 3)
        url = f"http://127.0.0.1:{srv.http_port}/audit/checkpoint"
        deadline = time.monotonic() + 4 * CHECKPOINT_EVERY
        size = 0
        while time.monotonic() < deadline and size < START + 3:
            with urllib.request.urlopen(url, timeout=10) as r:
                size = open_checkpoint(r.read(), srv.core.checkpointer.verifier).size
            time.sleep(0.1)
        assert size == START + 3
