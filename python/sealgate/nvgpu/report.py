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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sealgate.errors import ParseError

#: A Hopper report is ~4.1 KiB (64 blocks of 55 B + opaque); 64 KiB bounds any sane one.
MAX_REPORT = 64 * 1024
REQUEST_LEN = 37
SIGNATURE_LEN = 96
SPDM_1_1 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
#: Measurement block header (index, spec, size) ‖ DMTF header (type, value size) ‖ 48-byte
#: SHA-384 value: DSP0274 Tables 46-47.
_SHA384_BLOCK = struct.Struct("<BBHBH48s")

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


def _need(data: bytes, off: int, n: int, fld: str) -> None:
    if off + n > len(data):
        raise _err(
            "gpu.format.truncated", f"{fld} needs {n} bytes, {len(data) - off} left", fld, off
        )


def _text(v: bytes, fld: str, off: int) -> str:
    # NVIDIA pads its strings with NULs ("882\0\0\0\0\0\0"); the text is what precedes them.
    s = v.split(b"\0", 1)[0]
    if any(b2 != 0 for b2 in v[len(s) :]):
        raise _err("gpu.format.invalid", f"{fld} has bytes after its NUL terminator", fld, off)
    try:
        text = s.decode("ascii")
    except UnicodeDecodeError:
        raise _err("gpu.format.invalid", f"{fld} is not ASCII", fld, off) from None
    if not text.isprintable():
        raise _err("gpu.format.invalid", f"{fld} has control characters", fld, off)
    return text


def format_vbios_version(v: bytes) -> str:
    """8 bytes little-endian as NVIDIA prints them: ``005e009601000000`` → ``96.00.5E.00.01``
    (bytes 3, 2, 1, 0 then 4 of the value, upper-case hex)."""
    return ".".join(f"{b:02X}" for b in (v[3], v[2], v[1], v[0], v[4]))


def parse_report(data: bytes) -> GpuReport:
    """Parse a binary report; every length is bounds-checked, every failure a ``gpu.format.*``
    ParseError naming the field and offset."""
    if len(data) > MAX_REPORT:
        raise _err(
            "gpu.format.too_large", f"report is {len(data)} bytes, cap {MAX_REPORT}", "report", 0
        )
    _need(data, 0, REQUEST_LEN, "request")
    if data[0] != SPDM_1_1 or data[1] != GET_MEASUREMENTS:
        raise _err(
            "gpu.format.invalid", "request is not an SPDM 1.1 GET_MEASUREMENTS", "request", 0
        )
    p1, p2 = data[2], data[3]
    if not p1 & 1:
        raise _err("gpu.format.invalid", "request did not ask for a signature", "request.param1", 2)
    nonce = data[4:36]
    slot = data[36]
    off = REQUEST_LEN
    _need(data, off, 8, "response")
    if data[off] != SPDM_1_1 or data[off + 1] != MEASUREMENTS:
        raise _err(
            "gpu.format.invalid", "response is not an SPDM 1.1 MEASUREMENTS", "response", off
        )
    n_blocks = data[off + 4]
    rec_len = int.from_bytes(data[off + 5 : off + 8], "little")
    off += 8
    _need(data, off, rec_len, "measurement_record")
    rec_end = off + rec_len
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    # DSP0274 Table 46 measurement block header ‖ DMTF measurement header (Table 47): index,
    # specification, size (u16), value type, value size (u16) — one unpack per block.
    hdr = struct.Struct("<BBHBH")
    # Fast path for the shape every Hopper report has (every block a DMTF SHA-384 digest,
    # 4 + 3 + 48 bytes): one C-level unpack of the record; any deviation takes the
    # field-by-field loop below, which names the offending field and offset.
    if n_blocks and rec_len == n_blocks * _SHA384_BLOCK.size:
        # Columns: index, spec, size, value type, value size, value.
        cols = list(zip(*_SHA384_BLOCK.iter_unpack(data[off:rec_end]), strict=True))
        idx = set(cols[0])
        if (
            len(idx) == n_blocks
            and 0 not in idx
            and 0xFF not in idx
            and set(cols[1]) == {1}
            and set(cols[2]) == {51}
            and set(cols[4]) == {48}
        ):
            blocks = list(map(MeasurementBlock, cols[0], cols[1], cols[3], cols[5]))
            off = rec_end
            n_blocks = 0  # parsed
    for _ in range(n_blocks):
        if off + 7 > rec_end:
            raise _err("gpu.format.truncated", "measurement block header", "measurement_block", off)
        index, spec, size, vtype, vsize = hdr.unpack_from(data, off)
        end = off + 4 + size
        if end > rec_end:
            raise _err(
                "gpu.format.truncated",
                f"block {index} overruns the record",
                "measurement_block",
                off,
            )
        if index in seen or index == 0 or index == 0xFF:
            raise _err(
                "gpu.format.invalid", f"block index {index} repeated or reserved", "index", off
            )
        seen.add(index)
        if spec != 1:
            raise _err(
                "gpu.format.unsupported", f"block {index} spec {spec} is not DMTF", "spec", off + 1
            )
        if vsize != size - 3:
            raise _err(
                "gpu.format.invalid",
                f"block {index} value size {vsize} != {size - 3}",
                "size",
                off + 5,
            )
        blocks.append(MeasurementBlock(index, spec, vtype, data[off + 7 : end]))
        off = end
    if off != rec_end:
        raise _err(
            "gpu.format.trailing_bytes", "measurement record longer than its blocks", "record", off
        )
    _need(data, off, 34, "responder_nonce")
    rnonce = data[off : off + 32]
    off += 32
    olen = int.from_bytes(data[off : off + 2], "little")
    off += 2
    _need(data, off, olen, "opaque_data")
    o_end = off + olen
    opaque: list[tuple[int, bytes]] = []
    while off < o_end:
        if off + 4 > o_end:
            raise _err("gpu.format.truncated", "opaque TLV header", "opaque_data", off)
        t = int.from_bytes(data[off : off + 2], "little")
        ln = int.from_bytes(data[off + 2 : off + 4], "little")
        if off + 4 + ln > o_end:
            raise _err(
                "gpu.format.truncated",
                f"opaque TLV {t} overruns the opaque data",
                "opaque_data",
                off,
            )
        opaque.append((t, data[off + 4 : off + 4 + ln]))
        off += 4 + ln
    _need(data, off, SIGNATURE_LEN, "signature")
    signed = data[:off]
    sig = data[off : off + SIGNATURE_LEN]
    off += SIGNATURE_LEN
    if off != len(data):
        raise _err(
            "gpu.format.trailing_bytes",
            f"{len(data) - off} unsigned bytes after it",
            "signature",
            off,
        )

    fields: dict[int, tuple[bytes, int]] = {}
    pos = REQUEST_LEN + 8 + rec_len + 34
    for t, v in opaque:
        if t in fields and t in (3, 6, 15, 17, 18, 20, 22):
            raise _err(
                "gpu.format.invalid", f"opaque TLV {t} repeated", OPAQUE_NAMES.get(t, str(t)), pos
            )
        fields.setdefault(t, (v, pos + 4))
        pos += 4 + len(v)

    def text(t: int) -> str | None:
        got = fields.get(t)
        return _text(got[0], OPAQUE_NAMES[t], got[1]) if got else None

    vb = fields.get(OPAQUE_VBIOS_VERSION)
    if vb is not None and len(vb[0]) != 8:
        raise _err("gpu.format.invalid", "VBIOS version is not 8 bytes", "vbios_version", vb[1])
    fw = fields.get(OPAQUE_FWID)
    if fw is not None and len(fw[0]) != 48:
        raise _err("gpu.format.invalid", "FWID is not 48 bytes (SHA-384)", "fwid", fw[1])
    pd = fields.get(OPAQUE_SWITCH_PDI)
    if pd is not None and len(pd[0]) % 8:
        raise _err("gpu.format.invalid", "switch PDIs are not 8-byte values", "switch_pdi", pd[1])
    pdis = tuple(pd[0][i : i + 8] for i in range(0, len(pd[0]), 8)) if pd else ()
    return GpuReport(
        request_nonce=nonce,
        slot=slot,
        request_param1=p1,
        request_param2=p2,
        blocks=tuple(blocks),
        responder_nonce=rnonce,
        opaque=tuple(opaque),
        signed=signed,
        signature=sig,
        driver_version=text(OPAQUE_DRIVER_VERSION),
        vbios_version=format_vbios_version(vb[0]) if vb else None,
        fwid=fw[0] if fw else None,
        chip_sku=text(OPAQUE_CHIP_SKU),
        project=text(OPAQUE_PROJECT),
        project_sku=text(OPAQUE_PROJECT_SKU),
        switch_pdis=pdis,
        measurements=dict(zip([b.index for b in blocks], [b.value for b in blocks], strict=True)),
    )


def decode_report(data: bytes) -> bytes:
    """A report file: binary, or hex text (what nvtrust's samples hold). A binary report
    starts with SPDM version 0x11, never a hex digit, so the two cannot be confused."""
    s = data.strip()
    if s[:2] != b"11":
        return data
    if len(s) > 2 * MAX_REPORT:
        raise _err("gpu.format.too_large", f"hex report of {len(s)} characters", "report", 0)
    try:
        return bytes.fromhex(s.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _err("gpu.format.invalid", "report text is not hex", "report", 0) from None
