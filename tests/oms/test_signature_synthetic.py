"""OMS signatures made here with keys and CAs generated at test time: sign → verify round
trips for every curve and both methods, and the refusals (bad input, wrong signer, certificate
profile, legacy encodings) as a table of input and expected code."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sealgate.errors import UsageError
from sealgate.oms import bundle as B
from sealgate.oms.manifest import ModelManifestError
from sealgate.oms.sign import sign_model
from sealgate.oms.signers import (
    CertificateSigner,
    KeySigner,
    SigstoreSigner,
    signer_from_dict,
)
from sealgate.oms.verify import ModelSignatureError, verify_model, verify_signature

from tests.oms.sigkeys import (
    INSIDE,
    cert_pem,
    ec_key,
    hierarchy,
    make_cert,
    private_pem,
    public_pem,
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    m = tmp_path / "model"
    (m / "sub").mkdir(parents=True)
    (m / "weights.bin").write_bytes(b"\x00" * 4096 + b"w")
    (m / "sub" / "config.json").write_text('{"layers": 2}')
    (m / "README").write_text("a model")
    return m


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_key_round_trip_every_curve(model: Path, curve: ec.EllipticCurve) -> None:
    k = ec_key(curve)
    sig = sign_model(model, private_key_pem=private_pem(k))
    v = verify_model(model, sig, [KeySigner(public_pem(k))])
    assert v.files == 3 and v.signer.kind == "key" and v.model_name == "model"
    bundle = json.loads(sig)
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert len(bundle["verificationMaterial"]["publicKey"]["hint"]) == 64
    assert v.claims()["signed_at"] is None  # a key signature proves no time


def test_blake3_round_trip(model: Path) -> None:
    k = ec_key()
    sig = sign_model(model, private_key_pem=private_pem(k), hash_algorithm="blake3")
    v = verify_model(model, sig, [KeySigner(public_pem(k))])
    assert v.hash_algorithm == "blake3"


def test_ignore_paths_recorded_and_applied(model: Path) -> None:
    k = ec_key()
    sig = sign_model(model, private_key_pem=private_pem(k), ignore_paths=["README"])
    v = verify_signature(sig, [KeySigner(public_pem(k))])
    assert "README" in v.ignore_paths and v.files == 2
    (model / "README").write_text("changed, but ignored by the signature's own record")
    verify_model(model, sig, [KeySigner(public_pem(k))])


@pytest.mark.parametrize("change", ["changed", "extra", "missing"])
def test_model_change_named(model: Path, change: str) -> None:
    k = ec_key()
    sig = sign_model(model, private_key_pem=private_pem(k))
    if change == "changed":
        (model / "sub" / "config.json").write_text('{"layers": 3}')
        want = ("model.manifest.digest_mismatch", "sub/config.json")
    elif change == "extra":
        (model / "sub" / "evil.py").write_text("import os")
        want = ("model.manifest.extra_file", "sub/evil.py")
    else:
        (model / "weights.bin").unlink()
        want = ("model.manifest.missing_file", "weights.bin")
    with pytest.raises(ModelManifestError) as e:
        verify_model(model, sig, [KeySigner(public_pem(k))])
    assert (e.value.code, e.value.mismatches[0].name) == want


def test_certificate_round_trip_and_time(model: Path) -> None:
    h = hierarchy(leaf_curve=ec.SECP384R1())
    sig = sign_model(
        model, private_key_pem=private_pem(h.leaf_key), certificate_chain_pem=h.chain_pem
    )
    v = verify_model(model, sig, [CertificateSigner(h.root_pem)], at=INSIDE)
    assert v.signer.kind == "certificate" and v.signer.subject == "model-signer"
    assert len(v.signer.chain) == 3
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(sig, [CertificateSigner(h.root_pem)], at=datetime(2031, 1, 1, tzinfo=UTC))
    assert e.value.code == "model.signature.certificate_expired"
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(sig, [CertificateSigner(h.root_pem)], at=datetime(2024, 1, 1, tzinfo=UTC))
    assert e.value.code == "model.signature.certificate_not_yet_valid"
    # The leaf's key also verifies as a key signer (the certificate is then irrelevant).
    assert verify_signature(sig, [KeySigner(public_pem(h.leaf_key))]).signer.kind == "key"


def _leaf_bundle(model: Path, **leaf_kw: Any) -> tuple[bytes, bytes]:
    h = hierarchy(**leaf_kw)
    sig = sign_model(
        model, private_key_pem=private_pem(h.leaf_key), certificate_chain_pem=h.chain_pem
    )
    return sig, h.root_pem


@pytest.mark.parametrize(
    ("leaf_kw", "code"),
    [
        ({"key_usage": "no_digital_signature"}, "model.signature.certificate_usage"),
        ({"code_signing": False}, "model.signature.certificate_usage"),
        ({"key_usage": None, "code_signing": None}, "model.signature.certificate_usage"),
    ],
)
def test_leaf_profile_refused(model: Path, leaf_kw: dict[str, Any], code: str) -> None:
    sig, root = _leaf_bundle(model, **leaf_kw)
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(sig, [CertificateSigner(root)], at=INSIDE)
    assert e.value.code == code


def test_issuer_without_ca_flag_refused(model: Path) -> None:
    root_key = rsa.generate_private_key(65537, 2048)
    root = make_cert("root", root_key, None, root_key, ca=True)
    mid_key = rsa.generate_private_key(65537, 2048)
    mid = make_cert("not-a-ca", mid_key, root, root_key, ca=False)  # signs, but is no CA
    leaf_key = ec_key()
    leaf = make_cert("leaf", leaf_key, mid, mid_key, ca=False)
    sig = sign_model(
        model,
        private_key_pem=private_pem(leaf_key),
        certificate_chain_pem=cert_pem(leaf) + cert_pem(mid),
    )
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(sig, [CertificateSigner(cert_pem(root))], at=INSIDE)
    assert e.value.code == "model.signature.chain_invalid"


def test_rsa_leaf_refused(model: Path) -> None:
    # OMS signs with ECDSA only; an RSA signing certificate cannot produce a valid bundle.
    h = hierarchy()
    rsa_key = rsa.generate_private_key(65537, 2048)
    leaf = make_cert("rsa-leaf", rsa_key, h.intermediate, h.int_key, ca=False)
    k = ec_key()
    sig = json.loads(sign_model(model, private_key_pem=private_pem(k)))
    sig["verificationMaterial"] = {
        "x509CertificateChain": {
            "certificates": [
                {"rawBytes": base64.b64encode(c.public_bytes(_DER)).decode()}
                for c in (leaf, h.intermediate)
            ]
        }
    }
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(json.dumps(sig).encode(), [CertificateSigner(h.root_pem)], at=INSIDE)
    assert e.value.code == "model.signature.unsupported_key"


from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

_DER = Encoding.DER


def test_sign_refuses_mismatched_chain_and_bad_keys(model: Path) -> None:
    h = hierarchy()
    with pytest.raises(UsageError) as e:
        sign_model(model, private_key_pem=private_pem(ec_key()), certificate_chain_pem=h.chain_pem)
    assert e.value.code == "model.signer.invalid"
    with pytest.raises(UsageError) as e:
        sign_model(model, private_key_pem=private_pem(rsa.generate_private_key(65537, 2048)))
    assert e.value.code == "model.signature.unsupported_key"
    with pytest.raises(UsageError) as e:
        sign_model(model, private_key_pem=b"-----BEGIN PRIVATE KEY-----\nsecretsecret\n")
    assert e.value.code == "model.signer.invalid" and "secret" not in e.value.message
    with pytest.raises(UsageError) as e:
        sign_model(model, private_key_pem=private_pem(ec.generate_private_key(ec.SECP256K1())))
    assert e.value.code == "model.signature.unsupported_key"


# -- malformed bundles: a table of edit → code ------------------------------------------------


@pytest.fixture
def signed(model: Path) -> tuple[dict[str, Any], KeySigner, ec.EllipticCurvePrivateKey]:
    k = ec_key()
    return (
        json.loads(sign_model(model, private_key_pem=private_pem(k))),
        KeySigner(public_pem(k)),
        k,
    )


def _resign(
    b: dict[str, Any], k: ec.EllipticCurvePrivateKey, payload: bytes, ptype: str | None = None
) -> None:
    t = ptype or B.IN_TOTO_PAYLOAD_TYPE
    b["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    b["dsseEnvelope"]["payloadType"] = t
    b["dsseEnvelope"]["signatures"] = [
        {"sig": base64.b64encode(k.sign(B.pae(t, payload), ec.ECDSA(hashes.SHA256()))).decode()}
    ]


def _statement(b: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))  # type: ignore[no-any-return]


Edit = Callable[[dict[str, Any], ec.EllipticCurvePrivateKey], Any]


def _restate(f: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
        st = _statement(b)
        f(st)
        _resign(b, k, json.dumps(st).encode())

    return edit


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value

    return f


def _subject_digest(st: dict[str, Any]) -> None:
    st["subject"][0]["digest"]["sha256"] = "00" * 32


def _two_subjects(st: dict[str, Any]) -> None:
    st["subject"].append(st["subject"][0])


def _drop_resource(st: dict[str, Any]) -> None:
    # Remove a resource but keep the old root digest: the subject no longer matches.
    st["predicate"]["resources"].pop()


def _bad_resource_name(st: dict[str, Any]) -> None:
    st["predicate"]["resources"][0]["name"] = "../etc/passwd"


def _unknown_serialization(st: dict[str, Any]) -> None:
    st["predicate"]["serialization"]["follow_everything"] = True


def _two_sigs(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    b["dsseEnvelope"]["signatures"] *= 2


def _payload_type(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    _resign(b, k, base64.b64decode(b["dsseEnvelope"]["payload"]), "application/json")


def _duplicate_in_payload(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    raw = base64.b64decode(b["dsseEnvelope"]["payload"])
    raw = raw.replace(b'"predicateType"', b'"predicateType": "x", "predicateType"', 1)
    _resign(b, k, raw)


def _media(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    b["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.4+json"


def _legacy_media(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    b["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"


def _message_signature(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    b["messageSignature"] = {"signature": "AA=="}


def _two_materials(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    b["verificationMaterial"]["certificate"] = {"rawBytes": "AA=="}


def _not_base64(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    b["dsseEnvelope"]["payload"] = "!!!not base64!!!"


def _not_json_payload(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    _resign(b, k, b"\xff\xfe not json")


def _nan_payload(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    st = json.dumps(_statement(b)).replace('"allow_symlinks": false', '"allow_symlinks": NaN')
    _resign(b, k, st.encode())


def _deep_payload(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    st = _statement(b)
    st["predicate"]["extension"] = json.loads("[" * 40 + "]" * 40)
    _resign(b, k, json.dumps(st).encode())


def _very_deep_payload(b: dict[str, Any], k: ec.EllipticCurvePrivateKey) -> None:
    raw = json.dumps(_statement(b))[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    _resign(b, k, raw.encode())


MALFORMED: list[tuple[str, Edit, str]] = [
    ("subject digest", _restate(_subject_digest), "model.signature.subject_mismatch"),
    ("resource dropped", _restate(_drop_resource), "model.signature.subject_mismatch"),
    ("two subjects", _restate(_two_subjects), "model.signature.statement_invalid"),
    (
        "statement type",
        _restate(_set(["_type"], "https://in-toto.io/Statement/v0.1")),
        "model.signature.statement_invalid",
    ),
    (
        "predicate type",
        _restate(_set(["predicateType"], "https://slsa.dev/provenance/v1")),
        "model.signature.predicate_type",
    ),
    (
        "legacy predicate",
        _restate(_set(["predicateType"], B.PREDICATE_TYPE_LEGACY)),
        "model.signature.legacy_format",
    ),
    ("resource name escapes", _restate(_bad_resource_name), "model.signature.statement_invalid"),
    (
        "unknown serialization field",
        _restate(_unknown_serialization),
        "model.signature.statement_invalid",
    ),
    ("two signatures", _two_sigs, "model.signature.malformed"),
    ("payload type", _payload_type, "model.signature.payload_type"),
    ("duplicate key in payload", _duplicate_in_payload, "model.signature.duplicate_key"),
    ("NaN in payload", _nan_payload, "model.signature.malformed"),
    ("payload not JSON", _not_json_payload, "model.signature.malformed"),
    ("payload nested 40 deep", _deep_payload, "model.signature.too_deep"),
    ("payload nested 200000 deep", _very_deep_payload, "model.signature.too_deep"),
    ("unknown media type", _media, "model.signature.unsupported_bundle"),
    ("bundle v0.2 without allow_legacy", _legacy_media, "model.signature.legacy_format"),
    ("message signature bundle", _message_signature, "model.signature.unsupported_bundle"),
    ("two verification materials", _two_materials, "model.signature.malformed"),
    ("payload not base64", _not_base64, "model.signature.malformed"),
]


@pytest.mark.parametrize(("what", "edit", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bundle(
    signed: tuple[dict[str, Any], KeySigner, ec.EllipticCurvePrivateKey],
    what: str,
    edit: Edit,
    code: str,
) -> None:
    b, signer, k = signed
    edit(b, k)
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(json.dumps(b).encode(), [signer])
    assert e.value.code == code, e.value.message


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "model.signature.malformed"),
        (b"[]", "model.signature.malformed"),
        (b"\xff", "model.signature.malformed"),
        (b'{"mediaType": 1}', "model.signature.malformed"),
        (b'{"a": 1, "a": 2}', "model.signature.duplicate_key"),
        (b"[" * 100_000 + b"]" * 100_000, "model.signature.too_deep"),
        (b'{"a": ' * 50 + b"1" + b"}" * 50, "model.signature.too_deep"),
        (b'{"x": "' + b"a" * (B.MAX_BUNDLE_LEN + 1) + b'"}', "model.signature.too_large"),
        (
            b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}',
            "model.signature.malformed",
        ),
    ],
    ids=[
        "empty",
        "array",
        "not utf-8",
        "wrong type",
        "duplicate",
        "deep",
        "deep objects",
        "oversized",
        "no material",
    ],
)
def test_hostile_bundle_bytes(data: bytes, code: str) -> None:
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(data, [KeySigner(public_pem(ec_key()))])
    assert e.value.code == code


def test_truncated_bundles_never_crash(signed: tuple[dict[str, Any], KeySigner, Any]) -> None:
    raw = json.dumps(signed[0]).encode()
    for n in range(0, len(raw), 7):
        with pytest.raises(ModelSignatureError):
            verify_signature(raw[:n], [signed[1]])


def test_no_signers() -> None:
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(b"{}", [])
    assert e.value.code == "model.signature.no_signers"


# -- legacy encodings ----------------------------------------------------------------------


def test_legacy_pae_only_with_switch(signed: tuple[dict[str, Any], KeySigner, Any]) -> None:
    b, signer, k = signed
    payload = base64.b64decode(b["dsseEnvelope"]["payload"])
    # What model_signing v0.2 signed (the bug its verifier still accepts), with SHA-256.
    legacy = B.pae_legacy(B.IN_TOTO_PAYLOAD_TYPE, payload)
    b["dsseEnvelope"]["signatures"] = [
        {"sig": base64.b64encode(k.sign(legacy, ec.ECDSA(hashes.SHA256()))).decode()}
    ]
    raw = json.dumps(b).encode()
    with pytest.raises(ModelSignatureError) as e:
        verify_signature(raw, [signer])
    assert e.value.code == "model.signature.legacy_encoding"
    v = verify_signature(raw, [signer], allow_legacy=True)
    assert v.legacy and v.claims()["legacy"] is True


def test_legacy_predicate_only_with_switch(model: Path) -> None:
    k = ec_key()
    b = json.loads(sign_model(model, private_key_pem=private_pem(k)))
    st = _statement(b)
    # model_signing v0.2's "Digests/v0.1": one subject per file, no root digest.
    legacy = {
        "_type": B.STATEMENT_TYPE_V1,
        "subject": [
            {"name": r["name"], "digest": {"sha256": r["digest"]}}
            for r in st["predicate"]["resources"]
        ],
        "predicateType": B.PREDICATE_TYPE_LEGACY,
        "predicate": {},
    }
    _resign(b, k, json.dumps(legacy).encode())
    raw = json.dumps(b).encode()
    with pytest.raises(ModelSignatureError) as e:
        verify_model(model, raw, [KeySigner(public_pem(k))])
    assert e.value.code == "model.signature.legacy_format"
    v = verify_model(model, raw, [KeySigner(public_pem(k))], allow_legacy=True)
    assert v.format_version == "0.2" and v.legacy and v.files == 3


# -- the policy form -----------------------------------------------------------------------


def test_signer_dict_round_trip() -> None:
    k = ec_key()
    ks = signer_from_dict({"public_key": public_pem(k).decode()})
    assert isinstance(ks, KeySigner) and signer_from_dict(ks.to_dict()) == ks
    h = hierarchy()
    cs = signer_from_dict({"ca": h.root_pem.decode()})
    assert isinstance(cs, CertificateSigner) and signer_from_dict(cs.to_dict()) == cs
    ss = signer_from_dict({"identity": "a@example.com", "issuer": "https://issuer.example"})
    assert isinstance(ss, SigstoreSigner) and ss.embedded_root
    assert ss.to_dict() == {"identity": "a@example.com", "issuer": "https://issuer.example"}
    assert signer_from_dict(ss.to_dict()) == ss


@pytest.mark.parametrize(
    ("d", "code"),
    [
        ([], "model.signer.invalid"),
        ({}, "model.signer.invalid"),
        ({"public_key": 1}, "model.signer.invalid"),
        ({"public_key": "not a key"}, "model.signer.invalid"),
        ({"public_key": "x", "ca": "y"}, "model.signer.invalid"),
        (
            {"ca": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "model.signer.invalid",
        ),
        ({"identity": "", "issuer": "https://x"}, "model.signer.invalid"),
        ({"identity": " a@b ", "issuer": "https://x"}, "model.signer.invalid"),
        (
            {"identity": "a@b", "issuer": "https://x", "trust_root": "{}"},
            "model.signature.trust_root_invalid",
        ),
        (
            {"identity": "a@b", "issuer": "https://x", "trust_root": '{"a":1,"a":1}'},
            "model.signature.trust_root_invalid",
        ),
        ({"identity": "a@b", "issuer": "https://x", "extra": 1}, "model.signer.invalid"),
    ],
)
def test_signer_dict_refused(d: Any, code: str) -> None:
    with pytest.raises(UsageError) as e:
        signer_from_dict(d)
    assert e.value.code == code


def test_rsa_public_key_signer_refused() -> None:
    with pytest.raises(UsageError) as e:
        KeySigner(public_pem(rsa.generate_private_key(65537, 2048)))
    assert e.value.code == "model.signature.unsupported_key"


def test_mutated_bundles_fail_with_a_code_never_a_crash(
    signed: tuple[dict[str, Any], KeySigner, Any],
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    raw = json.dumps(signed[0]).encode()
    signer = signed[1]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1, max_size=4
        )
    )
    def run(flips: list[tuple[int, int]]) -> None:
        data = bytearray(raw)
        for i, v in flips:
            data[i] = v
        try:
            verify_signature(bytes(data), [signer])
        except ModelSignatureError as e:
            assert e.code.startswith("model.signature.")
        # A flip inside whitespace or a JSON-irrelevant spot may still verify: that is fine,
        # the signed bytes are unchanged.

    run()


def test_signers_equal_by_key_not_by_text() -> None:
    k = ec_key()
    pem = public_pem(k)
    assert KeySigner(pem) == KeySigner(b"certtool says hello\n" + pem.replace(b"\n", b"\r\n"))
    assert KeySigner(pem) != KeySigner(public_pem(ec_key()))
    h = hierarchy()
    assert CertificateSigner(h.root_pem) == CertificateSigner(b"# root\n" + h.root_pem)
