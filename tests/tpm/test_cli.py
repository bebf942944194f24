"""CLI contract of `sealgate verify tpm` and `sealgate eventlog replay` (README "CLI")."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sealgate.cli import main

from tests.vectors import project

GOOD = "swtpm-rsa"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    doc = json.loads(out) if out.strip() else {}
    return rc, doc, err


def good_args(**over: str) -> list[str]:
    d = project("tpm", GOOD)
    files = {
        "quote": str(d / "quote.msg"),
        "signature": str(d / "quote.sig"),
        "ak": str(d / "ak.pub"),
        "pcrs": str(d / "quote.pcrs"),
        "nonce": (d / "nonce.hex").read_text().strip(),
    }
    files.update(over)
    args = ["verify", "tpm"]
    for k, v in files.items():
        if v:
            args += [f"--{k}", v]
    return args


@pytest.mark.parametrize("kind", ["swtpm-rsa", "swtpm-ecc"])
def test_project_vectors_verify(capsys: pytest.CaptureFixture[str], kind: str) -> None:
    d = project("tpm", kind)
    rc, doc, _ = run(
        capsys,
        "verify",
        "tpm",
        "--quote",
        str(d / "quote.msg"),
        "--signature",
        str(d / "quote.sig"),
        "--ak",
        str(d / "ak.pub"),
        "--eventlog",
        str(d / "eventlog.bin"),
        "--nonce",
        (d / "nonce.hex").read_text().strip(),
        "--pcr-selection",
        "sha256:0,4,8,9",
    )
    assert rc == 0, doc
    assert doc["verified"] is True and doc["platform"] == "tpm" and doc["errors"] == []
    claims = doc["claims"]
    assert isinstance(claims, dict)
    for key in (
        "pcrs",
        "pcr_selection",
        "nonce",
        "firmware_version",
        "clock",
        "reset_count",
        "restart_count",
        "qualified_signer",
        "signature_scheme",
        "hash_alg",
    ):
        assert key in claims
    expected = json.loads((d / "expected_pcrs.json").read_text())
    for i, v in expected["sha256"].items():
        assert claims["pcrs"]["sha256"][i] == v


def _manifest() -> list[dict[str, object]]:
    return list(
        json.loads(
            (
                Path(__file__).resolve().parents[2]
                / "vectors"
                / "tpm"
                / "malformed"
                / "manifest.json"
            ).read_text()
        )
    )


@pytest.mark.parametrize("case", _manifest(), ids=lambda c: str(c["file"]))
def test_malformed_inputs(capsys: pytest.CaptureFixture[str], case: dict[str, object]) -> None:
    path = str(project("tpm", "malformed", str(case["file"])))
    over = {str(case["kind"]): path}
    if case["kind"] == "eventlog":
        over["pcrs"] = ""
    rc, doc, _ = run(capsys, *good_args(**over))
    assert rc == case["exit"]
    assert doc["verified"] is False
    codes = [e["code"] for e in doc["errors"]]  # type: ignore[attr-defined]
    assert case["code"] in codes, codes


def test_tpm2b_attest_wrapper_accepted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    q = project("tpm", GOOD, "quote.msg").read_bytes()
    w = tmp_path / "q.tpm2b"
    w.write_bytes(len(q).to_bytes(2, "big") + q)
    rc, doc, _ = run(capsys, *good_args(quote=str(w)))
    assert rc == 0, doc


def test_json_pcrs_and_spki_ak(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from sealgate import _core, tpm

    d = project("tpm", GOOD)
    pcrs = tpm.load_pcrs((d / "quote.pcrs").read_bytes())
    pj = tmp_path / "pcrs.json"
    doc = tpm.pcrs_to_json(pcrs)
    doc["sha384"] = {"0": "00" * 48}  # extra banks are ignored
    pj.write_text(json.dumps(doc))
    comps = _core.TpmPublic.parse((d / "ak.pub").read_bytes()).components()
    assert comps is not None
    key = rsa.RSAPublicNumbers(
        int.from_bytes(comps[2], "big"), int.from_bytes(comps[1], "big")
    ).public_key()
    pem = tmp_path / "ak.pem"
    pem.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    der = tmp_path / "ak.der"
    der.write_bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for ak in (pem, der):
        rc, out, _ = run(capsys, *good_args(pcrs=str(pj), ak=str(ak)))
        assert rc == 0, out
        claims = out["claims"]
        assert isinstance(claims, dict) and claims["ak_restricted"] is None


@pytest.mark.parametrize(
    "over",
    [
        {"quote": "/nonexistent/quote"},
        {"nonce": "zz"},
        {"pcr-selection": "sha999:0"},
        {"pcrs": "/nonexistent"},
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], over: dict[str, str]) -> None:
    rc, doc, err = run(capsys, *good_args(**over))
    assert rc == 2
    assert doc["verified"] is False
    assert "sealgate:" in err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["verify", "tpm", "--quote"])
    assert e.value.code == 2


def test_random_garbage_never_tracebacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = random.Random(1234)
    good = {
        k: project("tpm", GOOD, f).read_bytes()
        for k, f in (
            ("quote", "quote.msg"),
            ("signature", "quote.sig"),
            ("ak", "ak.pub"),
            ("pcrs", "quote.pcrs"),
        )
    }
    for i in range(60):
        kind = rng.choice(list(good))
        data = bytearray(good[kind])
        op = rng.randrange(3)
        if op == 0 and data:
            data = data[: rng.randrange(len(data))]
        elif op == 1 and data:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            data = bytearray(rng.randbytes(rng.randrange(0, 600)))
        p = tmp_path / f"{i}.bin"
        p.write_bytes(bytes(data))
        rc, doc, _ = run(capsys, *good_args(**{kind: str(p)}))
        assert rc in (0, 1, 2)
        if rc == 1:
            assert doc["errors"]


def test_eventlog_replay_command(capsys: pytest.CaptureFixture[str]) -> None:
    d = project("tpm", GOOD)
    rc, doc, _ = run(capsys, "eventlog", "replay", str(d / "eventlog.bin"))
    assert rc == 0
    assert doc == json.loads((d / "expected_pcrs.json").read_text())
    rc, _, err = run(
        capsys, "eventlog", "replay", str(project("tpm", "malformed", "eventlog-truncated.bin"))
    )
    assert rc == 1 and "tpm.format.truncated" in err
