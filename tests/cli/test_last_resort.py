"""Whatever goes wrong inside, the CLI prints one JSON document with a code, no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sealgate import cli, tpm
from sealgate.cli import main

from tests.vectors import project


def _tpm_args(pcrs: Path | None = None) -> list[str]:
    d = project("tpm", "swtpm-rsa")
    args = ["verify", "tpm", "--quote", str(d / "quote.msg"), "--signature", str(d / "quote.sig")]
    args += ["--ak", str(d / "ak.pub")]
    return args + (["--pcrs", str(pcrs)] if pcrs else [])


def _one_doc(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return json.loads(out), err


def _boom(*_: object, **__: object) -> Any:
    raise RuntimeError("secret-looking detail")


def test_internal_error_in_a_verify_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tpm, "verify_quote", _boom)
    assert main(_tpm_args()) == cli.EXIT_USAGE
    doc, err = _one_doc(capsys)
    assert doc["verified"] is False and doc["platform"] == "tpm"
    assert [e["code"] for e in doc["errors"]] == ["cli.internal.error"]
    assert "secret-looking" not in json.dumps(doc) + err


def test_internal_error_in_a_command_without_json_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sealgate.service import auth

    monkeypatch.setattr(auth, "mint_operator_token", _boom)
    key = tmp_path / "k.pem"
    key.write_bytes(b"x")
    assert main(["admin", "token", "--key", str(key)]) == cli.EXIT_USAGE
    doc, _ = _one_doc(capsys)
    assert [e["code"] for e in doc["errors"]] == ["cli.internal.error"]


def test_internal_error_while_arguments_are_handled(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "build_parser", _boom)
    assert main(["verify", "tpm"]) == cli.EXIT_USAGE
    doc, _ = _one_doc(capsys)
    assert doc["errors"][0]["code"] == "cli.internal.error"


def test_unserializable_output_still_gives_one_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tpm.verify_quote

    def odd(*a: Any, **kw: Any) -> Any:
        res = real(*a, **kw)
        res.claims["odd"] = object()  # json.dumps raises TypeError in emit
        return res

    monkeypatch.setattr(tpm, "verify_quote", odd)
    main(_tpm_args())
    doc, _ = _one_doc(capsys)
    assert doc["errors"][0]["code"] == "cli.internal.error"


@pytest.mark.parametrize(
    "pcrs",
    [
        b'{"sha256": {"-1": "00"}}',
        b'{"sha256": {"4294967296": "00"}}',
        b'{"sha256": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_bad_pcr_files_are_usage_errors_with_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pcrs: bytes
) -> None:
    p = tmp_path / "pcrs.json"
    p.write_bytes(pcrs)
    assert main(_tpm_args(p)) == cli.EXIT_USAGE
    doc, _ = _one_doc(capsys)
    assert [e["code"] for e in doc["errors"]] == ["cli.input.bad_json"]


def test_bad_collateral_json_is_rejected_with_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A lone surrogate in collateral JSON was a UnicodeEncodeError (cli.internal.error, no
    JSON); now it is bad collateral like any other (exit 1, as for collateral not JSON)."""
    coll = tmp_path / "c.json"
    coll.write_text(
        json.dumps(
            {
                "tcb_info_issuer_chain": "\ud800",
                "tcb_info": "{}",
                "tcb_info_signature": "00" * 64,
                "qe_identity": "{}",
                "qe_identity_signature": "00" * 64,
            }
        )
    )
    quote = project("tdx", "quotes", "v4.bin")
    rc = main(["verify", "tdx", "--quote", str(quote), "--collateral", str(coll)])
    doc, _ = _one_doc(capsys)
    assert rc == cli.EXIT_REJECTED
    assert [e["code"] for e in doc["errors"]] == ["tdx.collateral.invalid"]


@pytest.mark.parametrize("command", ["policy-put", "refval-import"])
def test_non_utf8_operator_documents_refused_not_replaced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    f = tmp_path / "doc.yaml"
    f.write_bytes(b"platforms:\n  tpm: {reference_sets: [g\xff]}\n")
    args = ["admin", command, *(["m"] if command == "policy-put" else []), str(f)]
    # No server is listening there: the file is refused before any call.
    rc = main([*args, "--token", "t", "--server", "127.0.0.1:9", "--timeout", "1"])
    _, err = capsys.readouterr()
    assert rc == cli.EXIT_USAGE and "is not UTF-8 (byte 37)" in err
