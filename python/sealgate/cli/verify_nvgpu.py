"""``sealgate verify nvidia-gpu``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sealgate.cli.times import parse_at
from sealgate.errors import UsageError

#: A PEM chain of five P-384 certificates is ~5 KiB; an evidence list of 16 devices ~1 MiB.
MAX_INPUT = 4 << 20


def register(sub: Any) -> None:
    p = sub.add_parser(
        "nvidia-gpu",
        help="verify NVIDIA GPU (Hopper) and NVSwitch (LS10) attestation reports",
    )
    p.add_argument("--report", help="attestation report: hex text or binary")
    p.add_argument("--cert-chain", help="the device certificate chain, PEM, leaf first")
    p.add_argument(
        "--evidence",
        action="append",
        help="JSON list, one item per device: evidence, certificate, nonce, arch (HOPPER: "
        "GPU, LS10: NVSwitch); repeatable (e.g. the GPU list and the switch list), all items "
        "are one evidence set",
    )
    p.add_argument("--rim", action="append", default=[], help="RIM (signed SWID XML); repeatable")
    p.add_argument("--rim-dir", help="directory of RIMs")
    p.add_argument("--ocsp", action="append", default=[], help="OCSP response (DER); repeatable")
    p.add_argument("--nonce", help="expected 32-byte SPDM request nonce, hex")
    p.add_argument("--roots", help="explicitly trusted root(s): PEM/DER file or directory")
    p.add_argument("--trust-dir", type=Path, help="trust directory (default: see README)")
    p.add_argument("--at", help="verification time, RFC 3339 (default now)")
    p.set_defaults(handler=run, json_errors=True)


def _rims(args: argparse.Namespace, explicit_roots: list[bytes] | None) -> Any:
    """A ``RimSource`` over --rim files and --rim-dir, anchored at the pinned NVIDIA RIM root
    from the trust directory, or at the --roots certificates other than the pinned device
    root (an explicitly given root is the operator's choice, as for AMD and Intel)."""
    if not args.rim and not args.rim_dir:
        return None
    from sealgate import pki
    from sealgate.cli import read_file
    from sealgate.nvgpu import certs, rim
    from sealgate.trust import TrustStore, pin_for

    if explicit_roots is not None:
        anchors = [
            c
            for r in explicit_roots
            for c in pki.load_certificates(r, "root")
            if (p := pin_for(c.fingerprint)) is None or p.name != certs.DEVICE_ROOT_PIN
        ]
    else:
        anchors = rim.rim_roots(TrustStore(args.trust_dir))
    blobs = [(f, read_file(f, "RIM", rim.MAX_RIM_BYTES)) for f in args.rim]
    dirs = [Path(args.rim_dir)] if args.rim_dir else []
    return rim.RimSource(roots=anchors, dirs=dirs, blobs=blobs)


def run(args: argparse.Namespace) -> int:
    from sealgate import nvgpu
    from sealgate.cli import EXIT_OK, EXIT_REJECTED, emit, read_file
    from sealgate.cli.verify_snp import read_roots

    if (args.evidence is None) == (args.report is None):
        raise UsageError("cli.usage.conflict", "give --report and --cert-chain, or --evidence")
    if args.report is not None and args.cert_chain is None:
        raise UsageError("cli.usage.missing", "--report needs --cert-chain")
    if args.evidence is not None and args.cert_chain is not None:
        raise UsageError("cli.usage.conflict", "--evidence carries its own chains")
    nonce: bytes | None = None
    if args.nonce is not None:
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError:
            raise UsageError("cli.usage.bad_nonce", "--nonce must be hex") from None
        if len(nonce) != nvgpu.NONCE_LEN:
            raise UsageError("cli.usage.bad_nonce", "--nonce must be 32 bytes")
    at = parse_at(args.at) if args.at else None
    roots = read_roots(args.roots) if args.roots else None
    verifier = nvgpu.GpuVerifier(roots=roots, trust_dir=args.trust_dir)
    ocsp = [read_file(f, "OCSP response", 1 << 20) for f in args.ocsp] or None
    rims = _rims(args, roots)
    if args.report is not None:
        ev = nvgpu.GpuEvidence(
            read_file(args.report, "report", MAX_INPUT),
            read_file(args.cert_chain, "cert chain", MAX_INPUT),
        )
        if nvgpu.kind_of(None, ev.cert_chain) == nvgpu.KIND_NVSWITCH:
            # An NVSwitch report (its chain says LS_10): the device-set form, with its kind.
            res = nvgpu.verify_devices(
                [ev], nonce=nonce, at=at, rims=rims, ocsp=ocsp, verifier=verifier
            )
        else:
            res = verifier.verify(ev, nonce=nonce, at=at, rims=rims, ocsp=ocsp)
    else:
        from sealgate.errors import ParseError
        from sealgate.result import VerifyResult

        evs: list[nvgpu.GpuEvidence] = []
        try:
            for f in args.evidence:
                evs.extend(nvgpu.load_evidence_json(read_file(f, "evidence", MAX_INPUT)))
                if len(evs) > nvgpu.MAX_DEVICES:
                    raise ParseError(
                        "gpu.evidence.too_large", f"more than {nvgpu.MAX_DEVICES} devices"
                    )
        except ParseError as e:
            res = VerifyResult(nvgpu.PLATFORM)
            res.fail_from(e)
            emit(res.as_dict())
            return EXIT_REJECTED
        if len(evs) == 1 and nvgpu.kind_of(evs[0].arch, evs[0].cert_chain) == nvgpu.KIND_GPU:
            res = verifier.verify(evs[0], nonce=nonce, at=at, rims=rims, ocsp=ocsp)
        else:
            res = nvgpu.verify_devices(
                evs, nonce=nonce, at=at, rims=rims, ocsp=ocsp, verifier=verifier
            )
    emit(res.as_dict())
    return EXIT_OK if res.verified else EXIT_REJECTED
