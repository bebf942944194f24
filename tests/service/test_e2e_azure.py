"""Azure confidential VMs end to end over gRPC: the synthetic Azure node (swtpm as the vTPM,
the paravisor and IMDS emulators, ``sealgate.testing.azure``), the node agent's tpm2-tools
collector and the service, for ``azure-snp`` and ``azure-tdx``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from sealgate._proto import admin_pb2, attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.node.agent import AgentError, NodeAgent, NodeResult, explain
from sealgate.node.azure import AzureVtpmCollector
from sealgate.testing.azure import SyntheticAzureVm, TdFields, VmIdentity
from sealgate.testing.snp import ReportFields
from sealgate.testing.swtpm import tools_available

from tests.service.conftest import Env

pytestmark = pytest.mark.skipif(not tools_available(), reason="swtpm / tpm2-tools not installed")

KINDS = ["snp", "tdx"]
KEY = b"A" * 32


def _hardware(kind: str) -> dict[str, Any]:
    if kind == "snp":
        return {"snp": {"measurement": [ReportFields().measurement.hex()], "vmpl": [0]}}
    return {"tdx": {"mr_td": [TdFields().mr_td.hex()]}}


def _policy(kind: str, **extra: Any) -> dict[str, Any]:
    part: dict[str, Any] = {
        **_hardware(kind),
        "tpm": {"reference_sets": ["vtpm"], "required_selection": "sha256:0,1,2,3,4,5,6,7"},
        "vm_configuration": {"secure_boot": True, "console_enabled": False},
    }
    for name, value in extra.items():
        part.setdefault(name, {}).update(value)
    return {"platforms": {f"azure-{kind}": part}}


class Node:
    def __init__(self, env: Env, vm: SyntheticAzureVm, **kw: Any) -> None:
        self.env, self.vm = env, vm
        self.collector = AzureVtpmCollector(
            f"azure-{vm.kind}",
            tcti=vm.tcti,
            imds_url=vm.imds_url,
            collateral=kw.pop("collateral", vm.collateral() if vm.kind == "tdx" else None),
            **kw,
        )
        self.agent = NodeAgent(env.channel, f"azure-{vm.kind}-node", self.collector)

    def attest(self, *keys: str) -> NodeResult:
        return self.agent.attest(list(keys))


@pytest.fixture
def azure_env(
    make_env: Callable[..., Env], tmp_path: Path
) -> Iterator[Callable[..., tuple[Env, SyntheticAzureVm]]]:
    vms: list[SyntheticAzureVm] = []

    def make(kind: str, **vm_kw: Any) -> tuple[Env, SyntheticAzureVm]:
        vm = SyntheticAzureVm(tmp_path / f"vm{len(vms)}", kind, **vm_kw)
        vms.append(vm)
        vm.start()
        if len(vms) > 1:
            return envs[0], vm
        trust = vm.write_trust(tmp_path / "trust")
        env = make_env(collateral_dir=tmp_path / "collateral", **trust)
        envs.append(env)
        values = {f"sha256:{i}": v for i, v in vm.pcrs().items()}
        env.admin.BulkAddReferenceValues(
            admin_pb2.BulkAddReferenceValuesRequest(
                document=json.dumps({"platform": "tpm", "set_name": "vtpm", "values": values})
            ),
            metadata=env.md,
        )
        env.key("model", KEY)
        env.policy("model", _policy(kind))
        return env, vm

    envs: list[Env] = []
    try:
        yield make
    finally:
        for vm in vms:
            vm.stop()


def _codes(res: NodeResult, key: str = "model") -> list[str]:
    return sorted(f.code for d in res.denied if d.key_id == key for f in d.failures)


@pytest.mark.parametrize("kind", KINDS)
def test_azure_node_granted_then_denied_on_a_pcr_and_on_vm_configuration(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]], kind: str
) -> None:
    env, vm = azure_env(kind)
    node = Node(env, vm)
    res = node.attest("model")
    assert res.keys == {"model": (1, KEY)}, explain(res)
    claims = jwt.decode(res.token, options={"verify_signature": False})
    platform = f"azure-{kind}"
    # One submod for the platform and one per component (DESIGN.md "Composite evidence").
    assert set(claims["submods"]) == {
        platform,
        f"{platform}/{kind}",
        f"{platform}/tpm",
        f"{platform}/runtime_data",
    }
    assert all(s["ear.status"] == "affirming" for s in claims["submods"].values())
    # The hardware report was made for this challenge: its user data is the binding.
    assert vm.user_data == node.collector.state.joinpath("user-data.bin").read_bytes()

    # Something is measured into PCR 7 (another boot policy): denied, naming the PCR.
    vm.extend(7, b"another secure boot db")
    res = node.attest("model")
    assert not res.keys
    [failure] = [f for d in res.denied for f in d.failures]
    assert failure.code == "policy.tpm.pcr_mismatch"
    assert "PCR sha256:7" in failure.message and failure.actual == vm.pcrs()[7]
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"][f"{platform}/tpm"]["ear.status"] == "warning"
    assert claims["submods"][f"{platform}/{kind}"]["ear.status"] == "affirming"

    # The serial console is switched on (the paravisor reports it): denied, naming it.
    env.policy("model", _policy(kind, tpm={"allow_any_measurement": True, "reference_sets": []}))
    vm.identity.vm_configuration["console-enabled"] = True
    res = node.attest("model")
    assert not res.keys
    [failure] = [f for d in res.denied for f in d.failures]
    assert failure.code == "policy.azure.vm_configuration.console_enabled"
    assert (failure.actual, failure.expected) == ("true", "false")
    assert "console-enabled" in failure.message


@pytest.mark.parametrize("kind", KINDS)
def test_azure_stale_hcl_report_is_denied(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]], kind: str
) -> None:
    """A node that sends the HCL report of an earlier challenge (it skips the NV write, so
    the paravisor never made a report for this one) with a fresh vTPM quote: the hardware
    report is not fresh, so nothing is released."""
    env, vm = azure_env(kind)
    node = Node(env, vm)
    assert node.attest("model").keys  # leaves a report with that challenge's user data

    class Stale(AzureVtpmCollector):
        def write_user_data(self, binding: bytes) -> None:
            pass

        def read_report(self, binding: bytes) -> bytes:
            return self._run("nvread", "0x01400001", "-C", "o")

    stale = Stale(
        f"azure-{kind}",
        tcti=vm.tcti,
        imds_url=vm.imds_url,
        collateral=vm.collateral() if kind == "tdx" else None,
    )
    res = NodeAgent(env.channel, "stale", stale).attest(["model"])
    assert not res.keys and not res.token
    assert [f.code for f in res.evidence_failures] == ["azure.runtime_data.user_data_mismatch"]


@pytest.mark.parametrize("kind", KINDS)
def test_azure_hcl_report_of_another_vm_with_this_vms_quote_is_denied(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]], kind: str
) -> None:
    """VM B's genuine, fresh HCL report (B's paravisor made it for this very binding) with VM
    A's vTPM quote: the quote is not signed by the AK B's hardware report vouches for."""
    env, vm_a = azure_env(kind)
    _, vm_b = azure_env(kind)
    a = AzureVtpmCollector(f"azure-{kind}", tcti=vm_a.tcti, imds_url=vm_a.imds_url)
    b = AzureVtpmCollector(
        f"azure-{kind}",
        tcti=vm_b.tcti,
        imds_url=vm_b.imds_url,
        collateral=vm_b.collateral() if kind == "tdx" else None,
    )

    class Spliced:
        platform = f"azure-{kind}"

        def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
            ev = b.collect(nonce, binding)  # B's report, hardware evidence, quote ...
            msg, sig, _ = a.quote(binding)  # ... with A's quote over A's PCRs
            part = getattr(ev, f"azure_{kind}")
            part.quote, part.signature = msg, sig
            return ev

    res = NodeAgent(env.channel, "spliced", Spliced()).attest(["model"])
    assert not res.keys and not res.token
    assert [f.code for f in res.evidence_failures] == ["tpm.quote.signature_invalid"]


@pytest.mark.parametrize("kind", KINDS)
def test_azure_replayed_challenge_and_replayed_evidence_are_denied(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]], kind: str
) -> None:
    env, vm = azure_env(kind)
    node = Node(env, vm)
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    req = node.agent.build_attest(node.agent.challenge(), ["model"])
    assert stub.Attest(req).granted
    # The same request again: the challenge is single-use.
    with pytest.raises(grpc.RpcError) as e:
        stub.Attest(req)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "challenge unknown, already used or expired" in str(e.value.details())
    # The recorded evidence under a new challenge (same runtime key): bound to the old one.
    ch = node.agent.challenge()
    req.challenge_id = ch.challenge_id
    resp = stub.Attest(req)
    assert not resp.granted and not resp.token
    assert sorted(f.code for f in resp.evidence_failures) == [
        "azure.runtime_data.user_data_mismatch",
        "tpm.quote.nonce_mismatch",
    ]


def test_azure_tdx_without_collateral_fails_closed_on_tcb_statuses(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]],
) -> None:
    env, vm = azure_env("tdx")
    node = Node(env, vm, collateral=None)
    res = node.attest("model")
    assert not res.keys
    [failure] = [f for d in res.denied for f in d.failures]
    assert failure.code == "policy.azure.tcb_not_evaluated"
    assert (failure.actual, failure.expected) == ("not evaluated", "UpToDate")
    # The operator accepts signature-and-chain-only TDX evidence explicitly.
    env.policy("model", _policy("tdx", tdx={"allow_unevaluated_tcb": True}))
    res = node.attest("model")
    assert res.keys == {"model": (1, KEY)}, explain(res)
    # With collateral the status is evaluated again, and the flag does not skip it.
    assert Node(env, vm).attest("model").keys


def test_azure_report_type_must_match_the_challenge(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]],
) -> None:
    """TDX evidence sent under an azure-snp challenge (both oneof fields are AzureEvidence):
    refused, never appraised against the other platform's policy."""
    env, vm = azure_env("tdx")
    env.policy("model", {"platforms": {"azure-snp": _policy("snp")["platforms"]["azure-snp"]}})
    node = Node(env, vm)

    class Relabelled:
        platform = "azure-snp"

        def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
            ev = node.collector.collect(nonce, binding)
            return attestation_pb2.Evidence(azure_snp=ev.azure_tdx)

    res = NodeAgent(env.channel, "relabelled", Relabelled()).attest(["model"])
    assert not res.keys and not res.token
    assert [f.code for f in res.evidence_failures] == ["service.azure.platform_mismatch"]


def test_azure_chip_revoked_as_snp_is_revoked_behind_the_paravisor(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]],
) -> None:
    env, vm = azure_env("snp")
    node = Node(env, vm)
    assert node.attest("model").keys
    env.admin.RevokeIdentity(
        admin_pb2.RevokeIdentityRequest(
            platform=common_pb2.PLATFORM_SNP, identity=f"chip_id:{vm.snp.chip_id.hex()}"
        ),
        metadata=env.md,
    )
    with pytest.raises(AgentError) as e:
        node.attest("model")
    assert e.value.code == "attest.identity.revoked"


def test_azure_node_agent_waits_for_the_paravisor_and_gives_up_bounded(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]],
) -> None:
    """The paravisor answers slowly (it polls the index every 0.5 s): the agent retries until
    the report carries its user data; with fewer attempts than that takes it gives up with a
    named code instead of sending a stale report."""
    env, vm = azure_env("snp", poll_interval=0.5)
    assert Node(env, vm, report_attempts=40, report_delay=0.05).attest("model").keys
    with pytest.raises(AgentError) as e:
        Node(env, vm, report_attempts=2, report_delay=0.01).attest("model")
    assert e.value.code == "node.azure.report_stale"


def test_azure_hcl_report_index_is_not_writable_by_the_guest(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]], tmp_path: Path
) -> None:
    _env, vm = azure_env("snp")
    forged = tmp_path / "forged.bin"
    forged.write_bytes(bytes(2048))
    r = vm.tpm.tpm2("nvwrite", "0x01400001", "-C", "o", "-i", str(forged), check=False)
    assert r.returncode != 0  # ppwrite only: the owner (the guest) cannot write it


@pytest.mark.parametrize("kind", KINDS)
def test_cli_request_keys_on_an_azure_node(
    azure_env: Callable[..., tuple[Env, SyntheticAzureVm]], tmp_path: Path, kind: str
) -> None:
    env, vm = azure_env(kind, identity=VmIdentity())
    argv = [
        str(Path(sys.executable).parent / "sealgate"), "node", "request-keys",
        "--server", f"127.0.0.1:{env.server.port}",
        "--platform", f"azure-{kind}", "--node-id", "cli", "--key-id", "model",
        "--tcti", vm.tcti, "--imds-url", vm.imds_url,
        "--out", str(tmp_path / "keys"), "--json",
    ]  # fmt: skip
    if kind == "tdx":
        (tmp_path / "collateral.json").write_bytes(vm.collateral())
        argv += ["--collateral", str(tmp_path / "collateral.json")]
    r = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["granted"] == {"model": 1}
    assert (tmp_path / "keys" / "model.key").read_bytes() == KEY
    # With the wrong platform for this VM the agent refuses before sending anything.
    other = "snp" if kind == "tdx" else "tdx"
    argv[argv.index(f"azure-{kind}")] = f"azure-{other}"
    r = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert r.returncode != 0 and b"node.azure.wrong_platform" in r.stderr
