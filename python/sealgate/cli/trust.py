"""``sealgate trust fetch <platform>`` and ``sealgate trust import FILE``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sealgate import trust
from sealgate.pki import load_certificates


def register(sub: Any) -> None:
    """Register the ``trust`` command group on the top-level sub-parsers."""
    from sealgate.cli import _Parser

    p = sub.add_parser("trust", help="manage pinned vendor roots (trust directory)")
    tsub = p.add_subparsers(dest="trust_command", required=True, parser_class=_Parser)

    fetch = tsub.add_parser("fetch", help="fetch vendor roots and intermediates, checking pins")
    fsub = fetch.add_subparsers(dest="platform", required=True, parser_class=_Parser)
    snp = fsub.add_parser("snp", help="AMD ARK/ASK/ASVK from AMD KDS")
    snp.add_argument("--base-url", help="KDS base URL (default https://kdsintf.amd.com)")
    snp.add_argument("--trust-dir", type=Path, help="trust directory (default: see README)")
    snp.add_argument(
        "--product",
        action="append",
        choices=["Milan", "Genoa", "Turin"],
        help="product line (repeatable; default all)",
    )
    snp.add_argument("--no-vlek", action="store_true", help="skip the VLEK (ASVK) chains")
    snp.set_defaults(handler=run_fetch_snp)
    tdx = fsub.add_parser("tdx", help="Intel SGX Root CA (+ PCK Platform CA) from Intel PCS")
    tdx.add_argument("--base-url", help="PCS/PCCS base URL (default Intel PCS)")
    tdx.add_argument("--trust-dir", type=Path, help="trust directory (default: see README)")
    tdx.set_defaults(handler=run_fetch_tdx)

    imp = tsub.add_parser("import", help="import a root/intermediate file (PEM or DER)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--trust-dir", type=Path, help="trust directory (default: see README)")
    imp.set_defaults(handler=run_import)


def run_fetch_snp(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, emit
    from sealgate.snp import kds

    base = kds.kds_base_url(args.base_url)
    store = trust.TrustStore(args.trust_dir)
    imported: list[dict[str, str]] = []
    for product in args.product or list(kds.PRODUCTS):
        keys = ["vcek"] if args.no_vlek else ["vcek", "vlek"]
        for key in keys:
            pem = kds.fetch_chain(base, product, key)
            certs = load_certificates(pem, f"{product} {key} cert_chain")
            imported.extend(i.as_dict() for i in store.import_certificates(certs))
    emit({"trust_dir": str(store.root), "imported": imported})
    return EXIT_OK


def run_fetch_tdx(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, emit
    from sealgate.tdx import fetch

    pem = fetch.fetch_root(args.base_url)
    certs = load_certificates(pem, "SGX-PCK-CRL-Issuer-Chain")
    store = trust.TrustStore(args.trust_dir)
    imported = [i.as_dict() for i in store.import_certificates(certs)]
    emit({"trust_dir": str(store.root), "imported": imported})
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, emit

    out = trust.import_file(args.file, args.trust_dir)
    emit(
        {
            "trust_dir": str(trust.TrustStore(args.trust_dir).root),
            "imported": [i.as_dict() for i in out],
        }
    )
    return EXIT_OK
