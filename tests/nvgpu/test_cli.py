"""``sealgate verify nvidia-gpu`` over the published vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sealgate.cli import main

from tests.vectors import shared

NONCE_550 = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
NONCE_PPCIE = "4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e"


def v(*parts: str) -> str:
    return str(shared("nvidia-gpu", *parts))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None]:
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else None)


def single(*extra: str) -> list[str]:
    return [
        "verify",
        "nvidia-gpu",
        "--report",
        v("h100-drv550", "hopperAttestationReport.txt"),
        "--cert-chain",
        v("h100-drv550", "hopperCertChain.txt"),
        "--roots",
        v("roots", "verifier_device_root.pem"),
        *extra,
    ]


def test_single_verified(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = cli(capsys, *single("--nonce", NONCE_550, "--at", "2026-12-01T00:00:00Z"))
    assert rc == 0 and doc is not None
    assert doc["verified"] and doc["platform"] == "nvidia-gpu"
    c = doc["claims"]
    assert c["driver_version"] == "550.90.07" and c["vbios_version"] == "96.00.9F.00.01"
    assert c["measurements_compared"] is False and len(c["measurements"]) == 64
    assert c["revocation"]["checked"] is False


def test_single_wrong_nonce_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = cli(capsys, *single("--nonce", "00" * 32))
    assert rc == 1 and doc is not None
    assert [e["code"] for e in doc["errors"]] == ["gpu.report.nonce_mismatch"]


def test_no_trusted_root_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = single("--nonce", NONCE_550)
    i = argv.index("--roots")
    argv[i : i + 2] = ["--trust-dir", str(tmp_path)]
    rc, doc = cli(capsys, *argv)
    assert rc == 1 and doc is not None
    assert [e["code"] for e in doc["errors"]] == ["gpu.chain.untrusted_root"]


def test_evidence_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = cli(
        capsys,
        "verify",
        "nvidia-gpu",
        "--evidence",
        v("hgx-h100x8-ppcie", "gpu_evidence.json"),
        "--roots",
        v("roots"),
        "--nonce",
        NONCE_PPCIE,
    )
    assert rc == 0 and doc is not None and doc["verified"]
    assert len(doc["claims"]["devices"]) == 8


def test_bad_evidence_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "e.json"
    f.write_text("[{}]")
    rc, doc = cli(capsys, "verify", "nvidia-gpu", "--evidence", str(f), "--roots", v("roots"))
    assert rc == 1 and doc is not None
    assert [e["code"] for e in doc["errors"]] == ["gpu.evidence.invalid"]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--nonce", "zz"], "cli.usage.bad_nonce"),
        (["--nonce", "00"], "cli.usage.bad_nonce"),
        (["--evidence", "x.json"], "cli.usage.conflict"),
    ],
)
def test_usage_exit_2(capsys: pytest.CaptureFixture[str], extra: list[str], code: str) -> None:
    rc, doc = cli(capsys, *single(*extra))
    assert rc == 2 and doc is not None
    assert doc["errors"][0]["code"] == code


def test_report_without_chain_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", "nvidia-gpu", "--report", v("h100-drv550", "hopperAttestationReport.txt")]
    rc, doc = cli(capsys, *argv)
    assert rc == 2 and doc is not None and doc["errors"][0]["code"] == "cli.usage.missing"


def test_rims_match_and_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    t = "h100-drv545-testrims"
    base = [
        "verify", "nvidia-gpu", "--report", v(t, "attestationReport.txt"),
        "--cert-chain", v(t, "gpuAkCertChain.txt"), "--roots", v("roots"),
        "--at", "2024-06-01T00:00:00Z", "--rim", v(t, "Driver_RIM_test_no_gpu.swidtag"),
    ]  # fmt: skip
    rc, doc = cli(capsys, *base, "--rim", v(t, "1010_0200_882_96005E0001_test_no_gpu.swidtag"))
    assert rc == 0 and doc is not None and doc["claims"]["measurements_compared"] is True
    rc, doc = cli(capsys, *base, "--rim", v(t, "1010_0200_882_96005E0001_PROD.swidtag"))
    assert rc == 1 and doc is not None
    assert [e["code"] for e in doc["errors"]] == ["gpu.rim.mismatch"]
    assert [m["index"] for m in doc["claims"]["mismatched_indices"]] == [1, 2, 3, 9]
    rc, doc = cli(capsys, *base[:-2], "--rim-dir", v("rims"))
    assert rc == 1 and doc is not None
    assert {e["code"] for e in doc["errors"]} == {"gpu.rim.not_found"}
