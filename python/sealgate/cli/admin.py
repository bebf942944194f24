"""``sealgate admin ...``: operator commands over the Admin service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from sealgate.cli.client import add_client_args, channel, read_key_file, rpc_error
from sealgate.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("admin", help="operator commands (reference values, policies, keys, ...)")
    asub = p.add_subparsers(dest="admin_command", required=True, parser_class=type(p))

    t = asub.add_parser("token", help="mint a short-lived bearer token from a local operator key")
    t.add_argument("--key", required=True, help="operator private key (PEM)")
    t.add_argument(
        "--role",
        action="append",
        choices=["admin", "operator", "auditor"],
        help="role(s) to claim (default admin)",
    )
    t.add_argument("--subject", default=os.environ.get("USER", "operator"))
    t.add_argument("--ttl", type=int, default=600)
    t.set_defaults(handler=_admin_token)

    def cmd(name: str, help_: str, fn: Callable[[argparse.Namespace, Any, Any], Any]) -> Any:
        c = asub.add_parser(name, help=help_)
        add_client_args(c)
        c.add_argument(
            "--token",
            default=os.environ.get("SEALGATE_TOKEN"),
            help="bearer token (env SEALGATE_TOKEN)",
        )
        c.add_argument("--operator-key", help="mint a token from this key instead of --token")
        c.add_argument("--role", default="admin", help="role to claim with --operator-key")
        c.add_argument("--json", action="store_true", help="print JSON")
        c.set_defaults(handler=lambda a: _admin_call(a, fn))
        return c

    c = cmd("refval-add", "add a reference value", _refval_add)
    c.add_argument("--platform", required=True, choices=["tpm", "snp", "tdx"])
    c.add_argument("--set", dest="set_name", required=True)
    c.add_argument("--name", required=True, help="tpm: sha256:7; snp: measurement; tdx: mr_td")
    c.add_argument("--value", required=True, help="hex")
    c.add_argument("--description", default="")
    c = cmd("refval-list", "list reference values", _refval_list)
    c.add_argument("--platform", choices=["tpm", "snp", "tdx"])
    c.add_argument("--set", dest="set_name")
    c = cmd("refval-remove", "remove a reference value", _refval_remove)
    c.add_argument("id")
    c = cmd("refval-import", "bulk-add reference values from JSON/YAML", _refval_import)
    c.add_argument("file")
    c = cmd("policy-put", "set the policy of a model key", _policy_put)
    c.add_argument("key_id")
    c.add_argument("file", help="policy JSON/YAML")
    c = cmd("policy-get", "show a policy", _policy_get)
    c.add_argument("key_id")
    cmd("policy-list", "list policies", _policy_list)
    c = cmd("policy-delete", "delete a policy", _policy_delete)
    c.add_argument("key_id")
    c = cmd("key-import", "import a 32-byte model key", _key_import)
    c.add_argument("key_id")
    c.add_argument("file", help="raw 32 bytes or 64 hex characters")
    c.add_argument("--description", default="")
    c = cmd("key-generate", "generate a model key in the service", _key_generate)
    c.add_argument("key_id")
    c.add_argument("--description", default="")
    c = cmd("key-rotate", "new version of a model key", _key_rotate)
    c.add_argument("key_id")
    c.add_argument("--from-file", help="import this material instead of generating")
    cmd("key-list", "list model keys (metadata only)", _key_list)
    c = cmd(
        "model-register",
        "bind a signed model (OMS model.sig) to a key version; the server verifies it against "
        "the key's policy signers",
        _model_register,
    )
    c.add_argument("key_id")
    c.add_argument("--signature", required=True, help="the model.sig bundle")
    c.add_argument(
        "--model",
        help="the model directory/file: verify its files against the signature (and the "
        "policy's signers) here first, and refuse to register a signature they do not match",
    )
    c.add_argument("--version", type=int, default=0, help="key version (default: current)")
    c = cmd("model-list", "list registered models", _model_list)
    c.add_argument("key_id", nargs="?", default="")
    cmd("node-list", "list enrolled nodes", _node_list)
    c = cmd("node-revoke", "revoke a node and its TPM (EK, AK)", _node_revoke)
    c.add_argument("node_id")
    c.add_argument("--reason", default="")
    c = cmd("node-forget", "unbind a node id from its TPM (another may enroll)", _node_forget)
    c.add_argument("node_id")
    c = cmd("revoke", "revoke a hardware identity (any platform)", _identity_revoke)
    c.add_argument("--platform", required=True, choices=["tpm", "snp", "tdx"])
    c.add_argument("identity", help="KIND:HEX, e.g. ek:<sha256>, chip_id:<hex>, ppid:<hex>")
    c.add_argument("--reason", default="")
    c = cmd("revocation-list", "list revoked identities", _revocation_list)
    c.add_argument("--all", action="store_true", help="include lifted revocations")
    c = cmd("revocation-lift", "lift a revocation (admin role)", _revocation_lift)
    c.add_argument("--platform", required=True, choices=["tpm", "snp", "tdx"])
    c.add_argument("identity")
    c = cmd("audit-list", "list audit entries", _audit_list)
    c.add_argument("--after", type=int, default=0)
    c.add_argument("--limit", type=int, default=100)
    cmd("audit-verify", "verify the audit hash chain", _audit_verify)
    cmd("signing-key-rotate", "new result-token signing key", _signing_key_rotate)


def _admin_token(args: argparse.Namespace) -> int:
    from sealgate.cli import read_file
    from sealgate.service.auth import mint_operator_token

    tok = mint_operator_token(
        read_file(args.key, "operator key"), args.subject, args.role or ["admin"], ttl=args.ttl
    )
    print(tok)
    return 0


def _admin_call(args: argparse.Namespace, fn: Callable[[argparse.Namespace, Any, Any], Any]) -> int:
    import grpc
    from google.protobuf import json_format

    from sealgate._proto import admin_pb2_grpc
    from sealgate.cli import read_file
    from sealgate.service.auth import mint_operator_token

    token = args.token
    if args.operator_key:
        token = mint_operator_token(
            read_file(args.operator_key, "operator key"), "cli", [args.role], ttl=300
        )
    if not token:
        raise UsageError("cli.admin.no_token", "give --token, SEALGATE_TOKEN or --operator-key")
    md = (("authorization", f"Bearer {token}"),)
    with channel(args) as ch:
        stub = admin_pb2_grpc.AdminStub(ch)
        try:
            resp = fn(args, stub, md)
        except grpc.RpcError as e:
            return rpc_error(e)
    doc = json_format.MessageToDict(
        resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        _human(doc)
    if args.admin_command == "audit-verify":
        return 0 if doc.get("ok") else 1
    return 0


def _human(doc: dict[str, Any], indent: str = "") -> None:
    if not doc:
        print(f"{indent}(empty)")
    for k, v in doc.items():
        if isinstance(v, list):
            print(f"{indent}{k}: {len(v)}")
            for item in v:
                if isinstance(item, dict):
                    print(f"{indent}  - " + ", ".join(f"{a}={b}" for a, b in item.items()))
                else:
                    print(f"{indent}  - {item}")
        else:
            print(f"{indent}{k}: {v}")


def _refval_add(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.protocol import PLATFORM_ENUM

    v = admin_pb2.ReferenceValue(
        platform=PLATFORM_ENUM[a.platform],
        set_name=a.set_name,
        name=a.name,
        value=a.value,
        description=a.description,
    )
    return stub.AddReferenceValue(
        admin_pb2.AddReferenceValueRequest(value=v), metadata=md, timeout=a.timeout
    )


def _refval_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.protocol import PLATFORM_ENUM

    req = admin_pb2.ListReferenceValuesRequest(set_name=a.set_name or "")
    if a.platform:
        req.platform = PLATFORM_ENUM[a.platform]
    return stub.ListReferenceValues(req, metadata=md, timeout=a.timeout)


def _refval_remove(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.RemoveReferenceValue(
        admin_pb2.RemoveReferenceValueRequest(id=a.id), metadata=md, timeout=a.timeout
    )


def _refval_import(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.cli import read_text

    doc = read_text(a.file, "reference values", limit=16 << 20)
    return stub.BulkAddReferenceValues(
        admin_pb2.BulkAddReferenceValuesRequest(document=doc), metadata=md, timeout=a.timeout
    )


def _policy_put(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.cli import read_text

    text = read_text(a.file, "policy", limit=1 << 20)
    rec = stub.PutPolicy(
        admin_pb2.PutPolicyRequest(key_id=a.key_id, json=text), metadata=md, timeout=a.timeout
    )
    if "model" not in json.loads(rec.json):
        # Allowed (it is how every policy worked before models were signed), but a careless
        # operator should see it: this key is released whatever model it decrypts.
        print(
            f"sealgate: note: the policy of {a.key_id} does not require a signed model "
            "(no model section): its key is released for any model",
            file=sys.stderr,
        )
    return rec


def _model_register(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.node.model import read_signature

    bundle = read_signature(a.signature)
    if a.model:
        _check_model_locally(a, stub, md, bundle)
    return stub.RegisterModel(
        admin_pb2.RegisterModelRequest(
            key_id=a.key_id, key_version=max(a.version, 0), signature=bundle
        ),
        metadata=md,
        timeout=a.timeout,
    )


def _check_model_locally(a: argparse.Namespace, stub: Any, md: Any, bundle: bytes) -> None:
    """``--model``: the files must match the signed manifest, under the signers the key's
    policy names now (read from the server), before the signature is registered. Raises
    ModelManifestError / ModelSignatureError (exit 1) naming what does not match."""
    from sealgate._proto import admin_pb2
    from sealgate.appraise.policy import parse_policy
    from sealgate.oms.verify import verify_model

    pol = stub.GetPolicy(
        admin_pb2.GetPolicyRequest(key_id=a.key_id), metadata=md, timeout=a.timeout
    )
    policy = parse_policy(pol.json)
    if policy.model is None:
        raise UsageError(
            "admin.model.not_required", f"the policy of {a.key_id} has no model section"
        )
    verify_model(a.model, bundle, policy.model.signers)


def _model_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ListModels(
        admin_pb2.ListModelsRequest(key_id=a.key_id), metadata=md, timeout=a.timeout
    )


def _policy_get(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.GetPolicy(
        admin_pb2.GetPolicyRequest(key_id=a.key_id), metadata=md, timeout=a.timeout
    )


def _policy_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ListPolicies(admin_pb2.ListPoliciesRequest(), metadata=md, timeout=a.timeout)


def _policy_delete(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.DeletePolicy(
        admin_pb2.DeletePolicyRequest(key_id=a.key_id), metadata=md, timeout=a.timeout
    )


def _key_import(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ImportModelKey(
        admin_pb2.ImportModelKeyRequest(
            key_id=a.key_id, key=read_key_file(a.file), description=a.description
        ),
        metadata=md,
        timeout=a.timeout,
    )


def _key_generate(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.GenerateModelKey(
        admin_pb2.GenerateModelKeyRequest(key_id=a.key_id, description=a.description),
        metadata=md,
        timeout=a.timeout,
    )


def _key_rotate(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    material = read_key_file(a.from_file) if a.from_file else b""
    return stub.RotateModelKey(
        admin_pb2.RotateModelKeyRequest(key_id=a.key_id, key=material),
        metadata=md,
        timeout=a.timeout,
    )


def _key_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ListModelKeys(admin_pb2.ListModelKeysRequest(), metadata=md, timeout=a.timeout)


def _node_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ListNodes(admin_pb2.ListNodesRequest(), metadata=md, timeout=a.timeout)


def _node_revoke(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.RevokeNode(
        admin_pb2.RevokeNodeRequest(node_id=a.node_id, reason=a.reason),
        metadata=md,
        timeout=a.timeout,
    )


def _node_forget(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ForgetNode(
        admin_pb2.ForgetNodeRequest(node_id=a.node_id), metadata=md, timeout=a.timeout
    )


def _identity_revoke(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.protocol import PLATFORM_ENUM

    req = admin_pb2.RevokeIdentityRequest(
        platform=PLATFORM_ENUM[a.platform], identity=a.identity, reason=a.reason
    )
    return stub.RevokeIdentity(req, metadata=md, timeout=a.timeout)


def _revocation_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ListRevocations(
        admin_pb2.ListRevocationsRequest(include_lifted=a.all), metadata=md, timeout=a.timeout
    )


def _revocation_lift(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2
    from sealgate.protocol import PLATFORM_ENUM

    req = admin_pb2.LiftRevocationRequest(platform=PLATFORM_ENUM[a.platform], identity=a.identity)
    return stub.LiftRevocation(req, metadata=md, timeout=a.timeout)


def _audit_list(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.ListAudit(
        admin_pb2.ListAuditRequest(after_seq=a.after, limit=a.limit), metadata=md, timeout=a.timeout
    )


def _audit_verify(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.VerifyAudit(admin_pb2.VerifyAuditRequest(), metadata=md, timeout=a.timeout)


def _signing_key_rotate(a: argparse.Namespace, stub: Any, md: Any) -> Any:
    from sealgate._proto import admin_pb2

    return stub.RotateSigningKey(
        admin_pb2.RotateSigningKeyRequest(), metadata=md, timeout=a.timeout
    )
