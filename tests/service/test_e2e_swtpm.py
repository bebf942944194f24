"""End to end with real TPMs: swtpm nodes driven by tpm2-tools through the node agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sealgate._proto import admin_pb2, admin_pb2_grpc
from sealgate.node.agent import AgentError, NodeAgent, explain
from sealgate.node.tpm import Tpm2ToolsCollector
from sealgate.service.auth import mint_operator_token
from sealgate.service.config import ServiceConfig
from sealgate.service.server import RunningServer, create_server
from sealgate.testing.eventlog import LogEvent, sample_boot_events
from sealgate.testing.swtpm import Swtpm, tools_available

pytestmark = pytest.mark.swtpm

POLICY = {
    "platforms": {
        "tpm": {"reference_sets": ["golden"], "required_selection": "sha256:0,1,2,3,4,5,6,7"}
    }
}


@pytest.fixture
def tpms(tmp_path: Path) -> Iterator[tuple[Swtpm, Swtpm]]:
    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed")
    ca = tmp_path / "ca"
    a, b = Swtpm(tmp_path / "a", ca_dir=ca), Swtpm(tmp_path / "b", ca_dir=ca)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def server(tmp_path: Path, tpms: tuple[Swtpm, Swtpm]) -> Iterator[RunningServer]:
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


def test_swtpm_nodes_enroll_attest_and_extra_pcr_is_denied(
    tmp_path: Path, tpms: tuple[Swtpm, Swtpm], server: RunningServer
) -> None:
    golden, rogue = tpms
    log_a, expected = golden.replay_events(sample_boot_events())
    extra = [*sample_boot_events(), LogEvent(4, 0xD, b"unexpected-driver")]
    log_b, _ = rogue.replay_events(extra)
    (tmp_path / "a.log").write_bytes(log_a)
    (tmp_path / "b.log").write_bytes(log_b)
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    cfg = server.core.cfg
    md = (
        (
            "authorization",
            "Bearer "
            + mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "t", ["admin"]),
        ),
    )
    admin = admin_pb2_grpc.AdminStub(ch)
    values = {f"sha256:{i}": expected["sha256"].get(i, bytes(32)).hex() for i in range(8)}
    admin.BulkAddReferenceValues(
        admin_pb2.BulkAddReferenceValuesRequest(
            document=json.dumps({"platform": "tpm", "set_name": "golden", "values": values})
        ),
        metadata=md,
    )
    admin.ImportModelKey(admin_pb2.ImportModelKeyRequest(key_id="m", key=b"M" * 32), metadata=md)
    admin.PutPolicy(admin_pb2.PutPolicyRequest(key_id="m", json=json.dumps(POLICY)), metadata=md)
    try:
        node_a = NodeAgent(
            ch,
            "golden",
            Tpm2ToolsCollector(golden.tcti, tmp_path / "sa", eventlog=tmp_path / "a.log"),
        )
        res = node_a.attest(["m"])
        assert res.keys == {"m": (1, b"M" * 32)}, explain(res)
        assert node_a.refetch(res.token, ["m"]).keys["m"][1] == b"M" * 32
        node_b = NodeAgent(
            ch,
            "rogue",
            Tpm2ToolsCollector(rogue.tcti, tmp_path / "sb", eventlog=tmp_path / "b.log"),
        )
        res_b = node_b.attest(["m"])
        assert not res_b.keys
        assert [f.code for f in res_b.denied[0].failures] == ["policy.tpm.pcr_mismatch"]
        assert "sha256:4" in explain(res_b)[0]
        # The rogue node's AK cannot be used under the golden node's id.
        node_c = NodeAgent(ch, "golden", Tpm2ToolsCollector(rogue.tcti, tmp_path / "sb"))
        res_c = node_c.attest(["m"], auto_enroll=False)
        assert [f.code for f in res_c.evidence_failures] == ["tpm.quote.signature_invalid"]
        admin.RevokeNode(admin_pb2.RevokeNodeRequest(node_id="golden"), metadata=md)
        with pytest.raises(AgentError) as e:
            node_a.attest(["m"], auto_enroll=False)
        assert e.value.code == "tpm.ak.revoked"
    finally:
        ch.close()


def test_swtpm_revocation_sticks_to_the_tpm_and_node_ids_stay_bound(
    tmp_path: Path, tpms: tuple[Swtpm, Swtpm], server: RunningServer
) -> None:
    golden, rogue = tpms
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    cfg = server.core.cfg
    token = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "t", ["admin"])
    md = (("authorization", f"Bearer {token}"),)
    admin = admin_pb2_grpc.AdminStub(ch)
    try:
        NodeAgent(ch, "golden", Tpm2ToolsCollector(golden.tcti, tmp_path / "sa")).enroll()
        # A second genuine TPM cannot take the enrolled node id.
        with pytest.raises(AgentError) as e:
            NodeAgent(ch, "golden", Tpm2ToolsCollector(rogue.tcti, tmp_path / "sb")).enroll()
        assert e.value.code == "tpm.enroll.node_id_taken"
        admin.RevokeNode(admin_pb2.RevokeNodeRequest(node_id="golden"), metadata=md)
        # The revoked TPM, with a fresh AK, under a fresh node id: still refused.
        with pytest.raises(AgentError) as e:
            fresh_ak = Tpm2ToolsCollector(golden.tcti, tmp_path / "sc", ak_handle="0x81010077")
            NodeAgent(ch, "golden-2", fresh_ak).enroll()
        assert e.value.code == "tpm.enroll.revoked"
        # Other TPMs are unaffected.
        NodeAgent(ch, "rogue", Tpm2ToolsCollector(rogue.tcti, tmp_path / "sb")).enroll()
    finally:
        ch.close()
