"""``sealgate node ...``: the serving-node agent (attest, receive and refetch model keys)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealgate.cli.client import add_client_args, channel, safe_name, write_secret
from sealgate.errors import SealgateError, UsageError

if TYPE_CHECKING:
    from sealgate.node.agent import NodeResult


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="serving-node agent")
    nsub = p.add_subparsers(dest="node_command", required=True, parser_class=type(p))
    r = nsub.add_parser("request-keys", help="attest and receive model keys")
    add_client_args(r)
    r.add_argument(
        "--platform", required=True, choices=["tpm", "snp", "tdx", "azure-snp", "azure-tdx"]
    )
    r.add_argument("--node-id", default=os.uname().nodename)
    r.add_argument("--key-id", action="append", required=True, dest="key_ids")
    r.add_argument("--out", required=True, help="directory for keys (0600), or - for stdout")
    r.add_argument(
        "--tcti", help="TPM / Azure vTPM TCTI (default: tpm2-tools' default, /dev/tpmrm0)"
    )
    r.add_argument("--state", help="TPM node state directory (default: a temp dir)")
    r.add_argument(
        "--pcr-selection",
        help="PCRs to quote (default: sha256:0-7 for tpm, sha256:0-23 for azure-*)",
    )
    r.add_argument("--eventlog", help="TCG event log to send (TPM, Azure)")
    r.add_argument("--collateral", help="TDX collateral JSON (tdx, azure-tdx)")
    r.add_argument(
        "--imds-url",
        default="http://169.254.169.254",
        help="Azure IMDS base URL: TD quotes (azure-tdx) and, without --vcek, the VCEK (azure-snp)",
    )
    r.add_argument("--vcek", help="azure-snp: VCEK (PEM/DER, or Azure's VCEK+ASK+ARK bundle)")
    r.add_argument("--cert-chain", help="azure-snp: ASK/ARK PEM bundle")
    r.add_argument(
        "--tsm-dir",
        default="/sys/kernel/config/tsm/report",
        help="configfs-tsm report directory (SNP/TDX)",
    )
    r.add_argument("--suite", default="x25519", choices=["x25519", "mlkem768-x25519"])
    r.add_argument(
        "--model-signature",
        help="the model's model.sig: check --model against its signed manifest before asking "
        "for keys, and that each granted key is bound to this model",
    )
    r.add_argument(
        "--model",
        help="the model directory/file (plaintext: every file hashed and compared; encrypted "
        "with sealgate model encrypt: every file's header must name this model)",
    )
    r.add_argument(
        "--extend-model-pcr",
        action="store_true",
        help="TPM: measure the model's root digest into PCR 12 and --eventlog (attested "
        "model binding), once per boot",
    )
    r.add_argument(
        "--gpus",
        type=int,
        default=0,
        metavar="N",
        help="also attest the first N NVIDIA confidential GPUs through NVML (nvidia-ml-py), "
        "bound into the CPU evidence (docs/gpu-composite.md)",
    )
    r.add_argument(
        "--gpu-collateral",
        type=Path,
        metavar="DIR",
        help="with --gpus: send each GPU's RIMs and OCSP responses from DIR (the layout "
        "`sealgate collateral fetch nvidia --cache-dir DIR` writes), for an air-gapped node",
    )
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=_request_keys)
    f = nsub.add_parser("refetch", help="receive model keys again with a saved session")
    add_client_args(f)
    f.add_argument(
        "--session", required=True, help="request-keys' --out directory, or its session.json"
    )
    f.add_argument("--key-id", action="append", required=True, dest="key_ids")
    f.add_argument("--out", required=True, help="directory for keys (0600), or - for stdout")
    f.add_argument("--json", action="store_true")
    f.set_defaults(handler=_refetch)


def _request_keys(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_REJECTED, read_file
    from sealgate.node.agent import AgentError, NodeAgent

    signed = _check_model(args)
    collector: Any
    if args.extend_model_pcr:
        if args.platform != "tpm" or signed is None or not args.eventlog:
            raise UsageError(
                "cli.usage.bad_model_binding",
                "--extend-model-pcr needs --platform tpm, --model-signature and --eventlog",
            )
        from sealgate.node.tpm import extend_model_event

        try:
            extend_model_event(args.tcti, Path(args.eventlog), signed.root_digest)
        except AgentError as e:
            print(f"sealgate: {e.code}: {e.message}", file=sys.stderr)
            return EXIT_REJECTED
    if args.platform == "tpm":
        from sealgate.node.tpm import DEFAULT_SELECTION, Tpm2ToolsCollector

        collector = Tpm2ToolsCollector(
            tcti=args.tcti,
            state_dir=Path(args.state) if args.state else None,
            selection=args.pcr_selection or DEFAULT_SELECTION,
            eventlog=Path(args.eventlog) if args.eventlog else None,
        )
    elif args.platform.startswith("azure-"):
        from sealgate.node.azure import AZURE_SELECTION, AzureVtpmCollector

        collector = AzureVtpmCollector(
            args.platform,
            tcti=args.tcti,
            state_dir=Path(args.state) if args.state else None,
            selection=args.pcr_selection or AZURE_SELECTION,
            eventlog=Path(args.eventlog) if args.eventlog else None,
            imds_url=args.imds_url,
            vcek=read_file(args.vcek, "vcek") if args.vcek else None,
            cert_chain=read_file(args.cert_chain, "cert-chain") if args.cert_chain else None,
            collateral=read_file(args.collateral, "collateral") if args.collateral else None,
        )
    else:
        from sealgate.node.cvm import ConfidentialVmCollector

        collector = ConfidentialVmCollector(
            args.platform,
            Path(args.tsm_dir),
            collateral=read_file(args.collateral, "collateral") if args.collateral else None,
        )
    gpus: Any = None
    if args.gpu_collateral is not None and not args.gpus:
        raise UsageError("cli.usage.missing", "--gpu-collateral needs --gpus")
    if args.gpus:
        from sealgate.node.nvml import NvmlGpus

        gpus = NvmlGpus(count=args.gpus, collateral=args.gpu_collateral)
    try:
        with channel(args) as ch:
            agent = NodeAgent(
                ch, args.node_id, collector, suite=args.suite, timeout=args.timeout, gpus=gpus
            )
            try:
                res = agent.attest(args.key_ids)
            except AgentError as e:
                print(f"sealgate: {e.code}: {e.message}", file=sys.stderr)
                return EXIT_REJECTED
    finally:
        if gpus is not None:
            gpus.close()
    if signed is not None:
        for key_id, root in res.models.items():
            if root != signed.root_digest:
                # The server bound this key version to another model: the key would not
                # open this one. Nothing is written.
                raise SealgateError(
                    "node.model.root_mismatch",
                    f"{key_id} is released for model {root.hex()}, not this signature's "
                    f"{signed.root_digest.hex()}",
                )
    saved: dict[str, bytes] = {}
    if res.token and agent.runtime is not None and args.out != "-":
        from sealgate.node.session import SESSION_FILE, NodeSession

        saved["token.jwt"] = res.token.encode()
        saved[SESSION_FILE] = NodeSession(
            args.node_id, res.token, res.expires_at, agent.runtime
        ).dump()
    return _deliver_keys(args, res, saved)


def _check_model(args: argparse.Namespace) -> Any:
    """``--model-signature`` [``--model``]: the signed manifest, after checking the model
    files against it (raises ModelManifestError naming each mismatching file, exit 1)."""
    if not args.model_signature:
        if args.model:
            raise UsageError("cli.usage.model_without_signature", "--model needs --model-signature")
        return None
    from sealgate.modelfile import ModelFileError, read_header
    from sealgate.node.model import check_model_files, is_encrypted, read_signature, signed_manifest
    from sealgate.oms.manifest import ModelManifestError, split_shard_name

    signed = signed_manifest(read_signature(args.model_signature))
    if not args.model:
        return signed
    model = Path(args.model)
    files = (
        [model]
        if model.is_file()
        else sorted(p for p in model.rglob("*") if p.is_file() and p.name != "model.sig")
    )
    if files and all(is_encrypted(p) for p in files):
        # Encrypted with ``sealgate model encrypt --model-signature``: the plaintext digests
        # are checked when ``model decrypt --model-signature`` has decrypted them; here every
        # header must name this model and the names must be the manifest's.
        for p in files:
            with p.open("rb") as f:
                h = read_header(f)
            if h.root_digest != signed.root_digest:
                raise ModelFileError(
                    "model.file.model_mismatch",
                    f"{p}: encrypted for model {h.root_digest.hex() or '(none)'}, not "
                    f"{signed.root_digest.hex()}",
                )
        names = {"." if model.is_file() else p.relative_to(model).as_posix() for p in files}
        shards = signed.manifest.serialization.method == "shards"
        want = {
            split_shard_name(r.name)[0] if shards else r.name for r in signed.manifest.resources
        }
        if names != want and not (model.is_file() and len(want) == 1):
            missing, extra = sorted(want - names), sorted(names - want)
            raise ModelManifestError(
                "model.manifest.missing_file" if missing else "model.manifest.extra_file",
                f"encrypted model files differ from the manifest (missing {missing[:5]}, "
                f"extra {extra[:5]})",
            )
        return signed
    check_model_files(model, signed)
    return signed


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
    with channel(args) as ch:
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
            write_secret(out / f"{safe_name(key_id)}@{version}.key", key)
            write_secret(out / f"{safe_name(key_id)}.key", key)
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
