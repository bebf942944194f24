"""Units of the release gate: model-bound key derivation, the v2 model-file header, the
attested-binding commitments per platform, and the model CLI's refusals."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate.broker.models import bound_key
from sealgate.cli import main
from sealgate.errors import UsageError
from sealgate.modelfile import MAGIC, ModelFileError, decrypt_stream, encrypt_stream, read_header
from sealgate.oms.sign import sign_model
from sealgate.protocol.model_binding import (
    EV_EVENT_TAG,
    MODEL_PCR,
    model_commitments,
    tpm_event_digests,
    tpm_model_digests,
    tpm_model_event,
)

KEY = bytes(range(32))
ROOT = hashlib.sha256(b"model").digest()


def test_bound_key_is_hkdf_of_key_root_digest_id_and_version() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"sealgate/v1 model-binding" + struct.pack(">H", 5) + b"llama" + struct.pack(">I", 3)
    want = HKDF(hashes.SHA256(), 32, ROOT, info).derive(KEY)
    assert bound_key(KEY, "llama", 3, ROOT) == want
    others = {
        bound_key(KEY, "llama", 4, ROOT),
        bound_key(KEY, "llamb", 3, ROOT),
        bound_key(KEY, "llama", 3, hashlib.sha256(b"other").digest()),
        bound_key(bytes(32), "llama", 3, ROOT),
    }
    assert want not in others and len(others) == 4
    with pytest.raises(UsageError):
        bound_key(KEY[:31], "llama", 3, ROOT)
    with pytest.raises(UsageError):
        bound_key(KEY, "llama", 3, b"")


def _v2(data: bytes = b"tensor" * 100, root: bytes = ROOT) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, KEY, "k", 1, 1024, root_digest=root)
    return out.getvalue()


def test_v2_header_records_the_root_digest_and_v1_files_still_read() -> None:
    blob = _v2()
    h = read_header(io.BytesIO(blob))
    assert h.root_digest == ROOT and cbor2.loads(h.raw)["v"] == 2
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, lambda *_: KEY, ROOT)
    assert out.getvalue() == b"tensor" * 100
    v1 = io.BytesIO()
    encrypt_stream(io.BytesIO(b"old"), v1, KEY, "k", 1, 1024)
    assert read_header(io.BytesIO(v1.getvalue())).root_digest == b""
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(v1.getvalue()), out, lambda *_: KEY)
    assert out.getvalue() == b"old"
    # A v1 file is not a model's file.
    with pytest.raises(ModelFileError) as e:
        decrypt_stream(io.BytesIO(v1.getvalue()), io.BytesIO(), lambda *_: KEY, ROOT)
    assert e.value.code == "model.file.model_mismatch"


def _with_header(doc: dict[str, object]) -> bytes:
    raw = cbor2.dumps(doc, canonical=True)
    return MAGIC + struct.pack(">I", len(raw)) + raw


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 2, "key_id": "k", "key_version": 1, "chunk_size": 1024, "salt": bytes(32)},
        {"v": 2, "key_id": "k", "key_version": 1, "chunk_size": 1024, "salt": bytes(32),
         "root_digest": b"short"},
        {"v": 2, "key_id": "k", "key_version": 1, "chunk_size": 1024, "salt": bytes(32),
         "root_digest": "00" * 32},
        {"v": 1, "key_id": "k", "key_version": 1, "chunk_size": 1024, "salt": bytes(32),
         "root_digest": ROOT},
        {"v": 3, "key_id": "k", "key_version": 1, "chunk_size": 1024, "salt": bytes(32)},
        {"v": 1, "key_id": "k", "key_version": 1, "chunk_size": 1024, "salt": bytes(32),
         "extra": 1},
    ],
)  # fmt: skip
def test_malformed_headers_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ModelFileError) as e:
        read_header(io.BytesIO(_with_header(doc)))
    assert e.value.code == "model.file.bad_header"


def test_an_edited_root_digest_fails_authentication() -> None:
    blob = _v2()
    other = hashlib.sha256(b"other").digest()
    forged = blob.replace(ROOT, other)
    assert forged != blob
    with pytest.raises(ModelFileError) as e:
        decrypt_stream(io.BytesIO(forged), io.BytesIO(), lambda *_: KEY, other)
    assert e.value.code == "model.file.chunk_invalid"


def _event(pcr: int, etype: int, data: bytes, banks: tuple[str, ...] = ("sha1", "sha256")) -> tuple:  # type: ignore[type-arg]
    return (1, 0, pcr, etype, tpm_event_digests(data, banks), data)


def test_tpm_model_events_count_only_when_quoted_well_formed_and_hashed() -> None:
    ev = tpm_model_event(ROOT)
    quoted = {"sha256": [0, 1, MODEL_PCR]}
    assert tpm_model_digests([_event(MODEL_PCR, EV_EVENT_TAG, ev)], quoted) == [ROOT.hex()]
    # PCR 12 not in the quote: the event is not attested.
    assert tpm_model_digests([_event(MODEL_PCR, EV_EVENT_TAG, ev)], {"sha256": [0, 1]}) == []
    # Another PCR, event type or tag; a truncated event.
    assert tpm_model_digests([_event(11, EV_EVENT_TAG, ev)], quoted) == []
    assert tpm_model_digests([_event(MODEL_PCR, 0xD, ev)], quoted) == []
    other_tag = struct.pack("<II", 1, 32) + ROOT
    assert tpm_model_digests([_event(MODEL_PCR, EV_EVENT_TAG, other_tag)], quoted) == []
    assert tpm_model_digests([_event(MODEL_PCR, EV_EVENT_TAG, ev[:-1])], quoted) == []
    # A digest that is not the hash of the data: the data is not what was extended.
    n, off, pcr, et, digests, data = _event(MODEL_PCR, EV_EVENT_TAG, ev)
    bad = {**digests, "sha1": bytes(20)}
    assert tpm_model_digests([(n, off, pcr, et, bad, data)], quoted) == []


def test_commitments_per_platform() -> None:
    assert model_commitments("snp", {"host_data": ROOT.hex()}) == {ROOT}
    assert model_commitments("snp", {"host_data": "zz"}) == set()
    assert model_commitments("tdx", {"mr_config_id": (ROOT + bytes(16)).hex()}) == {ROOT}
    assert model_commitments("tdx", {"mr_config_id": (ROOT + b"\x01" * 16).hex()}) == set()
    assert model_commitments("tdx", {"mr_config_id": ROOT.hex()}) == set()
    assert model_commitments("tpm", {"model_digests": [ROOT.hex(), "nothex", 7]}) == {ROOT}
    assert model_commitments("tpm", {"model_digests": "x"}) == set()
    assert model_commitments("nvidia", {"host_data": ROOT.hex()}) == set()


def _signed(tmp_path: Path) -> tuple[Path, Path]:
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    model = tmp_path / "model"
    (model / "d").mkdir(parents=True)
    (model / "a.bin").write_bytes(b"a" * 3000)
    (model / "d" / "b.bin").write_bytes(b"b" * 10)
    sig = tmp_path / "model.sig"
    sig.write_bytes(sign_model(model, private_key_pem=priv))
    return model, sig


def test_decrypt_with_signature_refuses_files_that_do_not_match_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig = _signed(tmp_path)
    (tmp_path / "k").write_text(KEY.hex())
    from sealgate.node.model import read_signature, signed_manifest

    root = signed_manifest(read_signature(sig)).root_digest
    # A careless operator encrypts a changed file for the signed model's root digest.
    (model / "d" / "b.bin").write_bytes(b"B" * 10)
    enc = tmp_path / "enc"
    args = ["model", "encrypt", "--key-file", str(tmp_path / "k"), "--key-id", "m"]
    assert main([*args, "--root-digest", root.hex(), "--in", str(model), "--out", str(enc)]) == 0
    released = tmp_path / "released"
    released.write_text(bound_key(KEY, "m", 1, root).hex())
    out = tmp_path / "out"
    dec = ["model", "decrypt", "--key-file", str(released), "--model-signature", str(sig)]
    assert main([*dec, "--in", str(enc), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "model.manifest.digest_mismatch" in err and "d/b.bin" in err
    assert not out.exists() and not (tmp_path / "out.part").exists()
    # Without the signature check the same files decrypt (the check is what refused them).
    assert main(["model", "decrypt", "--key-file", str(released), "--in", str(enc),
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "d" / "b.bin").read_bytes() == b"B" * 10
    # Files encrypted for another model are refused before decryption.
    other = tmp_path / "other"
    assert main([*args, "--root-digest", "11" * 32, "--in", str(model), "--out", str(other)]) == 0
    assert main([*dec, "--in", str(other), "--out", str(tmp_path / "o2")]) == 1
    assert "model.file.model_mismatch" in capsys.readouterr().err
    # Usage errors: a bad root digest; stdout with a signature check.
    assert (
        main([*args, "--root-digest", "abc", "--in", str(model), "--out", str(tmp_path / "x")]) == 2
    )
    assert main([*dec, "--in", str(enc / "a.bin"), "--out", "-"]) == 2
    # An existing non-empty output directory is not overwritten.
    assert main([*args, "--root-digest", root.hex(), "--in", str(model), "--out", str(enc)]) == 2


def test_encrypt_refuses_symlinks_in_a_model_directory(tmp_path: Path) -> None:
    model, _sig = _signed(tmp_path)
    (model / "link").symlink_to(model / "a.bin")
    (tmp_path / "k").write_text(KEY.hex())
    args = ["model", "encrypt", "--key-file", str(tmp_path / "k"), "--key-id", "m"]
    rc = main(
        [*args, "--root-digest", ROOT.hex(), "--in", str(model), "--out", str(tmp_path / "e")]
    )
    assert rc == 2
    assert not (tmp_path / "e").exists()


def test_node_checks_an_encrypted_model_against_the_signature_before_asking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, sig = _signed(tmp_path)
    (tmp_path / "k").write_text(KEY.hex())
    enc, wrong = tmp_path / "enc", tmp_path / "wrong"
    args = ["model", "encrypt", "--key-file", str(tmp_path / "k"), "--key-id", "m"]
    assert main([*args, "--model-signature", str(sig), "--in", str(model), "--out", str(enc)]) == 0
    assert main([*args, "--root-digest", "22" * 32, "--in", str(model), "--out", str(wrong)]) == 0
    # Nothing listens on port 1: a check that passes ends in the connection failure.
    node = ["node", "request-keys", "--server", "127.0.0.1:1", "--timeout", "2",
            "--platform", "snp", "--tsm-dir", str(tmp_path / "no-tsm"), "--key-id", "m",
            "--out", str(tmp_path / "keys"), "--model-signature", str(sig)]  # fmt: skip
    assert main([*node, "--model", str(wrong)]) == 1
    assert "model.file.model_mismatch" in capsys.readouterr().err
    (enc / "d" / "b.bin").unlink()
    assert main([*node, "--model", str(enc)]) == 1
    err = capsys.readouterr().err
    assert "model.manifest.missing_file" in err and "d/b.bin" in err
    assert main([*node, "--model", str(model)]) == 1  # plaintext, matching: reaches the network
    err = capsys.readouterr().err
    assert "model." not in err and "grpc.unavailable" in err, err
    assert not (tmp_path / "keys").exists()
    assert main([*node[:-2], "--model", str(model)]) == 2  # --model without --model-signature
    assert "--model needs --model-signature" in capsys.readouterr().err
