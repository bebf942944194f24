"""NVSwitch (LS10) evidence and the protected-PCIe topology, on a synthetic board (and on
NVIDIA's published switch evidence when the held-out vector is present)."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sealgate import nvgpu
from sealgate.cli import main
from sealgate.errors import ParseError
from sealgate.nvgpu import rim
from sealgate.nvgpu.switch import empty_pdi, kind_from_arch, kind_from_names
from sealgate.result import VerifyResult
from sealgate.testing.nvgpu import (
    NvidiaHierarchy,
    SyntheticGpu,
    SyntheticPpcieSet,
    SyntheticSwitch,
)
from sealgate.testing.nvgpu_rim import make_hierarchy, make_rim

from tests.vectors import shared

NONCE = bytes(range(32))
AT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def board() -> SyntheticPpcieSet:
    return SyntheticPpcieSet()


@pytest.fixture(scope="module")
def verifier(board: SyntheticPpcieSet) -> nvgpu.GpuVerifier:
    return nvgpu.GpuVerifier(roots=[board.hierarchy.root_pem()])


def _evs(items: list[dict[str, Any]]) -> list[nvgpu.GpuEvidence]:
    return nvgpu.load_evidence_json(json.dumps(items).encode())


def _run(v: nvgpu.GpuVerifier, items: list[dict[str, Any]], **kw: Any) -> VerifyResult:
    return nvgpu.verify_devices(_evs(items), nonce=NONCE, at=AT, verifier=v, **kw)


def _codes(res: Any) -> set[str]:
    return {e.code for e in res.errors}


def test_consistent_board_verifies(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    res = _run(verifier, board.evidence(NONCE))
    assert res.verified, res.errors
    kinds = [d["kind"] for d in res.claims["devices"]]
    assert kinds == ["gpu"] * 8 + ["nvswitch"] * 4
    topo = res.claims["topology"]
    assert topo["ppcie"] is True and topo["switch_side_checked"] is True
    assert topo["switch_count"] == 4 and topo["switch_reports"] == 4 and topo["gpu_count"] == 8
    assert topo["switch_device_pdis"] == sorted(s.pdi.hex() for s in board.switches)
    assert topo["gpu_pdis"] == sorted(g.pdi.hex() for g in board.gpus)
    sw = res.claims["devices"][8]
    assert sw["pdi"] == board.switches[0].pdi.hex()
    assert sw["vbios_version"] == "96.10.73.00.01"
    assert sw["lock_status"] == 1 and sw["position_id"] == 0
    assert sw["signature_verified"] is True and sw["nonce_checked"] is True
    assert sw["fwid_checked"] is False and len(sw["measurements"]) == 31
    assert sw["certificate"]["chain"][0].startswith("Synthetic LS_10 FSP FMC LF")


def test_byte_order_note(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    # PROVENANCE: a GPU reports each switch PDI in the reverse byte order of the switch's
    # own report. The GPU claims hold them as reported; the switch claims as the switch has it.
    res = _run(verifier, board.evidence(NONCE))
    gpu, sw = res.claims["devices"][0], res.claims["devices"][8]
    assert bytes.fromhex(sw["pdi"])[::-1].hex() in gpu["switch_pdis"]
    assert sw["pdi"] not in gpu["switch_pdis"]
    # A board whose GPUs name the switches in the switches' own byte order is not consistent.
    h = board.hierarchy
    same = [
        SyntheticGpu(
            h,
            serial=50 + i,
            ppcie=True,
            pdi=g.pdi,
            switch_pdis=tuple(s.pdi for s in board.switches),
        )
        for i, g in enumerate(board.gpus)
    ]
    items = [g.evidence_item(NONCE) for g in same] + [
        s.evidence_item(NONCE) for s in board.switches
    ]
    assert _codes(_run(verifier, items)) == {
        "gpu.topology.switch_unknown",
        "gpu.topology.switch_missing",
    }


def test_missing_switch(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    res = _run(verifier, board.evidence(NONCE)[:-1])
    assert _codes(res) == {"gpu.topology.switch_missing"}
    assert board.switches[-1].pdi.hex() in " ".join(e.message for e in res.errors)


def test_foreign_switch(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    gpu_pdis = tuple(g.pdi for g in board.gpus)
    other = SyntheticSwitch(board.hierarchy, serial=999, gpu_pdis=gpu_pdis)
    items = [*board.evidence(NONCE)[:-1], other.evidence_item(NONCE)]
    assert _codes(_run(verifier, items)) == {
        "gpu.topology.switch_unknown",
        "gpu.topology.switch_missing",
    }
    # An extra switch besides the four: only "unknown".
    items = [*board.evidence(NONCE), other.evidence_item(NONCE)]
    assert _codes(_run(verifier, items)) == {"gpu.topology.switch_unknown"}


def test_gpu_names_absent_switch(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    g = board.gpus[0]
    stray = SyntheticGpu(
        board.hierarchy,
        serial=77,
        ppcie=True,
        pdi=g.pdi,
        switch_pdis=(os.urandom(8), *g.switch_pdis[1:]),
    )
    items = board.evidence(NONCE)
    items[0] = stray.evidence_item(NONCE)
    assert _codes(_run(verifier, items)) == {
        "gpu.topology.mismatch",
        "gpu.topology.switch_missing",
    }


def test_disabled_link_tolerated(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    # An all-zero link PDI is a disabled NVLink; NVIDIA's PPCIe verifier drops it.
    g = board.gpus[0]
    links = (bytes(8), *g.switch_pdis[1:])
    alt = SyntheticGpu(board.hierarchy, serial=78, ppcie=True, pdi=g.pdi, switch_pdis=links)
    items = board.evidence(NONCE)
    items[0] = alt.evidence_item(NONCE)
    res = _run(verifier, items)
    assert res.verified, res.errors


def test_mixed_modes(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    g = board.gpus[1]
    off = SyntheticGpu(
        board.hierarchy, serial=79, ppcie=False, pdi=g.pdi, switch_pdis=g.switch_pdis
    )
    items = board.evidence(NONCE)
    items[1] = off.evidence_item(NONCE)
    assert _codes(_run(verifier, items)) == {"gpu.topology.mixed_mode"}


def test_switches_with_non_ppcie_gpus(
    board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier
) -> None:
    gpus = [SyntheticGpu(board.hierarchy, serial=80 + i, ppcie=False) for i in range(2)]
    items = [g.evidence_item(NONCE) for g in gpus] + [board.switches[0].evidence_item(NONCE)]
    assert _codes(_run(verifier, items)) == {"gpu.topology.not_ppcie"}


def test_duplicated_switch(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    items = board.evidence(NONCE)
    items.append(items[-1])
    assert _codes(_run(verifier, items)) == {
        "gpu.evidence.duplicate_device",
        "gpu.topology.switch_duplicate",
    }
    # The same switch PDI under a different leaf (a cloned identity): still a duplicate.
    s = board.switches[0]
    clone = SyntheticSwitch(board.hierarchy, serial=500, pdi=s.pdi, gpu_pdis=s.gpu_pdis)
    items = [*board.evidence(NONCE), clone.evidence_item(NONCE)]
    assert _codes(_run(verifier, items)) == {"gpu.topology.switch_duplicate"}


def test_switch_view_of_gpus(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    s = board.switches[2]
    wrong = SyntheticSwitch(
        board.hierarchy,
        serial=600,
        pdi=s.pdi,
        gpu_pdis=(os.urandom(8), *s.gpu_pdis[1:]),
        position_id=2,
    )
    items = board.evidence(NONCE)
    items[8 + 2] = wrong.evidence_item(NONCE)
    assert _codes(_run(verifier, items)) == {"gpu.topology.switch_gpus_mismatch"}
    # Seven of the eight GPUs: the switches name eight.
    items = board.evidence(NONCE)
    del items[7]
    assert _codes(_run(verifier, items)) == {"gpu.topology.gpu_count"}


def test_without_switch_evidence(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    res = _run(verifier, board.evidence(NONCE)[:8])
    assert res.verified
    assert res.claims["topology"]["switch_side_checked"] is False
    assert "switch_device_pdis" not in res.claims["topology"]


def test_kind_from_chain_when_arch_absent(
    board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier
) -> None:
    items = board.evidence(NONCE)
    for it in items:
        del it["arch"]
    res = _run(verifier, items)
    assert res.verified, res.errors
    assert [d["kind"] for d in res.claims["devices"]] == ["gpu"] * 8 + ["nvswitch"] * 4


def test_kind_mismatch(board: SyntheticPpcieSet, verifier: nvgpu.GpuVerifier) -> None:
    # A switch-format report signed by a GPU's key, with the GPU's chain, called "LS10".
    g = SyntheticGpu(board.hierarchy, serial=90)
    s = SyntheticSwitch(board.hierarchy, serial=91)
    s.key = g.key
    item = {**s.evidence_item(NONCE), "certificate": g.evidence_item(NONCE)["certificate"]}
    res = _run(verifier, [item])
    assert _codes(res) == {"gpu.evidence.kind_mismatch"}
    # GPU evidence called LS10 (or a switch's called HOPPER) does not parse as that kind.
    assert "gpu.format.invalid" in _codes(
        _run(verifier, [{**g.evidence_item(NONCE), "arch": "LS10"}])
    )
    bad = {**board.switches[0].evidence_item(NONCE), "arch": "HOPPER"}
    assert "gpu.format.invalid" in _codes(_run(verifier, [bad]))


def test_switch_nonce_signature_root(board: SyntheticPpcieSet) -> None:
    s = board.switches[0]
    v = nvgpu.GpuVerifier(roots=[board.hierarchy.root_pem()])
    res = nvgpu.verify_devices(_evs([s.evidence_item(NONCE)]), nonce=bytes(32), at=AT, verifier=v)
    assert _codes(res) == {"gpu.report.nonce_mismatch"}
    raw = bytearray(s.report(NONCE))
    raw[-1] ^= 1
    ev = nvgpu.GpuEvidence(bytes(raw), s.cert_chain(), arch="LS10")
    assert _codes(nvgpu.verify_devices([ev], nonce=NONCE, at=AT, verifier=v)) == {
        "gpu.report.signature_invalid"
    }
    # Another root (of the same name): the chain does not verify to it.
    other = nvgpu.GpuVerifier(roots=[NvidiaHierarchy().root_pem()])
    res = nvgpu.verify_devices(_evs([s.evidence_item(NONCE)]), nonce=NONCE, at=AT, verifier=other)
    assert _codes(res) and _codes(res) <= {
        "gpu.chain.untrusted_root",
        "gpu.chain.signature_invalid",
    }
    assert res.claims["devices"][0]["signature_verified"] is False


def _rebuild(report: bytes, tlvs: list[tuple[int, bytes]]) -> bytes:
    """The report with its opaque data replaced by ``tlvs`` (and a zero signature)."""
    rep = nvgpu.parse_switch_report(report)
    body = b"".join(t.to_bytes(2, "little") + len(v).to_bytes(2, "little") + v for t, v in tlvs)
    head_len = len(rep.signed) - sum(4 + len(v) for _, v in rep.opaque) - 2
    return report[:head_len] + len(body).to_bytes(2, "little") + body + bytes(96)


def _patch(report: bytes, tlv: int, new: bytes | None) -> bytes:
    rep = nvgpu.parse_switch_report(report)
    out = [(t, new if t == tlv else v) for t, v in rep.opaque if t != tlv or new is not None]
    return _rebuild(report, [(t, v) for t, v in out if v is not None])


def test_switch_report_malformed(board: SyntheticPpcieSet) -> None:
    raw = board.switches[0].report(NONCE)
    rep = nvgpu.parse_switch_report(raw)
    assert rep.pdi == board.switches[0].pdi and rep.vbios_version == "96.10.73.00.01"
    assert rep.gpu_pdis == tuple(g.pdi for g in board.gpus) and len(rep.port_map) == 64
    assert rep.signed == raw[:-96]
    for tlv, val in (
        (22, None),  # no DEVICE_PDI
        (22, bytes(8)),  # empty PDI
        (22, b"\x01" * 16),  # not one PDI
        (6, b"96.10.73"),  # not a five-part version
        (6, b"96.10.73.00.0\x01xxxxx"),
        (26, b"\x01" * 40),  # fewer than 8 slots
        (25, b"\x01"),  # lock status not u16
    ):
        with pytest.raises(ParseError) as e:
            nvgpu.parse_switch_report(_patch(raw, tlv, val))
        assert e.value.code.startswith("gpu.format."), (tlv, val)
    # The untouched rebuild parses (the helper is not what fails above) ...
    assert nvgpu.parse_switch_report(_rebuild(raw, list(rep.opaque))).pdi == rep.pdi
    # ... and a repeated switch TLV is refused.
    for t in (6, 24, 25, 26):
        dup = _rebuild(raw, [*rep.opaque, (t, rep.opaque_value(t) or b"")])
        with pytest.raises(ParseError):
            nvgpu.parse_switch_report(dup)


def test_switch_report_fuzz(board: SyntheticPpcieSet) -> None:
    # Truncations and byte flips: a ParseError or a parse, never another exception.
    raw = board.switches[1].report(NONCE)
    rnd = random.Random(15)
    for n in (0, 1, 36, 37, 45, 100, len(raw) - 97, len(raw) - 1):
        with pytest.raises(ParseError):
            nvgpu.parse_switch_report(raw[:n])
    for _ in range(300):
        b = bytearray(raw)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(37, len(b))] = rnd.randrange(256)
        try:
            nvgpu.parse_switch_report(bytes(b))
        except ParseError:
            pass


def test_switch_vbios_rim(board: SyntheticPpcieSet, tmp_path: Path) -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)  # inside the synthetic RIM signer's window
    s = board.switches[0]
    h = make_hierarchy("switch")
    entries = {i - 1: (True, [v]) for i, v in s.measurements.items()}
    good = make_rim(h, kind="vbios", version=s.vbios_version, measurements=entries, count=31)
    d = tmp_path / "rims"
    d.mkdir()
    (d / "NV_SWITCH_BIOS_5612_0002_890_9610730001_PROD.swidtag").write_bytes(good)
    v = nvgpu.GpuVerifier(roots=[board.hierarchy.root_pem()])
    src = rim.RimSource(roots=[h.root_cert], dirs=[d])
    ev = _evs([s.evidence_item(NONCE)])
    res = nvgpu.verify_devices(ev, nonce=NONCE, at=at, verifier=v, rims=src)
    dev = res.claims["devices"][0]
    assert res.verified, res.errors
    assert dev["measurements_compared"] is True and dev["rim"]["status"] == "compared"
    # One entry differs: named mismatch at that index.
    entries[4] = (True, [bytes(48)])
    bad = make_rim(h, kind="vbios", version=s.vbios_version, measurements=entries, count=31)
    src = rim.RimSource(roots=[h.root_cert], blobs=[("switch.swidtag", bad)])
    res = nvgpu.verify_devices(ev, nonce=NONCE, at=at, verifier=v, rims=src)
    assert _codes(res) == {"gpu.rim.mismatch"}
    assert [m["index"] for m in res.claims["devices"][0]["mismatched_indices"]] == [4]
    # No RIM for the switch's version; a GPU-named VBIOS RIM file is not the switch's.
    (d / "NV_SWITCH_BIOS_5612_0002_890_9610730001_PROD.swidtag").rename(
        d / "1010_0200_882_9610730001_PROD.swidtag"
    )
    src = rim.RimSource(roots=[h.root_cert], dirs=[d])
    res = nvgpu.verify_devices(ev, nonce=NONCE, at=at, verifier=v, rims=src)
    assert _codes(res) == {"gpu.rim.not_found"}


def test_kind_helpers() -> None:
    assert kind_from_arch("LS10") == "nvswitch" and kind_from_arch("hopper") == "gpu"
    assert kind_from_arch("other") is None and kind_from_arch(None) is None
    assert kind_from_names(["LS_10 A01 FSP FMC LF", "LS_10 A01 FSP BROM"]) == "nvswitch"
    assert kind_from_names(["GH100 A01 GSP FMC LF"]) == "gpu"
    # "NVIDIA GH100 Identity" heads the switch chains too: only the lower names count.
    assert kind_from_names(["x", "y", "z", "NVIDIA GH100 Identity"]) is None
    assert empty_pdi(bytes(8)) and empty_pdi(b"\xff" * 8) and not empty_pdi(b"\x01" * 8)


def test_cli_two_evidence_files(
    board: SyntheticPpcieSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = board.evidence(NONCE)
    (tmp_path / "gpus.json").write_text(json.dumps(items[:8]))
    (tmp_path / "switches.json").write_text(json.dumps(items[8:]))
    (tmp_path / "root.pem").write_bytes(board.hierarchy.root_pem())
    argv = [
        "verify",
        "nvidia-gpu",
        "--evidence",
        str(tmp_path / "gpus.json"),
        "--evidence",
        str(tmp_path / "switches.json"),
        "--roots",
        str(tmp_path / "root.pem"),
        "--nonce",
        NONCE.hex(),
    ]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["claims"]["topology"]["switch_side_checked"] is True
    assert [d["kind"] for d in doc["claims"]["devices"]].count("nvswitch") == 4
    # Only the GPU file: verified, the switch side not checked.
    assert main(argv[:4] + argv[6:]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["claims"]["topology"]["switch_side_checked"] is False
    # Three of the four switches: the missing one is named, exit 1.
    (tmp_path / "switches.json").write_text(json.dumps(items[8:11]))
    assert main(argv) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {e["code"] for e in doc["errors"]} == {"gpu.topology.switch_missing"}
    # One switch report given as --report/--cert-chain: classified by its chain.
    s = board.switches[0]
    (tmp_path / "sw.bin").write_bytes(s.report(NONCE))
    (tmp_path / "sw.pem").write_bytes(s.cert_chain())
    one = ["verify", "nvidia-gpu", "--report", str(tmp_path / "sw.bin"), "--cert-chain"]
    assert main([*one, str(tmp_path / "sw.pem"), *argv[-4:]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["claims"]["devices"][0]["kind"] == "nvswitch"


def test_shared_gpu_vector_with_holdout_switches() -> None:
    # The published 8-GPU PPCIe vector (GPU side) and, when the held-out NVSwitch evidence
    # for the same board is present beside it, the whole set.
    nonce = bytes.fromhex("4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e")
    root = shared("nvidia-gpu", "roots", "verifier_device_root.pem").read_bytes()
    gpus = nvgpu.load_evidence_json(
        shared("nvidia-gpu", "hgx-h100x8-ppcie", "gpu_evidence.json").read_bytes()
    )
    v = nvgpu.GpuVerifier(roots=[root])
    res = nvgpu.verify_devices(gpus, nonce=nonce, at=AT, verifier=v)
    assert res.verified and res.claims["topology"]["switch_side_checked"] is False
    sw = shared("nvidia-gpu", "hgx-h100x8-ppcie", "switch_evidence.json")
    switches = nvgpu.load_evidence_json(sw.read_bytes())
    res = nvgpu.verify_devices([*gpus, *switches], nonce=nonce, at=AT, verifier=v)
    assert res.verified, res.errors
    topo = res.claims["topology"]
    assert topo["switch_reports"] == 4 and topo["gpu_count"] == 8


def test_smaller_board() -> None:
    # The counts follow the set (NVIDIA's verifier fixes 8 GPUs / 4 switches; here any
    # consistent board verifies and the claims say its size).
    b = SyntheticPpcieSet(n_gpus=2, n_switches=1)
    v = nvgpu.GpuVerifier(roots=[b.hierarchy.root_pem()])
    res = _run(v, b.evidence(NONCE))
    assert res.verified, res.errors
    topo = res.claims["topology"]
    assert topo["gpu_count"] == 2 and topo["switch_count"] == 1
    # The switch's unused GPU slots are all-ones and not counted.
    assert len(res.claims["devices"][2]["gpu_pdis"]) == 2


def test_cli_device_cap(
    board: SyntheticPpcieSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = board.evidence(NONCE)
    (tmp_path / "a.json").write_text(json.dumps(items))
    argv = ["verify", "nvidia-gpu", "--evidence", str(tmp_path / "a.json")]
    argv += ["--evidence", str(tmp_path / "a.json")]  # 24 devices, cap 16
    assert main(argv) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [e["code"] for e in doc["errors"]] == ["gpu.evidence.too_large"]
