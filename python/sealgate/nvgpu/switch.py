"""NVIDIA NVSwitch (LS10, the third-generation NVSwitch of HGX H100 boards) attestation.

An NVSwitch attests exactly as a Hopper GPU does (nvtrust ``nv_switch_verifier`` and the
PPCIe verifier's ``switch_spdm``): an SPDM 1.1 GET_MEASUREMENTS request ‖ MEASUREMENTS
response (DMTF DSP0274 §10.11) signed ECDSA P-384 / SHA-384 raw r‖s by the leaf of a
five-certificate chain — LS_10 A01 FSP FMC LF → LS_10 A01 FSP BROM → NVIDIA LS_10
Provisioner ICA 1 → NVIDIA GH100 Identity → NVIDIA Device Identity CA, the same root as the
GPUs'. What differs is the opaque data (the switch's own TLV meanings, nvtrust
``switch_spdm/spdm_msrt_resp_msg.py`` ``OpaqueData``):

- 6 VBIOS_VERSION: the version as ASCII text ("96.10.73.00.01"), where a GPU sends 8
  binary bytes;
- 22 DEVICE_PDI: the switch's own 8-byte PDI (on a GPU, type 22 is the list of the switch
  PDIs it sees, one per NVLink, each in the reverse byte order of the switch's own report);
- 23 DISABLED_PORTS, 24 SWITCH_POSITION_ID (u16), 25 SWITCH_LOCK_STATUS (u16);
- 26 SWITCH_GPU_PDIS: eight 8-byte PDIs of the GPUs the switch is connected to, then a
  per-port GPU map (1 byte per port);
- no FWID, driver version or project TLVs.

The report is parsed by ``sealgate.nvgpu.report.parse_report(..., switch=True)`` (the
framing, bounds and block checks are the GPU's; the VBIOS TLV is left raw); only the TLV
meanings are read here. The switch's reference
values are one VBIOS RIM (nvtrust ``NV_SWITCH_BIOS_<project>_<sku>_<chip>_<version>``,
project 5612 / SKU 0002 / chip 890 for LS10); there is no driver RIM.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from sealgate.errors import ParseError, SealgateError
from sealgate.nvgpu import rim
from sealgate.nvgpu.certs import DeviceChain, NvidiaChainVerifier
from sealgate.nvgpu.report import (
    OPAQUE_VBIOS_VERSION,
    GpuReport,
    decode_report,
    parse_report,
)
from sealgate.nvgpu.revocation import record_revocation
from sealgate.nvgpu.rim import RimSource
from sealgate.result import VerifyResult

PLATFORM = "nvidia-gpu"
NONCE_LEN = 32
KIND_GPU = "gpu"
KIND_NVSWITCH = "nvswitch"

#: Evidence ``arch`` values (NVIDIA attestation SDK / NRAS evidence JSON).
SWITCH_ARCHS = frozenset({"LS10"})
GPU_ARCHS = frozenset({"HOPPER", "BLACKWELL"})

#: LS10 opaque TLV types (nvtrust PPCIe verifier, switch_spdm OpaqueData).
OPAQUE_DEVICE_PDI = 22
OPAQUE_DISABLED_PORTS = 23
OPAQUE_SWITCH_POSITION_ID = 24
OPAQUE_SWITCH_LOCK_STATUS = 25
OPAQUE_SWITCH_GPU_PDIS = 26
PDI_LEN = 8
#: The switch reports eight GPU PDI slots (an HGX board's eight GPUs) before its port map.
SWITCH_GPU_SLOTS = 8
_SINGLE = (
    OPAQUE_VBIOS_VERSION,
    OPAQUE_DEVICE_PDI,
    OPAQUE_SWITCH_GPU_PDIS,
    OPAQUE_SWITCH_POSITION_ID,
    OPAQUE_SWITCH_LOCK_STATUS,
    OPAQUE_DISABLED_PORTS,
)
_VERSION = re.compile(r"[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}")
#: NVIDIA's LS10 RIM identity (nvtrust nv_switch_verifier config: PROJECT, PROJECT_SKU,
#: CHIP_SKU), used to keep GPU-named VBIOS RIM files out of a switch lookup.
LS10_PROJECT, LS10_PROJECT_SKU, LS10_CHIP_SKU = "5612", "0002", "890"


def empty_pdi(p: bytes) -> bool:
    """An unused PDI slot: all zeros (a disabled NVLink, as NVIDIA's PPCIe verifier drops
    it) or all ones (an unpopulated slot)."""
    return p == bytes(len(p)) or p == b"\xff" * len(p)


def kind_from_arch(arch: str | None) -> str | None:
    if arch is None:
        return None
    a = arch.strip().upper()
    if a in SWITCH_ARCHS:
        return KIND_NVSWITCH
    if a in GPU_ARCHS:
        return KIND_GPU
    return None


def kind_from_names(cns: Sequence[str]) -> str | None:
    """The device kind the certificate names say: NVIDIA names its NVSwitch hierarchy
    "LS_10 …" and its GPU hierarchy "GH100 …" below the shared Identity CA, so only the
    leaf and the certificates just above it are read (the GPU chain's "NVIDIA GH100
    Identity" also heads the switch chains)."""
    low = [c.upper() for c in cns[:3]]
    if any("LS_10" in c or "LS10" in c for c in low):
        return KIND_NVSWITCH
    if any("GH100" in c for c in low):
        return KIND_GPU
    return None


def kind_of(arch: str | None, cert_chain: bytes) -> str:
    """The kind a device claims before verification: its ``arch``, else the names in its
    (unverified) chain, else GPU. ``verify_devices`` checks afterwards that the verified
    chain agrees."""
    k = kind_from_arch(arch)
    if k is not None:
        return k
    return kind_from_names(_leaf_names(cert_chain)) or KIND_GPU


def _leaf_names(pem: bytes) -> list[str]:
    """The leaf's subject common name, from the first PEM block only: a hint for choosing
    the parser (the verified chain's names are checked afterwards), so only the leaf and its
    subject are decoded (pyca/cryptography; ≈ 75 µs, a third of loading the whole chain)."""
    end = pem.find(b"-----END CERTIFICATE-----")
    if end < 0:
        return []
    try:
        cert = x509.load_pem_x509_certificate(pem[: end + len(b"-----END CERTIFICATE-----")])
    except ValueError:
        return []
    return [
        a.value
        for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if isinstance(a.value, str)
    ]


@dataclass(frozen=True)
class SwitchReport:
    """A parsed NVSwitch report: the GPU-shaped parse plus the switch TLVs."""

    base: GpuReport
    signed: bytes
    opaque: tuple[tuple[int, bytes], ...]
    pdi: bytes
    vbios_version: str | None
    gpu_pdis: tuple[bytes, ...]
    port_map: bytes
    position_id: int | None
    lock_status: int | None
    disabled_ports: bytes | None

    def opaque_value(self, tlv_type: int) -> bytes | None:
        for t, v in self.opaque:
            if t == tlv_type:
                return v
        return None


def _bad(msg: str, fld: str) -> ParseError:
    return ParseError("gpu.format.invalid", f"NVSwitch report: {msg} (field {fld})", fld, 0)


def parse_switch_report(data: bytes) -> SwitchReport:
    """Parse an LS10 report (binary; ``decode_report`` first for hex text). Every failure
    is a ``gpu.format.*`` ParseError."""
    # The SPDM framing, bounds and block checks are the GPU's; the switch's text VBIOS TLV is
    # left raw by the parser in switch mode and decoded below.
    base = parse_report(data, switch=True)
    signed = base.signed
    opaque = list(base.opaque)
    seen: dict[int, bytes] = {}
    for t, v in opaque:
        if t in _SINGLE and t in seen:
            raise _bad(f"opaque TLV {t} repeated", str(t))
        seen.setdefault(t, v)
    pdi = seen.get(OPAQUE_DEVICE_PDI)
    if pdi is None or len(pdi) != PDI_LEN or empty_pdi(pdi):
        raise _bad("no 8-byte DEVICE_PDI", "device_pdi")
    vb = seen.get(OPAQUE_VBIOS_VERSION)
    version: str | None = None
    if vb is not None:
        # Always text on a switch (nvtrust's switch verifier decodes it as UTF-8); an
        # 8-byte value is not reinterpreted as the GPU's binary form.
        text = vb.split(b"\0", 1)[0]
        if any(vb[len(text) :]) or not _VERSION.fullmatch(text.decode("latin-1")):
            raise _bad("VBIOS version is not NN.NN.NN.NN.NN text", "vbios_version")
        version = text.decode("ascii").upper()
    gp = seen.get(OPAQUE_SWITCH_GPU_PDIS)
    gpu_pdis: tuple[bytes, ...] = ()
    port_map = b""
    if gp is not None:
        n = SWITCH_GPU_SLOTS * PDI_LEN
        if len(gp) < n:
            raise _bad(f"SWITCH_GPU_PDIS is {len(gp)} bytes, under {n}", "switch_gpu_pdis")
        gpu_pdis = tuple(gp[i : i + PDI_LEN] for i in range(0, n, PDI_LEN))
        port_map = gp[n:]

    def u16(t: int) -> int | None:
        v = seen.get(t)
        if v is None:
            return None
        if len(v) != 2:
            raise _bad(f"opaque TLV {t} is not a u16", str(t))
        return int.from_bytes(v, "little")

    return SwitchReport(
        base=base,
        signed=signed,
        opaque=tuple(opaque),
        pdi=pdi,
        vbios_version=version,
        gpu_pdis=gpu_pdis,
        port_map=port_map,
        position_id=u16(OPAQUE_SWITCH_POSITION_ID),
        lock_status=u16(OPAQUE_SWITCH_LOCK_STATUS),
        disabled_ports=seen.get(OPAQUE_DISABLED_PORTS),
    )


def compare_vbios(measurements: dict[int, bytes], vbios: rim.Rim) -> list[rim.Mismatch]:
    """Every active entry of the switch's VBIOS RIM against the report's blocks (RIM index
    i ↔ SPDM block i + 1; a block matches when it equals any alternative) — the GPU rule
    of ``rim.compare`` with no driver RIM, as nvtrust's switch verifier builds its golden
    list from the VBIOS RIM alone."""
    if vbios.kind != "vbios":
        raise rim.RimError("gpu.rim.wrong_kind", f"RIM kind is {vbios.kind}, not vbios")
    out: list[rim.Mismatch] = []
    for idx in sorted(vbios.active_indices):
        m = vbios.measurements[idx]
        actual = measurements.get(idx + 1)
        if actual is None or actual not in m.alternatives:
            out.append(rim.Mismatch(idx, "vbios", actual, m.alternatives))
    return out


class SwitchVerifier:
    """Verifies NVSwitch evidence with a GPU verifier's chain verifier (same anchors, same
    chain cache): signature, chain to the Device Identity CA, nonce, VBIOS RIM, OCSP."""

    def __init__(self, chains: NvidiaChainVerifier) -> None:
        self.chains = chains

    def verify(
        self,
        report: bytes,
        cert_chain: bytes,
        *,
        nonce: bytes | None,
        at: datetime | None = None,
        rims: RimSource | None = None,
        ocsp: Sequence[bytes] | None = None,
    ) -> VerifyResult:
        res = VerifyResult(PLATFORM)
        when = at if at is not None else datetime.now(UTC)
        c = res.claims
        c["kind"] = KIND_NVSWITCH
        try:
            rep = parse_switch_report(decode_report(report))
        except SealgateError as e:
            res.fail_from(e)
            return res
        b = rep.base
        c["nonce"] = b.request_nonce.hex()
        c["responder_nonce"] = b.responder_nonce.hex()
        c["slot"] = b.slot
        c["vbios_version"] = rep.vbios_version
        c["pdi"] = rep.pdi.hex()
        c["gpu_pdis"] = [p.hex() for p in rep.gpu_pdis if not empty_pdi(p)]
        c["port_map"] = rep.port_map.hex()
        c["position_id"] = rep.position_id
        c["lock_status"] = rep.lock_status
        c["disabled_ports"] = rep.disabled_ports.hex() if rep.disabled_ports is not None else None
        c["measurements"] = {str(k): v.hex() for k, v in b.measurements.items()}
        if nonce is None:
            c["nonce_checked"] = False
        else:
            c["nonce_checked"] = True
            if len(nonce) != NONCE_LEN or not hmac.compare_digest(nonce, b.request_nonce):
                res.fail(
                    "gpu.report.nonce_mismatch",
                    "the report's request nonce is not the expected one",
                )
        try:
            chain: DeviceChain = self.chains.verify(cert_chain, when)
        except SealgateError as e:
            res.fail_from(e)
            c["signature_verified"] = False
            return res
        c["certificate"] = chain.claims()
        sig_ok = chain.verify_signature(rep.signed, b.signature)
        c["signature_verified"] = sig_ok
        if not sig_ok:
            res.fail(
                "gpu.report.signature_invalid", "the report signature does not verify with the leaf"
            )
        c["certificate_fwid"] = chain.fwid.hex() if chain.fwid is not None else None
        # The LS10 opaque data carries no FWID TLV (nvtrust's switch verifier passes an
        # empty one), so the leaf's DICE FWID has nothing to equal.
        c["fwid_checked"] = False
        used = self._reference_values(res, rep, rims, when)
        self._revocation(res, chain, used, rims, ocsp, when)
        return res

    @staticmethod
    def _revocation(
        res: VerifyResult,
        chain: DeviceChain,
        used: rim.Rim | None,
        source: RimSource | None,
        ocsp: Sequence[bytes] | None,
        at: datetime,
    ) -> None:
        """OCSP (RFC 6960) for the device chain and for the signer chain of the VBIOS RIM
        the measurements were compared with, in the GPU's claim shape (``device``,
        ``rims.vbios`` with the RIM id; ``checked`` only when both were): a switch RIM is
        as revocable as a GPU's. One pool (what the node sent); the RIM chain also takes
        the collateral cache's responses, as ``GpuVerifier`` does."""
        record_revocation(
            res, chain.path.certs, ocsp, at, {"vbios": used} if used is not None else {}, source
        )

    def _reference_values(
        self, res: VerifyResult, rep: SwitchReport, rims: RimSource | None, at: datetime
    ) -> rim.Rim | None:
        """Compare with the switch's VBIOS RIM; return the RIM compared with (None when
        none was)."""
        c = res.claims
        c["mismatched_indices"] = []
        c["measurements_compared"] = False
        if rims is None:
            c["rim"] = {"vbios": None, "status": "not_compared"}
            return None
        if rep.vbios_version is None:
            c["rim"] = {
                "vbios": {"id": None, "version": None, "status": "gpu.rim.not_found"},
                "status": "not_compared",
            }
            res.fail("gpu.rim.not_found", "the switch report states no VBIOS version")
            return None
        try:
            r = rims.require(
                "vbios",
                rep.vbios_version,
                at=at,
                project=LS10_PROJECT,
                project_sku=LS10_PROJECT_SKU,
                chip_sku=LS10_CHIP_SKU,
            )
            mism = compare_vbios(rep.base.measurements, r)
        except SealgateError as e:
            c["rim"] = {
                "vbios": {"id": None, "version": rep.vbios_version, "status": e.code},
                "status": "not_compared",
            }
            res.fail_from(e)
            return None
        c["rim"] = {
            "vbios": {"id": r.id, "version": r.version, "status": "valid"},
            "status": "compared",
        }
        c["measurements_compared"] = True
        c["mismatched_indices"] = [m.as_dict() for m in mism]
        try:
            rim.require_match(mism)
        except SealgateError as e:
            res.fail_from(e)
        return r
