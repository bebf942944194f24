"""``sealgate verify snp``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sealgate.cli.times import parse_at
from sealgate.errors import UsageError

#: Files read from a --roots directory.
ROOT_SUFFIXES = (".pem", ".der", ".crt", ".cer")


def register(sub: Any) -> None:
    p = sub.add_parser("snp", help="verify an AMD SEV-SNP attestation report")
    p.add_argument("--report", required=True, help="ATTESTATION_REPORT (1184 bytes)")
    p.add_argument(
        "--vcek",
        help="VCEK or VLEK certificate, PEM or DER (detected); or a PEM bundle whose first "
        "certificate is the VCEK/VLEK and the rest its chain (Azure's format)",
    )
    p.add_argument("--cert-chain", help="PEM bundle with the ASK/ASVK and ARK, any order")
    p.add_argument("--roots", help="explicitly trusted root(s): PEM/DER file or directory")
    p.add_argument("--crl", help="AMD per-product CRL (DER or PEM)")
    p.add_argument("--at", help="verification time, RFC 3339 (default now)")
    p.add_argument("--product", choices=["Milan", "Genoa", "Turin"], help="product line")
    p.add_argument("--report-data", help="expected REPORT_DATA, hex (zero-padded to 64 bytes)")
    p.add_argument("--trust-dir", type=Path, help="trust directory (default: see README)")
    p.add_argument("--cache-dir", type=Path, help="collateral cache directory")
    p.add_argument(
        "--require-crl",
        action="store_true",
        help="fail unless a current AMD CRL (--crl, else the collateral cache) covers the chain",
    )
    p.set_defaults(handler=run, json_errors=True)


def read_roots(path: str) -> list[bytes]:
    from sealgate.cli import read_file

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in ROOT_SUFFIXES)
        if not files:
            raise UsageError("cli.input.unreadable", f"no certificate files in {path!r}")
        return [read_file(str(f), "root certificate") for f in files]
    return [read_file(path, "root certificate")]


def run(args: argparse.Namespace) -> int:
    from sealgate import snp
    from sealgate.cli import EXIT_OK, EXIT_REJECTED, emit, read_file

    report_data: bytes | None = None
    if args.report_data is not None:
        try:
            report_data = bytes.fromhex(args.report_data)
        except ValueError:
            raise UsageError("cli.usage.bad_report_data", "--report-data must be hex") from None
    at = parse_at(args.at) if args.at else None
    res = snp.verify_report(
        read_file(args.report, "report"),
        vcek=read_file(args.vcek, "VCEK") if args.vcek else None,
        cert_chain=read_file(args.cert_chain, "cert chain") if args.cert_chain else None,
        roots=read_roots(args.roots) if args.roots else None,
        crl=read_file(args.crl, "CRL") if args.crl and not args.require_crl else None,
        at=at,
        product=args.product,
        report_data=report_data,
        trust_dir=args.trust_dir,
        cache_dir=args.cache_dir,
        revocation=(
            snp.CrlSource([Path(args.crl)] if args.crl else [], args.cache_dir).revocation()
            if args.require_crl
            else None
        ),
    )
    emit(res.as_dict())
    return EXIT_OK if res.verified else EXIT_REJECTED
