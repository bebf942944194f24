"""Protected-PCIe boards over gRPC: a synthetic SNP node sends its GPUs and NVSwitches
(``SyntheticPpcieSet``, ``SyntheticCollector``) bound into its report; the service verifies
each switch for its own nonce, the GPU↔switch topology, and the keys' ``ppcie`` policy."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sealgate.testing.softnode import SoftwareSnp

from tests.service.conftest import Env
from tests.service.test_e2e_gpu import _env, _ocsp_good

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sealgate.snp") is None, reason="SNP platform not built in"
)

GPU_VBIOS = "96.00.5E.00.01"


class _Board:
    """A synthetic board (GPUs then switches), the RIMs matching it under a synthetic RIM
    root, and good OCSP responses for every device chain and the RIM chain."""

    def __init__(self, tmp_path: Path, n_gpus: int = 2, n_switches: int = 2) -> None:
        from cryptography.hazmat.primitives import serialization
        from sealgate.testing.nvgpu import SyntheticPpcieSet
        from sealgate.testing.nvgpu_rim import make_hierarchy, make_rim, matching_rims

        self.set = SyntheticPpcieSet(n_gpus=n_gpus, n_switches=n_switches)
        h = self.set.hierarchy
        root = tmp_path / "nvgpu-root.pem"
        root.write_bytes(h.root_pem())
        self.rh = make_hierarchy("ppcie", not_before=datetime.now(UTC) - timedelta(days=30))
        (tmp_path / "rim-root.pem").write_bytes(
            self.rh.root.public_bytes(serialization.Encoding.PEM)
        )
        self.cfg: dict[str, object] = {
            "nvgpu_roots": [root],
            "nvgpu_rim_roots": [tmp_path / "rim-root.pem"],
        }
        g0 = self.set.gpus[0]
        drv, vb = matching_rims(
            self.rh, g0.measurements, driver_version=g0.driver_version, vbios_version=GPU_VBIOS
        )
        s0 = self.set.switches[0]
        sw = make_rim(
            self.rh,
            kind="vbios",
            version=s0.vbios_version,
            measurements={i - 1: (True, [v]) for i, v in s0.measurements.items()},
            count=31,
        )
        self.rims = [drv, vb, sw]

    def ocsp(self, d: Any) -> list[bytes]:
        from sealgate.testing.nvgpu import SyntheticSwitch

        h = d.hierarchy
        rh = self.rh
        ica, ica_key = (
            (h.switch_ica, h.switch_ica_key)
            if isinstance(d, SyntheticSwitch)
            else (h.ica, h.ica_key)
        )
        return [
            _ocsp_good(d.leaf, ica, ica_key),
            _ocsp_good(ica, h.root, h.root_key),
            _ocsp_good(rh.signer, rh.ca, rh.ca_key),
            _ocsp_good(rh.ca, rh.root, rh.root_key),
        ]

    def collector(self, devices: list[Any] | None = None) -> Any:
        from sealgate.testing.nvgpu import SyntheticCollector

        devs: list[Any] = devices if devices is not None else [*self.set.gpus, *self.set.switches]
        return SyntheticCollector(
            devs, rims=self.rims, ocsp={i: self.ocsp(d) for i, d in enumerate(devs)}
        )


def _policy(env: Env, key: str, **gpu: object) -> None:
    from sealgate.testing import snp

    env.key(key, hashlib.sha256(key.encode()).digest())
    env.policy(
        key,
        {
            "platforms": {
                "snp": {
                    "products": ["Milan"],
                    "measurement": [snp.ReportFields().measurement.hex()],
                }
            },
            "gpu": {
                "min_count": 2,
                "driver_versions": ["550.54.15"],
                "vbios_versions": [GPU_VBIOS],
                **gpu,
            },
        },
    )


def _setup(
    make_env: Callable[..., Env], tmp_path: Path, **board: int
) -> tuple[Env, SoftwareSnp, _Board]:
    b = _Board(tmp_path, **board)
    env, node = _env(make_env, tmp_path, **b.cfg)
    sw = b.set.switches[0].vbios_version
    _policy(env, "ppcie-req", ppcie="required", min_switches=2, switch_vbios_versions=[sw])
    _policy(env, "ppcie-any", ppcie="any", allow_any_switch_vbios=True)
    _policy(env, "plain")  # ppcie: forbidden by default
    return env, node, b


def _by_key(res: Any) -> dict[str, list[tuple[str, str, str]]]:
    return {
        d.key_id: sorted((f.message.split(":")[0], f.code, f.actual) for f in d.failures)
        for d in res.denied
    }


def _attest(env: Env, node: SoftwareSnp, collector: Any, keys: list[str]) -> Any:
    from sealgate.node.agent import NodeAgent

    return NodeAgent(env.channel, "cvm-1", node, gpus=collector).attest(keys)


KEYS = ["cpu-only", "ppcie-req", "ppcie-any", "plain"]


def test_ppcie_board_gets_the_key(make_env: Callable[..., Env], tmp_path: Path) -> None:
    import jwt
    from sealgate.node.agent import explain

    env, node, b = _setup(make_env, tmp_path)
    res = _attest(env, node, b.collector(), KEYS)
    assert set(res.keys) == {"cpu-only", "ppcie-req", "ppcie-any"}, explain(res)
    # A policy that never mentions protected PCIe does not admit the board.
    assert {c for _, c, _ in _by_key(res)["plain"]} == {"policy.gpu.ppcie_forbidden"}
    claims = jwt.decode(res.token, options={"verify_signature": False})
    subs = claims["submods"]
    assert {"snp/gpu0", "snp/gpu1", "snp/nvswitch0", "snp/nvswitch1"} <= set(subs)
    assert "snp/gpu2" not in subs  # min_count and the gpu<i> names count GPUs only
    for j, s in enumerate(b.set.switches):
        sub = subs[f"snp/nvswitch{j}"]
        info = sub["sealgate.gpu"]
        assert info["kind"] == "nvswitch" and info["entry"] == 2 + j
        assert info["verified"] and info["pdi"] == s.pdi.hex()
        assert info["rim"]["status"] == "compared" and info["revocation"]["checked"]
        assert info["topology"] == {
            "verified": True,
            "errors": [],
            "ppcie": True,
            "switch_side_checked": True,
        }
    assert subs["snp/gpu0"]["sealgate.gpu"]["entry"] == 0


def test_switch_nonce_is_per_entry(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """A switch's report signed for another slot's nonce (or an old challenge) is refused."""
    from sealgate.node.agent import explain

    env, node, b = _setup(make_env, tmp_path)
    col = b.collector()
    col.replace[3] = b.set.switches[1].report(b"\x00" * 32)
    res = _attest(env, node, col, ["cpu-only", "ppcie-req", "ppcie-any"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    for key in ("ppcie-req", "ppcie-any"):
        fails = _by_key(res)[key]
        assert ("nvswitch1", "policy.gpu.switch_not_verified", "gpu.report.nonce_mismatch") in fails


def test_missing_switch(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env, node, b = _setup(make_env, tmp_path)
    res = _attest(env, node, b.collector([*b.set.gpus, b.set.switches[0]]), KEYS)
    assert set(res.keys) == {"cpu-only"}
    by = _by_key(res)
    codes = {c for _, c, _ in by["ppcie-req"]}
    assert codes == {"policy.gpu.topology", "policy.gpu.too_few_switches"}
    assert any("gpu.topology.switch_missing" in a for _, _, a in by["ppcie-req"])
    # An empty requirement is not a permission: "any" and "forbidden" deny it too.
    assert "policy.gpu.topology" in {c for _, c, _ in by["ppcie-any"]}
    assert "policy.gpu.topology" in {c for _, c, _ in by["plain"]}


def test_foreign_switch(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """A genuine switch from another board (same root) in place of one of this board's."""
    from sealgate.testing.nvgpu import SyntheticSwitch

    env, node, b = _setup(make_env, tmp_path)
    gpu_pdis = tuple(g.pdi for g in b.set.gpus)
    foreign = SyntheticSwitch(b.set.hierarchy, serial=300, gpu_pdis=gpu_pdis)
    res = _attest(env, node, b.collector([*b.set.gpus, b.set.switches[0], foreign]), KEYS)
    assert set(res.keys) == {"cpu-only"}
    fails = _by_key(res)["ppcie-req"]
    assert [c for _, c, _ in fails] == ["policy.gpu.topology"]
    actual = fails[0][2]
    assert "gpu.topology.switch_unknown" in actual and "gpu.topology.switch_missing" in actual


def test_gpu_names_a_switch_not_present(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.testing.nvgpu import SyntheticSwitch

    env, node, b = _setup(make_env, tmp_path)
    absent = SyntheticSwitch(b.set.hierarchy, serial=301)
    links = b.set.links([*b.set.switches, absent])
    for g in b.set.gpus:
        g.switch_pdis = links
    res = _attest(env, node, b.collector(), KEYS)
    assert set(res.keys) == {"cpu-only"}
    fails = _by_key(res)["ppcie-req"]
    assert [c for _, c, _ in fails] == ["policy.gpu.topology"]
    assert "gpu.topology.switch_missing" in fails[0][2]


def test_switch_with_untrusted_root(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """A switch under another root with the expected PDI (the topology holds): its chain
    does not verify, which denies every key with a gpu policy, whatever ``ppcie`` says."""
    from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticSwitch

    env, node, b = _setup(make_env, tmp_path)
    real = b.set.switches[1]
    fake = SyntheticSwitch(
        NvidiaHierarchy(), serial=real.serial, pdi=real.pdi, gpu_pdis=real.gpu_pdis
    )
    res = _attest(env, node, b.collector([*b.set.gpus, b.set.switches[0], fake]), KEYS)
    assert set(res.keys) == {"cpu-only"}
    by = _by_key(res)
    for key in ("ppcie-req", "ppcie-any"):
        assert [(w, c) for w, c, _ in by[key]] == [("nvswitch1", "policy.gpu.switch_not_verified")]
        assert by[key][0][2].startswith("gpu.chain."), by[key]
    assert {c for _, c, _ in by["plain"]} == {
        "policy.gpu.ppcie_forbidden",
        "policy.gpu.switch_not_verified",
    }


def test_non_ppcie_gpus_and_switchless_board(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.node.agent import explain
    from sealgate.testing.nvgpu import SyntheticGpu

    env, node, b = _setup(make_env, tmp_path)
    # GPUs in plain CC mode (no PPCIe): "required" denies; "any" and the default accept.
    plain = [SyntheticGpu(b.set.hierarchy, serial=40 + i) for i in range(2)]
    res = _attest(env, node, b.collector(plain), KEYS)
    assert set(res.keys) == {"cpu-only", "ppcie-any", "plain"}, explain(res)
    assert {c for _, c, _ in _by_key(res)["ppcie-req"]} == {
        "policy.gpu.not_ppcie",
        "policy.gpu.too_few_switches",
    }
    # The board's PPCIe GPUs without their switches: no key that takes GPUs is released.
    res = _attest(env, node, b.collector(list(b.set.gpus)), KEYS)
    assert set(res.keys) == {"cpu-only"}, explain(res)
    by = _by_key(res)
    assert {c for _, c, _ in by["ppcie-req"]} == {"policy.gpu.too_few_switches"}
    assert {c for _, c, _ in by["ppcie-any"]} == {"policy.gpu.too_few_switches"}
    assert {c for _, c, _ in by["plain"]} == {"policy.gpu.ppcie_forbidden"}
    # PPCIe GPUs next to switches but a plain-mode GPU among them: mixed modes.
    res = _attest(env, node, b.collector([*b.set.gpus, plain[0], *b.set.switches]), KEYS)
    assert set(res.keys) == {"cpu-only"}, explain(res)
    assert any("gpu.topology.mixed_mode" in a for _, c, a in _by_key(res)["ppcie-any"]), _by_key(
        res
    )


def test_device_cap_holds(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """GPUs and switches share the 16-entry cap, checked before anything is verified."""
    import grpc
    from sealgate._proto import attestation_pb2, attestation_pb2_grpc
    from sealgate.node.agent import NodeAgent
    from sealgate.protocol.gpu_binding import MAX_GPUS

    env, node, b = _setup(make_env, tmp_path)
    devs = [*b.set.gpus, *b.set.switches]
    agent = NodeAgent(env.channel, "cvm-1", node, gpus=b.collector(devs * (MAX_GPUS // 4)))
    req = agent.build_attest(agent.challenge(), ["ppcie-req"])
    assert len(req.gpus) == MAX_GPUS
    req.gpus.append(
        attestation_pb2.GpuEvidence(report=req.gpus[-1].report, cert_chain=req.gpus[-1].cert_chain)
    )
    with pytest.raises(grpc.RpcError) as ei:
        attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert "gpu.evidence.too_many" in str(ei.value.details())


def test_repeated_switch_is_one_switch(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """One switch sent twice (two nonces, two valid signatures) is not two switches."""
    env, node, b = _setup(make_env, tmp_path)
    s0 = b.set.switches[0]
    res = _attest(env, node, b.collector([*b.set.gpus, s0, s0]), ["ppcie-req"])
    assert not res.keys
    fails = _by_key(res)["ppcie-req"]
    assert [c for _, c, _ in fails] == ["policy.gpu.topology"]
    assert "gpu.evidence.duplicate_device" in fails[0][2]
