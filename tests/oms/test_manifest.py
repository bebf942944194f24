"""The OMS v1.0 manifest (sealgate.oms.manifest) against the spec, the published vectors and
``model_signing`` 1.1.1 as a peer (its own hashing of the same directories)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate import _core
from sealgate.cli import main
from sealgate.oms import manifest as m
from sealgate.oms.manifest import (
    Manifest,
    ModelManifestError,
    Resource,
    Serialization,
    compare,
    hash_model,
    manifest_from_predicate,
)

from tests.vectors import shared

ms_hashing = pytest.importorskip("model_signing.hashing")
ms_signing = pytest.importorskip("model_signing._signing.signing")


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _rand(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


#: A model with the awkward cases: nested dirs, an empty file, unicode and colon names, names
#: that sort differently by component than by string ("a-b" vs "a/"), git files.
MIXED = {
    "config.json": b'{"a": 1}\n',
    "empty": b"",
    "a/x": b"ax",
    "a-b/x": b"abx",
    "a.b": b"dot",
    "sub/dir/deep/w.bin": _rand(70_000, 1),
    "sub/ünïcødé 名前.txt": "snowman ☃".encode(),
    "sub/co:lon": b"colon",
    "weights.safetensors": _rand(300_001, 2),
    ".git/HEAD": b"ref: refs/heads/main\n",
    ".gitignore": b"*.pyc\n",
    "sub/.git": b"not top-level: hashed\n",
    ".gitmodules": b"hashed too (not a default exclusion)\n",
}


def _peer(path: Path, cfg: Any) -> dict[str, Any]:
    """model_signing's in-toto statement for ``path`` as a plain dict."""
    from google.protobuf import json_format

    manifest = cfg.hash(path)
    doc: dict[str, Any] = json.loads(
        json_format.MessageToJson(ms_signing.Payload(manifest).statement.pb)
    )
    return doc


def _ours(man: Manifest) -> list[tuple[str, str, str]]:
    return [(r.name, r.algorithm, r.digest.hex()) for r in man.resources]


def _theirs(stmt: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["name"], r["algorithm"], r["digest"]) for r in stmt["predicate"]["resources"]]


PEER_CASES: list[tuple[str, Callable[[], Any], Serialization]] = [
    ("files-sha256", lambda: ms_hashing.Config(), Serialization()),
    (
        "files-blake3",
        lambda: ms_hashing.Config().use_file_serialization(hashing_algorithm="blake3"),
        Serialization(hash_algorithm="blake3"),
    ),
    (
        "shards-sha256",
        lambda: ms_hashing.Config().use_shard_serialization(shard_size=10_000),
        Serialization.shards(10_000),
    ),
    (
        "shards-sha256-default",
        lambda: ms_hashing.Config().use_shard_serialization(),
        Serialization.shards(),
    ),
]


@pytest.mark.parametrize(("label", "peer", "ser"), PEER_CASES, ids=[c[0] for c in PEER_CASES])
def test_equals_model_signing(
    tmp_path: Path, label: str, peer: Callable[[], Any], ser: Serialization
) -> None:
    model = _tree(tmp_path / "model", MIXED)
    stmt = _peer(model, peer())
    ours = hash_model(model, ser, signature_name=None)
    assert _ours(ours) == _theirs(stmt), label
    assert ours.root_digest().hex() == stmt["subject"][0]["digest"]["sha256"]
    assert ours.model_name == stmt["subject"][0]["name"] == "model"
    got = ours.serialization.to_predicate()
    want = stmt["predicate"]["serialization"]
    want["ignore_paths"] = sorted(want["ignore_paths"])  # a frozenset upstream: no order
    if "shard_size" in want:
        want["shard_size"] = int(want["shard_size"])  # protobuf Struct numbers are doubles
    assert got == want
    names = {r.name.rsplit(":", 2)[0] if ser.method == "shards" else r.name for r in ours.resources}
    assert ".gitignore" not in names and not any(n.startswith(".git/") for n in names)
    assert {"sub/.git", ".gitmodules"} <= names


def test_single_file_matches_model_signing(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(_rand(25_000, 3))
    for cfg, ser in [
        (ms_hashing.Config(), Serialization()),
        (ms_hashing.Config().use_shard_serialization(shard_size=4096), Serialization.shards(4096)),
    ]:
        stmt = _peer(f, cfg)
        ours = hash_model(f, ser)
        assert _ours(ours) == _theirs(stmt)
        assert ours.root_digest().hex() == stmt["subject"][0]["digest"]["sha256"]
        assert ours.model_name == "model.bin"
        assert ours.files == 1


def test_ignore_paths_match_model_signing(tmp_path: Path) -> None:
    model = _tree(tmp_path / "model", MIXED)
    ignores = ["sub/dir", "config.json", "does/not/exist"]
    stmt = _peer(model, ms_hashing.Config().set_ignored_paths(paths=ignores))
    ours = hash_model(model, ignore_paths=ignores, signature_name=None)
    assert _ours(ours) == _theirs(stmt)
    assert sorted(stmt["predicate"]["serialization"]["ignore_paths"]) == list(
        ours.serialization.ignore_paths
    )
    # Exact root-relative paths only (§6.2.1): "x" does not exclude "a/x".
    assert "a/x" in {r.name for r in hash_model(model, ignore_paths=["x"]).resources}


def test_no_git_ignores_when_asked(tmp_path: Path) -> None:
    model = _tree(tmp_path / "model", MIXED)
    stmt = _peer(model, ms_hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False))
    ours = hash_model(model, ignore_git_paths=False, signature_name=None)
    assert _ours(ours) == _theirs(stmt)
    assert ".git/HEAD" in {r.name for r in ours.resources}


# -- the published vectors (PROVENANCE.md, "Model signing") ------------------------------


def _signed_statement(sig: Path) -> dict[str, Any]:
    bundle = json.loads(sig.read_text())
    stmt: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return stmt


VECTORS = [
    ("v1.0.1-elliptic-key", ["ignore-me"]),
    ("v1.0.1-certificate", ["ignore-me"]),
    ("v1.0.1-sigstore", ["ignore-me"]),
    ("v1.0.0-sigstore", []),
]


@pytest.mark.shared
@pytest.mark.parametrize(("name", "ignores"), VECTORS, ids=[v[0] for v in VECTORS])
def test_shared_vectors_resources(name: str, ignores: list[str]) -> None:
    model = shared("model-signing", name)
    stmt = _signed_statement(model / "model.sig")
    signed = manifest_from_predicate(stmt["subject"][0]["name"], stmt["predicate"])
    assert signed.root_digest().hex() == stmt["subject"][0]["digest"]["sha256"]
    ours = hash_model(model, signed.serialization, ignore_paths=ignores)
    assert compare(signed, ours) == []
    assert ours.root_digest() == signed.root_digest()
    if ignores:
        # Without the ignore, the unsigned empty file is named as extra (PROVENANCE.md).
        bad = compare(signed, hash_model(model, signed.serialization))
        assert [(x.code, x.name) for x in bad] == [("model.manifest.extra_file", "ignore-me")]


@pytest.mark.shared
def test_shared_vector_single_file() -> None:
    f = shared("model-signing", "v1.0.0-elliptic-key", "signme-1")
    stmt = _signed_statement(f.parent / "model.sig")
    signed = manifest_from_predicate(stmt["subject"][0]["name"], stmt["predicate"])
    ours = hash_model(f, signed.serialization)
    assert [r.name for r in ours.resources] == ["."]
    assert compare(signed, ours) == []
    assert ours.root_digest().hex() == stmt["subject"][0]["digest"]["sha256"]
    assert ours.root_digest().hex().startswith("afa48c8674afe334")


@pytest.mark.shared
def test_shared_vector_wrong_dir_names_the_file() -> None:
    # v1.0.1-certificate's manifest over the elliptic-key dir: signme-1 differs (PROVENANCE.md).
    stmt = _signed_statement(shared("model-signing", "v1.0.1-certificate", "model.sig"))
    signed = manifest_from_predicate("x", stmt["predicate"])
    ours = hash_model(shared("model-signing", "v1.0.1-elliptic-key"), ignore_paths=["ignore-me"])
    assert [(x.code, x.name) for x in compare(signed, ours)] == [
        ("model.manifest.digest_mismatch", "signme-1")
    ]


# -- compare ----------------------------------------------------------------------------


def test_compare_names_every_difference(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {"a": b"1", "b": b"2", "c": b"3"})
    signed = hash_model(model)
    (model / "a").write_bytes(b"changed")
    (model / "b").unlink()
    (model / "d").write_bytes(b"new")
    found = compare(signed, hash_model(model))
    assert [(x.code, x.name) for x in found] == [
        ("model.manifest.missing_file", "b"),
        ("model.manifest.extra_file", "d"),
        ("model.manifest.digest_mismatch", "a"),
    ]
    with pytest.raises(ModelManifestError) as e:
        m.check(signed, hash_model(model))
    assert e.value.code == "model.manifest.missing_file"
    assert len(e.value.mismatches) == 3


def test_compare_parameters(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {"a": b"1" * 5000})
    files = hash_model(model)
    for other in (
        Serialization(hash_algorithm="blake3"),
        Serialization.shards(1000),
        Serialization(allow_symlinks=True),
    ):
        found = compare(files, hash_model(model, other))
        assert [x.code for x in found] == ["model.manifest.parameters_mismatch"]
    # Ignore paths only decide the file set, which the resources already compare.
    assert compare(files, hash_model(model, ignore_paths=["zzz"])) == []
    # Shards: model_signing's "sha256-sharded-N" label and the spec's plain "sha256" both fit.
    shards = hash_model(model, Serialization.shards(1000))
    plain = Manifest(
        "m",
        shards.serialization,
        tuple(Resource(r.name, "sha256", r.digest) for r in shards.resources),
    )
    assert compare(plain, shards) == []
    wrong = Manifest("m", files.serialization, (Resource("a", "blake3", b"\0" * 32),))
    assert next(x.code for x in compare(wrong, files)) == "model.manifest.parameters_mismatch"
    dup = Manifest("m", files.serialization, files.resources * 2)
    assert "model.manifest.duplicate_resource" in [x.code for x in compare(dup, files)]


def test_single_file_basename_form_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    ours = hash_model(f)
    # §6.1.2 item 5 names the one resource by the basename.
    spec_form = Manifest(
        "w.bin", ours.serialization, (Resource("w.bin", "sha256", ours.resources[0].digest),)
    )
    assert compare(spec_form, ours) == []
    f.write_bytes(b"other")
    assert [x.code for x in compare(spec_form, hash_model(f))] == ["model.manifest.digest_mismatch"]


def test_order_is_by_component_then_offset() -> None:
    names = ["a-b/x", "a/x", "a.b", "a/y"]
    assert sorted(names, key=lambda n: m.order_key(n, "files")) == ["a/x", "a/y", "a-b/x", "a.b"]
    shards = ["w:10000:20000", "w:0:10000", "w:20000:20001"]
    assert sorted(shards, key=lambda n: m.order_key(n, "shards")) == [
        "w:0:10000",
        "w:10000:20000",
        "w:20000:20001",
    ]
    assert m.split_shard_name("we:ird:0:5") == ("we:ird", 0, 5)


# -- refusals ---------------------------------------------------------------------------


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(ModelManifestError) as e:
        call()
    return e.value.code


def test_empty_models_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    assert _code(lambda: hash_model(tmp_path / "d")) == "model.manifest.empty"
    _tree(tmp_path / "g", {".git/x": b"1", "model.sig": b"{}"})
    assert _code(lambda: hash_model(tmp_path / "g")) == "model.manifest.empty"
    # Shards of an empty file: none (§6.3.2), so nothing to sign either.
    _tree(tmp_path / "e", {"empty": b""})
    assert _code(lambda: hash_model(tmp_path / "e", Serialization.shards(10))) == (
        "model.manifest.empty"
    )
    # In files mode an empty file is a resource (SHA-256 of nothing).
    r = hash_model(tmp_path / "e").resources
    assert r == (Resource("empty", "sha256", hashlib.sha256(b"").digest()),)


def test_signature_file_is_excluded_by_default(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {"a": b"1", "model.sig": b"{}", "sub/model.sig": b"x"})
    names = [r.name for r in hash_model(model).resources]
    assert names == ["a", "sub/model.sig"]
    assert "model.sig" in hash_model(model).serialization.ignore_paths
    assert "model.sig" in [r.name for r in hash_model(model, signature_name=None).resources]


def test_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"outside")
    model = _tree(tmp_path / "m", {"a": b"1", "d/b": b"2"})
    (model / "in").symlink_to("a")
    assert _code(lambda: hash_model(model)) == "model.manifest.symlink"
    allowed = Serialization(allow_symlinks=True)
    r = {x.name: x.digest for x in hash_model(model, allowed).resources}
    assert r["in"] == r["a"] == hashlib.sha256(b"1").digest()
    (model / "out").symlink_to(outside)
    assert _code(lambda: hash_model(model, allowed)) == "model.manifest.symlink"
    (model / "out").unlink()
    (model / "dir").symlink_to("d")
    assert _code(lambda: hash_model(model, allowed)) == "model.manifest.symlink"
    (model / "dir").unlink()
    (model / "dangling").symlink_to("nope")
    assert _code(lambda: hash_model(model, allowed)) == "model.manifest.symlink"
    (model / "dangling").unlink()
    (model / "loop").symlink_to("loop")
    assert _code(lambda: hash_model(model, allowed)) == "model.manifest.symlink"
    (model / "loop").unlink()
    # An ignored link is never looked at; the model path itself may not be a link either.
    (model / "in").unlink()
    (model / "skip").symlink_to(outside)
    assert [x.name for x in hash_model(model, ignore_paths=["skip"]).resources] == ["a", "d/b"]
    (tmp_path / "link").symlink_to(model)
    assert _code(lambda: hash_model(tmp_path / "link")) == "model.manifest.symlink"
    via_link = hash_model(tmp_path / "link", allowed, ignore_paths=["skip"])
    assert via_link.resources == hash_model(model, ignore_paths=["skip"]).resources
    (tmp_path / "flink").symlink_to(model / "a")
    assert _code(lambda: hash_model(tmp_path / "flink")) == "model.manifest.symlink"
    assert hash_model(tmp_path / "flink", allowed).resources == hash_model(model / "a").resources


def test_fifo_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {"a": b"1"})
    os.mkfifo(model / "pipe")
    done: list[str] = []
    t = threading.Thread(target=lambda: done.append(_code(lambda: hash_model(model))))
    t.start()
    t.join(10)
    assert done == ["model.manifest.not_regular"]
    assert _code(lambda: hash_model(model / "pipe")) == "model.manifest.not_regular"
    assert _code(lambda: hash_model("/dev/null")) == "model.manifest.not_regular"


def test_fifo_swapped_in_after_the_walk_is_refused_by_the_core(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    digests, failed = _core.model_hash([(str(tmp_path / "pipe"), 0, 0, 0)], "sha256", 1)
    assert digests == [] and failed is not None
    assert failed[0] == 0 and failed[1].code == "model.manifest.not_regular"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {"a": b"1", "b": b"2"})
    (model / "b").chmod(0)
    with pytest.raises(ModelManifestError) as e:
        hash_model(model)
    assert (e.value.code, e.value.mismatches[0].name) == ("model.manifest.unreadable", "b")


def test_unreadable_directory_and_missing_model(tmp_path: Path) -> None:
    assert _code(lambda: hash_model(tmp_path / "absent")) == "model.manifest.unreadable"
    if os.geteuid() != 0:
        model = _tree(tmp_path / "m", {"a": b"1", "d/b": b"2"})
        (model / "d").chmod(0)
        try:
            assert _code(lambda: hash_model(model)) == "model.manifest.unreadable"
        finally:
            (model / "d").chmod(0o755)


def test_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tree(tmp_path / "m", {f"f{i}": b"x" for i in range(12)})
    monkeypatch.setattr(m, "MAX_FILES", 10)
    assert _code(lambda: hash_model(model)) == "model.manifest.too_many_files"
    monkeypatch.undo()
    # A shard size of one byte over a 2 MB file: refused before anything is read.
    big = _tree(tmp_path / "big", {"w": b"\0" * 2_000_000})
    t0 = time.monotonic()
    assert _code(lambda: hash_model(big, Serialization.shards(1))) == (
        "model.manifest.too_many_resources"
    )
    assert time.monotonic() - t0 < 5
    deep = tmp_path / "deep"
    p = deep
    for _ in range(m.MAX_DEPTH + 1):
        p = p / "d"
    p.mkdir(parents=True)
    (p / "f").write_bytes(b"1")
    assert _code(lambda: hash_model(deep)) == "model.manifest.too_deep"


def test_non_utf8_names_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "ok").write_bytes(b"1")
    with open(os.path.join(os.fsencode(model), b"bad\xff"), "wb") as f:
        f.write(b"2")
    assert _code(lambda: hash_model(model)) == "model.manifest.bad_name"


@pytest.mark.parametrize(
    "bad", ["/abs", "../up", "a/../../b", "*.bin", "a?", "[x]", "", ".", "a\\b"]
)
def test_bad_ignore_paths(tmp_path: Path, bad: str) -> None:
    model = _tree(tmp_path / "m", {"a": b"1"})
    assert _code(lambda: hash_model(model, ignore_paths=[bad])) == (
        "model.manifest.bad_ignore_path"
    )


def test_ignore_path_canonical_forms(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {"a/b/c": b"1", "d": b"2"})
    r = hash_model(model, ignore_paths=["./a//b/"])
    assert [x.name for x in r.resources] == ["d"]
    assert "a/b" in r.serialization.ignore_paths


def test_file_changing_size_while_hashing_is_caught(tmp_path: Path) -> None:
    f = tmp_path / "w"
    f.write_bytes(b"x" * 100)
    # Enumerated at 90 bytes, 100 when opened.
    _digests, failed = _core.model_hash([(str(f), 0, 90, 90)], "sha256", 1)
    assert failed is not None and failed[1].code == "model.manifest.changed"


# -- serialization parsing ----------------------------------------------------------------


def test_serialization_round_trip_and_strictness() -> None:
    s = Serialization.shards(1000, ignore_paths=("b", "a", "a"))
    assert s.ignore_paths == ("a", "b")
    pred = s.to_predicate()
    assert pred == {
        "method": "shards",
        "hash_type": "sha256",
        "shard_size": 1000,
        "allow_symlinks": False,
        "ignore_paths": ["a", "b"],
    }
    assert Serialization.from_predicate(pred) == s
    assert Serialization.from_predicate({**pred, "shard_size": 1000.0}) == s
    bad: list[dict[str, Any]] = [
        {**pred, "shard_size": 1000.5},
        {**pred, "shard_size": 0},
        {**pred, "shard_size": True},
        {**pred, "method": "tensors"},
        {**pred, "hash_type": "md5"},
        {**pred, "allow_symlinks": "false"},
        {**pred, "ignore_paths": "a"},
        {**pred, "ignore_paths": ["../x"]},
        {**pred, "surprise": 1},
        {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "shard_size": 5},
        {"method": "shards", "hash_type": "sha256", "allow_symlinks": False},
    ]
    for obj in bad:
        with pytest.raises(ModelManifestError):
            Serialization.from_predicate(obj)


def test_manifest_from_predicate_refuses_malformed_resources() -> None:
    ser = {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    good = {"name": "a", "algorithm": "sha256", "digest": "00" * 32, "extra": "ignored"}
    assert manifest_from_predicate("m", {"serialization": ser, "resources": [good]}).files == 1
    for res in (
        [],
        "x",
        [{"name": "a", "algorithm": "sha256"}],
        [{**good, "digest": "00" * 31}],
        [{**good, "digest": "zz" * 32}],
        [{**good, "name": "../etc/passwd"}],
        [{**good, "name": "/abs"}],
        [{**good, "name": "a//b"}],
        [{**good, "name": 5}],
    ):
        with pytest.raises(ModelManifestError):
            manifest_from_predicate("m", {"serialization": ser, "resources": res})
    shard_ser = {**ser, "method": "shards", "shard_size": 10}
    for name in ("a", "a:5", "a:5:5", "a:x:9", "a:01:9"):
        with pytest.raises(ModelManifestError):
            manifest_from_predicate(
                "m", {"serialization": shard_ser, "resources": [{**good, "name": name}]}
            )


# -- the GIL, workers ---------------------------------------------------------------------


def test_hashing_releases_the_gil(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", {f"f{i}": _rand(4 << 20, i) for i in range(8)})
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        t0 = time.monotonic()
        for _ in range(3):
            hash_model(model, workers=1)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
    # Held GIL would starve the spinner for the whole run; released, it ticks throughout.
    assert ticks > 0.3 * elapsed / 0.0011


def test_worker_counts_agree(tmp_path: Path) -> None:
    model = _tree(tmp_path / "m", MIXED)
    for ser in (Serialization(), Serialization(hash_algorithm="blake3"), Serialization.shards(999)):
        one = hash_model(model, ser, workers=1)
        assert hash_model(model, ser, workers=5) == one
    assert _code(lambda: hash_model(model, workers=0)) == "model.manifest.bad_parameters"


# -- CLI ----------------------------------------------------------------------------------


def test_cli_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _tree(tmp_path / "m", MIXED)
    assert main(["model", "hash", str(model), "--method", "shards", "--shard-size", "4096"]) == 0
    doc = json.loads(capsys.readouterr().out)
    direct = hash_model(model, Serialization.shards(4096))
    assert doc["root_digest"] == direct.root_digest().hex()
    assert doc["hash_algorithm"] == "sha256"
    assert doc["files"] == direct.files == 10  # the empty file has no shard
    assert doc["resources"][0] == {
        "name": direct.resources[0].name,
        "digest": direct.resources[0].digest.hex(),
    }
    assert (
        main(["model", "hash", str(model), "--hash", "blake3", "--ignore-paths", "sub", "a"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert not any(r["name"].startswith(("sub/", "a/")) for r in doc["resources"])
    # An absolute ignore path inside the model is made root-relative.
    assert main(["model", "hash", str(model), "--ignore-paths", str(model / "sub")]) == 0
    assert "sub" in json.loads(capsys.readouterr().out)["serialization"]["ignore_paths"]


def test_cli_hash_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "hash", str(tmp_path / "absent")]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["errors"][0]["code"] == "model.manifest.unreadable"
    model = _tree(tmp_path / "m", {"a": b"1"})
    (model / "l").symlink_to("a")
    assert main(["model", "hash", str(model)]) == 1
    assert json.loads(capsys.readouterr().out)["errors"][0] == {
        "code": "model.manifest.symlink",
        "name": "l",
        "message": "'l' is a symbolic link (allow_symlinks is false)",
    }
    assert main(["model", "hash", str(model), "--allow-symlinks"]) == 0
    capsys.readouterr()
    assert main(["model", "hash", str(model), "--shard-size", "5"]) == 2
    assert main(["model", "hash", str(model), "--ignore-paths", "/etc"]) == 2
    assert main(["model", "hash", str(model), "--method", "shards", "--shard-size", "0"]) == 2
    for line in capsys.readouterr().out.strip().split("\n}\n"):
        assert "errors" in line


def test_sequential_fallback_agrees_with_the_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tree(tmp_path / "m", MIXED)
    want = {ser: hash_model(model, ser) for ser in (Serialization(), Serialization.shards(4096))}
    monkeypatch.delattr(_core, "model_hash")
    for ser, manifest in want.items():
        assert hash_model(model, ser) == manifest
    os.mkfifo(model / "sub" / "p")
    assert _code(lambda: hash_model(model)) == "model.manifest.not_regular"


_NAME = st.text(alphabet=st.sampled_from(list("ab-._ :Z9é☃")), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..") and not s.startswith(".git")
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.dictionaries(
        st.lists(_NAME, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=3000),
        min_size=1,
        max_size=8,
    ),
    shard=st.sampled_from([None, 7, 1000]),
)
def test_random_trees_equal_model_signing(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], shard: int | None
) -> None:
    root = tmp_path_factory.mktemp("tree") / "model"
    written: dict[str, bytes] = {}
    for name, data in files.items():
        # A name that is also another's directory cannot be both: keep the first.
        parts = name.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if prefixes & written.keys() or any(w.startswith(name + "/") for w in written):
            continue
        written[name] = data
    _tree(root, written)
    if shard is None:
        cfg, ser = ms_hashing.Config(), Serialization()
    else:
        cfg, ser = (
            ms_hashing.Config().use_shard_serialization(shard_size=shard),
            Serialization.shards(shard),
        )
    try:
        ours = hash_model(root, ser, signature_name=None)
    except ModelManifestError as e:
        assert e.code == "model.manifest.empty"  # shards of empty files only
        return
    stmt = _peer(root, cfg)
    assert _ours(ours) == _theirs(stmt)
    assert ours.root_digest().hex() == stmt["subject"][0]["digest"]["sha256"]


def test_file_removed_after_the_walk_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Running as root, no permission bit makes a file unreadable; a file that disappears between
    # the enumeration and the hashing exercises the same path.
    model = _tree(tmp_path / "m", {"a": b"1", "b/c": b"2"})
    real_jobs = m._jobs

    def jobs_then_remove(entries: Any, ser: Serialization) -> Any:
        out = real_jobs(entries, ser)
        (model / "b" / "c").unlink()
        return out

    monkeypatch.setattr(m, "_jobs", jobs_then_remove)
    with pytest.raises(ModelManifestError) as e:
        hash_model(model)
    assert (e.value.code, e.value.mismatches[0].name) == ("model.manifest.unreadable", "b/c")


def test_large_files_mapped_or_read_hash_alike(tmp_path: Path) -> None:
    # >= 4 MiB and writable only by its owner: hashed through a mapping; group-writable (someone
    # else could truncate it under the mapping): read. Both give hashlib's digests.
    data = _rand(9 << 20, 9)
    model = _tree(tmp_path / "m", {"w": data})
    want = hashlib.sha256(data).digest()
    for mode in (0o644, 0o664):
        (model / "w").chmod(mode)
        assert hash_model(model).resources[0].digest == want
        shards = hash_model(model, Serialization.shards(5_000_001)).resources
        assert [r.digest for r in shards] == [
            hashlib.sha256(data[:5_000_001]).digest(),
            hashlib.sha256(data[5_000_001:]).digest(),
        ]
