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

NVSwitches (LS10) attest the same way with their own opaque data (``sealgate.nvgpu.switch``);
``verify_devices`` verifies GPUs and switches of one protected-PCIe system together and
checks their topology.
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
from sealgate.nvgpu.revocation import record_revocation
from sealgate.nvgpu.rim import RimSource
from sealgate.nvgpu.switch import (
    KIND_GPU,
    KIND_NVSWITCH,
    SwitchVerifier,
    kind_from_names,
    kind_of,
    parse_switch_report,
)
from sealgate.result import VerifyResult

__all__ = [
    "KIND_GPU",
    "KIND_NVSWITCH",
    "MAX_REPORT",
    "PLATFORM",
    "REQUEST_LEN",
    "GpuEvidence",
    "GpuReport",
    "GpuVerifier",
    "MeasurementBlock",
    "SwitchVerifier",
    "check_kind",
    "check_set",
    "decode_report",
    "format_vbios_version",
    "kind_of",
    "load_evidence_json",
    "parse_report",
    "parse_switch_report",
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
        found = self._reference_values(res, rep, rims, when)
        self._revocation(res, chain, ocsp, when, found, rims)
        return res

    def _reference_values(
        self, res: VerifyResult, rep: GpuReport | None, rims: RimSource | None, at: datetime
    ) -> dict[str, rim.Rim]:
        """Compare every active measurement with the driver and VBIOS RIMs for the report's
        versions (``sealgate.nvgpu.rim``). A missing RIM is ``gpu.rim.not_found``, a RIM not
        valid at ``at`` ``gpu.rim.not_valid_at`` — never a mismatch. ``rep`` is None only
        without RIMs (nothing to compare, so the report's fields were not built). Returns
        the RIMs found, whose signer chains :meth:`_revocation` checks too."""
        c = res.claims
        c["mismatched_indices"] = []
        found: dict[str, rim.Rim] = {}
        if rims is None or rep is None:
            c["rim"] = {"driver": None, "vbios": None, "status": "not_compared"}
            c["measurements_compared"] = False
            return found
        c["measurements_compared"] = False
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
            return found
        try:
            mism = rim.compare(rep.measurements, found["driver"], found["vbios"])
        except SealgateError as e:
            res.fail_from(e)
            return found
        c["measurements_compared"] = True
        c["mismatched_indices"] = [m.as_dict() for m in mism]
        try:
            rim.require_match(mism)
        except SealgateError as e:
            res.fail_from(e)
        return found

    @staticmethod
    def _revocation(
        res: VerifyResult,
        chain: DeviceChain,
        ocsp: Sequence[bytes] | None,
        at: datetime,
        found: dict[str, rim.Rim],
        source: RimSource | None,
    ) -> None:
        """OCSP for the device chain and each found RIM's signer chain
        (``sealgate.nvgpu.revocation``)."""
        record_revocation(res, chain.path.certs, ocsp, at, found, source)


def _gpu_order(pdi_hex: str) -> str:
    """A switch's own PDI as the GPUs report it: byte-reversed (PROVENANCE; nvtrust PPCIe
    verifier ``read_field_as_little_endian`` on each GPU-side PDI)."""
    return bytes.fromhex(pdi_hex)[::-1].hex()


def _topology(res: VerifyResult, devices: Sequence[dict[str, Any]]) -> None:
    """Protected-PCIe topology, as NVIDIA's PPCIe verifier checks it (nvtrust
    ``ppcie-verifier-sdk-cpp`` ``topology/validate_topology.py``).

    GPU side: GPUs in one set are all in PPCIe mode or none is; in PPCIe mode every GPU
    names the same, non-empty set of NVSwitch PDIs (one per NVLink, so repeats within a
    report are expected; an all-zero PDI is a disabled link and is dropped, as NVIDIA does).

    Switch side, when NVSwitch evidence is in the set: every switch the GPUs name has
    exactly one report, every switch report is one the GPUs name (each GPU reports a switch
    PDI in the reverse byte order of the switch's own DEVICE_PDI), and every switch names
    the same set of GPU PDIs, as many as there are GPUs. Without switch evidence the claims
    say the switch side was not checked and policy decides."""
    gpus = [d for d in devices if d.get("kind", KIND_GPU) == KIND_GPU and "ppcie" in d]
    switches = [d for d in devices if d.get("kind") == KIND_NVSWITCH and "pdi" in d]
    # A report without the status TLV is not in PPCIe mode.
    modes = {d.get("ppcie") is True for d in gpus}
    if not modes:
        if switches:
            res.claims["topology"] = {"ppcie": None, "switch_side_checked": False}
        return
    if len(modes) > 1:
        res.fail("gpu.topology.mixed_mode", "the set mixes protected-PCIe and other GPUs")
        return
    if modes != {True}:
        res.claims["topology"] = {"ppcie": False}
        if switches:
            res.fail(
                "gpu.topology.not_ppcie",
                "NVSwitch evidence was given but the GPUs are not in protected-PCIe mode",
            )
        return
    zero = "00" * 8
    sets = [frozenset(p for p in d.get("switch_pdis", ()) if p != zero) for d in gpus]
    first = sets[0]
    if not first or any(s != first for s in sets[1:]):
        res.fail("gpu.topology.mismatch", "the GPUs do not all name the same set of NVSwitch PDIs")
    topo: dict[str, Any] = {
        "ppcie": True,
        "switch_pdis": sorted(first),
        "switch_count": len(first),
        "switch_side_checked": bool(switches),
    }
    res.claims["topology"] = topo
    if switches:
        _switch_side(res, topo, frozenset(p for s in sets for p in s), len(gpus), switches)


def _switch_side(
    res: VerifyResult,
    topo: dict[str, Any],
    named: frozenset[str],
    n_gpus: int,
    switches: Sequence[dict[str, Any]],
) -> None:
    own = [_gpu_order(d["pdi"]) for d in switches]
    seen: set[str] = set()
    for i, p in enumerate(own):
        if p in seen:
            res.fail(
                "gpu.topology.switch_duplicate",
                f"NVSwitch {switches[i]['pdi']} has more than one report in the set",
            )
        seen.add(p)
        if p not in named:
            res.fail(
                "gpu.topology.switch_unknown",
                f"NVSwitch {switches[i]['pdi']} is not one the GPUs are connected to",
            )
    for p in sorted(named - seen):
        res.fail(
            "gpu.topology.switch_missing",
            f"the GPUs name NVSwitch {_gpu_order(p)} but the set has no report from it",
        )
    views = [frozenset(d.get("gpu_pdis", ())) for d in switches]
    view = views[0]
    if any(v != view for v in views[1:]):
        res.fail(
            "gpu.topology.switch_gpus_mismatch",
            "the NVSwitches do not all name the same set of GPU PDIs",
        )
    if len(view) != n_gpus:
        res.fail(
            "gpu.topology.gpu_count",
            f"the NVSwitches name {len(view)} GPUs but the set holds {n_gpus}",
        )
    topo["switch_device_pdis"] = sorted(d["pdi"] for d in switches)
    topo["switch_reports"] = len(switches)
    topo["gpu_pdis"] = sorted(view)
    topo["gpu_count"] = n_gpus


def verify_devices(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes | None,
    at: datetime | None = None,
    rims: RimSource | None = None,
    ocsp: Sequence[bytes] | None = None,
    verifier: GpuVerifier | None = None,
) -> VerifyResult:
    """Several devices in one evidence set — GPUs and, for protected-PCIe systems,
    NVSwitches (``sealgate.nvgpu.switch``; the kind from the item's ``arch``, else its chain,
    and the verified chain must agree) — each verified; the result fails if any fails, its
    claims hold a ``devices`` list (one claim set per device with its ``kind``, its errors
    named by index) and the ``topology`` (``_topology``). Distinct devices must have
    distinct leaf certificates (one GPU's report twice is not two GPUs)."""
    v = verifier or GpuVerifier()
    sv = SwitchVerifier(v.chains)
    res = VerifyResult(PLATFORM)
    devices: list[dict[str, Any]] = []
    for i, ev in enumerate(evidence):
        kind = kind_of(ev.arch, ev.cert_chain)
        if kind == KIND_NVSWITCH:
            r = sv.verify(ev.report, ev.cert_chain, nonce=nonce, at=at, rims=rims, ocsp=ocsp)
        else:
            r = v.verify(ev, nonce=nonce, at=at, rims=rims, ocsp=ocsp)
        check_kind(r, kind)
        r.claims.pop("kind", None)
        devices.append(
            {
                "verified": r.verified,
                "kind": kind,
                **r.claims,
                "errors": [f.as_dict() for f in r.errors],
            }
        )
        for f in r.errors:
            res.fail(f.code, f"device {i}: {f.message}")
    res.claims["count"] = len(evidence)
    res.claims["devices"] = devices
    check_set(res, devices)
    if not evidence:
        res.fail("gpu.evidence.invalid", "no device evidence")
    return res


def check_kind(r: VerifyResult, kind: str) -> None:
    """The verified chain's names must agree with the kind the evidence claimed (its
    ``arch``, else its unverified leaf): a GPU report presented as a switch's (or the
    reverse) is refused, not reinterpreted. Shared by ``verify_devices`` and the service."""
    cert = r.claims.get("certificate", {})
    named = kind_from_names(cert.get("chain", []) if isinstance(cert, dict) else [])
    if named is not None and named != kind:
        r.fail(
            "gpu.evidence.kind_mismatch",
            f"evidence says {kind} but its certificate chain is a {named} chain",
        )


def check_set(res: VerifyResult, devices: Sequence[dict[str, Any]]) -> None:
    """The checks over a whole device set, into ``res``: distinct devices have distinct
    leaf certificates (one GPU's report twice is not two GPUs), then the protected-PCIe
    topology (``_topology``; its claims in ``res.claims["topology"]``). ``devices`` are
    per-device claim sets with their ``kind``, in evidence order. Shared by
    ``verify_devices`` and the service (``sealgate.service.gpus``)."""
    leaves: dict[str, int] = {}
    for i, d in enumerate(devices):
        cert = d.get("certificate")
        leaf = cert.get("leaf_sha256") if isinstance(cert, dict) else None
        if isinstance(leaf, str):
            if leaf in leaves:
                res.fail(
                    "gpu.evidence.duplicate_device", f"device {i} repeats device {leaves[leaf]}"
                )
            leaves.setdefault(leaf, i)
    _topology(res, devices)
