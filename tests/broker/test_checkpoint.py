"""Signed audit checkpoints: the C2SP signed-note format, the store, the checkpointer."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.broker.audit import AuditLog
from sealgate.broker.auditkeys import Ed25519Signer, load_audit_keys
from sealgate.broker.checkpoint import (
    HISTORY,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    CheckpointStore,
    NoteVerifier,
    open_checkpoint,
    open_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
)
from sealgate.broker.kek import KekError, KekRing, LocalKeyFileProvider
from sealgate.service.checkpoints import CheckpointThread
from sealgate.storage.sqlite import SqliteStorage

# The example key and note of golang.org/x/mod/sumdb/note (note_test.go): Ed25519 is
# deterministic (RFC 8032), so signing its text with its key must give its note byte for byte.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
        "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)


def _go_signer() -> Ed25519Signer:
    material = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert material[0] == 1
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(material[1:]))


def test_signed_note_matches_the_go_reference() -> None:
    signer = _go_signer()
    v = parse_verifier_key(GO_VKEY)
    assert v.name == "PeterNeumann" and v.public_key == signer.public_key()
    assert NoteVerifier("PeterNeumann", signer.public_key()).encode() == GO_VKEY
    assert sign_note(GO_TEXT, "PeterNeumann", signer) == GO_NOTE
    assert open_note(GO_NOTE, v) == GO_TEXT.decode()
    with pytest.raises(CheckpointError) as e:
        open_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), v)
    assert e.value.code == "audit.checkpoint.bad_signature"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # hash
        "PeterNeumann+c74f20a3+AhpjQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # alg/length
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+!!!",
    ],
)
def test_bad_verifier_keys_are_refused(key: str) -> None:
    with pytest.raises(CheckpointError) as e:
        parse_verifier_key(key)
    assert e.value.code == "audit.checkpoint.bad_key"


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.generate())


def test_checkpoint_shape_and_round_trip(signer: Ed25519Signer) -> None:
    cp = Checkpoint("sealgate/audit", 42, bytes(range(32)))
    note = sign_checkpoint(cp, signer)
    text = note.decode()
    lines = text.split("\n")
    # c2sp.org/tlog-checkpoint: origin, decimal size, base64 root, blank, signature line.
    assert lines[:4] == ["sealgate/audit", "42", base64.b64encode(bytes(range(32))).decode(), ""]
    assert lines[4].startswith("\u2014 sealgate/audit ") and lines[5] == ""
    v = NoteVerifier("sealgate/audit", signer.public_key())
    assert open_checkpoint(note, v) == cp
    # A key an auditor saved from /audit/checkpoint-key reads it too.
    assert open_checkpoint(note, parse_verifier_key(v.encode())) == cp


def test_checkpoint_forgeries_and_garbage_are_refused(signer: Ed25519Signer) -> None:
    v = NoteVerifier("sealgate/audit", signer.public_key())
    cp = Checkpoint("sealgate/audit", 7, b"\x11" * 32)
    note = sign_checkpoint(cp, signer)
    other = Ed25519Signer(Ed25519PrivateKey.generate())
    cases = {
        # signature no longer covers the text
        note.replace(b"\n7\n", b"\n8\n"): "audit.checkpoint.bad_signature",
        # signed by another key under the same name: not ours
        sign_checkpoint(cp, other): "audit.checkpoint.bad_signature",
        # our key, but for another log
        sign_checkpoint(Checkpoint("evil/audit", 7, b"\x11" * 32), signer): (
            "audit.checkpoint.bad_signature"
        ),
        # signature lines stripped
        note.split(b"\n\n")[0] + b"\n": "audit.checkpoint.malformed",
        b"": "audit.checkpoint.malformed",
        b"\xff\xfe": "audit.checkpoint.malformed",
        b"x" * 20_000: "audit.checkpoint.malformed",
        note.replace(b"\n", b"\r\n"): "audit.checkpoint.malformed",
        note + "\u2014 x y\n".encode(): "audit.checkpoint.malformed",
    }
    for bad, code in cases.items():
        with pytest.raises(CheckpointError) as e:
            open_checkpoint(bad, v)
        assert e.value.code == code, bad[:80]
    # A well-signed text that is not a checkpoint.
    for text in (b"sealgate/audit\n", b"sealgate/audit\n007\nAA==\n", b"sealgate/audit\n1\n!\n"):
        with pytest.raises(CheckpointError) as e:
            open_checkpoint(sign_note(text, "sealgate/audit", signer), v)
        assert e.value.code == "audit.checkpoint.malformed"


def test_store_is_private_monotonic_and_bounded(tmp_path: Path, signer: Ed25519Signer) -> None:
    store = CheckpointStore(tmp_path / "cps")
    v = NoteVerifier("o", signer.public_key())
    for size in range(1, HISTORY + 10):
        cp = Checkpoint("o", size, bytes([size]) * 32)
        assert store.publish(cp, sign_checkpoint(cp, signer), v)
    older = Checkpoint("o", 3, b"\x03" * 32)
    assert not store.publish(older, sign_checkpoint(older, signer), v)
    latest = store.latest()
    assert latest is not None and open_checkpoint(latest, v).size == HISTORY + 9
    files = [n for n in os.listdir(store.dir) if n.endswith(".checkpoint")]
    assert len(files) == HISTORY
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    for name in [*files, "latest"]:
        assert stat.S_IMODE((store.dir / name).stat().st_mode) == 0o600
    assert not [n for n in os.listdir(store.dir) if n.endswith(".tmp")]


@pytest.fixture
def log_env(tmp_path: Path) -> tuple[SqliteStorage, AuditLog, Checkpointer]:
    st = SqliteStorage(tmp_path / "db.sqlite")
    keys = load_audit_keys(st, KekRing(LocalKeyFileProvider(tmp_path / "kek.key")))
    log = AuditLog(st, keys.mac())
    cps = Checkpointer(st, keys.signer(), CheckpointStore(tmp_path / "cps"), "t/audit")
    return st, log, cps


def test_checkpointer_follows_the_head_and_refuses_a_cut_log(
    log_env: tuple[SqliteStorage, AuditLog, Checkpointer],
) -> None:
    st, log, cps = log_env
    for i in range(5):
        log.append("e", "a", {"i": i})
    cp = cps.run_once()
    assert cp is not None and cp.size == 5 and cp.root == st.audit_head()[1]
    assert cps.run_once() is None  # head unchanged: nothing written
    log.append("e", "a", {"i": 5})
    cp2 = cps.run_once()
    assert cp2 is not None and cp2.size == 6
    conn = st._conn()  # the attacker's edit, under the running checkpointer
    conn.execute("DELETE FROM audit WHERE seq > 4")
    assert cps.run_once() is None and cps.refused == "audit.chain.truncated"
    latest = cps.store.latest()
    assert latest is not None and open_checkpoint(latest, cps.verifier).size == 6


def test_checkpointer_refuses_a_rewritten_prefix(
    log_env: tuple[SqliteStorage, AuditLog, Checkpointer],
) -> None:
    st, log, cps = log_env
    for i in range(4):
        log.append("e", "a", {"i": i})
    assert cps.run_once() is not None
    st._conn().execute("UPDATE audit SET hash = zeroblob(32) WHERE seq = 4")
    log.append("e", "a", {"i": 4})
    assert cps.run_once() is None and cps.refused == "audit.chain.head_mismatch"


def test_checkpoint_thread_anchors_while_appending_and_at_stop(
    log_env: tuple[SqliteStorage, AuditLog, Checkpointer],
) -> None:
    st, log, cps = log_env
    th = CheckpointThread(cps, every=0.05)
    th.start()
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            log.append("e", "a", {})
            time.sleep(0.005)

    w = threading.Thread(target=writer)
    w.start()
    deadline = time.monotonic() + 5
    sizes: set[int] = set()
    while time.monotonic() < deadline and len(sizes) < 3:
        note = cps.store.latest()
        if note is not None:
            sizes.add(open_checkpoint(note, cps.verifier).size)
        time.sleep(0.02)
    stop.set()
    w.join()
    assert len(sizes) >= 3, "checkpoints did not follow the appends"
    log.append("e", "a", {"last": True})
    th.stop()
    note = cps.store.latest()
    assert note is not None and open_checkpoint(note, cps.verifier).size == st.audit_head()[0]
    assert log.verify_anchored(cps.store, cps.verifier).ok


def test_audit_keys_are_stored_and_stay(tmp_path: Path) -> None:
    st = SqliteStorage(tmp_path / "db.sqlite")
    a = load_audit_keys(st, KekRing(LocalKeyFileProvider(tmp_path / "kek.key")))
    # The next start, and another replica on the same database.
    b = load_audit_keys(st, KekRing(LocalKeyFileProvider(tmp_path / "kek.key")))
    other_st = SqliteStorage(tmp_path / "other.sqlite")
    other = load_audit_keys(other_st, KekRing(LocalKeyFileProvider(tmp_path / "other.key")))
    assert a.signer().public_key() == b.signer().public_key()
    assert a.mac()(b"e") == b.mac()(b"e") != other.mac()(b"e")
    assert a.signer().public_key() != other.signer().public_key()
    assert a.mac_key != a.checkpoint_seed
    # Offline tools never create a KEK for a data directory that has none.
    with pytest.raises(KekError) as e:
        LocalKeyFileProvider(tmp_path / "none.key", create=False)
    assert e.value.code == "broker.kek.missing" and not (tmp_path / "none.key").exists()
