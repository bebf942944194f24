"""The release gate end to end over gRPC: keys only for registered, signed models (OMS v1.0).

Software TPM nodes; models signed in the test with ``sealgate.oms.sign_model`` (keys made
here, never committed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sealgate._proto import admin_pb2
from sealgate.broker.audit import decode_entry
from sealgate.broker.models import bound_key
from sealgate.cli import main
from sealgate.modelfile import ModelFileError, decrypt_stream, encrypt_stream
from sealgate.node.agent import NodeAgent, error_code
from sealgate.oms.sign import sign_model
from sealgate.service.auth import mint_operator_token
from sealgate.testing.softnode import SoftwareTpm

from tests.service.conftest import TPM_POLICY, Env

KEY = b"K" * 32


def _keypair() -> tuple[bytes, bytes]:
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return priv, pub


def _model(d: Path, weights: bytes = b"weights " * 1000) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text('{"layers": 2}')
    (d / "sub").mkdir()
    (d / "sub" / "weights.bin").write_bytes(weights)
    return d


def _policy(*pubs: bytes, **model: Any) -> dict[str, Any]:
    return {
        **TPM_POLICY,
        "model": {
            "require_signature": True,
            "signers": [{"public_key": p.decode()} for p in pubs],
            **model,
        },
    }


def _register(env: Env, bundle: bytes, key_id: str = "llama", version: int = 0) -> Any:
    return env.admin.RegisterModel(
        admin_pb2.RegisterModelRequest(key_id=key_id, key_version=version, signature=bundle),
        metadata=env.md,
    )


def _rpc_code(e: grpc.RpcError) -> str:
    return error_code(e)


def _denials(res: Any) -> dict[str, list[str]]:
    return {d.key_id: [f.code for f in d.failures] for d in res.denied}


def _events(env: Env, kind: str) -> list[dict[str, Any]]:
    out = []
    for r in env.server.core.st.list_audit(limit=100000):
        e = decode_entry(r.entry)
        if e["event"] == kind:
            out.append(e)
    return out


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, bytes, bytes, bytes]:
    """A model directory, its model.sig bundle, and the signer's (private, public) PEM."""
    priv, pub = _keypair()
    model = _model(tmp_path / "model")
    bundle = sign_model(model, private_key_pem=priv)
    return model, bundle, priv, pub


def _node(env: Env, name: str = "node-a") -> tuple[NodeAgent, SoftwareTpm]:
    tpm = SoftwareTpm(env.ca)
    return NodeAgent(env.channel, name, tpm), tpm


def test_signed_model_key_granted_bound_and_decrypts(
    env: Env, signed: tuple[Path, bytes, bytes, bytes], tmp_path: Path
) -> None:
    model, bundle, _priv, pub = signed
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", _policy(pub))
    # Required but not registered: denied with the reason named.
    res = agent.attest(["llama"])
    assert not res.keys and _denials(res) == {"llama": ["policy.model.not_registered"]}

    reg = _register(env, bundle)
    root = bytes(reg.root_digest)
    assert reg.created and reg.key_version == 1 and len(root) == 32
    signer = json.loads(reg.signer_json)
    assert signer["kind"] == "key" and signer["key_fingerprint"]
    # The same model again changes nothing.
    assert not _register(env, bundle).created
    listed = env.admin.ListModels(admin_pb2.ListModelsRequest(), metadata=env.md).models
    assert [(m.key_id, m.key_version, bytes(m.root_digest)) for m in listed] == [("llama", 1, root)]

    res = agent.attest(["llama"])
    assert not res.denied
    version, released = res.keys["llama"]
    # What leaves the broker is the model-bound key, never the stored one.
    assert version == 1 and released == bound_key(KEY, "llama", 1, root) != KEY
    assert res.models == {"llama": root}
    # The EAR token and the audit entries name the model and its signer.
    claims = jwt.decode(res.token, options={"verify_signature": False})
    model_claim = claims["submods"]["tpm"]["sealgate.models"]["llama"]
    assert model_claim == {"version": 1, "root_digest": root.hex(), "signer": signer}
    decided = _events(env, "attest.decided")[-1]["details"]
    assert decided["models"]["llama"]["root_digest"] == root.hex()
    assert decided["models"]["llama"]["signer"] == signer
    registered = _events(env, "admin.model.registered")
    assert len(registered) == 1 and registered[0]["details"]["root_digest"] == root.hex()
    again = agent.refetch(res.token, ["llama"])
    assert again.keys["llama"] == (1, released)
    released_entry = _events(env, "key.released")[-1]["details"]
    assert released_entry["models"]["llama"]["signer"] == signer

    # The operator encrypts the model with its copy of the key and the signature; the node
    # decrypts with the released key and checks the files against the signed manifest.
    (tmp_path / "k.hex").write_text(KEY.hex())
    sig = tmp_path / "model.sig"
    sig.write_bytes(bundle)
    enc, out = tmp_path / "enc", tmp_path / "plain"
    assert (
        main(
            [
                "model",
                "encrypt",
                "--key-file",
                str(tmp_path / "k.hex"),
                "--key-id",
                "llama",
                "--key-version",
                "1",
                "--model-signature",
                str(sig),
                "--in",
                str(model),
                "--out",
                str(enc),
            ]
        )
        == 0
    )
    assert (enc / "sub" / "weights.bin").read_bytes()[:8] == b"SGMODEL\x01"
    (tmp_path / "released.hex").write_text(released.hex())
    assert (
        main(
            [
                "model",
                "decrypt",
                "--key-file",
                str(tmp_path / "released.hex"),
                "--model-signature",
                str(sig),
                "--in",
                str(enc),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "sub" / "weights.bin").read_bytes() == (
        model / "sub" / "weights.bin"
    ).read_bytes()
    # The stored key itself does not open them (a leaked unbound key is not this model's).
    with pytest.raises(ModelFileError) as fe:
        decrypt_stream(io.BytesIO((enc / "config.json").read_bytes()), io.BytesIO(), lambda *_: KEY)
    assert fe.value.code == "model.file.chunk_invalid"


def test_released_key_cannot_decrypt_another_model(
    env: Env, signed: tuple[Path, bytes, bytes, bytes], tmp_path: Path
) -> None:
    _model_dir, bundle, priv, pub = signed
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", _policy(pub))
    root = bytes(_register(env, bundle).root_digest)
    released = agent.attest(["llama"]).keys["llama"][1]
    # Another model, signed by the same allowed signer, encrypted by the operator for it.
    other = _model(tmp_path / "other", b"other weights")
    other_bundle = sign_model(other, private_key_pem=priv)
    other_root = bytes.fromhex(json.loads(_verify_claims(other, other_bundle, pub))["root_digest"])
    assert other_root != root
    buf = io.BytesIO()
    encrypt_stream(
        io.BytesIO(b"secret tensor"), buf, bound_key(KEY, "llama", 1, other_root), "llama", 1,
        root_digest=other_root,
    )  # fmt: skip
    with pytest.raises(ModelFileError) as e:
        decrypt_stream(io.BytesIO(buf.getvalue()), io.BytesIO(), lambda *_: released)
    assert e.value.code == "model.file.chunk_invalid"
    with pytest.raises(ModelFileError) as e:
        decrypt_stream(io.BytesIO(buf.getvalue()), io.BytesIO(), lambda *_: released, root)
    assert e.value.code == "model.file.model_mismatch"
    # A file whose header was edited to name the released model's digest fails authentication.
    forged = buf.getvalue().replace(other_root, root)
    with pytest.raises(ModelFileError) as e:
        decrypt_stream(io.BytesIO(forged), io.BytesIO(), lambda *_: released, root)
    assert e.value.code == "model.file.chunk_invalid"


def _verify_claims(model: Path, bundle: bytes, pub: bytes) -> str:
    from sealgate.oms.signers import KeySigner
    from sealgate.oms.verify import verify_model

    return json.dumps(verify_model(model, bundle, [KeySigner(pub)]).claims())


def test_wrong_signer_refused_at_registration_and_audited(
    env: Env, signed: tuple[Path, bytes, bytes, bytes]
) -> None:
    _model_dir, bundle, _priv, _pub = signed
    _other_priv, other_pub = _keypair()
    env.key("llama", KEY)
    env.policy("llama", _policy(other_pub))
    with pytest.raises(grpc.RpcError) as e:
        _register(env, bundle)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _rpc_code(e.value).startswith("model.signature.")
    assert env.admin.ListModels(admin_pb2.ListModelsRequest(), metadata=env.md).models == []
    refused = _events(env, "admin.model.refused")
    assert refused and refused[0]["details"]["key_id"] == "llama"
    # Garbage is refused the same way, with a code, never a traceback.
    for junk in (b"{", b"[]", b"x" * 100, json.dumps({"mediaType": 1}).encode()):
        with pytest.raises(grpc.RpcError) as e:
            _register(env, junk)
        assert _rpc_code(e.value).startswith("model.signature.")


def test_registration_needs_a_model_policy_a_key_and_one_model_per_version(
    env: Env, signed: tuple[Path, bytes, bytes, bytes], tmp_path: Path
) -> None:
    _model_dir, bundle, priv, pub = signed
    with pytest.raises(grpc.RpcError) as e:
        _register(env, bundle)
    assert _rpc_code(e.value) == "admin.model.no_policy"
    env.policy("llama", TPM_POLICY)
    with pytest.raises(grpc.RpcError) as e:
        _register(env, bundle)
    assert _rpc_code(e.value) == "admin.model.not_required"
    env.policy("llama", _policy(pub))
    with pytest.raises(grpc.RpcError) as e:
        _register(env, bundle)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert _rpc_code(e.value) == "broker.key.not_found"
    env.key("llama", KEY)
    with pytest.raises(grpc.RpcError) as e:
        _register(env, bundle, version=7)
    assert _rpc_code(e.value) == "broker.key.not_found"
    _register(env, bundle)
    other = sign_model(_model(tmp_path / "other", b"v2 weights"), private_key_pem=priv)
    with pytest.raises(grpc.RpcError) as e:
        _register(env, other)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert _rpc_code(e.value) == "admin.model.version_bound"
    # A new model goes with a new key version.
    env.admin.RotateModelKey(admin_pb2.RotateModelKeyRequest(key_id="llama"), metadata=env.md)
    assert _register(env, other).key_version == 2
    with pytest.raises(grpc.RpcError) as e:
        _register(env, b"")
    assert _rpc_code(e.value) == "admin.model.no_signature"


def test_signer_removed_from_policy_after_registration_denies_release(
    env: Env, signed: tuple[Path, bytes, bytes, bytes]
) -> None:
    _model_dir, bundle, _priv, pub = signed
    _p2, pub2 = _keypair()
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", _policy(pub, pub2))
    _register(env, bundle)
    res = agent.attest(["llama"])
    assert "llama" in res.keys
    env.policy("llama", _policy(pub2))  # revoke the signer by editing the policy
    again = agent.refetch(res.token, ["llama"])
    assert not again.keys and _denials(again) == {"llama": ["policy.model.signer_not_allowed"]}
    fresh = agent.attest(["llama"])
    assert _denials(fresh) == {"llama": ["policy.model.signer_not_allowed"]}
    env.policy("llama", _policy(pub))  # and allow it again
    assert "llama" in agent.attest(["llama"]).keys


def test_token_replayed_for_another_key_version_is_denied(
    env: Env, signed: tuple[Path, bytes, bytes, bytes], tmp_path: Path
) -> None:
    _model_dir, bundle, priv, pub = signed
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", _policy(pub))
    _register(env, bundle)
    res = agent.attest(["llama"])
    env.admin.RotateModelKey(admin_pb2.RotateModelKeyRequest(key_id="llama"), metadata=env.md)
    # The new version has no model yet: nothing to release.
    assert _denials(agent.refetch(res.token, ["llama"])) == {
        "llama": ["policy.model.not_registered"]
    }
    _register(env, sign_model(_model(tmp_path / "v2", b"v2"), private_key_pem=priv))
    # The token was issued for version 1's model: it does not fetch version 2's key.
    assert _denials(agent.refetch(res.token, ["llama"])) == {
        "llama": ["broker.token.model_changed"]
    }
    fresh = agent.attest(["llama"])
    assert fresh.keys["llama"][0] == 2


def test_register_model_needs_an_admin(env: Env, signed: tuple[Path, bytes, bytes, bytes]) -> None:
    _model_dir, bundle, _priv, pub = signed
    env.key("llama", KEY)
    env.policy("llama", _policy(pub))
    req = admin_pb2.RegisterModelRequest(key_id="llama", signature=bundle)
    with pytest.raises(grpc.RpcError) as e:
        env.admin.RegisterModel(req)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    boot = env.cfg.bootstrap_operator_key.read_bytes()
    for role in ("operator", "auditor"):
        md = (("authorization", f"Bearer {mint_operator_token(boot, 'op', [role])}"),)
        with pytest.raises(grpc.RpcError) as e:
            env.admin.RegisterModel(req, metadata=md)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Auditors may list.
    md = (("authorization", f"Bearer {mint_operator_token(boot, 'aud', ['auditor'])}"),)
    assert env.admin.ListModels(admin_pb2.ListModelsRequest(), metadata=md).models == []


def test_model_policy_is_validated_when_written(env: Env) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"require_signature": True, "signers": []}, "policy.model.no_signers"),
        ({"require_signature": True}, "policy.model.no_signers"),
        ({"require_signature": False, "signers": [{"public_key": "x"}]}, "policy.model.bad_signer"),
        ({"signers": [{"public_key": "not a key"}]}, "policy.model.bad_signer"),
        ({"signers": [{"frobnicate": 1}]}, "policy.model.bad_signer"),
        ({"signers": [], "require": True}, "policy.document.invalid"),
    ]
    for model, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            env.policy("llama", {**TPM_POLICY, "model": model})
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, model
        assert _rpc_code(e.value) == code, model
    _p, pub = _keypair()
    with pytest.raises(grpc.RpcError) as e:
        env.policy(
            "llama",
            {
                **TPM_POLICY,
                "model": {"require_signature": False, "signers": [{"public_key": pub.decode()}]},
            },
        )
    assert _rpc_code(e.value) == "policy.model.invalid"


def _signer_policy(platforms: dict[str, Any], pub: bytes) -> dict[str, Any]:
    return {
        "platforms": platforms,
        "model": {"signers": [{"public_key": pub.decode()}], "attested_binding": True},
    }


@pytest.mark.skipif(
    importlib.util.find_spec("sealgate.snp") is None, reason="SNP platform not built in"
)
def test_snp_host_data_binds_the_model(
    make_env: Callable[..., Env], tmp_path: Path, signed: tuple[Path, bytes, bytes, bytes]
) -> None:
    from sealgate.testing import snp
    from sealgate.testing.softnode import SoftwareSnp

    _model_dir, bundle, _priv, pub = signed
    node = SoftwareSnp()
    env = make_env(collateral_dir=tmp_path / "collateral", **node.write_trust(tmp_path))
    env.key("llama", KEY)
    platforms = {"snp": {"measurement": [snp.ReportFields().measurement.hex()]}}
    env.policy("llama", _signer_policy(platforms, pub))
    root = bytes(_register(env, bundle).root_digest)
    # HOST_DATA zero (the default launch): not bound to the model.
    res = NodeAgent(env.channel, "cvm-1", node).attest(["llama"])
    assert _denials(res) == {"llama": ["policy.model.binding_missing"]}
    bound = SoftwareSnp(dataclasses.replace(snp.ReportFields(), host_data=root))
    res = NodeAgent(env.channel, "cvm-2", bound).attest(["llama"])
    assert res.keys == {"llama": (1, bound_key(KEY, "llama", 1, root))}


def test_tdx_mr_config_id_binds_the_model(
    make_env: Callable[..., Env], tmp_path: Path, signed: tuple[Path, bytes, bytes, bytes]
) -> None:
    from sealgate.testing.softnode import SoftwareTdx

    _model_dir, bundle, _priv, pub = signed
    node = SoftwareTdx()
    roots = tmp_path / "intel-root.pem"
    roots.write_bytes(node.root_pem())
    env = make_env(tdx_roots=[roots], collateral_dir=tmp_path / "collateral")
    env.key("llama", KEY)
    env.policy("llama", _signer_policy({"tdx": {"mr_td": [(b"\x5a" * 48).hex()]}}, pub))
    root = bytes(_register(env, bundle).root_digest)
    res = NodeAgent(env.channel, "td-1", node).attest(["llama"])
    assert _denials(res) == {"llama": ["policy.model.binding_missing"]}
    # The root digest, but not followed by zeros: not this encoding.
    odd = SoftwareTdx(node.intel, mr_config_id=root + b"\x01" * 16)
    assert _denials(NodeAgent(env.channel, "td-2", odd).attest(["llama"])) == {
        "llama": ["policy.model.binding_missing"]
    }
    bound = SoftwareTdx(node.intel, mr_config_id=root + bytes(16))
    res = NodeAgent(env.channel, "td-3", bound).attest(["llama"])
    assert res.keys == {"llama": (1, bound_key(KEY, "llama", 1, root))}


def test_admin_cli_registers_after_checking_the_files_locally(
    env: Env,
    signed: tuple[Path, bytes, bytes, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, bundle, _priv, pub = signed
    env.key("llama", KEY)
    conn = ["--server", f"127.0.0.1:{env.server.port}", "--token", env.token]
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps(TPM_POLICY))
    assert main(["admin", "policy-put", *conn, "llama", str(pol)]) == 0
    assert "does not require a signed model" in capsys.readouterr().err
    pol.write_text(json.dumps(_policy(pub)))
    assert main(["admin", "policy-put", *conn, "llama", str(pol)]) == 0
    assert "does not require" not in capsys.readouterr().err
    sig = tmp_path / "model.sig"
    sig.write_bytes(bundle)
    register = ["admin", "model-register", *conn, "llama", "--signature", str(sig), "--json"]
    # A file that does not match: refused here, nothing registered.
    (model / "config.json").write_text('{"layers": 3}')
    assert main([*register, "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert "model.manifest.digest_mismatch" in err and "config.json" in err
    assert env.admin.ListModels(admin_pb2.ListModelsRequest(), metadata=env.md).models == []
    (model / "config.json").write_text('{"layers": 2}')
    assert main([*register, "--model", str(model)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["key_id"] == "llama" and doc["key_version"] == 1 and doc["created"]
    assert main(["admin", "model-list", *conn, "llama", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert [m["key_id"] for m in listed] == ["llama"]


def test_a_cold_registration_check_runs_in_the_pool_not_on_the_event_loop(
    env: Env, signed: tuple[Path, bytes, bytes, bytes]
) -> None:
    _model_dir, bundle, _priv, pub = signed
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", _policy(pub))
    _register(env, bundle)
    core = env.server.core
    # A new generation: the registration's verdict is not cached yet.
    assert not core.models_warm(["llama"])
    assert core.models_warm(["unknown-key", "bad id!"])
    res = agent.attest(["llama"])
    assert "llama" in res.keys
    assert core.models_warm(["llama"])
    env.policy("llama", _policy(pub))  # any configuration change makes it cold again
    assert not core.models_warm(["llama"])


def test_a_registration_edited_in_the_database_is_refused(
    env: Env, signed: tuple[Path, bytes, bytes, bytes]
) -> None:
    import sqlite3

    _model_dir, bundle, _priv, pub = signed
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", _policy(pub))
    _register(env, bundle)
    # Write access to the database: point the registration at another model's digest.
    db = sqlite3.connect(env.cfg.db_path)
    with db:
        db.execute("UPDATE model_registrations SET root_digest = ?", (b"\x09" * 32,))
    db.close()
    res = agent.attest(["llama"])
    assert not res.keys and _denials(res) == {"llama": ["policy.model.registration_invalid"]}


def test_certificate_signed_model_is_gated_by_its_ca(env: Env, tmp_path: Path) -> None:
    from tests.oms.sigkeys import hierarchy, private_pem

    h, other = hierarchy(), hierarchy()
    model = _model(tmp_path / "model")
    bundle = sign_model(
        model, private_key_pem=private_pem(h.leaf_key), certificate_chain_pem=h.chain_pem
    )
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)

    def ca_policy(root_pem: bytes) -> dict[str, Any]:
        return {**TPM_POLICY, "model": {"signers": [{"ca": root_pem.decode()}]}}

    env.policy("llama", ca_policy(other.root_pem))
    with pytest.raises(grpc.RpcError) as e:
        _register(env, bundle)
    assert _rpc_code(e.value).startswith("model.signature.")
    env.policy("llama", ca_policy(h.root_pem))
    reg = _register(env, bundle)
    signer = json.loads(reg.signer_json)
    assert signer["kind"] == "certificate" and signer["subject"] == "model-signer"
    res = agent.attest(["llama"])
    assert res.keys["llama"][1] == bound_key(KEY, "llama", 1, bytes(reg.root_digest))
    claims = jwt.decode(res.token, options={"verify_signature": False})
    assert claims["submods"]["tpm"]["sealgate.models"]["llama"]["signer"] == signer
    env.policy("llama", ca_policy(other.root_pem))  # the CA is no longer trusted for this key
    assert _denials(agent.refetch(res.token, ["llama"])) == {
        "llama": ["policy.model.signer_not_allowed"]
    }


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "signer"),
    [
        ("v1.0.1-sigstore", "sigstore"),
        ("v1.0.1-elliptic-key", "key"),
    ],
)
def test_published_signatures_gate_a_key(env: Env, tmp_path: Path, name: str, signer: str) -> None:
    """The published OMS vectors (``../shared/vectors/model-signing``, PROVENANCE.md) as
    registered models: Sigstore keyless (identity + issuer + trusted_root.json) and key."""
    from tests.vectors import shared

    vec = shared("model-signing", name)
    base = vec.parent
    if signer == "sigstore":
        spec: dict[str, Any] = {
            "identity": "stefanb@us.ibm.com",
            "issuer": "https://sigstore.verify.ibm.com/oauth2",
            "trust_root": (base / "sigstore" / "trusted_root.json").read_text(),
        }
    else:
        spec = {"public_key": (base / "keys" / "signing-key-pub.pem").read_text()}
    agent, tpm = _node(env)
    env.golden(tpm)
    env.key("llama", KEY)
    env.policy("llama", {**TPM_POLICY, "model": {"signers": [spec]}})
    reg = _register(env, (vec / "model.sig").read_bytes())
    assert json.loads(reg.signer_json)["kind"] == signer
    res = agent.attest(["llama"])
    assert res.keys["llama"][1] == bound_key(KEY, "llama", 1, bytes(reg.root_digest))
    if signer == "sigstore":
        # The same bundle under another identity is not this policy's model.
        env.policy("llama", {**TPM_POLICY, "model": {"signers": [{**spec, "identity": "x@y.z"}]}})
        assert _denials(agent.attest(["llama"])) == {"llama": ["policy.model.signer_not_allowed"]}
