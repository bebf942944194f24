"""The OMS v1.0 model manifest: enumerate a model, hash it, compare two manifests.

What is hashed, how it is named and in which order follows the OpenSSF Model Signing
specification v1.0 (§5.2 predicate, §6 signing procedure) and, where the two differ, the
reference implementation ``model_signing`` 1.1.1 whose signatures are what exists in the
wild (docs/model-signing.md, "Where the spec and model_signing differ"):

* resource names are POSIX paths relative to the model root (§6.1.2); a single-file model has
  one resource named ``"."`` (``model_signing`` and the published v1.0.0 vectors; §6.1.2 item 5
  says the basename instead — ``compare`` accepts either for a single file);
* resources are ordered as ``model_signing`` orders them — by path *components*, then by shard
  start and end as integers. The spec says "lexicographically by name"; the two agree unless a
  name holds a character below ``/`` (``-``, ``.``, space ...) next to a directory boundary, or
  a file has shards whose offsets differ in digit count. The root digest of a manifest read from
  a signature is computed over the signature's own order (``Manifest`` keeps the order it is
  given), so either signer's subject digest is reproduced;
* shard resources carry ``model_signing``'s algorithm label ``sha256-sharded-<size>``; §6.3.2
  says the plain ``hash_type``. Both are accepted when reading;
* the root digest is SHA-256 over the concatenated raw resource digests in manifest order, for
  every ``hash_type`` (§6.5.1);
* ``.git``, ``.gitattributes``, ``.github``, ``.gitignore`` at the model root and the signature
  file are excluded by default and recorded in ``serialization.ignore_paths`` (§6.2), as
  ``model_signing``'s CLI records them; user ignore paths are exact paths relative to the model
  root, a directory excluding its subtree (§6.2.1);
* only regular files are hashed; symbolic links are refused unless allowed, and even then must
  resolve to a regular file inside the model root (§6.1.1 only asks for a warning when a link
  leaves the root: a signed model that reads bytes from outside itself is refused here);
* file names must be valid UTF-8 (§6.1.2 item 7).

Enumeration is bounded (file count, resource count, depth, name length) and never opens a
FIFO, socket or device: they are refused by type before anything is read, and the Rust hasher
re-checks the type on the open descriptor (opened ``O_NONBLOCK | O_NOFOLLOW``; an allowed link is
resolved during the walk and its target opened), so a file swapped after the walk cannot make it
block or follow a link.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sealgate.errors import SealgateError

#: Serialization methods (§5.2.2).
METHODS = ("files", "shards")
#: Hash algorithms sealgate computes: SHA-256 is required by §7, BLAKE3 optional.
HASH_ALGORITHMS = ("sha256", "blake3")
#: §6.3.2: implementations SHOULD default to 1,000,000,000-byte shards.
DEFAULT_SHARD_SIZE = 1_000_000_000
#: §6.2: excluded by default, matched as top-level components of the model root.
DEFAULT_IGNORES = (".git", ".gitattributes", ".github", ".gitignore")
#: The signature's conventional name inside the model directory (``model_signing``'s default).
SIGNATURE_NAME = "model.sig"
#: The resource name of a single-file model (``model_signing``; the v1.0.0 vectors).
SINGLE_FILE_NAME = "."

#: Bounds on what one model may hold: real models have at most thousands of files; these stop
#: a hostile or mistaken path (a home directory, a dataset, a symlink farm) from consuming
#: memory and time before anything is hashed, and keep a signed payload a sane size.
MAX_FILES = 100_000
MAX_RESOURCES = 1_000_000
MAX_DEPTH = 64
MAX_NAME_BYTES = 4096
DIGEST_SIZE = 32
#: Characters an ignore path must not hold (§6.2.1: no globs).
_GLOB = frozenset("*?[")


class ManifestMismatch(NamedTuple):
    """One way a model differs from its expected manifest (or cannot be hashed)."""

    code: str
    name: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name, "message": self.message}


class ModelManifestError(SealgateError):
    """A model cannot be hashed, or does not match its manifest; ``mismatches`` lists every
    difference found (the first one's code is the error's code)."""

    def __init__(
        self, code: str, message: str, mismatches: Sequence[ManifestMismatch] = ()
    ) -> None:
        super().__init__(code, message)
        self.mismatches: tuple[ManifestMismatch, ...] = tuple(mismatches) or (
            ManifestMismatch(code, "", message),
        )

    @classmethod
    def of(cls, mismatches: Sequence[ManifestMismatch]) -> ModelManifestError:
        first = mismatches[0]
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        return cls(first.code, first.message + more, mismatches)


def _fail(code: str, message: str, name: str = "") -> ModelManifestError:
    return ModelManifestError(code, message, (ManifestMismatch(code, name, message),))


def canonical_ignore_path(path: str) -> str:
    """An ignore path in the form §6.2.1 requires: relative, ``/``-separated, no ``.``/``..``
    components, no glob characters. ``./a//b/`` becomes ``a/b``; anything else is refused."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise _fail("model.manifest.bad_ignore_path", f"ignore path {path!r} is empty or not text")
    if path.startswith("/") or "\\" in path or _GLOB & set(path):
        raise _fail(
            "model.manifest.bad_ignore_path",
            f"ignore path {path!r} must be relative, '/'-separated and hold no glob characters",
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _fail("model.manifest.bad_ignore_path", f"ignore path {path!r} leaves the model")
    if not parts:
        raise _fail("model.manifest.bad_ignore_path", f"ignore path {path!r} names the model root")
    return "/".join(parts)


@dataclass(frozen=True)
class Serialization:
    """The predicate's ``serialization`` object (§5.2.2): how the manifest was produced.

    ``hash_algorithm`` is recorded as ``hash_type``; ``shard_size`` is present only for
    ``"shards"``; ``ignore_paths`` are canonical (``canonical_ignore_path``) and kept sorted,
    so two serializations that exclude the same paths compare equal.
    """

    method: str = "files"
    hash_algorithm: str = "sha256"
    shard_size: int | None = None
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise _fail("model.manifest.bad_parameters", f"unknown method {self.method!r}")
        if self.hash_algorithm not in HASH_ALGORITHMS:
            raise _fail(
                "model.manifest.bad_parameters", f"unsupported hash_type {self.hash_algorithm!r}"
            )
        if self.method == "shards":
            size = self.shard_size
            if type(size) is not int or not 0 < size < 1 << 63:
                raise _fail(
                    "model.manifest.bad_parameters",
                    f"shard_size must be a positive integer, got {size!r}",
                )
        elif self.shard_size is not None:
            raise _fail("model.manifest.bad_parameters", "shard_size is only for method 'shards'")
        if type(self.allow_symlinks) is not bool:
            raise _fail("model.manifest.bad_parameters", "allow_symlinks must be a boolean")
        canon = tuple(sorted({canonical_ignore_path(p) for p in self.ignore_paths}))
        object.__setattr__(self, "ignore_paths", canon)

    @classmethod
    def shards(cls, shard_size: int = DEFAULT_SHARD_SIZE, **kw: Any) -> Serialization:
        return cls(method="shards", shard_size=shard_size, **kw)

    @property
    def resource_algorithm(self) -> str:
        """The ``algorithm`` label sealgate writes on each resource (``model_signing``'s)."""
        if self.method == "shards":
            return f"{self.hash_algorithm}-sharded-{self.shard_size}"
        return self.hash_algorithm

    def accepts_algorithm(self, label: str) -> bool:
        """Whether a resource's ``algorithm`` fits this serialization: ``hash_type`` itself
        (§6.3) or, for shards, ``model_signing``'s ``<hash_type>-sharded-<shard_size>``."""
        return label in (self.hash_algorithm, self.resource_algorithm)

    def same_hashing(self, other: Serialization) -> bool:
        """Whether two serializations hash a model the same way (ignore paths aside: they only
        decide which files are present, which the resource comparison already checks)."""
        return (self.method, self.hash_algorithm, self.shard_size, self.allow_symlinks) == (
            other.method,
            other.hash_algorithm,
            other.shard_size,
            other.allow_symlinks,
        )

    def with_ignore_paths(self, paths: Iterable[str]) -> Serialization:
        return Serialization(
            self.method,
            self.hash_algorithm,
            self.shard_size,
            self.allow_symlinks,
            (*self.ignore_paths, *paths),
        )

    def to_predicate(self) -> dict[str, Any]:
        """The JSON object as §5.2.2 names its fields."""
        out: dict[str, Any] = {"method": self.method, "hash_type": self.hash_algorithm}
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_predicate(cls, obj: Any) -> Serialization:
        """Parse a signature's ``serialization`` object strictly. Unknown keys are refused: they
        could change how the model must be hashed. ``shard_size`` may be an integral JSON float
        (``model_signing`` writes it through a protobuf ``Struct``, whose numbers are doubles:
        ``1000000000.0``). ``ignore_paths`` entries that escape the model (``model_signing``
        drops those when signing, so they should not occur) are refused, not skipped."""
        if not isinstance(obj, Mapping):
            raise _fail("model.manifest.bad_parameters", "serialization is not an object")
        known = {"method", "hash_type", "shard_size", "allow_symlinks", "ignore_paths"}
        unknown = sorted(str(k) for k in obj if k not in known)
        if unknown:
            raise _fail("model.manifest.bad_parameters", f"unknown serialization fields {unknown}")
        method, hash_type = obj.get("method"), obj.get("hash_type")
        if not isinstance(method, str) or not isinstance(hash_type, str):
            raise _fail("model.manifest.bad_parameters", "method and hash_type must be strings")
        allow = obj.get("allow_symlinks")
        if type(allow) is not bool:
            raise _fail("model.manifest.bad_parameters", "allow_symlinks must be a boolean")
        size: int | None = None
        if "shard_size" in obj:
            raw = obj["shard_size"]
            if type(raw) is float and raw.is_integer() and 0 < raw < 2.0**53:
                size = int(raw)
            elif type(raw) is int:
                size = raw
            else:
                raise _fail(
                    "model.manifest.bad_parameters", f"shard_size {raw!r} is not an integer"
                )
        ignores = obj.get("ignore_paths", [])
        if not isinstance(ignores, list) or not all(isinstance(p, str) for p in ignores):
            raise _fail("model.manifest.bad_parameters", "ignore_paths must be a list of strings")
        if len(ignores) > MAX_FILES:
            raise _fail("model.manifest.bad_parameters", "too many ignore_paths")
        return cls(method, hash_type, size, allow, tuple(ignores))


@dataclass(frozen=True)
class Resource:
    """One resource descriptor (§5.2.1): a file, or a shard ``path:start:end``."""

    name: str
    algorithm: str
    digest: bytes

    def to_predicate(self) -> dict[str, str]:
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest.hex()}


def split_shard_name(name: str) -> tuple[str, int, int]:
    """``path:start:end`` → (path, start, end), taking the *last two* colon-separated decimal
    integers (§6.3.2: file names may contain colons)."""
    path, sep1, rest = name.rpartition(":")
    path, sep2, start_s = path.rpartition(":")
    if not (sep1 and sep2 and path and start_s.isdecimal() and rest.isdecimal()):
        raise _fail("model.manifest.bad_resource", f"shard name {name!r} is not path:start:end")
    if not start_s.isascii() or not rest.isascii() or len(start_s) > 20 or len(rest) > 20:
        raise _fail("model.manifest.bad_resource", f"shard name {name!r} has bad offsets")
    start, end = int(start_s), int(rest)
    if start >= end or str(start) != start_s or str(end) != rest:
        raise _fail("model.manifest.bad_resource", f"shard name {name!r} has bad offsets")
    return path, start, end


def order_key(name: str, method: str) -> tuple[tuple[str, ...], int, int]:
    """``model_signing``'s order: path components (code-point order), then shard offsets."""
    if method == "shards":
        path, start, end = split_shard_name(name)
        return tuple(path.split("/")), start, end
    return tuple(name.split("/")), 0, 0


@dataclass(frozen=True)
class Manifest:
    """A model's manifest: its name (informational, §6.5), how it was serialized, and its
    resources in manifest order — as given (a signature's order) or, from ``hash_model`` and
    ``canonical``, ``model_signing``'s order."""

    model_name: str
    serialization: Serialization
    resources: tuple[Resource, ...] = field(default=())

    def root_digest(self) -> bytes:
        """§6.5.1: SHA-256 over the raw resource digests concatenated in manifest order —
        SHA-256 whatever the resources' ``hash_type``; the in-toto subject's ``sha256``."""
        h = hashlib.sha256()
        for r in self.resources:
            h.update(r.digest)
        return h.digest()

    def canonical(self) -> Manifest:
        """The same manifest in canonical order."""
        method = self.serialization.method
        ordered = sorted(self.resources, key=lambda r: order_key(r.name, method))
        return Manifest(self.model_name, self.serialization, tuple(ordered))

    @property
    def files(self) -> int:
        """How many files the manifest covers (shards of one file count once)."""
        if self.serialization.method == "shards":
            return len({split_shard_name(r.name)[0] for r in self.resources})
        return len(self.resources)

    def to_json(self) -> dict[str, Any]:
        """The summary ``sealgate model hash`` prints."""
        return {
            "model_name": self.model_name,
            "root_digest": self.root_digest().hex(),
            "hash_algorithm": self.serialization.hash_algorithm,
            "serialization": self.serialization.to_predicate(),
            "files": self.files,
            "resources": [{"name": r.name, "digest": r.digest.hex()} for r in self.resources],
        }


def _check_resource_name(name: str, method: str) -> None:
    """A signed name must be canonical (§6.1.2), or it could never match a hashed file and an
    odd spelling (``a/../b``, ``/etc/x``) must not reach a message or a path join unnoticed."""
    path = split_shard_name(name)[0] if method == "shards" else name
    if path == SINGLE_FILE_NAME:
        return
    parts = path.split("/")
    if (
        not path
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
        or len(path.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    ):
        raise _fail("model.manifest.bad_resource", f"resource name {name[:200]!r} is not canonical")


def manifest_from_predicate(model_name: str, predicate: Any) -> Manifest:
    """The manifest a v1.0 predicate (``{"serialization": ..., "resources": [...]}``) signs, in
    the predicate's order (so ``root_digest()`` reproduces the subject digest). Strict: every
    resource needs ``name``, ``algorithm`` and a 32-byte lowercase-or-uppercase hex ``digest``;
    other resource fields are ignored as §5.2.1 requires; other predicate fields are ignored
    as §5.2 requires of v1.0 verifiers."""
    if not isinstance(predicate, Mapping):
        raise _fail("model.manifest.bad_resource", "predicate is not an object")
    ser = Serialization.from_predicate(predicate.get("serialization"))
    raw = predicate.get("resources")
    if not isinstance(raw, list) or not raw:
        raise _fail("model.manifest.bad_resource", "resources must be a non-empty list")
    if len(raw) > MAX_RESOURCES:
        raise _fail("model.manifest.too_many_resources", f"more than {MAX_RESOURCES} resources")
    out: list[Resource] = []
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping):
            raise _fail("model.manifest.bad_resource", f"resource {i} is not an object")
        name, alg, dig = r.get("name"), r.get("algorithm"), r.get("digest")
        if not (isinstance(name, str) and isinstance(alg, str) and isinstance(dig, str)):
            raise _fail(
                "model.manifest.bad_resource", f"resource {i} needs string name/algorithm/digest"
            )
        _check_resource_name(name, ser.method)
        if len(dig) != 2 * DIGEST_SIZE:
            raise _fail("model.manifest.bad_resource", f"resource {name!r} digest is not 32 bytes")
        try:
            digest = bytes.fromhex(dig)
        except ValueError:
            raise _fail(
                "model.manifest.bad_resource", f"resource {name!r} digest is not hex"
            ) from None
        out.append(Resource(name, alg, digest))
    return Manifest(model_name, ser, tuple(out))


def compare(expected: Manifest, actual: Manifest) -> list[ManifestMismatch]:
    """Every difference between a signed manifest (``expected``) and a freshly hashed one,
    ordered by name: parameters first, then missing, extra and changed files (§8.4). An empty
    list means the model matches."""
    out: list[ManifestMismatch] = []
    es, as_ = expected.serialization, actual.serialization
    if not es.same_hashing(as_):
        out.append(
            ManifestMismatch(
                "model.manifest.parameters_mismatch",
                "",
                f"signed with {es.to_predicate()}, hashed with {as_.to_predicate()}",
            )
        )
        return out
    want: dict[str, Resource] = {}
    for r in expected.resources:
        if r.name in want:
            out.append(
                ManifestMismatch(
                    "model.manifest.duplicate_resource", r.name, f"{r.name!r} is listed twice"
                )
            )
        want[r.name] = r
        if not es.accepts_algorithm(r.algorithm):
            out.append(
                ManifestMismatch(
                    "model.manifest.parameters_mismatch",
                    r.name,
                    f"{r.name!r} has algorithm {r.algorithm!r}, serialization says "
                    f"{es.hash_algorithm!r}",
                )
            )
    have = {_single_file_name(r.name, actual, want): r for r in actual.resources}
    for name in sorted(want.keys() - have.keys()):
        out.append(
            ManifestMismatch("model.manifest.missing_file", name, f"{name!r} is signed but absent")
        )
    for name in sorted(have.keys() - want.keys()):
        out.append(
            ManifestMismatch("model.manifest.extra_file", name, f"{name!r} is present but unsigned")
        )
    for name in sorted(want.keys() & have.keys()):
        if want[name].digest != have[name].digest:
            out.append(
                ManifestMismatch(
                    "model.manifest.digest_mismatch",
                    name,
                    f"{name!r} digest is {have[name].digest.hex()}, signed "
                    f"{want[name].digest.hex()}",
                )
            )
    return out


def _single_file_name(name: str, actual: Manifest, want: Mapping[str, Resource]) -> str:
    """§6.1.2 item 5 names a single-file model's resource by the file's basename;
    ``model_signing`` and the v1.0.0 vectors use ``"."``. A signature made either way names the
    one file: a hashed single-file resource is renamed to the basename when the signature uses
    the basename."""
    dot = SINGLE_FILE_NAME
    if name in want or not (name == dot or name.startswith(dot + ":")):
        return name
    renamed = actual.model_name + name[len(dot) :]
    return renamed if renamed in want else name


def check(expected: Manifest, actual: Manifest) -> None:
    """``compare``, raising ``ModelManifestError`` carrying every mismatch."""
    mismatches = compare(expected, actual)
    if mismatches:
        raise ModelManifestError.of(mismatches)


# -- enumeration --------------------------------------------------------------------------


class _Entry(NamedTuple):
    name: str  # canonical resource path
    path: str  # what to open
    size: int


def _check_name(rel: str) -> None:
    try:
        encoded = rel.encode("utf-8")
    except UnicodeEncodeError:
        # os.fsdecode maps undecodable bytes to lone surrogates, which strict UTF-8 refuses.
        raise _fail(
            "model.manifest.bad_name",
            f"file name {rel.encode('utf-8', 'backslashreplace')!r} is not valid UTF-8",
        ) from None
    if len(encoded) > MAX_NAME_BYTES:
        raise _fail("model.manifest.bad_name", f"path {rel[:64]!r}... is too long", rel)


def _is_ignored(rel: str, ignores: frozenset[str]) -> bool:
    # §6.2.1: an entry excludes that exact path and, for a directory, its subtree.
    parts = rel.split("/")
    return any("/".join(parts[:i]) in ignores for i in range(1, len(parts) + 1))


def _enumerate(root: str, real_root: str, ser: Serialization) -> list[_Entry]:
    ignores = frozenset(ser.ignore_paths)
    entries: list[_Entry] = []
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        try:
            with os.scandir(directory) as it:
                children = list(it)
        except OSError as e:
            raise _fail(
                "model.manifest.unreadable", f"cannot list {prefix or '.'!r}: {e.strerror}", prefix
            ) from None
        for child in children:
            rel = f"{prefix}/{child.name}" if prefix else child.name
            if _is_ignored(rel, ignores):
                continue  # never inspected: an excluded .git may hold anything
            _check_name(rel)
            try:
                st = os.lstat(child.path)
            except OSError as e:
                raise _fail("model.manifest.unreadable", f"{rel!r}: {e.strerror}", rel) from None
            if stat.S_ISLNK(st.st_mode):
                entries.append(_symlink_entry(rel, child.path, real_root, ser))
            elif stat.S_ISDIR(st.st_mode):
                if depth + 1 >= MAX_DEPTH:
                    raise _fail(
                        "model.manifest.too_deep", f"{rel!r} is nested over {MAX_DEPTH} deep", rel
                    )
                stack.append((child.path, rel, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                entries.append(_Entry(rel, child.path, st.st_size))
            else:
                raise _fail(
                    "model.manifest.not_regular",
                    f"{rel!r} is not a regular file or directory (FIFO, socket or device)",
                    rel,
                )
            if len(entries) > MAX_FILES:
                raise _fail("model.manifest.too_many_files", f"more than {MAX_FILES} files")
    return entries


def _symlink_entry(rel: str, path: str, real_root: str, ser: Serialization) -> _Entry:
    if not ser.allow_symlinks:
        raise _fail(
            "model.manifest.symlink", f"{rel!r} is a symbolic link (allow_symlinks is false)", rel
        )
    try:
        target = os.path.realpath(path, strict=True)
        st = os.stat(target)
    except (OSError, RuntimeError) as e:  # dangling, a loop, unreadable
        raise _fail("model.manifest.symlink", f"{rel!r} does not resolve: {e}", rel) from None
    if os.path.commonpath([real_root, target]) != real_root:
        raise _fail("model.manifest.symlink", f"{rel!r} points outside the model", rel)
    if not stat.S_ISREG(st.st_mode):
        raise _fail("model.manifest.symlink", f"{rel!r} does not point to a regular file", rel)
    return _Entry(rel, target, st.st_size)


class _Job(NamedTuple):
    path: str  # what to open
    start: int
    length: int
    file_size: int  # as enumerated: a file that changed size since is refused
    name: str  # resource name


def _jobs(entries: Sequence[_Entry], ser: Serialization) -> list[_Job]:
    """One job per file, or one per shard (§6.3.2: consecutive ``shard_size`` ranges, the last
    one shorter; an empty file has no shard)."""
    jobs: list[_Job] = []
    if ser.method == "files":
        return [_Job(e.path, 0, e.size, e.size, e.name) for e in entries]
    size = ser.shard_size
    assert size is not None
    total = sum(-(-e.size // size) for e in entries)
    if total > MAX_RESOURCES:
        raise _fail(
            "model.manifest.too_many_resources",
            f"shard size {size} makes {total} resources (more than {MAX_RESOURCES})",
        )
    for e in entries:
        for start in range(0, e.size, size):
            end = min(start + size, e.size)
            jobs.append(_Job(e.path, start, end - start, e.size, f"{e.name}:{start}:{end}"))
    return jobs


def _model_name(path: str) -> str:
    # §6.5: the basename of the model path (model_signing resolves "." and "..").
    name = os.path.basename(os.path.normpath(path))
    if name in ("", ".", ".."):
        name = os.path.basename(os.path.realpath(path))
    return name


def hash_model(
    path: str | os.PathLike[str],
    serialization: Serialization | None = None,
    *,
    ignore_paths: Iterable[str] = (),
    ignore_git_paths: bool = True,
    signature_name: str | None = SIGNATURE_NAME,
    workers: int | None = None,
) -> Manifest:
    """Hash the model at ``path`` (a directory, or a single file) into its OMS manifest.

    ``ignore_paths`` (relative to the model root) are excluded on top of those the
    serialization already records (a signature's), ``.git``/``.gitattributes``/``.github``/
    ``.gitignore`` unless ``ignore_git_paths`` is false, and ``signature_name`` (the signature
    file, root-relative; ``None`` when it lives outside the model). All of them are recorded in
    the returned serialization's ``ignore_paths``, as ``model_signing`` records them.
    ``workers`` bounds the hashing threads (default: the CPUs this process may run on). The
    GIL is released for the whole hashing job.
    """
    ser = serialization or Serialization()
    extra = list(ignore_paths)
    if ignore_git_paths:
        extra.extend(DEFAULT_IGNORES)
    if signature_name is not None:
        extra.append(signature_name)
    ser = ser.with_ignore_paths(extra)
    root = os.fspath(path)
    name = _model_name(root)
    try:
        st = os.lstat(root)
    except OSError as e:
        raise _fail("model.manifest.unreadable", f"model {root!r}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        if not ser.allow_symlinks:
            raise _fail("model.manifest.symlink", f"model path {root!r} is a symbolic link")
        try:
            st = os.stat(root)
        except OSError as e:
            raise _fail("model.manifest.symlink", f"model {root!r}: {e.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        entries = [_Entry(SINGLE_FILE_NAME, os.path.realpath(root), st.st_size)]
    elif stat.S_ISDIR(st.st_mode):
        entries = _enumerate(root, os.path.realpath(root), ser)
    else:
        raise _fail("model.manifest.not_regular", f"model {root!r} is not a file or directory")
    jobs = _jobs(entries, ser)
    if not jobs:
        # §6.1 item 1: the model must hold at least one regular file (one byte, for shards)
        # after exclusions; an empty manifest would sign nothing.
        raise _fail("model.manifest.empty", f"model {root!r} has nothing to hash")
    n = workers if workers is not None else len(os.sched_getaffinity(0))
    if not 1 <= n <= 256:
        raise _fail("model.manifest.bad_parameters", f"workers must be 1..256, got {n}")
    # Allowed links were resolved during the walk and their targets are what is opened, so
    # every open refuses a link (O_NOFOLLOW): one swapped in since is not followed.
    digests = _hash_jobs(jobs, ser.hash_algorithm, n, follow=False)
    resources = tuple(
        Resource(j.name, ser.resource_algorithm, d) for j, d in zip(jobs, digests, strict=True)
    )
    return Manifest(name, ser, resources).canonical()


def _hash_jobs(jobs: Sequence[_Job], algorithm: str, workers: int, follow: bool) -> list[bytes]:
    """Digest of each job's byte range, from the Rust core (``sealgate._core.model_hash``:
    parallel, streamed, GIL released); a failing job is reported under its resource name."""
    from sealgate import _core

    if not hasattr(_core, "model_hash"):  # an extension built before model hashing existed
        return _hash_jobs_sequential(jobs, algorithm, follow)
    digests, failed = _core.model_hash(
        [(j.path, j.start, j.length, j.file_size) for j in jobs], algorithm, workers, follow
    )
    if failed is not None:
        index, (code, message) = failed
        name = jobs[index].name
        raise _fail(code, f"{name!r}: {message}", name)
    return digests


def _hash_jobs_sequential(jobs: Sequence[_Job], algorithm: str, follow: bool) -> list[bytes]:
    """The same digests with the same checks, one job after another in Python: only for a
    checkout whose compiled extension predates ``_core.model_hash`` (``make build`` replaces
    it). BLAKE3 needs the ``blake3`` package here."""
    out: list[bytes] = []
    for j in jobs:
        h: Any
        if algorithm == "sha256":
            h = hashlib.sha256()
        else:
            try:
                import blake3
            except ImportError:
                raise _fail(
                    "model.manifest.bad_parameters", "blake3 needs the rebuilt extension"
                ) from None
            h = blake3.blake3()
        flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
        try:
            fd = os.open(j.path, flags)
        except OSError as e:
            code = (
                "model.manifest.symlink" if e.errno == errno.ELOOP else "model.manifest.unreadable"
            )
            raise _fail(code, f"{j.name!r}: {e.strerror}", j.name) from None
        try:
            for check in (True, False):
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    raise _fail("model.manifest.not_regular", f"{j.name!r} is not regular", j.name)
                if fst.st_size != j.file_size:
                    raise _fail("model.manifest.changed", f"{j.name!r} changed size", j.name)
                if not check:
                    break
                pos, end = j.start, j.start + j.length
                while pos < end:
                    chunk = os.pread(fd, min(end - pos, 4 << 20), pos)
                    if not chunk:
                        raise _fail("model.manifest.changed", f"{j.name!r} shrank", j.name)
                    h.update(chunk)
                    pos += len(chunk)
        finally:
            os.close(fd)
        out.append(h.digest())
    return out
