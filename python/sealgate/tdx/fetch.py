"""Intel PCS (API v4) / PCCS fetching of TDX collateral and the Intel SGX Root CA.

Endpoints (Intel "Provisioning Certification Service for ECDSA Attestation", API v4):

- ``GET {base}/tdx/certification/v4/tcb?fmspc={FMSPC}`` → TCB info body; the signing chain
  (TCB Signing cert ‖ Root CA) comes URL-encoded in the ``TCB-Info-Issuer-Chain`` header;
- ``GET {base}/tdx/certification/v4/qe/identity`` → TD_QE identity body, chain in
  ``SGX-Enclave-Identity-Issuer-Chain``;
- ``GET {base}/sgx/certification/v4/pckcrl?ca={platform|processor}&encoding=der`` → PCK CRL
  (DER), chain (PCK CA ‖ Root CA) in ``SGX-PCK-CRL-Issuer-Chain``;
- Root CA CRL: Intel publishes it at the root certificate's CRL distribution point
  (``https://certificates.trustedservices.intel.com/IntelSGXRootCA.der``); a PCCS serves it
  at ``GET {base}/sgx/certification/v4/rootcacrl`` (DER or hex, both are accepted).

Fetched bytes are never trusted as such: they are verified like any collateral when used.
The cache stores one dcap-qvl-layout JSON per FMSPC: ``<cache>/tdx/<FMSPC>/collateral.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

from sealgate import _core, collateral
from sealgate.collateral import CollateralCache
from sealgate.errors import CollateralError, UsageError
from sealgate.tdx.collateral import (
    TdxCollateral,
    load_collateral_files,
    load_collateral_json,
    to_json,
)
from sealgate.tdx.pck import ca_kind, load_pem_chain, sgx_extension

DEFAULT_PCS_URL = "https://api.trustedservices.intel.com"
#: CRL distribution point of the Intel SGX Root CA certificate.
INTEL_ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
#: Issuer chain headers are two certificates, URL-encoded: a few KiB.
MAX_HEADER_CHAIN = 16 << 10


def pcs_base_url(base: str | None = None) -> str:
    """``base``, else ``$SEALGATE_INTEL_PCS_URL`` (e.g. a PCCS), else Intel PCS."""
    return (base or os.environ.get("SEALGATE_INTEL_PCS_URL") or DEFAULT_PCS_URL).rstrip("/")


def fetch_with_header(url: str, header: str | None) -> tuple[bytes, bytes | None]:
    """GET ``url`` (``sealgate.collateral.fetch_with_header``) → (body, decoded header).

    PCS delivers issuer chains URL-encoded in HTTP headers; a requested header that is
    absent or oversized is ``collateral.fetch.missing_header``.
    """
    body, raw = collateral.fetch_with_header(url, header)
    chain = None
    if header:
        if raw is None or len(raw) > MAX_HEADER_CHAIN:
            raise CollateralError(
                "collateral.fetch.missing_header", f"{url}: no usable {header} header"
            )
        chain = unquote(raw).encode()
    return body, chain


def _need(chain: bytes | None) -> bytes:
    if chain is None:  # fetch_with_header raises when a requested header is absent
        raise CollateralError("collateral.fetch.missing_header", "issuer chain header missing")
    return chain


def _maybe_hex(body: bytes) -> bytes:
    text = body.strip()
    if text and all(c in b"0123456789abcdefABCDEF" for c in text) and len(text) % 2 == 0:
        return bytes.fromhex(text.decode())
    return body


def quote_platform(quote: bytes) -> tuple[bytes, str]:
    """(FMSPC, PCK CA kind) read from the quote's PCK certificate (not verified here)."""
    q = _core.TdxQuote.parse(quote)
    leaf = load_pem_chain(q.pck_chain, "PCK certificate chain")[0]
    return sgx_extension(leaf).fmspc, ca_kind(leaf)


def fetch_collateral(fmspc: bytes, ca: str = "platform", base: str | None = None) -> TdxCollateral:
    """Fetch TCB info, QE identity, PCK CRL and Root CA CRL for ``fmspc``."""
    if ca not in ("platform", "processor"):
        raise UsageError("cli.usage.bad_ca", f"PCK CA must be platform or processor, not {ca!r}")
    b = pcs_base_url(base)
    tcb, tcb_chain = fetch_with_header(
        f"{b}/tdx/certification/v4/tcb?fmspc={fmspc.hex().upper()}", "TCB-Info-Issuer-Chain"
    )
    qe, qe_chain = fetch_with_header(
        f"{b}/tdx/certification/v4/qe/identity", "SGX-Enclave-Identity-Issuer-Chain"
    )
    pck_crl, _ = fetch_with_header(
        f"{b}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der", "SGX-PCK-CRL-Issuer-Chain"
    )
    root_crl_url = (
        INTEL_ROOT_CRL_URL if b == DEFAULT_PCS_URL else f"{b}/sgx/certification/v4/rootcacrl"
    )
    root_crl, _ = fetch_with_header(root_crl_url, None)
    c = load_collateral_files(tcb, qe, _need(tcb_chain), _maybe_hex(pck_crl), _maybe_hex(root_crl))
    if _need(qe_chain) != tcb_chain:
        c = TdxCollateral(
            tcb_info_json=c.tcb_info_json,
            tcb_info_signature=c.tcb_info_signature,
            qe_identity_json=c.qe_identity_json,
            qe_identity_signature=c.qe_identity_signature,
            tcb_info_issuer_chain=c.tcb_info_issuer_chain,
            qe_identity_issuer_chain=_need(qe_chain),
            pck_crl=c.pck_crl,
            root_crl=c.root_crl,
            source="pcs fetch",
        )
    return c


def cache_parts(fmspc: bytes) -> tuple[str, ...]:
    return (fmspc.hex().upper(), "collateral.json")


def store(c: TdxCollateral, fmspc: bytes, cache_dir: Path | None = None) -> Path:
    return CollateralCache(cache_dir).put("tdx", *cache_parts(fmspc), data=to_json(c))


def cache_file(fmspc: bytes, cache_dir: Path | None = None) -> Path:
    """Where the collateral for ``fmspc`` is cached."""
    return CollateralCache(cache_dir).path("tdx", *cache_parts(fmspc))


def load_cached(fmspc: bytes, cache_dir: Path | None = None) -> TdxCollateral | None:
    """Collateral cached for ``fmspc``, or None (read now: ``TdxVerifier.load_cached``
    keeps what it loaded until the file changes)."""
    data = CollateralCache(cache_dir).get("tdx", *cache_parts(fmspc))
    return load_collateral_json(data) if data is not None else None


def fetch_root(base: str | None = None) -> bytes:
    """PEM of the PCK Platform CA and Intel SGX Root CA as PCS serves them (the
    ``SGX-PCK-CRL-Issuer-Chain`` header). Pins are checked by the caller
    (``TrustStore.import_certificates``)."""
    b = pcs_base_url(base)
    _, chain = fetch_with_header(
        f"{b}/sgx/certification/v4/pckcrl?ca=platform&encoding=der", "SGX-PCK-CRL-Issuer-Chain"
    )
    return _need(chain)
