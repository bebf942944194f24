"""``sealgate verify tdx``."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from sealgate.cli.times import parse_at


def register(sub: Any) -> None:
    p = sub.add_parser("tdx", help="verify an Intel TDX quote (v4/v5) with DCAP collateral")
    p.add_argument("--quote", required=True, help="TDX quote (binary, trailing padding allowed)")
    p.add_argument("--collateral", help="collateral JSON in dcap-qvl's QuoteCollateralV3 layout")
    p.add_argument("--tcb-info", help="PCS TDX TCB info response body")
    p.add_argument("--qe-identity", help="PCS TD_QE identity response body")
    p.add_argument("--tcb-signing-chain", help="TCB signing chain PEM (TCB-Info-Issuer-Chain)")
    p.add_argument("--pck-crl", help="PCK CRL (DER or PEM)")
    p.add_argument("--root-crl", help="Intel SGX Root CA CRL (DER or PEM)")
    p.add_argument("--roots", help="trusted Intel SGX Root CA (PEM/DER); default: trust dir")
    p.add_argument("--at", help="verification time, RFC 3339 (default: now)")
    p.add_argument("--allow-missing-crl", action="store_true", help="accept absent CRLs")
    p.add_argument("--ccel", help="CC event log area; replayed RTMRs must equal the quote's")
    p.add_argument("--report-data", help="expected report_data, hex")
    p.add_argument("--trust-dir", help="trust directory (default: $SEALGATE_TRUST_DIR)")
    p.add_argument("--cache-dir", help="collateral cache (default: $SEALGATE_CACHE_DIR)")
    p.add_argument(
        "--max-collateral-age",
        type=float,
        metavar="DAYS",
        help="refuse TCB info / QE identity / PCK CRL issued more than DAYS before --at",
    )
    p.set_defaults(handler=run, json_errors=True)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sealgate import tdx
    from sealgate.cli import EXIT_OK, EXIT_REJECTED, emit, read_file
    from sealgate.errors import UsageError

    files = (args.tcb_info, args.qe_identity, args.tcb_signing_chain)
    if args.collateral and any(files):
        raise UsageError("cli.usage.conflict", "--collateral excludes --tcb-info/--qe-identity/...")
    if any(files) and not all(files):
        raise UsageError(
            "cli.usage.missing",
            "--tcb-info, --qe-identity and --tcb-signing-chain go together",
        )
    if (args.pck_crl or args.root_crl) and not any(files):
        raise UsageError("cli.usage.missing", "--pck-crl/--root-crl need --tcb-info ...")
    report_data = None
    if args.report_data is not None:
        try:
            report_data = bytes.fromhex(args.report_data)
        except ValueError:
            raise UsageError("cli.usage.bad_report_data", "--report-data must be hex") from None
    quote = read_file(args.quote, "quote")
    collateral = None
    if args.collateral:
        collateral = tdx.load_collateral_json(read_file(args.collateral, "collateral"))
    elif all(files):
        collateral = tdx.load_collateral_files(
            read_file(args.tcb_info, "TCB info"),
            read_file(args.qe_identity, "QE identity"),
            read_file(args.tcb_signing_chain, "TCB signing chain"),
            read_file(args.pck_crl, "PCK CRL") if args.pck_crl else None,
            read_file(args.root_crl, "Root CA CRL") if args.root_crl else None,
        )
    roots = [read_file(args.roots, "roots")] if args.roots else None
    max_age = None
    if args.max_collateral_age is not None:
        if not 0 < args.max_collateral_age < 36500:
            raise UsageError("cli.usage.bad_age", "--max-collateral-age must be 0 < DAYS < 36500")
        max_age = timedelta(days=args.max_collateral_age)
    res = tdx.verify_quote(
        quote,
        collateral=collateral,
        roots=roots,
        at=parse_at(args.at) if args.at else None,
        allow_missing_crl=args.allow_missing_crl,
        ccel=read_file(args.ccel, "CCEL") if args.ccel else None,
        report_data=report_data,
        trust_dir=Path(args.trust_dir) if args.trust_dir else None,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        collateral_max_age=max_age,
    )
    emit(res.as_dict())
    return EXIT_OK if res.verified else EXIT_REJECTED
