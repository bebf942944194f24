"""``sealgate serve | admin | node | model | audit``: the service and its clients."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealgate.errors import UsageError

if TYPE_CHECKING:
    from sealgate.node.agent import NodeResult

DEFAULT_SERVER = "127.0.0.1:50051"


def register(sub: Any) -> None:
    _register_serve(sub)
    _register_admin(sub)
    _register_node(sub)
    _register_model(sub)
    _register_audit(sub)


# -- shared ------------------------------------------------------------------------------


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        default=os.environ.get("SEALGATE_SERVER", DEFAULT_SERVER),
        help=f"HOST:PORT (default {DEFAULT_SERVER}, env SEALGATE_SERVER)",
    )
    p.add_argument("--tls-ca", help="CA bundle to verify the server (enables TLS)")
    p.add_argument("--tls-cert", help="client certificate for mTLS")
    p.add_argument("--tls-key", help="client key for mTLS")
    p.add_argument("--timeout", type=float, default=30.0)


def _channel(args: argparse.Namespace) -> Any:
    import grpc

    if args.tls_ca:
        from sealgate.cli import read_file

        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(args.tls_ca, "TLS CA"),
            private_key=read_file(args.tls_key, "TLS key") if args.tls_key else None,
            certificate_chain=read_file(args.tls_cert, "TLS cert") if args.tls_cert else None,
        )
        return grpc.secure_channel(args.server, creds)
    return grpc.insecure_channel(args.server)


def _rpc_error(e: Any) -> int:
    from sealgate.cli import EXIT_REJECTED, EXIT_USAGE
    from sealgate.node.agent import error_code

    code = error_code(e)
    details = e.details() if hasattr(e, "details") else str(e)
    print(f"sealgate: {details or code}", file=sys.stderr)
    return EXIT_USAGE if e.code().name == "INVALID_ARGUMENT" else EXIT_REJECTED


# -- serve --------------------------------------------------------------------------------


def _register_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the verifier service (gRPC + HTTP side port)")
    p.add_argument("--config", help="JSON or YAML configuration file")
    p.add_argument("--listen", help="gRPC HOST:PORT (default 127.0.0.1:50051)")
    p.add_argument("--http-listen", help="metrics/JWKS/health HOST:PORT (default 127.0.0.1:9090)")
    p.add_argument("--data-dir", help="state directory (default ./sealgate-data)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to drain on SIGTERM")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from sealgate.service.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(
        args.config,
        listen=args.listen,
        http_listen=args.http_listen,
        data_dir=args.data_dir,
        workers=args.workers,
    )
    if cfg.workers <= 1:
        return _serve_one(cfg, args.grace, 0, reuse_port=False)
    return _serve_many(cfg, args.grace)


def _serve_one(cfg: Any, grace: float, index: int, reuse_port: bool) -> int:
    from sealgate.service.metrics import MetricsShare
    from sealgate.service.server import create_server

    share = MetricsShare(cfg.data_dir / "run", index) if cfg.workers > 1 else None
    srv = create_server(cfg, http=index == 0, reuse_port=reuse_port, share=share)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if index == 0:
        host = cfg.listen.rsplit(":", 1)[0]
        http_host = cfg.http_listen.rsplit(":", 1)[0]
        print(
            f"sealgate: serving gRPC on {host}:{srv.port} "
            f"({'TLS' if cfg.tls else 'plaintext'}, {max(cfg.workers, 1)} process(es)), "
            f"HTTP on {http_host}:{srv.http_port}, data in {cfg.data_dir}, platforms "
            f"{', '.join(srv.core.platforms.available())}",
            flush=True,
        )
        if cfg.bootstrap_operator:
            print(f"sealgate: bootstrap operator key {cfg.bootstrap_operator_key}", flush=True)
    stop.wait()
    if index == 0:
        print("sealgate: draining", flush=True)
    srv.stop(grace=grace)
    if index == 0:
        print("sealgate: stopped", flush=True)
    return 0


def _worker_main(cfg: Any, grace: float, index: int) -> None:
    sys.exit(_serve_one(cfg, grace, index, reuse_port=True))


def _serve_many(cfg: Any, grace: float) -> int:
    """N processes on one port (SO_REUSEPORT). State is initialized here first (schema,
    KEK, token signing key, bootstrap operator key) so workers never race to create it."""
    import multiprocessing

    from sealgate.service.core import Verifier
    from sealgate.service.metrics import MetricsShare
    from sealgate.service.server import ensure_bootstrap_operator
    from sealgate.storage.sqlite import SqliteStorage

    if cfg.listen.endswith(":0"):
        raise UsageError("cli.serve.port_zero", "several workers need a fixed --listen port")
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = SqliteStorage(cfg.db_path)
    Verifier(cfg, st)
    st.close()
    if cfg.bootstrap_operator:
        ensure_bootstrap_operator(cfg)
    MetricsShare.reset(cfg.data_dir / "run")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, args=(cfg, grace, i), daemon=False)
        for i in range(cfg.workers)
    ]
    for p in procs:
        p.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        if any(not p.is_alive() for p in procs):
            print("sealgate: a worker exited; stopping", file=sys.stderr, flush=True)
            break
    for p in procs:
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(grace + 5)
        if p.is_alive():
            p.kill()
            p.join()
    return 0 if all(p.exitcode == 0 for p in procs) else 1


# -- admin --------------------------------------------------------------------------------


def _register_admin(sub: Any) -> None:
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
        _add_client_args(c)
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
    with _channel(args) as ch:
        stub = admin_pb2_grpc.AdminStub(ch)
        try:
            resp = fn(args, stub, md)
        except grpc.RpcError as e:
            return _rpc_error(e)
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
    return stub.PutPolicy(
        admin_pb2.PutPolicyRequest(key_id=a.key_id, json=text), metadata=md, timeout=a.timeout
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


def read_key_file(path: str) -> bytes:
    """32 raw bytes, or 64 hex characters (whitespace ignored); ``-`` reads stdin."""
    from sealgate.cli import read_file

    data = sys.stdin.buffer.read(1024) if path == "-" else read_file(path, "key file", limit=1024)
    if len(data) == 32:
        return data
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 32:
        raise UsageError("cli.key.bad_file", f"{path}: expected 32 raw bytes or 64 hex characters")
    return key


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


# -- node ---------------------------------------------------------------------------------


def _register_node(sub: Any) -> None:
    p = sub.add_parser("node", help="serving-node agent")
    nsub = p.add_subparsers(dest="node_command", required=True, parser_class=type(p))
    r = nsub.add_parser("request-keys", help="attest and receive model keys")
    _add_client_args(r)
    r.add_argument("--platform", required=True, choices=["tpm", "snp", "tdx"])
    r.add_argument("--node-id", default=os.uname().nodename)
    r.add_argument("--key-id", action="append", required=True, dest="key_ids")
    r.add_argument("--out", required=True, help="directory for keys (0600), or - for stdout")
    r.add_argument("--tcti", help="TPM TCTI (default: tpm2-tools' default, /dev/tpmrm0)")
    r.add_argument("--state", help="TPM node state directory (default: a temp dir)")
    r.add_argument("--pcr-selection", default="sha256:0,1,2,3,4,5,6,7")
    r.add_argument("--eventlog", help="TCG event log to send (TPM)")
    r.add_argument("--collateral", help="TDX collateral JSON")
    r.add_argument(
        "--tsm-dir",
        default="/sys/kernel/config/tsm/report",
        help="configfs-tsm report directory (SNP/TDX)",
    )
    r.add_argument("--suite", default="x25519", choices=["x25519", "mlkem768-x25519"])
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=_request_keys)
    f = nsub.add_parser("refetch", help="receive model keys again with a saved session")
    _add_client_args(f)
    f.add_argument(
        "--session", required=True, help="request-keys' --out directory, or its session.json"
    )
    f.add_argument("--key-id", action="append", required=True, dest="key_ids")
    f.add_argument("--out", required=True, help="directory for keys (0600), or - for stdout")
    f.add_argument("--json", action="store_true")
    f.set_defaults(handler=_refetch)


def _safe(key_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key_id)


def write_secret(path: Path, data: bytes) -> None:
    """Write 0600 from the start (never briefly world-readable), atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sealgate-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _request_keys(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_REJECTED, read_file
    from sealgate.node.agent import AgentError, NodeAgent

    collector: Any
    if args.platform == "tpm":
        from sealgate.node.tpm import Tpm2ToolsCollector

        collector = Tpm2ToolsCollector(
            tcti=args.tcti,
            state_dir=Path(args.state) if args.state else None,
            selection=args.pcr_selection,
            eventlog=Path(args.eventlog) if args.eventlog else None,
        )
    else:
        from sealgate.node.cvm import ConfidentialVmCollector

        collector = ConfidentialVmCollector(
            args.platform,
            Path(args.tsm_dir),
            collateral=read_file(args.collateral, "collateral") if args.collateral else None,
        )
    with _channel(args) as ch:
        agent = NodeAgent(ch, args.node_id, collector, suite=args.suite, timeout=args.timeout)
        try:
            res = agent.attest(args.key_ids)
        except AgentError as e:
            print(f"sealgate: {e.code}: {e.message}", file=sys.stderr)
            return EXIT_REJECTED
    saved: dict[str, bytes] = {}
    if res.token and agent.runtime is not None and args.out != "-":
        from sealgate.node.session import SESSION_FILE, NodeSession

        saved["token.jwt"] = res.token.encode()
        saved[SESSION_FILE] = NodeSession(
            args.node_id, res.token, res.expires_at, agent.runtime
        ).dump()
    return _deliver_keys(args, res, saved)


class _NoEvidence:
    """The collector of an agent that only refetches: the token stands for the evidence."""

    platform = "none"

    def collect(self, nonce: bytes, binding: bytes) -> Any:
        raise AssertionError("refetch never collects evidence")


def _refetch(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_REJECTED
    from sealgate.node.agent import AgentError, NodeAgent
    from sealgate.node.session import read_session

    session = read_session(Path(args.session))
    session.check_unexpired()
    with _channel(args) as ch:
        agent = NodeAgent(
            ch, session.node_id, _NoEvidence(), suite=session.runtime.suite, timeout=args.timeout
        )
        agent.runtime = session.runtime
        try:
            res = agent.refetch(session.token, args.key_ids)
        except AgentError as e:
            print(f"sealgate: {e.code}: {e.message}", file=sys.stderr)
            return EXIT_REJECTED
    res.expires_at = session.expires_at  # ReleaseKey does not repeat it
    return _deliver_keys(args, res, {})


def _deliver_keys(args: argparse.Namespace, res: NodeResult, saved: dict[str, bytes]) -> int:
    """Write granted keys (``<key>@<version>.key`` and ``<key>.key``, 0600, plus the
    ``saved`` files) into ``--out``, or the one key to stdout with ``--out -``; then print
    what was granted and denied. Exit 0 when nothing was denied."""
    from sealgate.cli import EXIT_OK, EXIT_REJECTED
    from sealgate.node.agent import explain

    if args.out == "-":
        if len(res.keys) != 1 or len(args.key_ids) != 1:
            raise UsageError("cli.node.stdout_one_key", "--out - needs exactly one granted key")
        sys.stdout.buffer.write(next(iter(res.keys.values()))[1])
        sys.stdout.buffer.flush()
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        for key_id, (version, key) in res.keys.items():
            write_secret(out / f"{_safe(key_id)}@{version}.key", key)
            write_secret(out / f"{_safe(key_id)}.key", key)
        for name, data in saved.items():
            write_secret(out / name, data)
    summary: dict[str, Any] = {
        "granted": {k: v for k, (v, _) in res.keys.items()},
        "denied": {d.key_id: [f.code for f in d.failures] for d in res.denied},
        "explanation": explain(res),
        "token_expires_at": res.expires_at,
    }
    if args.json:
        print(json.dumps(summary, indent=2), file=sys.stderr if args.out == "-" else sys.stdout)
    else:
        stream = sys.stderr if args.out == "-" else sys.stdout
        for k, v in summary["granted"].items():
            print(f"granted {k} (version {v})", file=stream)
        for line in summary["explanation"]:
            print(f"denied  {line}", file=stream)
    return EXIT_OK if not res.denied else EXIT_REJECTED


# -- model --------------------------------------------------------------------------------


def _register_model(sub: Any) -> None:
    p = sub.add_parser("model", help="encrypt/decrypt model files (chunked AES-256-GCM)")
    msub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))
    e = msub.add_parser("encrypt", help="encrypt a model file")
    e.add_argument("--key-file", required=True, help="32 raw bytes or hex; - for stdin")
    e.add_argument("--key-id", required=True)
    e.add_argument("--key-version", type=int, default=1)
    e.add_argument("--chunk-size", type=int, default=1 << 20)
    e.add_argument("--in", dest="src", required=True)
    e.add_argument("--out", dest="dst", required=True)
    e.set_defaults(handler=_model_encrypt)
    d = msub.add_parser("decrypt", help="decrypt a model file (header names key id + version)")
    g = d.add_mutually_exclusive_group(required=True)
    g.add_argument("--key-file", help="32 raw bytes or hex; - for stdin (piped from the node)")
    g.add_argument("--keys-dir", help="a node's --out directory (<key_id>@<version>.key)")
    d.add_argument("--in", dest="src", required=True)
    d.add_argument("--out", dest="dst", required=True, help="output file, or - for stdout")
    d.set_defaults(handler=_model_decrypt)


def _model_encrypt(args: argparse.Namespace) -> int:
    from sealgate.modelfile import encrypt_stream

    key = read_key_file(args.key_file)
    dst = Path(args.dst)
    try:
        with open(args.src, "rb") as src, open(dst.with_name(dst.name + ".part"), "wb") as out:
            encrypt_stream(src, out, key, args.key_id, args.key_version, args.chunk_size)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{e.filename}: {e.strerror}") from None
    os.replace(dst.with_name(dst.name + ".part"), dst)
    return 0


def _model_decrypt(args: argparse.Namespace) -> int:
    from sealgate.modelfile import ModelFileError, decrypt_stream

    fixed = read_key_file(args.key_file) if args.key_file else None

    def key_for(key_id: str, version: int) -> bytes:
        if fixed is not None:
            return fixed
        path = Path(args.keys_dir) / f"{_safe(key_id)}@{version}.key"
        if not path.exists():
            raise ModelFileError(
                "model.key.missing", f"no key {key_id} version {version} in {args.keys_dir}"
            )
        return read_key_file(str(path))

    try:
        with open(args.src, "rb") as src:
            if args.dst == "-":
                decrypt_stream(src, sys.stdout.buffer, key_for)
                return 0
            dst = Path(args.dst)
            part = dst.with_name(dst.name + ".part")
            try:
                with open(part, "wb") as out:
                    decrypt_stream(src, out, key_for)
            except BaseException:
                with contextlib.suppress(OSError):
                    part.unlink()
                raise
            os.replace(part, dst)
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"{e.filename}: {e.strerror}") from None
    return 0


# -- audit (offline) ----------------------------------------------------------------------


def _register_audit(sub: Any) -> None:
    p = sub.add_parser("audit", help="audit log tools (offline, on the data directory)")
    asub = p.add_subparsers(dest="audit_command", required=True, parser_class=type(p))
    v = asub.add_parser(
        "verify", help="verify the audit hash chain, its entry MACs and its signed checkpoints"
    )
    v.add_argument("--data-dir", default="sealgate-data")
    v.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="also check against this signed checkpoint (one an auditor kept); repeatable",
    )
    v.add_argument(
        "--checkpoint-key",
        metavar="FILE",
        help="the checkpoint verifier key (GET /audit/checkpoint-key) instead of the one "
        "derived from the data directory's KEK",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=_audit_verify_offline)


def _audit_verify_offline(args: argparse.Namespace) -> int:
    from sealgate.broker.audit import AuditLog, EntryMac
    from sealgate.broker.checkpoint import (
        MAX_NOTE_BYTES,
        CheckpointError,
        CheckpointStore,
        NoteVerifier,
        parse_verifier_key,
    )
    from sealgate.broker.kek import LocalKeyFileProvider
    from sealgate.cli import read_file
    from sealgate.service.config import ServiceConfig
    from sealgate.storage.sqlite import SqliteStorage

    cfg = ServiceConfig(data_dir=Path(args.data_dir))
    if not cfg.db_path.exists():
        raise UsageError("cli.audit.no_database", f"no database at {cfg.db_path}")
    kept = [(f, read_file(f, "checkpoint", MAX_NOTE_BYTES)) for f in args.checkpoint]
    store = CheckpointStore(cfg.audit_checkpoint_dir)
    # The KEK when the data directory has it (entry MACs, and the checkpoint key unless
    # one is given); never created here.
    kek = LocalKeyFileProvider(cfg.kek_path, create=False) if cfg.kek_path.exists() else None
    mac: EntryMac | None = kek.audit_mac if kek is not None else None
    if args.checkpoint_key:
        text = read_file(args.checkpoint_key, "checkpoint key", 4096)
        verifier = parse_verifier_key(text.decode("utf-8", "replace"))
    elif kek is not None:
        # The key name is the log's origin, the first line of its checkpoints; the key
        # itself comes from the KEK, so a checkpoint signed by any other key fails.
        first = (store.latest() or (kept[0][1] if kept else b"")).split(b"\n", 1)[0]
        verifier = NoteVerifier(
            first.decode("utf-8", "replace"), kek.checkpoint_signer().public_key()
        )
    else:
        raise UsageError(
            "cli.audit.no_key",
            f"no KEK at {cfg.kek_path}: give --checkpoint-key (GET /audit/checkpoint-key)",
        )
    st = SqliteStorage(cfg.db_path)
    try:
        log = AuditLog(st, mac)
        # An auditor's own checkpoint anchors on its own; without one, the data directory's
        # checkpoints are required.
        try:
            stored = bool(store.all())
        except (CheckpointError, OSError):
            stored = True  # there, but unreadable: verify_anchored names it
        use_store = store if not kept or stored else None
        v = log.verify_anchored(use_store, verifier, kept)
    finally:
        st.close()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": v.ok,
                    "entries": v.entries,
                    "first_bad_seq": v.first_bad_seq,
                    "code": v.code,
                    "message": v.message,
                    "anchored": v.anchored,
                    "authenticated": v.authenticated,
                },
                indent=2,
            )
        )
    elif v.ok:
        print(f"audit chain OK: {v.message}")
    else:
        print(f"audit chain BROKEN at entry {v.first_bad_seq}: {v.code}: {v.message}")
    return 0 if v.ok else 1
