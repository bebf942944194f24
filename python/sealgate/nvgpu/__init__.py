"""NVIDIA confidential-computing GPUs (Hopper H100): report format and genuineness.

Platform shape as ``sealgate.snp`` / ``sealgate.tdx``: ``parse_report`` reads the SPDM
report (``sealgate.nvgpu.report``), ``GpuVerifier.verify`` returns a ``VerifyResult`` with
platform ``nvidia-gpu``. Genuineness (NVIDIA's attestation flow, nvtrust local verifier):

1. the report signature, ECDSA P-384 / SHA-384 raw r‖s over request ‖ response before the
   signature (DSP0274 §10.11, §15), by the leaf of the device certificate chain;
2. that chain to the NVIDIA Device Identity CA through ``pki.ChainVerifier``
   (``sealgate.nvgpu.certs``), the root pinned by SHA-256 in ``sealgate.trust``;
3. the leaf's TCG DICE extension (2.23.133.5.4.1) FWID equal to the report's opaque FWID
   (older opaque data has no FWID TLV: the claims then say so);
4. the request nonce equal to the expected one (the caller's 32-byte challenge).

Reference values (RIMs) and revocation (OCSP) are separate steps (``sealgate.nvgpu.rim``,
``sealgate.nvgpu.ocsp``); without them the claims say the measurements were not compared and
revocation was not checked, and policy decides.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealgate import _core
from sealgate.errors import ParseError, SealgateError
from sealgate.nvgpu import ocsp as nv_ocsp
from sealgate.nvgpu import rim
from sealgate.nvgpu.certs import DeviceChain, NvidiaChainVerifier
from sealgate.nvgpu.report import (
    MAX_REPORT,
    REQUEST_LEN,
    GpuReport,
    MeasurementBlock,
    decode_report,
    format_vbios_version,
    from_fields,
    parse_report,
)
from sealgate.nvgpu.rim import RimSource
from sealgate.result import VerifyResult

__all__ = [
    "MAX_REPORT",
    "PLATFORM",
    "REQUEST_LEN",
    "GpuEvidence",
    "GpuReport",
    "GpuVerifier",
    "MeasurementBlock",
    "decode_report",
    "format_vbios_version",
    "load_evidence_json",
    "parse_report",
    "verify_devices",
]

PLATFORM = "nvidia-gpu"
NONCE_LEN = 32
#: The evidence list form (NRAS / nvtrust ``gpu_evidence.json``): at most this many devices
#: (8 GPUs + 4 NVSwitches on an HGX board; doubled for headroom) and this many bytes.
MAX_DEVICES = 16
MAX_EVIDENCE_JSON = MAX_DEVICES * 4 * MAX_REPORT


@dataclass(frozen=True)
class GpuEvidence:
    """One device's evidence: the report, its PEM certificate chain (leaf first), and the
    nonce the collector says it asked for (informational; the verifier compares the report's
    request nonce with the nonce *it* expects)."""

    report: bytes
    cert_chain: bytes
    nonce: bytes | None = None
    arch: str | None = None


def _b64(v: Any, what: str, i: int) -> bytes:
    if not isinstance(v, str):
        raise ParseError("gpu.evidence.invalid", f"device {i}: {what} is not a string", what, i)
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(
            "gpu.evidence.invalid", f"device {i}: {what} is not base64", what, i
        ) from None


def load_evidence_json(data: bytes) -> list[GpuEvidence]:
    """The JSON list form: ``[{"evidence": b64 report, "certificate": b64 PEM chain, "nonce":
    hex, "arch": ...}, ...]`` as NVIDIA's attestation SDK and NRAS use it."""
    if len(data) > MAX_EVIDENCE_JSON:
        raise ParseError("gpu.evidence.too_large", f"{len(data)} bytes", "evidence", 0)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ParseError("gpu.evidence.invalid", "not JSON", "evidence", 0) from None
    if isinstance(doc, dict) and isinstance(doc.get("evidence_list"), list):
        doc = doc["evidence_list"]
    if not isinstance(doc, list) or not doc:
        raise ParseError("gpu.evidence.invalid", "not a non-empty JSON list", "evidence", 0)
    if len(doc) > MAX_DEVICES:
        raise ParseError("gpu.evidence.too_large", f"{len(doc)} devices", "evidence", 0)
    out: list[GpuEvidence] = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise ParseError("gpu.evidence.invalid", f"device {i} is not an object", "evidence", i)
        report = _b64(item.get("evidence"), "evidence", i)
        chain = _b64(item.get("certificate"), "certificate", i)
        nonce: bytes | None = None
        if item.get("nonce") is not None:
            try:
                nonce = bytes.fromhex(str(item["nonce"]))
            except ValueError:
                raise ParseError("gpu.evidence.invalid", f"device {i}: nonce", "nonce", i) from None
        arch = item.get("arch")
        out.append(GpuEvidence(report, chain, nonce, arch if isinstance(arch, str) else None))
    return out


class GpuVerifier:
    """Holds the pinned/explicit roots and the chain cache (``NvidiaChainVerifier``): a chain
    seen before costs a dictionary lookup and one validity comparison, so a cached report
    costs one P-384 verification plus parsing."""

    def __init__(
        self,
        *,
        roots: Sequence[bytes] | None = None,
        trust_dir: Path | None = None,
    ) -> None:
        self.chains = NvidiaChainVerifier(roots=roots, trust_dir=trust_dir)

    def verify(
        self,
        ev: GpuEvidence,
        *,
        nonce: bytes | None,
        at: datetime | None = None,
        rims: RimSource | None = None,
        ocsp: Sequence[bytes] | None = None,
    ) -> VerifyResult:
        """Verify one device. ``nonce``: the expected 32-byte SPDM request nonce (None: not
        checked, and the claims say so). ``rims`` / ``ocsp``: reference-value and revocation
        sources (``sealgate.nvgpu.rim`` / ``sealgate.nvgpu.ocsp``, DER responses); None: not
        compared / not checked."""
        res = VerifyResult(PLATFORM)
        when = at if at is not None else datetime.now(UTC)
        # The chain first (a cache hit is a dictionary lookup): its leaf key drives the one
        # Rust call (parse, nonce, P-384 signature, FWID, claims; GIL released). A report
        # that does not parse is only that error, as before any chain is looked at.
        chain: DeviceChain | None = None
        chain_error: SealgateError | None = None
        try:
            chain = self.chains.verify(ev.cert_chain, when)
        except SealgateError as e:
            chain_error = e
        try:
            raw = decode_report(ev.report)
            claims, failures, fields = _core.verify_nvgpu(
                chain.nvkey if chain is not None else None,
                raw,
                nonce,
                chain.claims() if chain is not None else None,
                rims is not None,
            )
        except SealgateError as e:
            res.fail_from(e)
            return res
        res.claims = claims
        res.errors.extend(failures)
        if chain is None:
            assert chain_error is not None
            res.fail_from(chain_error)
            res.claims["signature_verified"] = False
            return res
        rep = from_fields(raw, fields) if fields is not None else None
        self._reference_values(res, rep, rims, when)
        self._revocation(res, chain, ocsp, when)
        return res

    def _reference_values(
        self, res: VerifyResult, rep: GpuReport | None, rims: RimSource | None, at: datetime
    ) -> None:
        """Compare every active measurement with the driver and VBIOS RIMs for the report's
        versions (``sealgate.nvgpu.rim``). A missing RIM is ``gpu.rim.not_found``, a RIM not
        valid at ``at`` ``gpu.rim.not_valid_at`` — never a mismatch. ``rep`` is None only
        without RIMs (nothing to compare, so the report's fields were not built)."""
        c = res.claims
        c["mismatched_indices"] = []
        if rims is None or rep is None:
            c["rim"] = {"driver": None, "vbios": None, "status": "not_compared"}
            c["measurements_compared"] = False
            return
        c["measurements_compared"] = False
        found: dict[str, rim.Rim] = {}
        status: dict[str, dict[str, Any]] = {}
        for kind, version in (("driver", rep.driver_version), ("vbios", rep.vbios_version)):
            if version is None:
                status[kind] = {"id": None, "version": None, "status": "gpu.rim.not_found"}
                res.fail("gpu.rim.not_found", f"the report states no {kind} version")
                continue
            try:
                r = rims.require(
                    kind,
                    version,
                    at=at,
                    project=rep.project,
                    project_sku=rep.project_sku,
                    chip_sku=rep.chip_sku,
                )
            except SealgateError as e:
                status[kind] = {"id": None, "version": version, "status": e.code}
                res.fail_from(e)
                continue
            found[kind] = r
            status[kind] = {"id": r.id, "version": r.version, "status": "valid"}
        c["rim"] = {**status, "status": "compared" if len(found) == 2 else "not_compared"}
        if len(found) != 2:
            return
        try:
            mism = rim.compare(rep.measurements, found["driver"], found["vbios"])
        except SealgateError as e:
            res.fail_from(e)
            return
        c["measurements_compared"] = True
        c["mismatched_indices"] = [m.as_dict() for m in mism]
        try:
            rim.require_match(mism)
        except SealgateError as e:
            res.fail_from(e)

    def _revocation(
        self, res: VerifyResult, chain: DeviceChain, ocsp: Sequence[bytes] | None, at: datetime
    ) -> None:
        """OCSP for every certificate of the device chain but the anchor
        (``sealgate.nvgpu.ocsp``, RFC 6960); none given: not checked, policy decides."""
        try:
            out = nv_ocsp.check_chain(chain.path.certs, list(ocsp or ()), at=at)
        except SealgateError as e:
            res.claims["revocation"] = {"checked": False, "status": e.code}
            res.fail_from(e)
            return
        res.claims["revocation"] = out.as_dict()


def _topology(res: VerifyResult, devices: Sequence[dict[str, Any]]) -> None:
    """GPU-side protected-PCIe topology (as NVIDIA's PPCIe verifier checks it before the
    NVSwitch reports): GPUs in one set are all in PPCIe mode or none is; in PPCIe mode every
    GPU names the same, non-empty set of NVSwitch PDIs (one per NVLink, so repeats within a
    report are expected). The count of distinct switches is a claim for policy; checking the
    PDIs against the NVSwitches' own reports needs NVSwitch evidence."""
    # A report without the status TLV is not in PPCIe mode.
    modes = {d.get("ppcie") is True for d in devices if "ppcie" in d}
    if not modes:
        return
    if len(modes) > 1:
        res.fail("gpu.topology.mixed_mode", "the set mixes protected-PCIe and other GPUs")
        return
    if modes != {True}:
        res.claims["topology"] = {"ppcie": False}
        return
    sets = [frozenset(d.get("switch_pdis", ())) for d in devices if "ppcie" in d]
    first = sets[0]
    if not first or any(s != first for s in sets[1:]):
        res.fail("gpu.topology.mismatch", "the GPUs do not all name the same set of NVSwitch PDIs")
    res.claims["topology"] = {
        "ppcie": True,
        "switch_pdis": sorted(first),
        "switch_count": len(first),
    }


def verify_devices(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes | None,
    at: datetime | None = None,
    rims: RimSource | None = None,
    ocsp: Sequence[bytes] | None = None,
    verifier: GpuVerifier | None = None,
) -> VerifyResult:
    """Several devices in one evidence set: each verified; the result fails if any fails, its
    claims hold a ``devices`` list (one claim set per device, its errors named by index).
    Distinct devices must have distinct leaf certificates (one GPU's report twice is not two
    GPUs)."""
    v = verifier or GpuVerifier()
    res = VerifyResult(PLATFORM)
    devices: list[dict[str, Any]] = []
    leaves: dict[str, int] = {}
    for i, ev in enumerate(evidence):
        r = v.verify(ev, nonce=nonce, at=at, rims=rims, ocsp=ocsp)
        devices.append(
            {"verified": r.verified, **r.claims, "errors": [f.as_dict() for f in r.errors]}
        )
        for f in r.errors:
            res.fail(f.code, f"device {i}: {f.message}")
        leaf = r.claims.get("certificate", {}).get("leaf_sha256")
        if leaf is not None:
            if leaf in leaves:
                res.fail(
                    "gpu.evidence.duplicate_device", f"device {i} repeats device {leaves[leaf]}"
                )
            leaves.setdefault(leaf, i)
    res.claims["count"] = len(evidence)
    res.claims["devices"] = devices
    _topology(res, devices)
    if not evidence:
        res.fail("gpu.evidence.invalid", "no device evidence")
    return res
