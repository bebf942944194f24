"""Attested model binding end to end: a swtpm node measures the model's root digest into
PCR 12 (``sealgate.protocol.model_binding``), the event log replays to the quote, and the
broker releases the key only when the evidence commits to the registered model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate._proto import admin_pb2, admin_pb2_grpc
from sealgate.broker.models import bound_key
from sealgate.cli import main
from sealgate.node.agent import NodeAgent, explain
from sealgate.node.tpm import Tpm2ToolsCollector, extend_model_event
from sealgate.oms.sign import sign_model
from sealgate.protocol.model_binding import (
    EV_EVENT_TAG,
    MODEL_PCR,
    tpm_event_digests,
    tpm_model_event,
    tpm_pcr_event2,
)
from sealgate.service.auth import mint_operator_token
from sealgate.service.config import ServiceConfig
from sealgate.service.server import RunningServer, create_server
from sealgate.testing.eventlog import sample_boot_events
from sealgate.testing.swtpm import Swtpm, tools_available

pytestmark = pytest.mark.swtpm

SELECTION = "sha256:0,1,2,3,4,5,6,7,12"
KEY = b"M" * 32


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed")
    t = Swtpm(tmp_path / "a", ca_dir=tmp_path / "ca")
    try:
        t.start()
        yield t
    finally:
        t.stop()


@pytest.fixture
def server(tmp_path: Path, swtpm: Swtpm) -> Iterator[RunningServer]:
    ca = tmp_path / "ca"
    cfg = ServiceConfig(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        data_dir=tmp_path / "d",
        ek_ca_roots=[ca / "swtpm-localca-rootca-cert.pem"],
        ek_ca_intermediates=[ca / "issuercert.pem"],
    )
    srv = create_server(cfg, http=False)
    try:
        yield srv
    finally:
        srv.stop(grace=1)


def _signed_model(tmp_path: Path, name: str, weights: bytes) -> tuple[Path, bytes, bytes]:
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    d = tmp_path / name
    d.mkdir()
    (d / "weights.bin").write_bytes(weights)
    return d, sign_model(d, private_key_pem=priv), pub


def _setup(
    server: RunningServer, swtpm: Swtpm, tmp_path: Path, pub: bytes, bundle: bytes
) -> tuple[grpc.Channel, Any, Any, Path]:
    log, expected = swtpm.replay_events(sample_boot_events())
    (tmp_path / "boot.log").write_bytes(log)
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    token = mint_operator_token(server.core.cfg.bootstrap_operator_key.read_bytes(), "t", ["admin"])
    md = (("authorization", f"Bearer {token}"),)
    admin = admin_pb2_grpc.AdminStub(ch)
    values = {f"sha256:{i}": expected["sha256"].get(i, bytes(32)).hex() for i in range(8)}
    admin.BulkAddReferenceValues(
        admin_pb2.BulkAddReferenceValuesRequest(
            document=json.dumps({"platform": "tpm", "set_name": "golden", "values": values})
        ),
        metadata=md,
    )
    admin.ImportModelKey(admin_pb2.ImportModelKeyRequest(key_id="m", key=KEY), metadata=md)
    policy = {
        "platforms": {"tpm": {"reference_sets": ["golden"], "required_selection": SELECTION}},
        "model": {"signers": [{"public_key": pub.decode()}], "attested_binding": True},
    }
    admin.PutPolicy(admin_pb2.PutPolicyRequest(key_id="m", json=json.dumps(policy)), metadata=md)
    reg = admin.RegisterModel(
        admin_pb2.RegisterModelRequest(key_id="m", signature=bundle), metadata=md
    )
    return ch, admin, reg, tmp_path / "boot.log"


def _codes(res: Any) -> list[str]:
    return [f.code for d in res.denied for f in d.failures]


def test_tpm_pcr_event_binds_the_model_and_its_absence_denies(
    tmp_path: Path, swtpm: Swtpm, server: RunningServer
) -> None:
    _model, bundle, pub = _signed_model(tmp_path, "model", b"tensor " * 500)
    ch, _admin, reg, log = _setup(server, swtpm, tmp_path, pub, bundle)
    root = bytes(reg.root_digest)
    try:
        agent = NodeAgent(
            ch, "n", Tpm2ToolsCollector(swtpm.tcti, tmp_path / "s", SELECTION, eventlog=log)
        )
        # Nothing measured yet: the evidence verifies but does not commit to the model.
        res = agent.attest(["m"])
        assert not res.keys and _codes(res) == ["policy.model.binding_missing"], explain(res)
        # The node measures the model (PCR 12 + the log), once: a second call is a no-op.
        assert extend_model_event(swtpm.tcti, log, root)
        assert not extend_model_event(swtpm.tcti, log, root)
        res = agent.attest(["m"])
        assert res.keys == {"m": (1, bound_key(KEY, "m", 1, root))}, explain(res)
        # ReleaseKey re-appraises the stored claims: still bound.
        assert agent.refetch(res.token, ["m"]).keys["m"][1] == res.keys["m"][1]
    finally:
        ch.close()


def test_tpm_binding_to_another_model_or_a_forged_log_event_is_refused(
    tmp_path: Path, swtpm: Swtpm, server: RunningServer
) -> None:
    _model, bundle, pub = _signed_model(tmp_path, "model", b"tensor")
    ch, _admin, reg, log = _setup(server, swtpm, tmp_path, pub, bundle)
    root = bytes(reg.root_digest)
    try:
        agent = NodeAgent(
            ch, "n", Tpm2ToolsCollector(swtpm.tcti, tmp_path / "s", SELECTION, eventlog=log)
        )
        # Measured: a different model.
        extend_model_event(swtpm.tcti, log, b"\x07" * 32)
        res = agent.attest(["m"])
        assert _codes(res) == ["policy.model.binding_missing"], explain(res)
        # A log that claims the right model without the PCR having been extended with it
        # does not replay to the quote: the evidence itself fails.
        event = tpm_model_event(root)
        forged = log.read_bytes() + tpm_pcr_event2(
            MODEL_PCR, EV_EVENT_TAG, tpm_event_digests(event, ["sha1", "sha256"]), event
        )
        log.write_bytes(forged)
        res = agent.attest(["m"])
        assert not res.keys and res.evidence_failures, explain(res)
    finally:
        ch.close()


def test_node_cli_checks_the_model_and_extends_the_pcr(
    tmp_path: Path, swtpm: Swtpm, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    model, bundle, pub = _signed_model(tmp_path, "model", b"tensor " * 10)
    ch, _admin, reg, log = _setup(server, swtpm, tmp_path, pub, bundle)
    ch.close()
    sig = tmp_path / "model.sig"
    sig.write_bytes(bundle)
    base = [
        "node", "request-keys", "--server", f"127.0.0.1:{server.port}", "--platform", "tpm",
        "--node-id", "cli-node", "--key-id", "m", "--tcti", swtpm.tcti,
        "--state", str(tmp_path / "cs"), "--pcr-selection", SELECTION,
        "--eventlog", str(log), "--model-signature", str(sig), "--model", str(model),
        "--out", str(tmp_path / "keys"),
    ]  # fmt: skip
    # A changed file: refused before anything is asked, naming the file.
    (model / "weights.bin").write_bytes(b"tampered")
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "model.manifest.digest_mismatch" in err and "weights.bin" in err
    assert not (tmp_path / "keys").exists()
    (model / "weights.bin").write_bytes(b"tensor " * 10)
    # Not measured: the server denies (and the CLI says why).
    assert main(base) == 1
    assert "policy.model.binding_missing" in capsys.readouterr().out
    assert main([*base, "--extend-model-pcr"]) == 0
    key = (tmp_path / "keys" / "m@1.key").read_bytes()
    assert key == bound_key(KEY, "m", 1, bytes(reg.root_digest))
