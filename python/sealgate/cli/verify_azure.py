"""``sealgate verify azure``: Azure confidential VM evidence (HCL report + vTPM quote)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sealgate.cli.times import parse_at
from sealgate.errors import UsageError

#: TPMS_ATTEST.magic TPM_GENERATED_VALUE (TPM 2.0 Part 2 §6.2): a quote.bin starts with a
#: u64 signature length instead, so the two inputs of --quote are told apart by it.
_TPM_GENERATED = b"\xffTCG"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "azure",
        help="verify Azure CVM evidence: HCL report (SNP or TDX) and vTPM quote",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--evidence", help="trustee evidence JSON (az-snp-vtpm / az-tdx-vtpm, v0, v1 or v2)"
    )
    src.add_argument("--hcl-report", help="HCL report (vTPM NV index 0x01400001)")
    p.add_argument(
        "--quote",
        help="vTPM quote: TPMS_ATTEST, or the bincode quote.bin (signature, message, PCRs)",
    )
    p.add_argument("--signature", help="TPMT_SIGNATURE or the raw RSA signature of --quote")
    p.add_argument(
        "--pcrs",
        help='PCR values: the JSON shapes `verify tpm` takes, or {"bank": "sha256", "pcrs": {...}}',
    )
    p.add_argument("--eventlog", help="TCG event log to replay against the quoted PCRs")
    p.add_argument(
        "--vcek",
        help="VCEK/VLEK (DER or PEM), or Azure's PEM bundle VCEK, ASK, ARK",
    )
    p.add_argument("--cert-chain", help="PEM bundle with the ASK/ASVK and ARK, any order")
    p.add_argument("--td-quote", help="TD quote of a TDX CVM (made from the HCL's TDREPORT)")
    p.add_argument("--collateral", help="TDX collateral JSON as `verify tdx --collateral`")
    p.add_argument("--nonce", help="expected vTPM quote extraData, hex")
    p.add_argument("--user-data", help="expected runtime data user-data, hex (≤ 64 bytes)")
    p.add_argument("--roots", help="trusted AMD ARK / Intel SGX Root CA: PEM/DER file or directory")
    p.add_argument("--at", help="verification time, RFC 3339 (default now)")
    p.add_argument("--allow-missing-crl", action="store_true", help="TDX: accept absent CRLs")
    p.add_argument("--trust-dir", type=Path, help="trust directory (default: see README)")
    p.add_argument("--cache-dir", type=Path, help="collateral cache directory")
    p.set_defaults(handler=run, json_errors=True)


def _hex(value: str | None, code: str, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise UsageError(code, f"{what} must be hex") from None


def run(args: argparse.Namespace) -> int:
    from sealgate import azure, tdx
    from sealgate.cli import EXIT_OK, EXIT_REJECTED, emit, read_file
    from sealgate.cli.verify_snp import read_roots

    nonce = _hex(args.nonce, "cli.usage.bad_nonce", "--nonce")
    user_data = _hex(args.user_data, "cli.usage.bad_user_data", "--user-data")
    if user_data is not None and len(user_data) > 64:
        raise UsageError("cli.usage.bad_user_data", "--user-data is at most 64 bytes")
    at = parse_at(args.at) if args.at else None

    if args.evidence:
        if args.quote or args.signature or args.pcrs:
            raise UsageError(
                "cli.usage.conflict",
                "--evidence carries the quote; drop --quote/--signature/--pcrs",
            )
        ev = azure.load_trustee_json(read_file(args.evidence, "evidence", 1 << 20))
    else:
        ev = azure.AzureEvidence(hcl_report=read_file(args.hcl_report, "HCL report", 1 << 16))
        if args.quote:
            quote = read_file(args.quote, "quote", 1 << 16)
            if quote[:4] == _TPM_GENERATED:
                ev.quote = quote
                if args.signature:
                    ev.signature = read_file(args.signature, "signature", 1 << 16)
                if args.pcrs:
                    ev.pcrs = azure.load_pcrs_json(read_file(args.pcrs, "PCR file", 1 << 20))
            else:
                if args.signature or args.pcrs:
                    raise UsageError(
                        "cli.usage.conflict",
                        "a quote.bin carries the signature and PCRs; drop --signature/--pcrs",
                    )
                ev.signature, ev.quote, ev.pcrs = azure.parse_quote_bin(quote)
        elif args.signature or args.pcrs:
            raise UsageError("cli.usage.missing", "--signature and --pcrs need --quote")
    if args.eventlog:
        ev.eventlog = read_file(args.eventlog, "event log")
    if args.vcek:
        ev.vcek = read_file(args.vcek, "VCEK", 1 << 16)
    if args.cert_chain:
        ev.cert_chain = read_file(args.cert_chain, "cert chain", 1 << 16)
    if args.td_quote:
        ev.td_quote = read_file(args.td_quote, "TD quote", 1 << 16)
    if args.collateral:
        ev.collateral = tdx.load_collateral_json(read_file(args.collateral, "collateral"))
    roots = read_roots(args.roots) if args.roots else None
    res = azure.verify_evidence(
        ev,
        nonce=nonce,
        user_data=user_data,
        at=at,
        snp_roots=roots,
        tdx_roots=roots,
        trust_dir=args.trust_dir,
        cache_dir=args.cache_dir,
        tdx_allow_missing_crl=args.allow_missing_crl,
    )
    emit(res.as_dict())
    return EXIT_OK if res.verified else EXIT_REJECTED
