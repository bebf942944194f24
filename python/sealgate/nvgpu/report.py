"""The NVIDIA GPU attestation report: SPDM 1.1 GET_MEASUREMENTS request ‖ MEASUREMENTS response.

Layout per DMTF DSP0274 (SPDM 1.1.0) §10.11 (GET_MEASUREMENTS / MEASUREMENTS) and §10.11.1
(measurement block, DMTF measurement specification), with NVIDIA's opaque data as a list of
TLVs (u16 type, u16 length, little-endian, as nvtrust's local verifier reads them):

- request, 37 bytes: SPDMVersion 0x11, RequestResponseCode 0xE0, Param1 (bit 0: signature
  requested), Param2 (0xFF: all blocks), Nonce[32], SlotIDParam;
- response: SPDMVersion 0x11, 0x60, Param1, Param2, NumberOfBlocks, MeasurementRecordLength
  (u24), MeasurementRecord, Nonce[32], OpaqueDataLength (u16), OpaqueData, Signature.

The signature (ECDSA P-384, raw r‖s, 96 bytes: DSP0274 §15 for TPM_ALG_ECDSA_ECC_NIST_P384)
covers request ‖ response up to the signature (the M1/M2 transcript NVIDIA uses). Bytes after
the signature are refused (``gpu.format.trailing_bytes``): they are not signed, so accepting
them would let anyone append data that looks attested; none of the published reports has any
once the hex text is decoded.

The parser is Rust (``rust/formats/src/nvgpu.rs``, bound as ``sealgate._core.parse_nvgpu``):
the same checks, caps, field names, offsets and ``gpu.format.*`` codes on every input; this
module wraps its result in the Python types.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from sealgate import _core
from sealgate.errors import ParseError

#: A Hopper report is ~4.1 KiB (64 blocks of 55 B + opaque); 64 KiB bounds any sane one.
MAX_REPORT = 64 * 1024
REQUEST_LEN = 37
SIGNATURE_LEN = 96
SPDM_1_1 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60

#: NVIDIA opaque-data TLV types (nvtrust local verifier, OpaqueDataType).
OPAQUE_NAMES: dict[int, str] = {
    1: "cert_issuer_name",
    2: "cert_authority_key_identifier",
    3: "driver_version",
    4: "gpu_info",
    5: "sku",
    6: "vbios_version",
    7: "manufacturer_id",
    8: "tamper_detection",
    9: "smc",
    10: "vpr",
    11: "nvdec0_status",
    12: "msrscnt",
    13: "cprinfo",
    14: "board_id",
    15: "chip_sku",
    16: "chip_sku_mod",
    17: "project",
    18: "project_sku",
    19: "project_sku_mod",
    20: "fwid",
    21: "protected_pcie_status",
    22: "switch_pdi",
    23: "floorswept_ports",
    24: "position_id",
    25: "lock_switch_status",
    32: "gpu_link_conn",
    33: "sys_enable_status",
    34: "opaque_data_version",
    35: "chip_info",
    36: "feature_flag",
}
OPAQUE_DRIVER_VERSION = 3
OPAQUE_VBIOS_VERSION = 6
OPAQUE_CHIP_SKU = 15
OPAQUE_PROJECT = 17
OPAQUE_PROJECT_SKU = 18
OPAQUE_FWID = 20
OPAQUE_PROTECTED_PCIE_STATUS = 21
OPAQUE_SWITCH_PDI = 22


class MeasurementBlock:
    """One DSP0274 measurement block in the DMTF measurement-specification form. A slotted
    class rather than a frozen dataclass: 64 are built on every verification and a frozen
    dataclass's ``__init__`` costs several times more."""

    __slots__ = ("index", "spec", "value", "value_type")

    def __init__(self, index: int, spec: int, value_type: int, value: bytes) -> None:
        self.index = index
        self.spec = spec  # MeasurementSpecification (bit 0 = DMTF)
        self.value_type = value_type  # DMTFSpecMeasurementValueType (bit 7: raw bit stream)
        self.value = value

    def __repr__(self) -> str:
        return f"MeasurementBlock({self.index}, type {self.value_type:#x}, {self.value.hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MeasurementBlock):
            return NotImplemented
        return (self.index, self.spec, self.value_type, self.value) == (
            other.index,
            other.spec,
            other.value_type,
            other.value,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable slots: not hashable


@dataclass(frozen=True)
class GpuReport:
    """A parsed report. ``signed`` is request ‖ response before the signature."""

    request_nonce: bytes
    slot: int
    request_param1: int
    request_param2: int
    blocks: tuple[MeasurementBlock, ...]
    responder_nonce: bytes
    opaque: tuple[tuple[int, bytes], ...]  # raw TLVs in order
    signed: bytes
    signature: bytes
    driver_version: str | None = None
    vbios_version: str | None = None
    fwid: bytes | None = None
    chip_sku: str | None = None
    project: str | None = None
    project_sku: str | None = None
    switch_pdis: tuple[bytes, ...] = ()
    measurements: dict[int, bytes] = field(default_factory=dict)

    def opaque_value(self, tlv_type: int) -> bytes | None:
        for t, v in self.opaque:
            if t == tlv_type:
                return v
        return None


def _err(code: str, msg: str, fld: str, off: int) -> ParseError:
    return ParseError(code, f"{msg} (field {fld}, offset {off})", fld, off)


def format_vbios_version(v: bytes) -> str:
    """8 bytes little-endian as NVIDIA prints them: ``005e009601000000`` → ``96.00.5E.00.01``
    (bytes 3, 2, 1, 0 then 4 of the value, upper-case hex)."""
    return ".".join(f"{b:02X}" for b in (v[3], v[2], v[1], v[0], v[4]))


def from_fields(data: bytes, f: _core._NvGpuFields) -> GpuReport:
    """A ``GpuReport`` from the Rust parser's fields of ``data`` (``_core.parse_nvgpu``)."""
    (nonce, slot, p1, p2, raw_blocks, rnonce, opaque, signed_len, sig) = f[:9]
    (driver, vbios, fwid, chip_sku, project, project_sku, pdis) = f[9:]
    blocks = tuple(MeasurementBlock(*b) for b in raw_blocks)
    return GpuReport(
        request_nonce=nonce,
        slot=slot,
        request_param1=p1,
        request_param2=p2,
        blocks=blocks,
        responder_nonce=rnonce,
        opaque=tuple(opaque),
        signed=data[:signed_len],
        signature=sig,
        driver_version=driver,
        vbios_version=vbios,
        fwid=fwid,
        chip_sku=chip_sku,
        project=project,
        project_sku=project_sku,
        switch_pdis=tuple(pdis),
        measurements={b.index: b.value for b in blocks},
    )


def parse_report(data: bytes, *, switch: bool = False) -> GpuReport:
    """Parse a binary report; every length is bounds-checked, every failure a ``gpu.format.*``
    ParseError naming the field and offset. ``switch``: an NVSwitch report, whose VBIOS TLV
    is NUL-padded text rather than the GPU's 8 bytes; it is left raw in ``opaque``
    (``vbios_version`` None) for ``sealgate.nvgpu.switch`` to decode."""
    return from_fields(data, _core.parse_nvgpu(data, switch))


def decode_report(data: bytes) -> bytes:
    """A report file: binary, or hex text (what nvtrust's samples hold). A binary report
    starts with SPDM version 0x11, never a hex digit, so the two cannot be confused."""
    s = data.strip()
    if s[:2] != b"11":
        return data
    if len(s) > 2 * MAX_REPORT:
        raise _err("gpu.format.too_large", f"hex report of {len(s)} characters", "report", 0)
    try:
        # One hex line (nvtrust's samples, NRAS): a2b_hex reads the bytes directly and is
        # the fast path; text wrapped over lines goes through fromhex, which skips whitespace.
        return binascii.a2b_hex(s)
    except (binascii.Error, ValueError):
        pass
    try:
        return bytes.fromhex(s.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _err("gpu.format.invalid", "report text is not hex", "report", 0) from None
