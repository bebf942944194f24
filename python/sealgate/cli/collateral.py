"""``sealgate collateral fetch <platform>``: fill the collateral cache from the vendor."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Register the ``collateral`` command group on the top-level sub-parsers."""
    from sealgate.cli import _Parser

    p = sub.add_parser("collateral", help="fetch and cache verification collateral")
    csub = p.add_subparsers(dest="collateral_command", required=True, parser_class=_Parser)
    fetch = csub.add_parser("fetch", help="fetch collateral for evidence into the cache")
    fsub = fetch.add_subparsers(dest="platform", required=True, parser_class=_Parser)

    snp = fsub.add_parser("snp", help="VCEK, cert_chain and CRL from AMD KDS for a report")
    snp.add_argument("--report", required=True, help="ATTESTATION_REPORT (1184 bytes)")
    snp.add_argument(
        "--product",
        choices=["Milan", "Genoa", "Turin"],
        help="product line (required for version 2 reports)",
    )
    snp.add_argument("--base-url", help="KDS base URL (default https://kdsintf.amd.com)")
    snp.add_argument("--cache-dir", type=Path, help="collateral cache directory")
    snp.add_argument("--no-crl", action="store_true", help="do not fetch the CRL")
    snp.set_defaults(handler=run_snp)

    tdx = fsub.add_parser("tdx", help="TCB info, QE identity, CRLs from Intel PCS for a quote")
    tdx.add_argument("--quote", required=True, help="TDX quote (its PCK certificate names FMSPC)")
    tdx.add_argument("--base-url", help="PCS/PCCS base URL (default Intel PCS)")
    tdx.add_argument("--cache-dir", type=Path, help="collateral cache directory")
    tdx.set_defaults(handler=run_tdx)

    nv = fsub.add_parser(
        "nvidia", help="driver/VBIOS RIMs from NVIDIA's RIM service; OCSP for a cert chain"
    )
    nv.add_argument("--driver-version", help="driver version, e.g. 550.90.07")
    nv.add_argument("--vbios-version", help="VBIOS version, e.g. 96.00.9F.00.01")
    nv.add_argument("--project", help="GPU project (report opaque PROJECT), e.g. 1010")
    nv.add_argument("--project-sku", help="project SKU, e.g. 0200")
    nv.add_argument("--chip-sku", help="chip SKU, e.g. 882")
    nv.add_argument("--cert-chain", action="append", default=[], help="PEM chain for OCSP")
    nv.add_argument("--rim-url", help="RIM service base URL (default NVIDIA's)")
    nv.add_argument("--ocsp-url", help="OCSP responder URL (default NVIDIA's)")
    nv.add_argument(
        "--no-rim-ocsp",
        action="store_true",
        help="do not fetch OCSP responses for the fetched RIMs' signer chains",
    )
    nv.add_argument("--cache-dir", type=Path, help="collateral cache directory")
    nv.set_defaults(handler=run_nvidia)


def run_snp(args: argparse.Namespace) -> int:
    from sealgate import _core
    from sealgate.cli import EXIT_OK, emit, read_file
    from sealgate.collateral import CollateralCache
    from sealgate.errors import UsageError
    from sealgate.snp import kds

    rpt = _core.SnpReport.parse(read_file(args.report, "report"))
    product = args.product or rpt.cpuid_product
    if product is None:
        raise UsageError("cli.usage.product_required", "version 2 report: pass --product")
    if rpt.signing_key != "vcek":
        raise UsageError(
            "cli.usage.not_vcek", f"report is signed by {rpt.signing_key}; KDS serves VCEKs only"
        )
    if rpt.mask_chip_key or not any(rpt.chip_id):
        raise UsageError("cli.usage.masked_chip_id", "CHIP_ID is masked; no VCEK can be derived")
    bl, tee, snp, uc, fmc = rpt.reported_tcb(product)
    cache = CollateralCache(args.cache_dir)
    files = kds.fetch_into_cache(
        cache,
        kds.kds_base_url(args.base_url),
        product,
        rpt.chip_id,
        kds.Tcb(bl, tee, snp, uc, fmc),
        with_crl=not args.no_crl,
    )
    emit({"cache_dir": str(cache.root), "product": product, "files": files})
    return EXIT_OK


def run_tdx(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, emit, read_file
    from sealgate.collateral import CollateralCache
    from sealgate.tdx import fetch

    fmspc, ca = fetch.quote_platform(read_file(args.quote, "quote"))
    coll = fetch.fetch_collateral(fmspc, ca, args.base_url)
    path = fetch.store(coll, fmspc, args.cache_dir)
    emit(
        {
            "cache_dir": str(CollateralCache(args.cache_dir).root),
            "fmspc": fmspc.hex(),
            "pck_ca": ca,
            "files": [str(path)],
        }
    )
    return EXIT_OK


def run_nvidia(args: argparse.Namespace) -> int:
    from sealgate import pki
    from sealgate.cli import EXIT_OK, emit, read_file
    from sealgate.collateral import CollateralCache
    from sealgate.errors import UsageError
    from sealgate.nvgpu import fetch

    cache = CollateralCache(args.cache_dir)
    base = args.rim_url or fetch.DEFAULT_RIM_URL
    ocsp_url = args.ocsp_url or fetch.DEFAULT_OCSP_URL
    files: dict[str, object] = {}
    fetched: list[str] = []
    if args.driver_version:
        rid = fetch.driver_rim_id(args.driver_version)
        files["driver_rim"] = path = fetch.fetch_rim(
            cache, base, rid, f"driver_{args.driver_version}_fetched.swidtag"
        )
        fetched.append(path)
    if args.vbios_version:
        if not (args.project and args.project_sku and args.chip_sku):
            raise UsageError(
                "cli.usage.missing", "--vbios-version needs --project, --project-sku, --chip-sku"
            )
        rid = fetch.vbios_rim_id(args.vbios_version, args.project, args.project_sku, args.chip_sku)
        hexv = args.vbios_version.replace(".", "").upper()
        name = f"{args.project}_{args.project_sku}_{args.chip_sku}_{hexv}_fetched.swidtag"
        files["vbios_rim"] = path = fetch.fetch_rim(cache, base, rid, name)
        fetched.append(path)
    if fetched and not args.no_rim_ocsp:
        # The RIM signer chain is revocation-checked like the device chain
        # (require_revocation_check covers both): cache its responses next to the RIMs.
        rim_ocsp: list[str] = []
        roots = _rim_roots()
        for path in fetched:
            for f in fetch.fetch_rim_ocsp(cache, ocsp_url, Path(path).read_bytes(), roots):
                if f not in rim_ocsp:
                    rim_ocsp.append(f)
        files["rim_ocsp"] = rim_ocsp
    ocsp_files: list[str] = []
    for f in args.cert_chain:
        chain = pki.load_certificates(read_file(f, "certificate chain"))
        ocsp_files += fetch.fetch_ocsp(cache, ocsp_url, chain)
    if ocsp_files:
        files["ocsp"] = ocsp_files
    if not files:
        raise UsageError(
            "cli.usage.missing", "give --driver-version, --vbios-version or --cert-chain"
        )
    emit({"cache_dir": str(cache.root), "files": files})
    return EXIT_OK


def _rim_roots() -> list[Any]:
    """The pinned NVIDIA RIM root(s) of the default trust directory, to complete a RIM
    signer chain whose KeyInfo stops below the root; none there: KeyInfo alone."""
    from sealgate.errors import SealgateError
    from sealgate.nvgpu import rim

    try:
        return list(rim.rim_roots())
    except (SealgateError, OSError):
        return []
