"""``sealgate verify tpm``."""

from __future__ import annotations

import argparse
from typing import Any

from sealgate import tpm


def register(sub: Any) -> None:
    p = sub.add_parser("tpm", help="verify a TPM 2.0 quote (and optionally its event log)")
    p.add_argument("--quote", required=True, help="TPMS_ATTEST (tpm2_quote -m) or TPM2B_ATTEST")
    p.add_argument("--signature", required=True, help="TPMT_SIGNATURE (tpm2_quote -s)")
    p.add_argument("--ak", required=True, help="AK: PEM/DER SPKI, TPMT_PUBLIC or TPM2B_PUBLIC")
    p.add_argument("--pcrs", help="PCR values: sealgate JSON or tpm2_quote -o file")
    p.add_argument("--eventlog", help="TCG event log (binary_bios_measurements)")
    p.add_argument("--nonce", help="expected extraData, hex")
    p.add_argument("--pcr-selection", help="minimum selection, e.g. sha256:0,1,2,3,4,5,6,7")
    p.set_defaults(handler=run, json_errors=True)


def run(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, EXIT_REJECTED, emit, read_file
    from sealgate.errors import UsageError

    nonce: bytes | None = None
    if args.nonce is not None:
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError:
            raise UsageError("cli.usage.bad_nonce", "--nonce must be hex") from None
    selection = tpm.parse_selection(args.pcr_selection) if args.pcr_selection else None
    quote = read_file(args.quote, "quote")
    signature = read_file(args.signature, "signature")
    ak = read_file(args.ak, "AK")
    pcrs: Any = None
    if args.pcrs:
        pcrs = tpm.load_pcrs(read_file(args.pcrs, "PCR file"))
    log = read_file(args.eventlog, "event log") if args.eventlog else None
    res = tpm.verify_quote(ak, quote, signature, pcrs, log, nonce, selection)
    emit(res.as_dict())
    return EXIT_OK if res.verified else EXIT_REJECTED
