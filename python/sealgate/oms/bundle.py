"""Parse an OMS signature: Sigstore bundle → DSSE envelope → in-toto Statement → predicate.

Parsing only: nothing here checks a signature (``sealgate.oms.verify`` does). The layers,
outermost first:

- the Sigstore bundle, JSON form of ``dev.sigstore.bundle.v1.Bundle`` (sigstore/protobuf-specs
  ``protos/sigstore_bundle.proto``), media type ``application/vnd.dev.sigstore.bundle.v0.3+json``;
- its ``dsseEnvelope`` (DSSE v1.0 ``envelope.md``): ``payload`` (base64), ``payloadType``,
  ``signatures[{sig, keyid}]``;
- the payload, an in-toto Statement v1 (in-toto attestation ``spec/v1/statement.md``) whose
  predicate is the OMS v1.0 model signature (``https://model_signing/signature/v1.0``):
  ``serialization`` parameters and one ``resources`` entry per file or shard.

JSON is read strictly: a size cap before parsing, a nesting cap, duplicate object keys refused
(two parsers that pick different duplicates would see different documents: the classic
parser-differential attack on signed JSON), no NaN/Infinity, UTF-8 only. The standard
library's decoder does the tokenising; ``object_pairs_hook`` and ``parse_constant`` give those
rules without a second JSON parser.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from sealgate.errors import SealgateError

#: Largest bundle accepted. A bundle is a few KiB plus ~150 bytes of predicate per resource
#: (base64 adds a third): 64 MiB carries a manifest of a few hundred thousand files.
MAX_BUNDLE_LEN = 64 << 20
#: Deepest JSON nesting accepted. The bundle is 6 levels deep, the statement 5; 32 leaves room
#: for unknown predicate extensions while refusing nesting bombs.
MAX_JSON_DEPTH = 32
#: Certificates a bundle may carry in ``x509CertificateChain`` (leaf + intermediates).
MAX_CHAIN_LEN = 8
#: Resources a predicate may list (one per file or shard).
MAX_RESOURCES = 1_000_000

#: Sigstore bundle media types (sigstore/protobuf-specs ``docs``: "Media types"). v0.3 is what
#: ``model_signing`` >= 1.0 writes, in either spelling.
MEDIA_TYPES_V03 = (
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
)
#: Older bundle versions: their tlog entries may lack inclusion proofs (v0.1), so they are
#: read only on the legacy path.
MEDIA_TYPES_LEGACY = (
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
)
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"  # in-toto attestation envelope.md
STATEMENT_TYPE_V1 = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE_V1 = "https://model_signing/signature/v1.0"
#: What model_signing v0.2/v0.3 wrote: the subjects ARE the files, no root digest, no
#: serialization record. Read only with ``allow_legacy``.
PREDICATE_TYPE_LEGACY = "https://model_signing/Digests/v0.1"

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class ModelSignatureError(SealgateError):
    """An OMS signature was refused. ``failures`` lists every reason (one per signer tried
    when several were); ``code``/``message`` are the first one's."""

    def __init__(self, code: str, message: str, failures: list[tuple[str, str]] | None = None):
        super().__init__(code, message)
        self.failures: list[tuple[str, str]] = failures or [(code, message)]


def _malformed(what: str) -> ModelSignatureError:
    return ModelSignatureError("model.signature.malformed", what)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ModelSignatureError("model.signature.duplicate_key", f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise _malformed(f"JSON constant {name} is not allowed")


def _depth_ok(doc: Any, limit: int) -> bool:
    # Iterative, so a document the decoder accepted cannot exhaust the stack here either.
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return False
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return True


def load_json(data: bytes, what: str, limit: int = MAX_BUNDLE_LEN) -> dict[str, Any]:
    """One strict JSON object (see the module docstring); ``model.signature.*`` otherwise."""
    if len(data) > limit:
        raise ModelSignatureError(
            "model.signature.too_large", f"{what} is {len(data)} bytes, the limit is {limit}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _malformed(f"{what} is not UTF-8 (byte {e.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ModelSignatureError("model.signature.too_deep", f"{what} nests too deeply") from None
    except json.JSONDecodeError as e:
        raise _malformed(f"{what} is not JSON: {e.msg} at offset {e.pos}") from None
    if not _depth_ok(doc, MAX_JSON_DEPTH):
        raise ModelSignatureError(
            "model.signature.too_deep", f"{what} nests deeper than {MAX_JSON_DEPTH} levels"
        )
    if not isinstance(doc, dict):
        raise _malformed(f"{what} is not a JSON object")
    return doc


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise _malformed(f"{where}: missing {key!r}")
    v = d[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise _malformed(f"{where}.{key} has the wrong JSON type")
    return v


def _opt(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return _get(d, key, kind, where) if d.get(key) is not None else None


def b64decode(value: str, where: str) -> bytes:
    """Protobuf JSON ``bytes``: standard base64 with padding; the URL-safe alphabet is also
    allowed by the protobuf JSON mapping (proto3 JSON spec, "bytes")."""
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{where} is not base64") from None


@dataclass(frozen=True)
class TlogEntry:
    """One ``transparencyLogEntry`` as JSON; the sigstore library verifies it."""

    log_index: int
    integrated_time: int
    kind: str
    has_inclusion_proof: bool
    has_inclusion_promise: bool


@dataclass(frozen=True)
class Bundle:
    """A parsed OMS bundle: verification material and the DSSE envelope, not yet verified."""

    raw: bytes
    media_type: str
    #: ``"publicKey"`` | ``"x509CertificateChain"`` | ``"certificate"``
    material: str
    public_key_hint: str | None  # publicKey.hint (model_signing >= 1.1: hex SHA-256 of the PEM)
    public_key_raw: bytes | None  # publicKey.rawBytes (model_signing 1.0: the PEM itself)
    certificates: tuple[bytes, ...]  # DER, leaf first
    tlog_entries: tuple[TlogEntry, ...]
    rfc3161_timestamps: int
    payload: bytes
    payload_type: str
    signature: bytes
    keyid: str

    @property
    def legacy_media_type(self) -> bool:
        return self.media_type in MEDIA_TYPES_LEGACY


def parse_bundle(data: bytes) -> Bundle:
    """The structure of a bundle; ``model.signature.*`` codes for anything malformed."""
    doc = load_json(data, "bundle")
    media = _get(doc, "mediaType", str, "bundle")
    if media not in MEDIA_TYPES_V03 + MEDIA_TYPES_LEGACY:
        raise ModelSignatureError(
            "model.signature.unsupported_bundle", f"bundle media type {media!r} is not supported"
        )
    vm = _get(doc, "verificationMaterial", dict, "bundle")
    if "messageSignature" in doc:
        raise ModelSignatureError(
            "model.signature.unsupported_bundle",
            "bundle signs a message digest, not a DSSE envelope (OMS requires DSSE)",
        )
    env = _get(doc, "dsseEnvelope", dict, "bundle")

    kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in vm]
    if len(kinds) != 1:
        raise _malformed(
            "verificationMaterial must hold exactly one of publicKey, x509CertificateChain, "
            f"certificate (has {kinds or 'none'})"
        )
    material = kinds[0]
    hint: str | None = None
    raw_key: bytes | None = None
    certs: list[bytes] = []
    if material == "publicKey":
        pk = _get(vm, "publicKey", dict, "verificationMaterial")
        hint = _opt(pk, "hint", str, "publicKey")
        raw = _opt(pk, "rawBytes", str, "publicKey")
        raw_key = b64decode(raw, "publicKey.rawBytes") if raw is not None else None
    elif material == "x509CertificateChain":
        chain = _get(vm, "x509CertificateChain", dict, "verificationMaterial")
        items = _get(chain, "certificates", list, "x509CertificateChain")
        if not 1 <= len(items) <= MAX_CHAIN_LEN:
            raise _malformed(f"x509CertificateChain has {len(items)} certificates")
        for i, c in enumerate(items):
            if not isinstance(c, dict):
                raise _malformed(f"x509CertificateChain.certificates[{i}] is not an object")
            raw_c = _get(c, "rawBytes", str, f"certificates[{i}]")
            certs.append(b64decode(raw_c, f"certificates[{i}].rawBytes"))
    else:
        c = _get(vm, "certificate", dict, "verificationMaterial")
        certs.append(b64decode(_get(c, "rawBytes", str, "certificate"), "certificate.rawBytes"))

    entries: list[TlogEntry] = []
    for i, e in enumerate(_opt(vm, "tlogEntries", list, "verificationMaterial") or []):
        if not isinstance(e, dict):
            raise _malformed(f"tlogEntries[{i}] is not an object")
        kv = _opt(e, "kindVersion", dict, f"tlogEntries[{i}]") or {}
        entries.append(
            TlogEntry(
                log_index=_int_str(e.get("logIndex"), f"tlogEntries[{i}].logIndex"),
                integrated_time=_int_str(
                    e.get("integratedTime"), f"tlogEntries[{i}].integratedTime"
                ),
                kind=str(kv.get("kind", "")),
                has_inclusion_proof=isinstance(e.get("inclusionProof"), dict),
                has_inclusion_promise=isinstance(e.get("inclusionPromise"), dict),
            )
        )
    tvd = _opt(vm, "timestampVerificationData", dict, "verificationMaterial") or {}
    stamps = _opt(tvd, "rfc3161Timestamps", list, "timestampVerificationData") or []

    payload = b64decode(_get(env, "payload", str, "dsseEnvelope"), "dsseEnvelope.payload")
    ptype = _get(env, "payloadType", str, "dsseEnvelope")
    sigs = _get(env, "signatures", list, "dsseEnvelope")
    # DSSE allows several signatures; OMS writes exactly one, and a verifier that picks one
    # of several invites confusion over which signer a verdict is about.
    if len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise _malformed(f"dsseEnvelope must carry exactly one signature (has {len(sigs)})")
    sig = b64decode(_get(sigs[0], "sig", str, "signatures[0]"), "signatures[0].sig")
    if not sig:
        raise _malformed("signatures[0].sig is empty")
    keyid = _opt(sigs[0], "keyid", str, "signatures[0]") or ""
    return Bundle(
        raw=data,
        media_type=media,
        material=material,
        public_key_hint=hint,
        public_key_raw=raw_key,
        certificates=tuple(certs),
        tlog_entries=tuple(entries),
        rfc3161_timestamps=len(stamps),
        payload=payload,
        payload_type=ptype,
        signature=sig,
        keyid=keyid,
    )


def _int_str(v: Any, where: str) -> int:
    # Protobuf JSON writes int64 as a decimal string (proto3 JSON mapping); accept both forms.
    if isinstance(v, bool) or v is None:
        raise _malformed(f"{where} is missing or not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,19}", v):
        return int(v)
    raise _malformed(f"{where} is not an integer")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1.0 pre-authentication encoding (``protocol.md``): ``"DSSEv1" SP len(type) SP
    type SP len(body) SP body``, lengths in ASCII decimal of the UTF-8 byte counts."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def pae_legacy(payload_type: str, payload: bytes) -> bytes:
    """What model_signing v0.2 signed instead of the PAE: the prefix ``DSSEV1`` and the
    payload as Python's ``repr`` of the bytes (``b'...'`` with escapes), a bug its v1.0
    verifier still accepts. Only ever tried with ``allow_legacy``."""
    t = payload_type
    return f"DSSEV1 {len(t)} {t} {len(payload)} {payload!r}".encode()


@dataclass(frozen=True)
class Statement:
    """The authenticated payload, decoded (in-toto Statement v1). The predicate is handed to
    ``sealgate.oms.manifest.manifest_from_predicate``, which owns the resource rules."""

    subject_name: str
    subject_digest: bytes | None  # sha256; None for the legacy predicate (no root digest)
    predicate_type: str
    predicate: dict[str, Any]
    #: legacy predicate only: (name, sha256 digest) per subject, sorted by name
    legacy_resources: tuple[tuple[str, bytes], ...] = ()


def parse_statement(payload: bytes, *, allow_legacy: bool) -> Statement:
    """The in-toto Statement v1 carrying an OMS predicate (``model.signature.*``)."""
    doc = load_json(payload, "DSSE payload")
    if doc.get("_type") != STATEMENT_TYPE_V1:
        raise ModelSignatureError(
            "model.signature.statement_invalid",
            f"statement _type is {str(doc.get('_type'))[:80]!r}, expected {STATEMENT_TYPE_V1}",
        )
    ptype = _get(doc, "predicateType", str, "statement")
    subjects = _get(doc, "subject", list, "statement")
    if ptype == PREDICATE_TYPE_LEGACY:
        if not allow_legacy:
            raise ModelSignatureError(
                "model.signature.legacy_format",
                f"predicate {ptype} (model_signing v0.2/v0.3) is accepted only with allow_legacy",
            )
        return _legacy_statement(subjects)
    if ptype != PREDICATE_TYPE_V1:
        raise ModelSignatureError(
            "model.signature.predicate_type",
            f"predicateType is {ptype[:120]!r}, expected {PREDICATE_TYPE_V1}",
        )
    if len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise ModelSignatureError(
            "model.signature.statement_invalid",
            f"an OMS statement has exactly one subject (has {len(subjects)})",
        )
    subj = subjects[0]
    name = _get(subj, "name", str, "subject[0]")
    digests = _get(subj, "digest", dict, "subject[0]")
    root_hex = digests.get("sha256")
    if not isinstance(root_hex, str) or not _SHA256_HEX.fullmatch(root_hex):
        raise ModelSignatureError(
            "model.signature.statement_invalid", "subject[0].digest.sha256 is not 64 hex digits"
        )
    pred = _get(doc, "predicate", dict, "statement")
    return Statement(name, bytes.fromhex(root_hex), ptype, pred)


def _legacy_statement(subjects: list[Any]) -> Statement:
    # model_signing v0.2 ("Digests/v0.1"): one subject per file, sha256 only, and no
    # serialization record: the files method with sha256 and no symlinks is what it used.
    if len(subjects) > MAX_RESOURCES:
        raise ModelSignatureError("model.signature.too_large", f"{len(subjects)} subjects")
    out: list[tuple[str, bytes]] = []
    for i, s in enumerate(subjects):
        if not isinstance(s, dict):
            raise _malformed(f"subject[{i}] is not an object")
        name = _get(s, "name", str, f"subject[{i}]")
        dig = _get(s, "digest", dict, f"subject[{i}]").get("sha256")
        if not isinstance(dig, str) or not _SHA256_HEX.fullmatch(dig):
            raise ModelSignatureError(
                "model.signature.statement_invalid", f"subject[{i}] has no sha256 digest"
            )
        out.append((name, bytes.fromhex(dig)))
    if not out:
        raise ModelSignatureError("model.signature.statement_invalid", "no subjects")
    out.sort(key=lambda r: r[0])
    return Statement("", None, PREDICATE_TYPE_LEGACY, {}, tuple(out))
