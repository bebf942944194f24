"""Composite evidence over gRPC: a synthetic SNP node with GPU evidence bound into its report.

``_FakeGpus`` sends non-genuine reports (binding and policy path); ``_SyntheticGpus`` sends
reports signed by synthetic GPUs (``sealgate.testing.nvgpu``) whose root the service trusts
through ``nvgpu_roots``.
"""

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

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sealgate.snp") is None, reason="SNP platform not built in"
)


class _FakeGpus:
    """Reports that carry the nonce they were asked for but no valid signature."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.asked: list[list[bytes]] = []

    def count(self) -> int:
        return self.n

    def collect(self, nonces: list[bytes]) -> list[Any]:
        from sealgate._proto import attestation_pb2

        self.asked.append(nonces)
        return [
            attestation_pb2.GpuEvidence(report=b"not an spdm report " + n, cert_chain=b"")
            for n in nonces
        ]


class _SyntheticGpus:
    def __init__(self, gpus: list[Any]) -> None:
        self.gpus = gpus
        #: index → a report to send instead of a fresh one (a hostile node's replay).
        self.replace: dict[int, bytes] = {}
        #: RIMs sent with every GPU's evidence, and OCSP responses per GPU index.
        self.rims: list[bytes] = []
        self.ocsp: dict[int, list[bytes]] = {}
        #: The synthetic RIM hierarchy the service trusts (``_collateral``).
        self.rim_hierarchy: Any = None

    def count(self) -> int:
        return len(self.gpus)

    def collect(self, nonces: list[bytes]) -> list[Any]:
        from sealgate._proto import attestation_pb2

        return [
            attestation_pb2.GpuEvidence(
                report=self.replace.get(i) or g.report(n),
                cert_chain=g.cert_chain(),
                rims=self.rims,
                ocsp_responses=self.ocsp.get(i, []),
            )
            for i, (g, n) in enumerate(zip(self.gpus, nonces, strict=True))
        ]


def _env(make_env: Callable[..., Env], tmp_path: Path, **cfg: object) -> tuple[Env, SoftwareSnp]:
    from sealgate.testing import snp

    node = SoftwareSnp()
    env = make_env(collateral_dir=tmp_path / "collateral", **node.write_trust(tmp_path), **cfg)
    snp_req = {"products": ["Milan"], "measurement": [snp.ReportFields().measurement.hex()]}
    env.key("cpu-only", b"C" * 32)
    env.policy("cpu-only", {"platforms": {"snp": snp_req}})
    env.key("gpu-model", b"G" * 32)
    env.policy(
        "gpu-model",
        {
            "platforms": {"snp": snp_req},
            "gpu": {"min_count": 2, "driver_versions": ["550.54.15"], "allow_any_vbios": True},
        },
    )
    return env, node


def test_gpu_policy_needs_gpus(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.node.agent import NodeAgent, explain

    env, node = _env(make_env, tmp_path)
    res = NodeAgent(env.channel, "cvm-1", node).attest(["cpu-only", "gpu-model"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    codes = [f.code for d in res.denied for f in d.failures]
    assert codes == ["policy.gpu.too_few"]


def test_gpus_bound_and_appraised_per_index(make_env: Callable[..., Env], tmp_path: Path) -> None:
    import jwt
    from sealgate.node.agent import NodeAgent, explain

    env, node = _env(make_env, tmp_path)
    gpus = _FakeGpus(2)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["cpu-only", "gpu-model"])
    # The CPU binding covered the GPU set (else nothing at all would be granted) ...
    assert set(res.keys) == {"cpu-only"}, explain(res)
    # ... and each GPU is appraised by index: these reports are not genuine.
    msgs = sorted(f.message.split(":")[0] for d in res.denied for f in d.failures)
    assert msgs == ["gpu0", "gpu1"]
    assert {f.code for d in res.denied for f in d.failures} == {"policy.gpu.not_verified"}
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert {"snp/gpu0", "snp/gpu1"} <= set(claims["submods"])
    assert len(set(gpus.asked[0])) == 2 and all(len(n) == 32 for n in gpus.asked[0])


@pytest.mark.parametrize("attack", ["splice", "reorder", "drop"])
def test_tampered_gpu_set_breaks_the_cpu_binding(
    make_env: Callable[..., Env], tmp_path: Path, attack: str
) -> None:
    from sealgate._proto import attestation_pb2, attestation_pb2_grpc
    from sealgate.node.agent import NodeAgent

    env, node = _env(make_env, tmp_path)
    agent = NodeAgent(env.channel, "cvm-1", node, gpus=_FakeGpus(2))
    req = agent.build_attest(agent.challenge(), ["cpu-only"])
    reports = list(req.gpus)
    if attack == "splice":
        # A report made for another challenge (another node's session).
        other = NodeAgent(env.channel, "cvm-2", node, gpus=_FakeGpus(2))
        reports[1] = other.build_attest(other.challenge(), ["cpu-only"]).gpus[1]
    elif attack == "reorder":
        reports.reverse()
    else:
        reports = reports[:1]
    del req.gpus[:]
    req.gpus.extend(
        attestation_pb2.GpuEvidence(report=g.report, cert_chain=g.cert_chain) for g in reports
    )
    resp = attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert not resp.granted and not resp.token
    assert any("report_data" in f.code for f in resp.evidence_failures), [
        f.code for f in resp.evidence_failures
    ]


def _synthetic(tmp_path: Path, n: int = 2) -> tuple[dict[str, object], _SyntheticGpus]:
    from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticGpu

    h = NvidiaHierarchy()
    root = tmp_path / "nvgpu-root.pem"
    root.write_bytes(h.root_pem())
    return {"nvgpu_roots": [root]}, _SyntheticGpus([SyntheticGpu(h, i) for i in range(n)])


def test_synthetic_gpus_verify_and_a_replayed_report_is_caught(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _synthetic(tmp_path)
    env, node = _env(make_env, tmp_path, **cfg)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["cpu-only", "gpu-model"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    # Genuine and fresh, but the service holds no RIM for these versions: a missing RIM
    # fails verification (never a silent "not compared"), for each GPU.
    fails = sorted((f.message.split(":")[0], f.code) for d in res.denied for f in d.failures)
    assert fails == [(f"gpu{i}", "policy.gpu.not_verified") for i in (0, 1)]
    assert all("gpu.rim.not_found" in f.actual for d in res.denied for f in d.failures), explain(
        res
    )
    # A hostile node replays GPU 1's report from an earlier challenge and binds its CPU
    # report to it: the binding holds, the GPU's own nonce does not.
    old = gpus.gpus[1].report(b"\x00" * 32)
    gpus.replace[1] = old
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["cpu-only", "gpu-model"])
    assert set(res.keys) == {"cpu-only"}, explain(res)
    bad = [f for d in res.denied for f in d.failures if "nonce_mismatch" in f.actual]
    assert [(f.message.split(":")[0], f.code) for f in bad] == [("gpu1", "policy.gpu.not_verified")]


def test_untrusted_gpu_root_is_not_verified(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from sealgate.node.agent import NodeAgent

    _, gpus = _synthetic(tmp_path)
    # The service trusts another synthetic root with the same name but another key.
    (tmp_path / "other").mkdir()
    cfg, _ = _synthetic(tmp_path / "other")
    env, node = _env(make_env, tmp_path, **cfg)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-model"])
    actual = [
        f.actual for d in res.denied for f in d.failures if f.code == "policy.gpu.not_verified"
    ]
    assert len(actual) == 2 and all(a.startswith("gpu.chain.") for a in actual), actual


# -- RIMs and OCSP consumed by the service ------------------------------------------------

_DEVTOOLS = hashlib.sha384(b"synthetic devtools firmware").digest()


def _ocsp_good(cert: Any, issuer: Any, key: Any) -> bytes:
    """An issuer-signed "good" response (RFC 6960 §4.2.2.2: the CA itself may sign)."""
    from sealgate.testing.nvgpu_rim import ocsp_good

    return ocsp_good(cert, issuer, key)


def _collateral(
    tmp_path: Path, *, rims_in_dir: bool = False, mismatch_gpu1: bool = False
) -> tuple[dict[str, object], _SyntheticGpus]:
    """Two synthetic GPUs, a synthetic RIM root the service trusts (``nvgpu_rim_roots``)
    and the RIMs matching GPU 0, sent with the evidence or in ``nvgpu_rim_dirs``."""
    from cryptography.hazmat.primitives import serialization
    from sealgate.testing.nvgpu_rim import make_hierarchy, matching_rims

    cfg, gpus = _synthetic(tmp_path)
    rh = make_hierarchy("e2e", not_before=datetime.now(UTC) - timedelta(days=30))
    (tmp_path / "rim-root.pem").write_bytes(rh.root.public_bytes(serialization.Encoding.PEM))
    cfg["nvgpu_rim_roots"] = [tmp_path / "rim-root.pem"]
    gpus.rim_hierarchy = rh
    g0 = gpus.gpus[0]
    drv, vb = matching_rims(
        rh, g0.measurements, driver_version=g0.driver_version, vbios_version="96.00.5E.00.01"
    )
    if mismatch_gpu1:
        # SPDM block 10 is RIM index 9 (VBIOS): what a developer-tools firmware changes.
        gpus.gpus[1].measurements[10] = _DEVTOOLS
    if rims_in_dir:
        d = tmp_path / "rims"
        d.mkdir()
        (d / "driver.swidtag").write_bytes(drv)
        (d / "vbios.swidtag").write_bytes(vb)
        cfg["nvgpu_rim_dirs"] = [d]
    else:
        gpus.rims = [drv, vb]
    return cfg, gpus


def _rim_ocsp(gpus: _SyntheticGpus) -> list[bytes]:
    """Good responses for the RIM signer chain (signer under the CA, CA under the root)."""
    rh = gpus.rim_hierarchy
    return [_ocsp_good(rh.signer, rh.ca, rh.ca_key), _ocsp_good(rh.ca, rh.root, rh.root_key)]


def _with_ocsp(gpus: _SyntheticGpus, *, rim_chain: bool = True) -> None:
    """Each GPU sends good responses for its device chain and, with ``rim_chain``, for the
    RIM signer chain (one pool, as a node carries its collateral)."""
    rim = _rim_ocsp(gpus) if rim_chain and gpus.rim_hierarchy is not None else []
    for i, g in enumerate(gpus.gpus):
        h = g.hierarchy
        gpus.ocsp[i] = [
            _ocsp_good(g.leaf, h.ica, h.ica_key),
            _ocsp_good(h.ica, h.root, h.root_key),
            *rim,
        ]


def _gpu_policy(env: Env, key: str, **gpu: object) -> None:
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
                "vbios_versions": ["96.00.5E.00.01"],
                **gpu,
            },
        },
    )


def _codes(res: Any) -> list[tuple[str, str]]:
    return sorted((f.message.split(":")[0], f.code) for d in res.denied for f in d.failures)


@pytest.mark.parametrize("rims_in_dir", [False, True], ids=["sent", "rim_dir"])
def test_two_gpus_with_rims_and_ocsp_get_the_key(
    make_env: Callable[..., Env], tmp_path: Path, rims_in_dir: bool
) -> None:
    import jwt
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _collateral(tmp_path, rims_in_dir=rims_in_dir)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict", require_revocation_check=True)
    _gpu_policy(env, "gpu-norev", require_revocation_check=False)
    # No OCSP yet: revocation unchecked denies the strict key, the other one is granted.
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict", "gpu-norev"])
    assert set(res.keys) == {"gpu-norev"}, explain(res)
    assert _codes(res) == [(f"gpu{i}", "policy.gpu.revocation_unchecked") for i in (0, 1)]
    _with_ocsp(gpus)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict", "gpu-norev"])
    assert set(res.keys) == {"gpu-strict", "gpu-norev"}, explain(res)
    claims = jwt.decode(res.token, options={"verify_signature": False})
    for i in (0, 1):
        # No objection on either GPU: no AR4SI claim at warning (32) or worse.
        vec = claims["submods"][f"snp/gpu{i}"]["ear.trustworthiness-vector"]
        assert all(v < 32 for v in vec.values()), vec


def test_cached_ocsp_responses_count(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """Responses stored by ``sealgate collateral fetch nvidia`` are used when the node
    sends none."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from sealgate import pki
    from sealgate.collateral import CollateralCache
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.nvgpu.fetch import ocsp_cache_parts

    cfg, gpus = _collateral(tmp_path)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict", require_revocation_check=True)
    _with_ocsp(gpus, rim_chain=False)
    cache = CollateralCache(tmp_path / "collateral")
    for i, g in enumerate(gpus.gpus):
        chain = pki.load_certificates(g.cert_chain())
        for cert, resp in zip(chain, gpus.ocsp[i], strict=False):
            cache.put("nvidia", *ocsp_cache_parts(cert), data=resp)
    gpus.ocsp = {}
    # The device chains' responses alone leave the RIM signer chain unchecked ...
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict"])
    assert not res.keys, explain(res)
    fails = [f for d in res.denied for f in d.failures]
    assert [(f.message.split(":")[0], f.code) for f in fails] == [
        (f"gpu{i}", "policy.gpu.revocation_unchecked") for i in (0, 1)
    ]
    assert all("driver RIM, vbios RIM" in f.message for f in fails), explain(res)
    # ... until the RIM chain's responses are cached too (what `collateral fetch nvidia`
    # stores for the RIMs it fetches).
    rh = gpus.rim_hierarchy
    rim_chain = [pki.load_certificate(c.public_bytes(Encoding.DER)) for c in rh.chain]
    for cert, resp in zip(rim_chain, _rim_ocsp(gpus), strict=False):
        cache.put("nvidia", *ocsp_cache_parts(cert), data=resp)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict"])
    assert set(res.keys) == {"gpu-strict"}, explain(res)


def test_mismatched_gpu_is_named_and_allow_mismatch_expires(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _collateral(tmp_path, mismatch_gpu1=True)
    _with_ocsp(gpus)
    env, node = _env(make_env, tmp_path, **cfg)
    future = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _gpu_policy(env, "strict")
    _gpu_policy(env, "tolerant", allow_mismatch=[{"index": 9, "until": future}])
    _gpu_policy(env, "expired", allow_mismatch=[{"index": 9, "until": past}])
    _gpu_policy(env, "other-index", allow_mismatch=[{"index": 8, "until": future}])
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(
        ["strict", "tolerant", "expired", "other-index"]
    )
    assert set(res.keys) == {"tolerant"}, explain(res)
    by_key = {d.key_id: d.failures for d in res.denied}
    assert set(by_key) == {"strict", "expired", "other-index"}
    for fails in by_key.values():
        assert [(f.message.split(":")[0], f.code) for f in fails] == [
            ("gpu1", "policy.gpu.measurement_mismatch")
        ]
        assert "9" in fails[0].message


def test_rim_missing_and_oversized_collateral(make_env: Callable[..., Env], tmp_path: Path) -> None:
    import grpc
    from sealgate.node.agent import AgentError, NodeAgent, explain
    from sealgate.service.gpus import MAX_RIMS_PER_GPU

    cfg, gpus = _collateral(tmp_path)
    _with_ocsp(gpus)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict")
    vbios_only = gpus.rims[1:]
    gpus.rims = vbios_only
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict"])
    assert not res.keys, explain(res)
    fails = [f for d in res.denied for f in d.failures]
    assert [(f.message.split(":")[0], f.code) for f in fails] == [
        (f"gpu{i}", "policy.gpu.not_verified") for i in (0, 1)
    ]
    assert all(f.actual == "gpu.rim.not_found" for f in fails), [f.actual for f in fails]
    # A hostile node floods the service with RIMs: refused before any is parsed.
    gpus.rims = vbios_only * (MAX_RIMS_PER_GPU + 1)
    with pytest.raises(AgentError) as ei:
        NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict"])
    assert ei.value.code == "gpu.evidence.too_large"
    assert ei.value.status == grpc.StatusCode.INVALID_ARGUMENT


def test_rim_config_keys_and_source_cache(tmp_path: Path) -> None:
    import json

    from sealgate.errors import UsageError
    from sealgate.service.config import load_config
    from sealgate.service.gpus import GpuCollateral

    _, gpus = _collateral(tmp_path, rims_in_dir=True)
    (tmp_path / "c.json").write_text(
        json.dumps(
            {
                "nvgpu_rim_roots": str(tmp_path / "rim-root.pem"),  # one path without the list
                "nvgpu_rim_dirs": [str(tmp_path / "rims")],
                "collateral_dir": str(tmp_path / "collateral"),
            }
        )
    )
    cfg = load_config(tmp_path / "c.json")
    assert cfg.nvgpu_rim_roots == [tmp_path / "rim-root.pem"]
    assert cfg.nvgpu_rim_dirs == [tmp_path / "rims"]
    (tmp_path / "bad.json").write_text(json.dumps({"nvgpu_rim_dirs": 5}))
    with pytest.raises(UsageError) as e:
        load_config(tmp_path / "bad.json")
    assert e.value.code == "config.invalid"
    col = GpuCollateral(cfg)
    # Parsed once: the same RIMs sent and unchanged directories give the same source ...
    a = col.rim_source([b"x"])
    assert col.rim_source([b"x", b"x"]) is a
    assert col.rim_source([]) is not a
    # ... and a RIM added to a directory is seen by the next request.
    (tmp_path / "rims" / "more.swidtag").write_bytes(gpus.gpus[0].report(b"\x00" * 32))
    assert col.rim_source([b"x"]) is not a


def test_rim_source_cache_is_bounded(tmp_path: Path) -> None:
    from sealgate.service import gpus
    from sealgate.service.config import ServiceConfig

    cfg = ServiceConfig(collateral_dir=tmp_path / "collateral")
    col = gpus.GpuCollateral(cfg)
    for i in range(gpus.MAX_SOURCES + 5):
        col.rim_source([b"%d" % i])
    assert len(col._sources) == gpus.MAX_SOURCES
    big = b"R" * (gpus.MAX_CACHED_BLOB_BYTES // 2 + 1)
    col.rim_source([big + b"1"])
    col.rim_source([big + b"2"])
    assert col._blob_bytes <= gpus.MAX_CACHED_BLOB_BYTES
    assert sum(n for _, n in col._sources.values()) == col._blob_bytes


# -- denials the issue names, a TDX node, and the token ------------------------------------


def test_devtools_gpu_is_denied_naming_it(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """A GPU in developer-tools mode sends a genuine, fresh report whose firmware
    measurements differ from the production RIMs: denied, naming the GPU and the indices."""
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.testing.nvgpu import MODE_DEVTOOLS

    cfg, gpus = _collateral(tmp_path)
    gpus.gpus[1].mode = MODE_DEVTOOLS
    _with_ocsp(gpus)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict")
    _gpu_policy(env, "one-gpu", min_count=1)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict", "one-gpu"])
    # Every GPU sent must pass, whatever min_count says.
    assert not res.keys, explain(res)
    for d in res.denied:
        assert [(f.message.split(":")[0], f.code) for f in d.failures] == [
            ("gpu1", "policy.gpu.measurement_mismatch")
        ], explain(res)
        # RIM index 7 (driver) and 9 (VBIOS): SPDM blocks 8 and 10.
        assert "index(es) 7, 9 differ" in d.failures[0].message
        assert "developer-tools" in d.failures[0].message
    # The same GPU back in CC mode gets both keys.
    gpus.gpus[1].mode = "cc"
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict", "one-gpu"])
    assert set(res.keys) == {"gpu-strict", "one-gpu"}, explain(res)


def test_devtools_gpu_without_rims_is_not_compared(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    """No RIM at all for the devtools GPU's versions: never a silent pass — the GPU does not
    verify (``gpu.rim.not_found``), so CC mode and devtools stay unproven."""
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.testing.nvgpu import MODE_DEVTOOLS

    cfg, gpus = _collateral(tmp_path)
    gpus.rims = []
    gpus.gpus[0].mode = MODE_DEVTOOLS
    _with_ocsp(gpus)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict", require_revocation_check=False)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict"])
    assert not res.keys, explain(res)
    fails = [f for d in res.denied for f in d.failures]
    assert [(f.message.split(":")[0], f.code) for f in fails] == [
        ("gpu0", "policy.gpu.not_verified"),
        ("gpu1", "policy.gpu.not_verified"),
    ]
    assert all("gpu.rim.not_found" in f.actual for f in fails), explain(res)


def test_gpu_in_cc_off_mode_gives_no_evidence() -> None:
    """With CC off NVML returns no report: the node collector fails with its code, so no
    Attest carrying that GPU is ever made."""
    from sealgate.node.nvml import NvmlError, NvmlGpus
    from sealgate.testing.fake_nvml import FakeNvml
    from sealgate.testing.nvgpu import MODE_OFF, NvidiaHierarchy, SyntheticGpu

    h = NvidiaHierarchy()
    col = NvmlGpus(FakeNvml([SyntheticGpu(h, 0), SyntheticGpu(h, 1, mode=MODE_OFF)]))
    with pytest.raises(NvmlError) as e:
        col.collect([b"\x01" * 32, b"\x02" * 32])
    assert e.value.code == "node.gpu.nvml_failed" and "GPU 1" in e.value.message


def test_one_gpu_missing_is_denied_by_min_count(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _collateral(tmp_path)
    gpus.gpus = gpus.gpus[:1]
    _with_ocsp(gpus)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "two-gpus")
    _gpu_policy(env, "one-gpu", min_count=1)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["two-gpus", "one-gpu"])
    assert set(res.keys) == {"one-gpu"}, explain(res)
    (d,) = res.denied
    assert d.key_id == "two-gpus"
    assert [(f.code, f.actual, f.expected) for f in d.failures] == [
        ("policy.gpu.too_few", "1", "2")
    ]


@pytest.mark.parametrize("rebind", [False, True], ids=["cpu_unchanged", "cpu_rebound"])
def test_genuine_gpu_report_spliced_from_another_challenge(
    make_env: Callable[..., Env], tmp_path: Path, rebind: bool
) -> None:
    """A genuine report of the node's own GPU, made for another challenge (another session),
    put in GPU 1's slot: with the CPU evidence as made for the real set, the CPU binding
    breaks; with the CPU evidence re-bound to the spliced set (a hostile node), the GPU's own
    nonce no longer matches its slot."""
    from sealgate._proto import attestation_pb2_grpc
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _collateral(tmp_path)
    _with_ocsp(gpus)
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict")
    other = NodeAgent(env.channel, "cvm-2", node, gpus=gpus)
    spliced = other.build_attest(other.challenge(), ["gpu-strict"]).gpus[1].report
    if rebind:
        gpus.replace[1] = spliced
        res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-strict"])
        assert not res.keys, explain(res)
        fails = [f for d in res.denied for f in d.failures]
        assert [(f.message.split(":")[0], f.code) for f in fails] == [
            ("gpu1", "policy.gpu.not_verified")
        ]
        assert "gpu.report.nonce_mismatch" in fails[0].actual
        return
    agent = NodeAgent(env.channel, "cvm-1", node, gpus=gpus)
    req = agent.build_attest(agent.challenge(), ["gpu-strict"])
    req.gpus[1].report = spliced
    resp = attestation_pb2_grpc.AttestationStub(env.channel).Attest(req)
    assert not resp.granted and not resp.token
    assert [f.code for f in resp.evidence_failures] == ["snp.report.report_data_mismatch"]


def test_revoked_rim_signer_denies(make_env: Callable[..., Env], tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp
    from sealgate.node.agent import NodeAgent, explain

    cfg, gpus = _collateral(tmp_path)
    _with_ocsp(gpus)
    rh = gpus.rim_hierarchy
    now = datetime.now(UTC)
    revoked = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=rh.signer,
            issuer=rh.ca,
            algorithm=hashes.SHA384(),
            cert_status=ocsp.OCSPCertStatus.REVOKED,
            this_update=now - timedelta(hours=1),
            next_update=now + timedelta(days=1),
            revocation_time=now - timedelta(days=2),
            revocation_reason=x509.ReasonFlags.key_compromise,
        )
        .responder_id(ocsp.OCSPResponderEncoding.NAME, rh.ca)
        .sign(rh.ca_key, hashes.SHA384())
        .public_bytes(serialization.Encoding.DER)
    )
    # GPU 1's pool: device chain, then the RIM signer's response (now revoked), the RIM CA's.
    gpus.ocsp[1][2] = revoked
    env, node = _env(make_env, tmp_path, **cfg)
    # Even a policy that does not require revocation checks refuses a revoked signer.
    _gpu_policy(env, "gpu-norev", require_revocation_check=False)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=gpus).attest(["gpu-norev"])
    assert not res.keys, explain(res)
    fails = [f for d in res.denied for f in d.failures]
    assert [(f.message.split(":")[0], f.code, f.actual) for f in fails] == [
        ("gpu1", "policy.gpu.not_verified", "gpu.ocsp.revoked")
    ], explain(res)


def test_tdx_node_with_two_gpus_gets_the_key_and_the_token_says_why(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    import jwt
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.testing.softnode import SoftwareTdx

    cfg, gpus = _collateral(tmp_path)
    _with_ocsp(gpus)
    node = SoftwareTdx()
    (tmp_path / "intel-root.pem").write_bytes(node.root_pem())
    env = make_env(
        tdx_roots=[tmp_path / "intel-root.pem"], collateral_dir=tmp_path / "collateral", **cfg
    )
    tdx_req = {"mr_td": [(b"\x5a" * 48).hex()], "tcb_statuses": ["UpToDate"]}
    gpu_req = {
        "min_count": 2,
        "driver_versions": ["550.54.15"],
        "vbios_versions": ["96.00.5E.00.01"],
    }
    env.key("td-gpu", b"D" * 32)
    env.policy("td-gpu", {"platforms": {"tdx": tdx_req}, "gpu": gpu_req})
    res = NodeAgent(env.channel, "td-1", node, gpus=gpus).attest(["td-gpu"])
    assert res.keys == {"td-gpu": (1, b"D" * 32)}, explain(res)
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"]["tdx"]["ear.status"] == "affirming"
    for i, g in enumerate(gpus.gpus):
        sub = claims["submods"][f"tdx/gpu{i}"]
        assert sub["ear.status"] == "affirming"
        info = sub["sealgate.gpu"]
        assert info["verified"] is True and info["errors"] == []
        assert info["driver_version"] == "550.54.15"
        assert info["vbios_version"] == "96.00.5E.00.01"
        assert info["fwid"] == g.fwid.hex()
        assert info["rim"]["status"] == "compared" and info["measurements_compared"] is True
        assert info["rim"]["driver"]["id"] and info["rim"]["vbios"]["id"]
        assert info["rim"]["driver"]["status"] == "valid"
        assert info["mismatched_indices"] == []
        rev = info["revocation"]
        assert rev["checked"] is True and rev["status"] == "good"
        assert rev["device"] == {"checked": True, "status": "good"}
        assert {k: (v["id"], v["checked"]) for k, v in rev["rims"].items()} == {
            k: (info["rim"][k]["id"], True) for k in ("driver", "vbios")
        }
    # Distinct GPUs: distinct device identities in the token.
    ids = {
        claims["submods"][f"tdx/gpu{i}"]["sealgate.gpu"]["device_certificate_sha256"]
        for i in (0, 1)
    }
    assert len(ids) == 2 and None not in ids


def test_air_gapped_node_carries_its_collateral(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    """The NVML collector with a local collateral directory (what `collateral fetch nvidia
    --cache-dir` wrote on a connected machine) sends each GPU's RIMs and OCSP responses; a
    service with no RIM directory and an empty cache grants on them alone."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from sealgate import pki
    from sealgate.collateral import CollateralCache
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.node.nvml import NvmlGpus
    from sealgate.nvgpu.fetch import ocsp_cache_parts
    from sealgate.testing.fake_nvml import FakeNvml

    cfg, gpus = _collateral(tmp_path)
    drv, vb = gpus.rims
    g0 = gpus.gpus[0]
    local = CollateralCache(tmp_path / "node-collateral")
    local.put("nvidia", "rims", f"driver_{g0.driver_version}_fetched.swidtag", data=drv)
    vb_name = f"{g0.project}_{g0.project_sku}_{g0.chip_sku}_96005E0001_fetched.swidtag"
    local.put("nvidia", "rims", vb_name, data=vb)
    rh = gpus.rim_hierarchy
    pairs = [(rh.signer, rh.ca, rh.ca_key), (rh.ca, rh.root, rh.root_key)]
    for g in gpus.gpus:
        h = g.hierarchy
        pairs += [(g.leaf, h.ica, h.ica_key), (h.ica, h.root, h.root_key)]
    for cert, issuer, key in pairs:
        c = pki.load_certificate(cert.public_bytes(Encoding.DER))
        local.put("nvidia", *ocsp_cache_parts(c), data=_ocsp_good(cert, issuer, key))
    env, node = _env(make_env, tmp_path, **cfg)
    _gpu_policy(env, "gpu-strict")
    bare = NvmlGpus(FakeNvml(gpus.gpus))
    res = NodeAgent(env.channel, "cvm-1", node, gpus=bare).attest(["gpu-strict"])
    assert not res.keys and all(
        "gpu.rim.not_found" in f.actual for d in res.denied for f in d.failures
    ), explain(res)
    carrying = NvmlGpus(FakeNvml(gpus.gpus), collateral=local.root)
    res = NodeAgent(env.channel, "cvm-1", node, gpus=carrying).attest(["gpu-strict"])
    assert set(res.keys) == {"gpu-strict"}, explain(res)


def test_azure_snp_cvm_with_two_gpus_gets_the_key(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    """The composite binding is the platform's binding: an Azure SNP CVM (vTPM quote over
    the binding, HCL report, synthetic paravisor) carries its GPUs like a bare SNP guest."""
    import json

    import jwt
    from sealgate._proto import admin_pb2
    from sealgate.node.agent import NodeAgent, explain
    from sealgate.node.azure import AzureVtpmCollector
    from sealgate.testing.azure import SyntheticAzureVm
    from sealgate.testing.snp import ReportFields
    from sealgate.testing.swtpm import tools_available

    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed")
    cfg, gpus = _collateral(tmp_path)
    _with_ocsp(gpus)
    vm = SyntheticAzureVm(tmp_path / "vm", "snp")
    vm.start()
    try:
        env = make_env(
            collateral_dir=tmp_path / "collateral", **vm.write_trust(tmp_path / "trust"), **cfg
        )
        values = {f"sha256:{i}": v for i, v in vm.pcrs().items()}
        env.admin.BulkAddReferenceValues(
            admin_pb2.BulkAddReferenceValuesRequest(
                document=json.dumps({"platform": "tpm", "set_name": "vtpm", "values": values})
            ),
            metadata=env.md,
        )
        part = {
            "snp": {"measurement": [ReportFields().measurement.hex()], "vmpl": [0]},
            "tpm": {"reference_sets": ["vtpm"], "required_selection": "sha256:0,1,2,3,4,5,6,7"},
            "vm_configuration": {"secure_boot": True, "console_enabled": False},
        }
        gpu_req = {
            "min_count": 2,
            "driver_versions": ["550.54.15"],
            "vbios_versions": ["96.00.5E.00.01"],
        }
        env.key("az-gpu", b"Z" * 32)
        env.policy("az-gpu", {"platforms": {"azure-snp": part}, "gpu": gpu_req})
        collector = AzureVtpmCollector("azure-snp", tcti=vm.tcti, imds_url=vm.imds_url)
        res = NodeAgent(env.channel, "az-1", collector, gpus=gpus).attest(["az-gpu"])
        assert res.keys == {"az-gpu": (1, b"Z" * 32)}, explain(res)
        claims = jwt.decode(res.token, options={"verify_signature": False})
        for i in (0, 1):
            sub = claims["submods"][f"azure-snp/gpu{i}"]
            assert sub["ear.status"] == "affirming"
            assert sub["sealgate.gpu"]["revocation"]["checked"] is True
        # One GPU in developer-tools mode: denied, naming it.
        gpus.gpus[0].mode = "devtools"
        res = NodeAgent(env.channel, "az-1", collector, gpus=gpus).attest(["az-gpu"])
        assert not res.keys
        assert _codes(res) == [("gpu0", "policy.gpu.measurement_mismatch")], explain(res)
    finally:
        vm.stop()
