"""``sealgate model verify-signature`` / ``sealgate model sign``: one JSON document, exit 0
verified / 1 rejected / 2 usage or unreadable input, the claims of the issue, named codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sealgate import cli
from sealgate.cli import main

from tests.oms.sigkeys import cert_pem, ec_key, hierarchy, private_pem, public_pem
from tests.vectors import shared


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any]]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, json.loads(out)


def _v(name: str) -> Path:
    return shared("model-signing", name)


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "sub", "signer", "kind"),
    [
        ("v1.0.0-elliptic-key", "signme-1", ["--public-key", "keys/signing-key-pub.pem"], "key"),
        ("v1.0.1-elliptic-key", "", ["--public-key", "keys/signing-key-pub.pem"], "key"),
        ("v1.0.1-certificate", "", ["--certificate-chain", "keys/ca-cert.pem"], "certificate"),
        (
            "v1.0.1-sigstore",
            "",
            [
                "--identity",
                "stefanb@us.ibm.com",
                "--identity-provider",
                "https://sigstore.verify.ibm.com/oauth2",
                "--trust-root",
                "sigstore/trusted_root.json",
            ],
            "sigstore",
        ),
    ],
)
def test_vectors_verify(
    capsys: pytest.CaptureFixture[str], name: str, sub: str, signer: list[str], kind: str
) -> None:
    base = _v(name).parent
    args: list[str | Path] = ["model", "verify-signature", _v(name) / sub if sub else _v(name)]
    args += ["--signature", _v(name) / "model.sig", "--at", "2026-12-01T00:00:00Z"]
    args += [str(base / a) if a.startswith(("keys/", "sigstore/")) else a for a in signer]
    if name.startswith("v1.0.1"):
        args += ["--ignore-paths", "ignore-me"]
    rc, doc = _run(capsys, *args)
    assert rc == cli.EXIT_OK, doc
    assert doc["verified"] is True and doc["platform"] == "model" and doc["errors"] == []
    c = doc["claims"]
    for k in ("root_digest", "hash_algorithm", "files", "format_version", "predicate_type"):
        assert k in c
    assert c["signer"]["kind"] == kind
    if kind == "sigstore":
        assert c["signed_at"] == "2025-10-07T15:33:48Z"
        assert c["signer"]["identity"] == "stefanb@us.ibm.com"
    elif kind == "key":
        assert len(c["signer"]["key_fingerprint"]) == 64
    else:
        assert c["signer"]["subject"] == "intermediate-ca"


@pytest.mark.shared
def test_vector_rejections(capsys: pytest.CaptureFixture[str]) -> None:
    d = _v("v1.0.1-sigstore")
    base: list[str | Path] = [
        "model",
        "verify-signature",
        d,
        "--signature",
        d / "model.sig",
        "--trust-root",
        d.parent / "sigstore" / "trusted_root.json",
        "--identity-provider",
        "https://sigstore.verify.ibm.com/oauth2",
    ]
    rc, doc = _run(
        capsys, *base, "--identity", "mallory@example.com", "--ignore-paths", "ignore-me"
    )
    assert rc == cli.EXIT_REJECTED and doc["verified"] is False and doc["claims"] == {}
    assert [e["code"] for e in doc["errors"]] == ["model.signature.identity_mismatch"]
    rc, doc = _run(capsys, *base, "--identity", "stefanb@us.ibm.com")
    assert rc == cli.EXIT_REJECTED
    assert doc["errors"] == [
        {
            "code": "model.manifest.extra_file",
            "message": "'ignore-me' is present but unsigned",
            "file": "ignore-me",
        }
    ]
    c = _v("v1.0.1-certificate")
    rc, doc = _run(
        capsys,
        "model",
        "verify-signature",
        c,
        "--signature",
        c / "model.sig",
        "--certificate-chain",
        c.parent / "keys" / "ca-cert.pem",
        "--ignore-paths",
        "ignore-me",
        "--at",
        "2035-05-01T00:00:00Z",
    )
    assert rc == cli.EXIT_REJECTED
    assert doc["errors"][0]["code"] == "model.signature.certificate_expired"


def test_sign_then_verify_and_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    k = ec_key()
    (tmp_path / "k.pem").write_bytes(private_pem(k))
    (tmp_path / "p.pem").write_bytes(public_pem(k))
    # The signature written inside the model directory is not hashed into it.
    sig = model / "sealgate.sig"
    rc, doc = _run(
        capsys, "model", "sign", model, "--signature", sig, "--private-key", tmp_path / "k.pem"
    )
    assert rc == 0 and doc["signed"] is True and sig.exists()
    verify: list[str | Path] = ["model", "verify-signature", model, "--signature", sig]
    rc, doc = _run(capsys, *verify, "--public-key", tmp_path / "p.pem")
    assert rc == cli.EXIT_OK and doc["claims"]["files"] == 1, doc
    assert "sealgate.sig" in doc["claims"]["ignore_paths"]

    # usage / unreadable input → 2, still one JSON document
    rc, doc = _run(capsys, *verify, "--public-key", tmp_path / "missing.pem")
    assert rc == cli.EXIT_USAGE and doc["errors"][0]["code"] == "cli.input.unreadable"
    rc, doc = _run(capsys, *verify, "--public-key", tmp_path / "k.pem")  # a private key
    assert rc == cli.EXIT_USAGE and doc["errors"][0]["code"] == "model.signer.invalid"
    rc, doc = _run(capsys, *verify, "--public-key", tmp_path / "p.pem", "--at", "yesterday")
    assert rc == cli.EXIT_USAGE and doc["errors"][0]["code"] == "cli.usage.bad_time"
    rc, doc = _run(capsys, *verify, "--identity", "a@b")
    assert rc == cli.EXIT_USAGE and doc["errors"][0]["code"] == "cli.usage.missing"
    rc, doc = _run(
        capsys,
        "model",
        "verify-signature",
        tmp_path / "nope",
        "--signature",
        sig,
        "--public-key",
        tmp_path / "p.pem",
    )
    assert rc == cli.EXIT_USAGE and doc["errors"][0]["code"] == "model.manifest.unreadable"

    # rejected → 1
    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(ec_key()))
    rc, doc = _run(capsys, *verify, "--public-key", other)
    assert rc == cli.EXIT_REJECTED and doc["errors"][0]["code"] == "model.signature.key_mismatch"
    (tmp_path / "garbage.sig").write_bytes(b"\x00garbage")
    rc, doc = _run(
        capsys,
        "model",
        "verify-signature",
        model,
        "--signature",
        tmp_path / "garbage.sig",
        "--public-key",
        tmp_path / "p.pem",
    )
    assert rc == cli.EXIT_REJECTED and doc["errors"][0]["code"] == "model.signature.malformed"


def test_sign_with_certificate_chain(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    h = hierarchy()
    (tmp_path / "leaf-key.pem").write_bytes(private_pem(h.leaf_key))
    (tmp_path / "leaf.pem").write_bytes(cert_pem(h.leaf))
    (tmp_path / "int.pem").write_bytes(cert_pem(h.intermediate))
    (tmp_path / "root.pem").write_bytes(h.root_pem)
    sig = tmp_path / "model.sig"
    rc, _ = _run(
        capsys,
        "model",
        "sign",
        model,
        "--signature",
        sig,
        "--private-key",
        tmp_path / "leaf-key.pem",
        "--certificate-chain",
        tmp_path / "leaf.pem",
        tmp_path / "int.pem",
    )
    assert rc == 0
    rc, doc = _run(
        capsys,
        "model",
        "verify-signature",
        model,
        "--signature",
        sig,
        "--certificate-chain",
        tmp_path / "root.pem",
        "--at",
        "2026-06-01T00:00:00Z",
    )
    assert rc == 0 and doc["claims"]["signer"]["kind"] == "certificate"
    # A changed file is named.
    shutil.copy(tmp_path / "int.pem", model / "w.bin")
    rc, doc = _run(
        capsys,
        "model",
        "verify-signature",
        model,
        "--signature",
        sig,
        "--certificate-chain",
        tmp_path / "root.pem",
        "--at",
        "2026-06-01T00:00:00Z",
    )
    assert rc == cli.EXIT_REJECTED
    assert doc["errors"][0]["code"] == "model.manifest.digest_mismatch"
    assert doc["errors"][0]["file"] == "w.bin"
    # The private key never appears in what is printed.
    (tmp_path / "bad-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")
    rc, doc = _run(
        capsys,
        "model",
        "sign",
        model,
        "--signature",
        sig,
        "--private-key",
        tmp_path / "bad-key.pem",
    )
    assert rc == cli.EXIT_USAGE and "c2VjcmV0" not in json.dumps(doc)


@pytest.mark.shared
def test_sigstore_default_trust_root_is_the_embedded_public_good_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = _v("v1.0.0-sigstore")
    rc, doc = _run(
        capsys,
        "model",
        "verify-signature",
        d,
        "--signature",
        d / "model.sig",
        "--identity",
        "stefanb@us.ibm.com",
        "--identity-provider",
        "https://sigstore.verify.ibm.com/oauth2",
    )
    assert rc == cli.EXIT_OK, doc
    assert doc["claims"]["signed_at"] == "2025-05-03T01:34:46Z"
