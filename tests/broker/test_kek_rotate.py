"""``sealgate kek rotate`` (file → PKCS#11 → file), interrupted runs, the KEK ring's refusals,
file KEK deployments from before stored audit keys, and the service on a PKCS#11 KEK."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sealgate._proto import admin_pb2, admin_pb2_grpc
from sealgate.broker.audit import AuditLog, decode_entry
from sealgate.broker.auditkeys import MAC_KEY_ROW, legacy_audit_keys, load_audit_keys
from sealgate.broker.checkpoint import Checkpointer, CheckpointStore, log_origin
from sealgate.broker.kek import KekError, KekProvider, KekRing, LocalKeyFileProvider, open_kek
from sealgate.broker.keys import ModelKeys
from sealgate.broker.rotate import rotate
from sealgate.broker.tokens import TokenIssuer
from sealgate.cli import main as cli_main
from sealgate.errors import SealgateError
from sealgate.node.agent import NodeAgent
from sealgate.service.auth import mint_operator_token
from sealgate.service.config import ServiceConfig
from sealgate.service.core import Verifier
from sealgate.service.server import RunningServer, create_server
from sealgate.storage.sqlite import SqliteStorage
from sealgate.testing.softhsm import USER_PIN, SoftHsm
from sealgate.testing.softnode import SoftwareCa, SoftwareTpm

REPO = Path(__file__).resolve().parents[2]
POLICY = {
    "platforms": {
        "tpm": {"reference_sets": ["golden"], "required_selection": "sha256:0,1,2,3,4,5,6,7"}
    }
}


def _label() -> str:
    return "kek-" + uuid.uuid4().hex[:12]


def _cfg(tmp_path: Path, ca: SoftwareCa, kek: str | None = None, **kw: Any) -> ServiceConfig:
    cfg = ServiceConfig(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        ek_ca_roots=[ca.write(tmp_path / "ek-ca.pem")],
        kek=kek,
    )
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@contextlib.contextmanager
def _serve(cfg: ServiceConfig) -> Iterator[tuple[RunningServer, Any, Any, grpc.Channel]]:
    srv = create_server(cfg)
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    try:
        token = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "test", ["admin"])
        md = (("authorization", f"Bearer {token}"),)
        yield srv, admin_pb2_grpc.AdminStub(ch), md, ch
    finally:
        ch.close()
        srv.stop(grace=1)


def _populate(admin: Any, md: Any, tpm: SoftwareTpm) -> None:
    admin.BulkAddReferenceValues(
        admin_pb2.BulkAddReferenceValuesRequest(
            document=json.dumps(
                {"platform": "tpm", "set_name": "golden", "values": tpm.pcr_reference_values()}
            )
        ),
        metadata=md,
    )
    admin.ImportModelKey(
        admin_pb2.ImportModelKeyRequest(key_id="llama", key=b"K" * 32), metadata=md
    )
    admin.PutPolicy(
        admin_pb2.PutPolicyRequest(key_id="llama", json=json.dumps(POLICY)), metadata=md
    )


def _rotate_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = cli_main(["kek", "rotate", *args])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def _offline_verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = cli_main(["audit", "verify", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def _events(st: SqliteStorage) -> list[dict[str, Any]]:
    return [decode_entry(r.entry) for r in st.list_audit(0, 100_000)]


def test_rotation_file_to_pkcs11_and_back_keeps_the_service_working(
    hsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = SoftwareCa()
    tpm = SoftwareTpm(ca)
    cfg = _cfg(tmp_path, ca)
    with _serve(cfg) as (srv, admin, md, ch):
        _populate(admin, md, tpm)
        agent = NodeAgent(ch, "node-a", tpm)
        first = agent.attest(["llama"])
        assert first.keys["llama"] == (1, b"K" * 32)
        admin.RotateModelKey(admin_pb2.RotateModelKeyRequest(key_id="llama"), metadata=md)
        srv.core.rotate_signing_key("test")
        srv.core.checkpointer.run_once()
        file_id = srv.core.kek.kek_id
        llama_v2 = srv.core.keys.material("llama")[1]
    assert file_id.startswith("file:")

    pk = hsm.uri("sealgate", _label())
    rc, doc = _rotate_cli(capsys, "--to", pk, "--data-dir", str(cfg.data_dir), "--batch", "2")
    assert rc == 0, doc
    assert doc["moved"] == {"key_version": 2, "signing_key": 2, "secret": 2}, doc
    assert doc["remaining"] == 0 and doc["source_kek_ids"] == [file_id]
    assert doc["target_kek_id"].startswith("pkcs11:") and doc["target_configured"] is False
    # Run again: nothing left to move.
    rc, again = _rotate_cli(capsys, "--to", pk, "--data-dir", str(cfg.data_dir))
    assert rc == 0 and again["moved_total"] == 0

    # The file KEK is gone: the service runs on the token alone.
    (cfg.data_dir / "kek.key").unlink()
    cfg.kek = pk
    with _serve(cfg) as (srv, admin, md, ch):
        assert srv.core.kek.kek_id == doc["target_kek_id"]
        agent.stub = NodeAgent(ch, "node-a", tpm).stub
        # A token issued before the move is still honoured (its signing key moved too).
        assert agent.refetch(first.token, ["llama"]).keys["llama"] == (2, llama_v2)
        res = agent.attest(["llama"])
        assert res.keys["llama"] == (2, llama_v2)
        v = srv.core.verify_audit()
        assert v.ok and v.authenticated, v.message
        events = [e["event"] for e in _events(srv.core.st)]  # type: ignore[arg-type]
        assert events.count("kek.rotation.started") == 2
        assert events.count("kek.rotation.completed") == 2
        srv.core.checkpointer.run_once()
    rc, vdoc = _offline_verify(capsys, "--data-dir", str(cfg.data_dir), "--kek", pk)
    assert rc == 0 and vdoc["ok"] and vdoc["authenticated"], vdoc
    # The rotation entries carry ids and counts, never key material.
    st = SqliteStorage(cfg.db_path)
    try:
        done = next(e for e in _events(st) if e["event"] == "kek.rotation.completed")
        assert done["details"]["moved"]["secret"] == 2
        blob = json.dumps(done["details"], default=str)
        assert "K" * 8 not in blob
    finally:
        st.close()

    # And back to a (new) file KEK, through a configuration file naming the token KEK.
    conf = tmp_path / "sealgate.json"
    conf.write_text(json.dumps({"data_dir": str(cfg.data_dir), "kek": pk}))
    new_file = (tmp_path / "new-kek.key").as_uri()
    rc, back = _rotate_cli(capsys, "--to", new_file, "--config", str(conf))
    assert rc == 0 and back["moved_total"] == 6 and back["remaining"] == 0, back
    cfg.kek = new_file
    with _serve(cfg) as (srv, admin, md, ch):
        agent.stub = NodeAgent(ch, "node-a", tpm).stub
        assert agent.attest(["llama"]).keys["llama"] == (2, llama_v2)
        assert srv.core.verify_audit().ok


class _Failing(KekProvider):
    """The target KEK, failing after ``n`` wraps (an HSM that goes away mid-run)."""

    def __init__(self, inner: KekProvider, n: int) -> None:
        self.inner, self.n = inner, n

    @property
    def kek_id(self) -> str:
        return self.inner.kek_id

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        if self.n == 0:
            raise KekError("broker.kek.hsm_error", "token went away")
        self.n -= 1
        return self.inner.wrap(plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return self.inner.unwrap(blob, aad)


def _small_deployment(
    data_dir: Path, n_keys: int
) -> tuple[SqliteStorage, LocalKeyFileProvider, dict[str, bytes]]:
    st = SqliteStorage(data_dir / "sealgate.db")
    f = LocalKeyFileProvider(data_dir / "kek.key")
    keys = ModelKeys(st, f)
    material = {f"m{i:04d}": os.urandom(32) for i in range(n_keys)}
    with st.atomic():
        for kid, m in material.items():
            keys.create(kid, m, "", 1)
    TokenIssuer(st, f)
    load_audit_keys(st, KekRing(f))
    return st, f, material


def _check_all(st: SqliteStorage, ring: KekRing, material: dict[str, bytes]) -> None:
    keys = ModelKeys(st, ring)
    for kid, m in material.items():
        assert keys.material(kid) == (1, m)
    TokenIssuer(st, ring)  # unwraps the active signing key
    load_audit_keys(st, ring, create=False)


def test_interrupted_rotation_leaves_every_item_usable_and_reruns(
    hsm: SoftHsm, tmp_path: Path
) -> None:
    st, f, material = _small_deployment(tmp_path, 30)
    target = open_kek(hsm.uri("sealgate", _label()))
    try:
        ring = KekRing(f, [target])
        log = AuditLog(st, load_audit_keys(st, ring).mac())
        with pytest.raises(KekError) as e:
            rotate(st, ring, _Failing(target, 11), log, batch=4)
        assert e.value.code == "broker.kek.hsm_error"
        under_target = 33 - len(st.list_wrapped(target.kek_id, 1000))
        assert under_target == 11
        failed = next(d for d in _events(st) if d["event"] == "kek.rotation.failed")
        assert failed["details"]["code"] == "broker.kek.hsm_error"
        assert failed["details"]["remaining"] == 33 - 11
        # Half moved: every item opens with the ring (each row names its KEK).
        _check_all(st, ring, material)
        res = rotate(st, ring, target, log, batch=4)
        assert sum(res.moved.values()) == 33 - 11 and res.remaining == 0
        assert rotate(st, ring, target, log).moved == {
            "key_version": 0,
            "signing_key": 0,
            "secret": 0,
        }
        _check_all(st, KekRing(target), material)
        assert log.verify().ok
        # Without the KEK the items are under, the ring names what is missing.
        with pytest.raises(KekError) as e:
            ModelKeys(st, KekRing(f)).material("m0000")
        assert e.value.code == "broker.kek.unknown" and target.kek_id in e.value.message
    finally:
        target.close()
        st.close()


def test_kill_9_mid_rotation_then_rerun(
    hsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    st, f, material = _small_deployment(data, 600)
    st.close()
    pk = hsm.uri("sealgate", _label())
    env = {**hsm.env(), "PYTHONPATH": str(REPO / "python")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sealgate.cli import run; run()",
            "kek",
            "rotate",
            "--to",
            pk,
            "--data-dir",
            str(data),
            "--batch",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line or "batch 20," in line:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    st = SqliteStorage(data / "sealgate.db")
    try:
        target_id = open_kek(pk, create=False)
        left = len(st.list_wrapped(target_id.kek_id, 10_000))
        assert 0 < left < 603, left  # killed mid-way
        _check_all(st, KekRing(f, [target_id]), material)
        rc, doc = _rotate_cli(capsys, "--to", pk, "--data-dir", str(data))
        assert rc == 0 and doc["moved_total"] == left and doc["remaining"] == 0, doc
        _check_all(st, KekRing(target_id), material)
        assert AuditLog(st, load_audit_keys(st, KekRing(target_id)).mac()).verify().ok
        target_id.close()
    finally:
        st.close()


def test_wrong_kek_is_an_unknown_kek_id(tmp_path: Path) -> None:
    ca = SoftwareCa()
    cfg = _cfg(tmp_path, ca)
    with _serve(cfg):
        pass
    cfg.kek = (tmp_path / "other.key").as_uri()
    with pytest.raises(KekError) as e:
        create_server(cfg)
    assert e.value.code == "broker.kek.unknown" and "kek_previous" in e.value.message


def _legacy_deployment(cfg: ServiceConfig) -> tuple[str, bytes]:
    """A data dir as the version before stored audit keys left it: a file KEK, entries and a
    checkpoint under the HKDF-derived keys, a signing key without a recorded KEK id."""
    cfg.data_dir.mkdir(parents=True, mode=0o700)
    st = SqliteStorage(cfg.db_path)
    f = LocalKeyFileProvider(cfg.kek_path)
    legacy = legacy_audit_keys(f)
    log = AuditLog(st, legacy.mac())
    for i in range(5):
        log.append("admin.refval.added", "old", {"i": i})
    kid = TokenIssuer(st, f).active_kid
    st._conn().execute("UPDATE signing_keys SET kek_id = ''")
    Checkpointer(
        st, legacy.signer(), CheckpointStore(cfg.audit_checkpoint_dir), log_origin(cfg.verifier_id)
    ).run_once()
    assert st.get_secret(MAC_KEY_ROW) is None
    st.close()
    return kid, legacy.signer().public_key()


def test_a_file_kek_deployment_from_before_keeps_verifying(
    hsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = SoftwareCa()
    cfg = _cfg(tmp_path, ca)
    kid, checkpoint_pub = _legacy_deployment(cfg)
    # Offline, before the upgraded service ever ran: derived, nothing written.
    rc, doc = _offline_verify(capsys, "--data-dir", str(cfg.data_dir))
    assert rc == 0 and doc["authenticated"] and doc["anchored"] == 5, doc
    # Under a KEK that cannot derive the keys, the service refuses to start.
    pk = hsm.uri("sealgate", _label())
    st = SqliteStorage(cfg.db_path)
    try:
        with pytest.raises(SealgateError) as e:
            Verifier(_cfg(tmp_path, ca, kek=pk), st)
        assert e.value.code == "broker.audit_keys.missing"
        assert st.get_secret(MAC_KEY_ROW) is None
        core = Verifier(cfg, st)
        assert core.tokens.active_kid == kid  # the "" kek id: the deployment's file KEK
        assert core.checkpointer.verifier.public_key == checkpoint_pub
        core.audit.append("admin.refval.added", "new", {})
        v = core.verify_audit()
        assert v.ok and v.authenticated and v.entries == 6, v.message
        assert st.get_secret(MAC_KEY_ROW) is not None
    finally:
        st.close()
    # Then onto the token: the stored audit keys move with everything else.
    rc, moved = _rotate_cli(capsys, "--to", pk, "--data-dir", str(cfg.data_dir))
    assert rc == 0 and moved["moved"]["signing_key"] == 1 and moved["moved"]["secret"] == 2
    cfg.kek_path.unlink()
    st = SqliteStorage(cfg.db_path)
    try:
        core = Verifier(_cfg(tmp_path, ca, kek=pk), st)
        assert core.tokens.active_kid == kid
        assert core.checkpointer.verifier.public_key == checkpoint_pub
        assert core.verify_audit().ok
    finally:
        st.close()


def test_service_on_a_pkcs11_kek_from_first_start(hsm: SoftHsm, tmp_path: Path) -> None:
    ca = SoftwareCa()
    tpm = SoftwareTpm(ca)
    pk = hsm.uri("sealgate-b", _label())
    cfg = _cfg(tmp_path, ca, kek=pk)
    with _serve(cfg) as (srv, admin, md, ch):
        assert srv.core.kek.kek_id.startswith("pkcs11:")
        _populate(admin, md, tpm)
        res = NodeAgent(ch, "node-a", tpm).attest(["llama"])
        assert res.keys["llama"] == (1, b"K" * 32)
        srv.core.checkpointer.run_once()
        assert srv.core.verify_audit().ok
    assert not (cfg.data_dir / "kek.key").exists()
    # A second replica on the same database and token.
    with _serve(cfg) as (srv2, admin, md, ch):
        res = NodeAgent(ch, "node-a", tpm).attest(["llama"])
        assert res.keys["llama"] == (1, b"K" * 32)
        assert srv2.core.verify_audit().ok


def test_the_pin_is_never_in_argv_or_output(
    hsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pk = hsm.uri("sealgate-b", _label())
    # A PIN in the URI is refused outright, and not echoed.
    rc = cli_main(
        [
            "serve",
            "--kek",
            pk + "&pin-value=" + USER_PIN,
            "--data-dir",
            str(tmp_path / "x"),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ]
    )
    said = capsys.readouterr()
    assert rc != 0 and "broker.kek.pin_in_uri" in said.err
    assert USER_PIN not in said.err + said.out
    env = {**hsm.env(), "PYTHONPATH": str(REPO / "python")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sealgate.cli import run; run()",
            "serve",
            "--kek",
            pk,
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "serving gRPC" in line:
                break
        assert any("serving gRPC" in x for x in out), "".join(out)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert USER_PIN.encode() not in cmdline and USER_PIN.encode() not in environ
        assert b"pin-source=file:" in cmdline
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert USER_PIN not in "".join(out)


def test_kek_configuration_keys(tmp_path: Path) -> None:
    from sealgate.errors import UsageError
    from sealgate.service.config import load_config

    conf = tmp_path / "c.json"
    conf.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "d"),
                "kek": "pkcs11:object=k?module-path=/m.so&pin-source=file:/p",
                "kek_previous": ["file:///old/kek.key"],
            }
        )
    )
    cfg = load_config(conf)
    assert cfg.kek_uri.startswith("pkcs11:") and cfg.kek_previous == ["file:///old/kek.key"]
    # Default: the key file in the data dir; --kek overrides the file.
    assert load_config(None, data_dir=tmp_path / "d").kek_uri == (
        (tmp_path / "d" / "kek.key").absolute().as_uri()
    )
    assert load_config(conf, kek="file:///x/k.key").kek_uri == "file:///x/k.key"
    for bad in ({"kek": 5}, {"kek": ""}, {"kek_previous": "file:///a"}, {"kek_previous": [3]}):
        conf.write_text(json.dumps(bad))
        with pytest.raises(UsageError) as e:
            load_config(conf)
        assert e.value.code == "config.invalid", bad


def test_the_documented_procedure_new_kek_first_then_move(
    hsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/kek.md: replicas switch to kek: NEW with the old KEK in kek_previous, then
    ``kek rotate --to NEW`` moves the rest, then the old KEK is dropped."""
    ca = SoftwareCa()
    cfg = _cfg(tmp_path, ca)
    st = SqliteStorage(cfg.db_path)
    try:
        old = Verifier(cfg, st)
        old.create_key("op", "a", b"A" * 32, "")
        old_file = cfg.kek_uri
        new = hsm.uri("sealgate", _label())
        cfg2 = _cfg(tmp_path, ca, kek=new, kek_previous=[old_file])
        core = Verifier(cfg2, st)  # the restarted replica creates NEW in the token
        core.create_key("op", "b", b"B" * 32, "")
        assert core.keys.material("a") == (1, b"A" * 32)  # still under OLD
        assert core.keys.get("b") is not None
        assert st.get_key_version("b", 1).kek_id == core.kek.kek_id  # type: ignore[union-attr]
        conf = tmp_path / "c.json"
        conf.write_text(
            json.dumps({"data_dir": str(cfg.data_dir), "kek": new, "kek_previous": [old_file]})
        )
        rc, doc = _rotate_cli(capsys, "--to", new, "--config", str(conf))
        assert rc == 0 and doc["target_configured"] is True and doc["remaining"] == 0, doc
        assert doc["moved"]["key_version"] == 1 and doc["moved"]["secret"] == 2
        cfg.kek_path.unlink()
        done = Verifier(_cfg(tmp_path, ca, kek=new), st)
        assert done.keys.material("a") == (1, b"A" * 32)
        assert done.keys.material("b") == (1, b"B" * 32)
        done.checkpointer.run_once()  # the service signs one at start; here by hand
        v = done.verify_audit()
        assert v.ok and v.authenticated and v.entries == 5, v.message
    finally:
        st.close()
