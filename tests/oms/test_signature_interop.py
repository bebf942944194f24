"""Interop with ``model_signing`` (sigstore/model-transparency, the OMS reference
implementation) both ways, through its CLI: its key and certificate bundles verify here, and
``model_signing verify`` accepts the bundles ``sealgate.oms.sign`` writes. Keys and the CA are
generated per test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate.oms.manifest import ModelManifestError
from sealgate.oms.sign import sign_model
from sealgate.oms.signers import CertificateSigner, KeySigner
from sealgate.oms.verify import ModelSignatureError, verify_model

from tests.oms.sigkeys import INSIDE, cert_pem, ec_key, hierarchy, private_pem, public_pem

CLI = Path(sys.executable).with_name("model_signing")
pytestmark = pytest.mark.skipif(
    not CLI.exists(), reason="model_signing (test peer, dev extra) is not installed"
)


def run_ms(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    m = tmp_path / "model"
    (m / "a" / "b").mkdir(parents=True)
    (m / "weights-00001.safetensors").write_bytes(bytes(range(256)) * 300)
    (m / "a" / "b" / "tokenizer.json").write_text('{"v": 1}')
    (m / "a" / "notes.txt").write_text("ignored")
    (m / "empty").write_bytes(b"")
    return m


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    k = ec_key(ec.SECP384R1())
    h = hierarchy()
    out = {
        "key": tmp_path / "key.pem",
        "pub": tmp_path / "pub.pem",
        "leaf_key": tmp_path / "leaf-key.pem",
        "leaf": tmp_path / "leaf.pem",
        "int": tmp_path / "int.pem",
        "root": tmp_path / "root.pem",
    }
    out["key"].write_bytes(private_pem(k))
    out["pub"].write_bytes(public_pem(k))
    out["leaf_key"].write_bytes(private_pem(h.leaf_key))
    out["leaf"].write_bytes(cert_pem(h.leaf))
    out["int"].write_bytes(cert_pem(h.intermediate))
    out["root"].write_bytes(h.root_pem)
    return out


def test_their_key_bundle_verifies_here(
    model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    sig = tmp_path / "theirs.sig"
    r = run_ms(
        "sign",
        "key",
        "--signature",
        sig,
        "--private_key",
        files["key"],
        "--ignore-paths",
        model / "a" / "notes.txt",
        model,
    )
    assert r.returncode == 0, r.stderr
    v = verify_model(model, sig.read_bytes(), [KeySigner(files["pub"].read_bytes())])
    assert v.signer.kind == "key" and v.files == 3
    assert "a/notes.txt" in v.ignore_paths  # recorded by model_signing, applied here
    # And it is not a rubber stamp: a changed file is named.
    (model / "a" / "b" / "tokenizer.json").write_text('{"v": 2}')
    with pytest.raises(ModelManifestError) as e:
        verify_model(model, sig.read_bytes(), [KeySigner(files["pub"].read_bytes())])
    assert e.value.mismatches[0].name == "a/b/tokenizer.json"
    with pytest.raises(ModelSignatureError):
        verify_model(model, sig.read_bytes(), [KeySigner(public_pem(ec_key()))])


def test_their_certificate_bundle_verifies_here(
    model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    sig = tmp_path / "theirs.sig"
    r = run_ms(
        "sign",
        "certificate",
        "--signature",
        sig,
        "--private_key",
        files["leaf_key"],
        "--signing_certificate",
        files["leaf"],
        "--certificate_chain",
        files["int"],
        model,
    )
    assert r.returncode == 0, r.stderr
    v = verify_model(
        model, sig.read_bytes(), [CertificateSigner(files["root"].read_bytes())], at=INSIDE
    )
    assert v.signer.kind == "certificate" and v.signer.subject == "model-signer"
    with pytest.raises(ModelSignatureError) as e:
        verify_model(model, sig.read_bytes(), [CertificateSigner(hierarchy().root_pem)], at=INSIDE)
    assert e.value.code == "model.signature.untrusted_certificate"


def test_our_key_bundle_verifies_there(model: Path, files: dict[str, Path], tmp_path: Path) -> None:
    sig = tmp_path / "ours.sig"
    sig.write_bytes(
        sign_model(model, private_key_pem=files["key"].read_bytes(), ignore_paths=["a/notes.txt"])
    )
    r = run_ms("verify", "key", "--signature", sig, "--public_key", files["pub"], model)
    assert r.returncode == 0, r.stdout + r.stderr
    # The peer refuses a modified model and another key: its verdict is not a constant.
    (model / "empty").write_bytes(b"x")
    r = run_ms("verify", "key", "--signature", sig, "--public_key", files["pub"], model)
    assert r.returncode != 0
    (model / "empty").write_bytes(b"")
    other = tmp_path / "other.pem"
    other.write_bytes(public_pem(ec_key(ec.SECP384R1())))
    r = run_ms("verify", "key", "--signature", sig, "--public_key", other, model)
    assert r.returncode != 0


def test_our_certificate_bundle_verifies_there(
    model: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    sig = tmp_path / "ours.sig"
    chain = files["leaf"].read_bytes() + files["int"].read_bytes()
    sig.write_bytes(
        sign_model(
            model, private_key_pem=files["leaf_key"].read_bytes(), certificate_chain_pem=chain
        )
    )
    r = run_ms(
        "verify", "certificate", "--signature", sig, "--certificate_chain", files["root"], model
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wrong_root = tmp_path / "wrong-root.pem"
    wrong_root.write_bytes(hierarchy().root_pem)
    r = run_ms(
        "verify", "certificate", "--signature", sig, "--certificate_chain", wrong_root, model
    )
    assert r.returncode != 0


def test_single_file_model_both_ways(files: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF" + bytes(1000))
    ours = tmp_path / "ours.sig"
    ours.write_bytes(sign_model(f, private_key_pem=files["key"].read_bytes()))
    r = run_ms("verify", "key", "--signature", ours, "--public_key", files["pub"], f)
    assert r.returncode == 0, r.stdout + r.stderr
    theirs = tmp_path / "theirs.sig"
    r = run_ms("sign", "key", "--signature", theirs, "--private_key", files["key"], f)
    assert r.returncode == 0, r.stderr
    v = verify_model(f, theirs.read_bytes(), [KeySigner(files["pub"].read_bytes())])
    assert v.files == 1


def test_shutil_copy_keeps_verdict(model: Path, files: dict[str, Path], tmp_path: Path) -> None:
    # A model moved elsewhere (another directory name) still verifies: names are relative.
    sig = sign_model(model, private_key_pem=files["key"].read_bytes())
    moved = tmp_path / "elsewhere"
    shutil.copytree(model, moved)
    verify_model(moved, sig, [KeySigner(files["pub"].read_bytes())])
