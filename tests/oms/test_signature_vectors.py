"""The published model_signing fixtures (../shared/vectors/model-signing, PROVENANCE.md
"Model signing") give the verdicts their provenance states, and tampered copies of them fail
with named codes."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sealgate.oms.manifest import ModelManifestError
from sealgate.oms.signers import CertificateSigner, KeySigner, Signer, SigstoreSigner
from sealgate.oms.verify import ModelSignatureError, verify_model, verify_signature

from tests.vectors import shared

pytestmark = pytest.mark.shared

IDENTITY = "stefanb@us.ibm.com"
ISSUER = "https://sigstore.verify.ibm.com/oauth2"
#: Inside every certificate-method validity window (2025-05-02..2035-04-30).
CERT_TIME = datetime(2026, 12, 1, tzinfo=UTC)


def vec(*parts: str) -> Path:
    return shared("model-signing", *parts)


def key_signer() -> KeySigner:
    return KeySigner(vec("keys", "signing-key-pub.pem").read_bytes())


def ca_signer() -> CertificateSigner:
    return CertificateSigner(vec("keys", "ca-cert.pem").read_bytes())


def sigstore_signer(
    identity: str = IDENTITY, issuer: str = ISSUER, root: bytes | None = None
) -> SigstoreSigner:
    return SigstoreSigner(
        identity, issuer, root or vec("sigstore", "trusted_root.json").read_bytes()
    )


# (vector dir, model path inside it, signer factory, ignore paths, expected root digest prefix)
VALID: list[tuple[str, str, Callable[[], Signer], tuple[str, ...], str, str]] = [
    ("v1.0.0-elliptic-key", "signme-1", key_signer, (), "afa48c8674afe334", "key"),
    ("v1.0.1-elliptic-key", "", key_signer, ("ignore-me",), "92745110b1ab4368", "key"),
    ("v1.0.1-certificate", "", ca_signer, ("ignore-me",), "61d4849d9d90076d", "certificate"),
    ("v1.0.1-sigstore", "", sigstore_signer, ("ignore-me",), "61d4849d9d90076d", "sigstore"),
    ("v1.0.0-sigstore", "", sigstore_signer, (), "61d4849d9d90076d", "sigstore"),
]


@pytest.mark.parametrize(("name", "sub", "signer", "ignore", "root", "kind"), VALID)
def test_published_vector_verifies(
    name: str, sub: str, signer: Callable[[], Signer], ignore: tuple[str, ...], root: str, kind: str
) -> None:
    bundle = vec(name, "model.sig").read_bytes()
    model = vec(name) / sub if sub else vec(name)
    v = verify_model(model, bundle, [signer()], ignore_paths=ignore, at=CERT_TIME)
    assert v.root_digest.hex().startswith(root)
    assert v.signer.kind == kind
    assert v.predicate_type == "https://model_signing/signature/v1.0"
    assert v.format_version == "1.0" and not v.legacy
    c = v.claims()
    assert c["root_digest"] == v.root_digest.hex() and c["hash_algorithm"] == "sha256"
    assert c["files"] == (1 if name == "v1.0.0-elliptic-key" else 2)
    assert c["signer"]["kind"] == kind
    if kind == "sigstore":
        assert c["signer"]["identity"] == IDENTITY and c["signer"]["issuer"] == ISSUER
    if kind == "certificate":
        assert c["signer"]["subject"] == "intermediate-ca" and len(c["signer"]["chain"]) == 3


def test_sigstore_signed_at_is_the_rekor_time_not_now() -> None:
    # The Fulcio certificate lived 10 minutes in 2025; at "now" it is long expired, and the
    # verdict is still VALID because the chain is checked at the logged time.
    v = verify_signature(vec("v1.0.1-sigstore", "model.sig").read_bytes(), [sigstore_signer()])
    assert v.signed_at == datetime(2025, 10, 7, 15, 33, 48, tzinfo=UTC)
    v0 = verify_signature(vec("v1.0.0-sigstore", "model.sig").read_bytes(), [sigstore_signer()])
    assert v0.signed_at == datetime(2025, 5, 3, 1, 34, 46, tzinfo=UTC)


def test_certificate_chain_by_signature_although_subjects_collide() -> None:
    # Leaf and intermediate are both CN=intermediate-ca; the chain is built by signature/AKI.
    v = verify_signature(
        vec("v1.0.1-certificate", "model.sig").read_bytes(), [ca_signer()], at=CERT_TIME
    )
    assert v.signer.chain[0] != v.signer.chain[1]


def test_without_ignore_path_the_extra_file_is_named() -> None:
    for name, signer in (
        ("v1.0.1-elliptic-key", key_signer),
        ("v1.0.1-certificate", ca_signer),
        ("v1.0.1-sigstore", sigstore_signer),
    ):
        with pytest.raises(ModelManifestError) as e:
            verify_model(vec(name), vec(name, "model.sig").read_bytes(), [signer()], at=CERT_TIME)
        assert e.value.code == "model.manifest.extra_file"
        assert [m.name for m in e.value.mismatches] == ["ignore-me"]


def test_certificate_bundle_over_other_model_fails_on_manifest() -> None:
    # PROVENANCE: v1.0.1-certificate/model.sig read with the (same) key: DSSE OK, but the
    # elliptic-key directory's signme-1 differs.
    with pytest.raises(ModelManifestError) as e:
        verify_model(
            vec("v1.0.1-elliptic-key"),
            vec("v1.0.1-certificate", "model.sig").read_bytes(),
            [key_signer()],
            ignore_paths=("ignore-me",),
        )
    assert e.value.code == "model.manifest.digest_mismatch"
    assert e.value.mismatches[0].name == "signme-1"


# -- tampering ---------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(vec(name, "model.sig").read_bytes())
    return doc


def _flip_b64(s: str, i: int) -> str:
    b = bytearray(base64.b64decode(s))
    b[i] ^= 1
    return base64.b64encode(bytes(b)).decode()


def _entry(b: dict[str, Any]) -> dict[str, Any]:
    return b["verificationMaterial"]["tlogEntries"][0]  # type: ignore[no-any-return]


def _edit_payload(b: dict[str, Any]) -> None:
    p = base64.b64decode(b["dsseEnvelope"]["payload"]).replace(b'"signme-2"', b'"signme-3"')
    b["dsseEnvelope"]["payload"] = base64.b64encode(p).decode()


def _flip_sig(b: dict[str, Any]) -> None:
    s = b["dsseEnvelope"]["signatures"][0]
    s["sig"] = _flip_b64(s["sig"], -3)


def _checkpoint(b: dict[str, Any]) -> None:
    c = _entry(b)["inclusionProof"]["checkpoint"]
    c["envelope"] = c["envelope"].replace("467035599", "467035600", 1)


def _root_hash(b: dict[str, Any]) -> None:
    ip = _entry(b)["inclusionProof"]
    ip["rootHash"] = _flip_b64(ip["rootHash"], 0)


def _set(b: dict[str, Any]) -> None:
    p = _entry(b)["inclusionPromise"]
    p["signedEntryTimestamp"] = _flip_b64(p["signedEntryTimestamp"], 12)


def _integrated_time(b: dict[str, Any]) -> None:
    e = _entry(b)
    # +1 s stays inside the certificate window, so only the SET can catch it.
    e["integratedTime"] = str(int(e["integratedTime"]) + 1)


def _no_tlog(b: dict[str, Any]) -> None:
    b["verificationMaterial"]["tlogEntries"] = []


def _no_tlog_key(b: dict[str, Any]) -> None:
    del b["verificationMaterial"]["tlogEntries"]


def _no_promise(b: dict[str, Any]) -> None:
    del _entry(b)["inclusionPromise"]


def _embedded_key(b: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b["verificationMaterial"]["publicKey"]["rawBytes"] = base64.b64encode(pem).decode()


def _hint(b: dict[str, Any]) -> None:
    b["verificationMaterial"]["publicKey"] = {"hint": "00" * 32}


def _chain_leaf_only(b: dict[str, Any]) -> None:
    certs = b["verificationMaterial"]["x509CertificateChain"]["certificates"]
    del certs[1:]


TAMPERED: list[tuple[str, str, Callable[[dict[str, Any]], None], Callable[[], Signer], str]] = [
    (
        "edited payload / key",
        "v1.0.1-elliptic-key",
        _edit_payload,
        key_signer,
        "model.signature.signature_invalid",
    ),
    (
        "flipped signature / key",
        "v1.0.1-elliptic-key",
        _flip_sig,
        key_signer,
        "model.signature.signature_invalid",
    ),
    (
        "embedded key is another",
        "v1.0.1-elliptic-key",
        _embedded_key,
        key_signer,
        "model.signature.key_mismatch",
    ),
    (
        "key hint is another",
        "v1.0.1-elliptic-key",
        _hint,
        key_signer,
        "model.signature.key_mismatch",
    ),
    (
        "edited payload / certificate",
        "v1.0.1-certificate",
        _edit_payload,
        ca_signer,
        "model.signature.signature_invalid",
    ),
    (
        "intermediate removed",
        "v1.0.1-certificate",
        _chain_leaf_only,
        ca_signer,
        "model.signature.untrusted_certificate",
    ),
    (
        "key bundle / CA signer",
        "v1.0.1-elliptic-key",
        lambda b: None,
        ca_signer,
        "model.signature.no_certificate",
    ),
    (
        "key bundle / sigstore signer",
        "v1.0.1-elliptic-key",
        lambda b: None,
        sigstore_signer,
        "model.signature.no_certificate",
    ),
    (
        "edited payload / sigstore",
        "v1.0.1-sigstore",
        _edit_payload,
        sigstore_signer,
        "model.signature.signature_invalid",
    ),
    (
        "flipped signature / sigstore",
        "v1.0.1-sigstore",
        _flip_sig,
        sigstore_signer,
        "model.signature.signature_invalid",
    ),
    (
        "tlog entry removed",
        "v1.0.1-sigstore",
        _no_tlog,
        sigstore_signer,
        "model.signature.tlog_missing",
    ),
    (
        "tlogEntries absent",
        "v1.0.0-sigstore",
        _no_tlog_key,
        sigstore_signer,
        "model.signature.tlog_missing",
    ),
    (
        "wrong checkpoint",
        "v1.0.1-sigstore",
        _checkpoint,
        sigstore_signer,
        "model.signature.tlog_invalid",
    ),
    (
        "wrong inclusion root",
        "v1.0.1-sigstore",
        _root_hash,
        sigstore_signer,
        "model.signature.tlog_invalid",
    ),
    ("forged SET", "v1.0.1-sigstore", _set, sigstore_signer, "model.signature.tlog_invalid"),
    (
        "moved integratedTime",
        "v1.0.1-sigstore",
        _integrated_time,
        sigstore_signer,
        "model.signature.tlog_invalid",
    ),
    (
        "no SET, no timestamp",
        "v1.0.1-sigstore",
        _no_promise,
        sigstore_signer,
        "model.signature.tlog_invalid",
    ),
    (
        "wrong identity",
        "v1.0.1-sigstore",
        lambda b: None,
        lambda: sigstore_signer(identity="someone@example.com"),
        "model.signature.identity_mismatch",
    ),
    (
        "identity prefix only",
        "v1.0.1-sigstore",
        lambda b: None,
        lambda: sigstore_signer(identity="stefanb@us.ibm.co"),
        "model.signature.identity_mismatch",
    ),
    (
        "wrong issuer",
        "v1.0.1-sigstore",
        lambda b: None,
        lambda: sigstore_signer(issuer="https://accounts.google.com"),
        "model.signature.issuer_mismatch",
    ),
    (
        "issuer with trailing slash",
        "v1.0.0-sigstore",
        lambda b: None,
        lambda: sigstore_signer(issuer=ISSUER + "/"),
        "model.signature.issuer_mismatch",
    ),
]


@pytest.mark.parametrize(
    ("what", "name", "edit", "signer", "code"), TAMPERED, ids=[t[0] for t in TAMPERED]
)
def test_tampered_vector_fails_with_code(
    what: str,
    name: str,
    edit: Callable[[dict[str, Any]], None],
    signer: Callable[[], Signer],
    code: str,
) -> None:
    b = copy.deepcopy(_load(name))
    edit(b)
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(json.dumps(b).encode(), [signer()], at=CERT_TIME)
    assert e.value.code == code, e.value.message


def test_certificate_expired_and_not_yet_valid() -> None:
    bundle = vec("v1.0.1-certificate", "model.sig").read_bytes()
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [ca_signer()], at=datetime(2035, 5, 1, tzinfo=UTC))
    assert e.value.code == "model.signature.certificate_expired"
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [ca_signer()], at=datetime(2025, 5, 1, tzinfo=UTC))
    assert e.value.code == "model.signature.certificate_not_yet_valid"
    # The last second of the window still verifies.
    verify_signature(bundle, [ca_signer()], at=datetime(2035, 4, 30, 23, 36, 28, tzinfo=UTC))


def test_wrong_ca_and_intermediate_as_anchor() -> None:
    from tests.oms.sigkeys import hierarchy

    bundle = vec("v1.0.1-certificate", "model.sig").read_bytes()
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [CertificateSigner(hierarchy().root_pem)], at=CERT_TIME)
    assert e.value.code == "model.signature.untrusted_certificate"
    # A trust anchor need not be self-signed (RFC 5280 §6.1.1 (d)): an operator who trusts
    # only the intermediate gets a two-certificate path.
    v = verify_signature(
        bundle, [CertificateSigner(vec("keys", "int-ca-cert.pem").read_bytes())], at=CERT_TIME
    )
    assert len(v.signer.chain) == 2


def test_wrong_key() -> None:
    from tests.oms.sigkeys import ec_key, public_pem

    bundle = vec("v1.0.0-elliptic-key", "model.sig").read_bytes()
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [KeySigner(public_pem(ec_key()))])
    # The bundle embeds the real key: it names a key that is not the caller's.
    assert e.value.code == "model.signature.key_mismatch"
    b = _load("v1.0.0-elliptic-key")
    del b["verificationMaterial"]["publicKey"]["rawBytes"]
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(json.dumps(b).encode(), [KeySigner(public_pem(ec_key()))])
    assert e.value.code == "model.signature.signature_invalid"


def test_any_signer_suffices_and_every_failure_is_reported() -> None:
    from tests.oms.sigkeys import ec_key, public_pem

    bundle = vec("v1.0.1-elliptic-key", "model.sig").read_bytes()
    other = KeySigner(public_pem(ec_key()))
    v = verify_signature(bundle, [other, sigstore_signer(), key_signer()])
    assert v.signer.kind == "key"
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [other, sigstore_signer(), ca_signer()])
    assert [c for c, _ in e.value.failures] == [
        "model.signature.key_mismatch",
        "model.signature.no_certificate",
        "model.signature.no_certificate",
    ]


def test_sigstore_trust_root_variants() -> None:
    root = json.loads(vec("sigstore", "trusted_root.json").read_bytes())
    bundle = vec("v1.0.1-sigstore", "model.sig").read_bytes()
    # Only the 2021 Fulcio CA (ended 2022): the 2025 certificate does not chain.
    r = copy.deepcopy(root)
    r["certificateAuthorities"] = r["certificateAuthorities"][:1]
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [sigstore_signer(root=json.dumps(r).encode())])
    assert e.value.code == "model.signature.chain_invalid"
    # The CT log's key replaced by another (a Rekor key): the embedded SCT no longer verifies.
    r = copy.deepcopy(root)
    rekor_key = r["tlogs"][0]["publicKey"]
    for log in r["ctlogs"]:
        log["publicKey"] = copy.deepcopy(rekor_key) | {"validFor": log["publicKey"]["validFor"]}
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [sigstore_signer(root=json.dumps(r).encode())])
    assert e.value.code == "model.signature.sct_invalid"
    # The Rekor keys replaced (the CT keys put in their place): the entry no longer verifies.
    r = copy.deepcopy(root)
    ct_key = r["ctlogs"][-1]["publicKey"]
    for log in r["tlogs"]:
        log["publicKey"] = copy.deepcopy(ct_key) | {"validFor": log["publicKey"]["validFor"]}
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(bundle, [sigstore_signer(root=json.dumps(r).encode())])
    assert e.value.code in ("model.signature.tlog_invalid", "model.signature.no_signing_time")


@pytest.mark.parametrize("change", ["changed", "extra", "missing"])
def test_model_changes_are_named(tmp_path: Path, change: str) -> None:
    model = tmp_path / "v1.0.1-elliptic-key"
    shutil.copytree(vec("v1.0.1-elliptic-key"), model)
    (model / "ignore-me").unlink()
    if change == "changed":
        (model / "signme-2").write_bytes(b"signme-X")
        code, name = "model.manifest.digest_mismatch", "signme-2"
    elif change == "extra":
        (model / "sub").mkdir()
        (model / "sub" / "new").write_bytes(b"x")
        code, name = "model.manifest.extra_file", "sub/new"
    else:
        (model / "signme-1").unlink()
        code, name = "model.manifest.missing_file", "signme-1"
    with pytest.raises(ModelManifestError) as e:
        verify_model(model, vec("v1.0.1-elliptic-key", "model.sig").read_bytes(), [key_signer()])
    assert (e.value.code, e.value.mismatches[0].name) == (code, name)
