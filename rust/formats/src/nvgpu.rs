//! The NVIDIA confidential GPU attestation report: SPDM 1.1 GET_MEASUREMENTS request ‖
//! MEASUREMENTS response.
//!
//! Layout per DMTF DSP0274 (SPDM 1.1.0) §10.11 (GET_MEASUREMENTS, Table 40; MEASUREMENTS,
//! Table 45) and §10.11.1 (measurement block, Table 46; DMTF measurement specification
//! header, Table 47), with NVIDIA's opaque data as a list of TLVs (u16 type, u16 length,
//! little-endian, as NVIDIA's nvtrust local verifier reads them):
//!
//! - request, 37 bytes: SPDMVersion 0x11, RequestResponseCode 0xE0, Param1 (bit 0:
//!   signature requested), Param2 (0xFF: all blocks), Nonce[32], SlotIDParam;
//! - response: SPDMVersion 0x11, 0x60, Param1, Param2, NumberOfBlocks,
//!   MeasurementRecordLength (u24), MeasurementRecord, Nonce[32], OpaqueDataLength (u16),
//!   OpaqueData, Signature.
//!
//! The signature (ECDSA P-384, raw r‖s, 96 bytes: DSP0274 §15 for
//! TPM_ALG_ECDSA_ECC_NIST_P384) covers request ‖ response up to the signature (the M1/M2
//! transcript NVIDIA uses); it is checked in `sealgate-verify`. Bytes after the signature
//! are refused (`gpu.format.trailing_bytes`): they are not signed, so accepting them would
//! let anyone append data that looks attested; none of the published reports has any once
//! the hex text is decoded.
//!
//! Every field name and offset in an error is the one the Python API has always reported
//! (`sealgate.nvgpu.report`), so the stable `gpu.format.*` codes do not move.

use crate::error::{ParseError, ParseErrorKind, Platform, Result};

/// A Hopper report is ~4.1 KiB (64 blocks of 55 B + opaque); 64 KiB bounds any sane one.
pub const MAX_REPORT: usize = 64 * 1024;
/// GET_MEASUREMENTS request with a nonce (Table 40): 4 header bytes, Nonce, SlotIDParam.
pub const REQUEST_LEN: usize = 37;
/// MEASUREMENTS response header (Table 45) before MeasurementRecord.
pub const RESPONSE_HEADER_LEN: usize = 8;
/// Request and responder nonces (Tables 40, 45).
pub const NONCE_LEN: usize = 32;
/// ECDSA P-384 raw r‖s (DSP0274 §15).
pub const SIGNATURE_LEN: usize = 96;
pub const SPDM_1_1: u8 = 0x11;
/// RequestResponseCode of GET_MEASUREMENTS / MEASUREMENTS (DSP0274 Table 4).
pub const GET_MEASUREMENTS: u8 = 0xE0;
pub const MEASUREMENTS: u8 = 0x60;
/// MeasurementSpecification bit 0: the DMTF form (Table 46).
pub const SPEC_DMTF: u8 = 1;
/// Measurement block header (index, spec, size) and DMTF header (type, value size).
const BLOCK_HEADER_LEN: usize = 4;
const DMTF_HEADER_LEN: usize = 3;
/// The VBIOS version TLV: 8 bytes (see [`format_vbios_version`]).
pub const VBIOS_VERSION_LEN: usize = 8;
/// The FWID TLV: a SHA-384 digest (the leaf certificate's TCG DICE FWID).
pub const FWID_LEN: usize = 48;
/// Each switch PDI (NVSwitch platform identifier) is 8 bytes.
pub const PDI_LEN: usize = 8;

/// NVIDIA opaque-data TLV types (nvtrust local verifier, `OpaqueDataType`).
pub mod opaque {
    pub const DRIVER_VERSION: u16 = 3;
    pub const VBIOS_VERSION: u16 = 6;
    pub const CHIP_SKU: u16 = 15;
    pub const PROJECT: u16 = 17;
    pub const PROJECT_SKU: u16 = 18;
    pub const FWID: u16 = 20;
    pub const PROTECTED_PCIE_STATUS: u16 = 21;
    pub const SWITCH_PDI: u16 = 22;
}

/// The name of an opaque TLV type (nvtrust `OpaqueDataType`, lower case), or None.
pub fn opaque_name(t: u16) -> Option<&'static str> {
    Some(match t {
        1 => "cert_issuer_name",
        2 => "cert_authority_key_identifier",
        3 => "driver_version",
        4 => "gpu_info",
        5 => "sku",
        6 => "vbios_version",
        7 => "manufacturer_id",
        8 => "tamper_detection",
        9 => "smc",
        10 => "vpr",
        11 => "nvdec0_status",
        12 => "msrscnt",
        13 => "cprinfo",
        14 => "board_id",
        15 => "chip_sku",
        16 => "chip_sku_mod",
        17 => "project",
        18 => "project_sku",
        19 => "project_sku_mod",
        20 => "fwid",
        21 => "protected_pcie_status",
        22 => "switch_pdi",
        23 => "floorswept_ports",
        24 => "position_id",
        25 => "lock_switch_status",
        32 => "gpu_link_conn",
        33 => "sys_enable_status",
        34 => "opaque_data_version",
        35 => "chip_info",
        36 => "feature_flag",
        _ => return None,
    })
}

/// The TLVs sealgate gives a meaning to: each may occur once (a second, different copy
/// would make "the" driver version ambiguous).
const TYPED: [u16; 7] = [
    opaque::DRIVER_VERSION,
    opaque::VBIOS_VERSION,
    opaque::CHIP_SKU,
    opaque::PROJECT,
    opaque::PROJECT_SKU,
    opaque::FWID,
    opaque::SWITCH_PDI,
];

/// One measurement block in the DMTF measurement-specification form (Tables 46-47).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasurementBlock<'a> {
    /// Index, 1..=0xFE (0 and 0xFF are reserved by Table 42 Param2).
    pub index: u8,
    /// MeasurementSpecification (always [`SPEC_DMTF`] here).
    pub spec: u8,
    /// DMTFSpecMeasurementValueType (bit 7: raw bit stream).
    pub value_type: u8,
    pub value: &'a [u8],
}

/// One opaque-data TLV as it appears, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpaqueTlv<'a> {
    pub tlv_type: u16,
    pub value: &'a [u8],
    /// Offset of the TLV header in the report.
    pub offset: usize,
}

/// A parsed report, borrowing the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReport<'a> {
    pub request_param1: u8,
    pub request_param2: u8,
    pub request_nonce: &'a [u8; NONCE_LEN],
    pub slot: u8,
    pub response_param1: u8,
    pub response_param2: u8,
    pub blocks: Vec<MeasurementBlock<'a>>,
    pub responder_nonce: &'a [u8; NONCE_LEN],
    /// Every TLV, in order (NVSwitch-specific ones are decoded by the Python layer).
    pub opaque: Vec<OpaqueTlv<'a>>,
    /// Request ‖ response before the signature: what the signature covers.
    pub signed: &'a [u8],
    pub signature: &'a [u8; SIGNATURE_LEN],
    pub driver_version: Option<&'a str>,
    pub vbios_version: Option<&'a [u8; VBIOS_VERSION_LEN]>,
    pub fwid: Option<&'a [u8; FWID_LEN]>,
    pub chip_sku: Option<&'a str>,
    pub project: Option<&'a str>,
    pub project_sku: Option<&'a str>,
    /// The SWITCH_PDI TLV's value (a whole number of 8-byte PDIs), if present.
    pub switch_pdi: Option<&'a [u8]>,
}

impl<'a> GpuReport<'a> {
    /// The first TLV of type `t`.
    pub fn opaque_value(&self, t: u16) -> Option<&'a [u8]> {
        self.opaque
            .iter()
            .find(|o| o.tlv_type == t)
            .map(|o| o.value)
    }

    /// The switch PDIs in order (repeats kept: one per NVLink).
    pub fn switch_pdis(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.switch_pdi.unwrap_or(&[]).chunks_exact(PDI_LEN)
    }

    /// The VBIOS version as NVIDIA prints it, if present.
    pub fn vbios_version_text(&self) -> Option<String> {
        self.vbios_version.map(format_vbios_version)
    }

    /// Encode back to bytes. For a parsed report this gives back exactly the input (every
    /// length on the wire is determined by the parsed fields); used by builders and tests,
    /// which keep within the wire's widths (at most 255 blocks, a record under 16 MiB,
    /// opaque data and each value under 64 KiB): wider values are truncated, not refused.
    pub fn to_bytes(&self) -> Vec<u8> {
        let rec_len: usize = self
            .blocks
            .iter()
            .map(|b| BLOCK_HEADER_LEN + DMTF_HEADER_LEN + b.value.len())
            .sum();
        let o_len: usize = self.opaque.iter().map(|o| 4 + o.value.len()).sum();
        let mut out = Vec::with_capacity(
            REQUEST_LEN + RESPONSE_HEADER_LEN + rec_len + NONCE_LEN + 2 + o_len + SIGNATURE_LEN,
        );
        out.extend_from_slice(&[
            SPDM_1_1,
            GET_MEASUREMENTS,
            self.request_param1,
            self.request_param2,
        ]);
        out.extend_from_slice(self.request_nonce);
        out.push(self.slot);
        out.extend_from_slice(&[
            SPDM_1_1,
            MEASUREMENTS,
            self.response_param1,
            self.response_param2,
            self.blocks.len() as u8,
        ]);
        out.extend_from_slice(&(rec_len as u32).to_le_bytes()[..3]);
        for b in &self.blocks {
            let size = (DMTF_HEADER_LEN + b.value.len()) as u16;
            out.extend_from_slice(&[b.index, b.spec]);
            out.extend_from_slice(&size.to_le_bytes());
            out.push(b.value_type);
            out.extend_from_slice(&(b.value.len() as u16).to_le_bytes());
            out.extend_from_slice(b.value);
        }
        out.extend_from_slice(self.responder_nonce);
        out.extend_from_slice(&(o_len as u16).to_le_bytes());
        for o in &self.opaque {
            out.extend_from_slice(&o.tlv_type.to_le_bytes());
            out.extend_from_slice(&(o.value.len() as u16).to_le_bytes());
            out.extend_from_slice(o.value);
        }
        out.extend_from_slice(self.signature);
        out
    }
}

/// 8 bytes little-endian as NVIDIA prints them: `005e009601000000` → `96.00.5E.00.01`
/// (bytes 3, 2, 1, 0 then 4 of the value, upper-case hex).
pub fn format_vbios_version(v: &[u8; VBIOS_VERSION_LEN]) -> String {
    format!(
        "{:02X}.{:02X}.{:02X}.{:02X}.{:02X}",
        v[3], v[2], v[1], v[0], v[4]
    )
}

fn err(
    kind: ParseErrorKind,
    field: &'static str,
    offset: usize,
    detail: impl Into<String>,
) -> ParseError {
    ParseError::new(Platform::Gpu, kind, field, offset, detail)
}

fn need(data: &[u8], off: usize, n: usize, field: &'static str) -> Result<()> {
    if off.saturating_add(n) > data.len() {
        return Err(err(
            ParseErrorKind::Truncated,
            field,
            off,
            format!(
                "{field} needs {n} bytes, {} left",
                data.len().saturating_sub(off)
            ),
        ));
    }
    Ok(())
}

fn u16_at(data: &[u8], off: usize) -> usize {
    u16::from_le_bytes([data[off], data[off + 1]]) as usize
}

/// NVIDIA pads its strings with NULs (`882\0\0\0\0\0\0`); the text is what precedes them,
/// and must be printable ASCII (0x20-0x7E), with nothing but NULs after it.
fn text<'a>(v: &'a [u8], field: &'static str, off: usize) -> Result<&'a str> {
    let n = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    let (s, pad) = v.split_at(n);
    if pad.iter().any(|&b| b != 0) {
        return Err(err(
            ParseErrorKind::Invalid,
            field,
            off,
            format!("{field} has bytes after its NUL terminator"),
        ));
    }
    if !s.is_ascii() {
        return Err(err(
            ParseErrorKind::Invalid,
            field,
            off,
            format!("{field} is not ASCII"),
        ));
    }
    if s.iter().any(|&b| !(0x20..0x7F).contains(&b)) {
        return Err(err(
            ParseErrorKind::Invalid,
            field,
            off,
            format!("{field} has control characters"),
        ));
    }
    // Checked ASCII just above: cannot fail.
    core::str::from_utf8(s)
        .map_err(|_| err(ParseErrorKind::Invalid, field, off, "not ASCII".to_string()))
}

fn array<const N: usize>(s: &[u8]) -> &[u8; N] {
    // Callers slice exactly N bytes after a bounds check.
    <&[u8; N]>::try_from(s).expect("slice of N bytes")
}

/// Which NVIDIA device produced a report: the SPDM framing is the same, but the opaque
/// VBIOS_VERSION TLV (6) is 8 binary bytes on a GPU and NUL-padded text
/// ("96.10.73.00.01") on an NVSwitch (LS10), as nvtrust's GPU and switch verifiers read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Gpu,
    Switch,
}

/// Parse a binary GPU report; every length is bounds-checked, every failure a
/// `gpu.format.*` error naming the field and offset.
pub fn parse_report(data: &[u8]) -> Result<GpuReport<'_>> {
    parse_device_report(data, Device::Gpu)
}

/// Parse a binary report of `device`. For a switch the VBIOS TLV is left uninterpreted
/// (`vbios_version` None; its raw TLV is in `opaque` for the switch layer to decode).
pub fn parse_device_report(data: &[u8], device: Device) -> Result<GpuReport<'_>> {
    use ParseErrorKind::*;
    if data.len() > MAX_REPORT {
        return Err(err(
            TooLarge,
            "report",
            0,
            format!("report is {} bytes, cap {MAX_REPORT}", data.len()),
        ));
    }
    need(data, 0, REQUEST_LEN, "request")?;
    if data[0] != SPDM_1_1 || data[1] != GET_MEASUREMENTS {
        return Err(err(
            Invalid,
            "request",
            0,
            "request is not an SPDM 1.1 GET_MEASUREMENTS",
        ));
    }
    let (p1, p2) = (data[2], data[3]);
    // Param1 bit 0 (Table 40): a signature was requested; an unsigned report proves nothing.
    if p1 & 1 == 0 {
        return Err(err(
            Invalid,
            "request.param1",
            2,
            "request did not ask for a signature",
        ));
    }
    let request_nonce = array::<NONCE_LEN>(&data[4..4 + NONCE_LEN]);
    let slot = data[36];
    let mut off = REQUEST_LEN;
    need(data, off, RESPONSE_HEADER_LEN, "response")?;
    if data[off] != SPDM_1_1 || data[off + 1] != MEASUREMENTS {
        return Err(err(
            Invalid,
            "response",
            off,
            "response is not an SPDM 1.1 MEASUREMENTS",
        ));
    }
    let (rp1, rp2) = (data[off + 2], data[off + 3]);
    let n_blocks = data[off + 4] as usize;
    let rec_len = u32::from_le_bytes([data[off + 5], data[off + 6], data[off + 7], 0]) as usize;
    off += RESPONSE_HEADER_LEN;
    need(data, off, rec_len, "measurement_record")?;
    let rec_end = off + rec_len;
    let mut blocks = Vec::with_capacity(n_blocks);
    // Indices 0..=255 seen so far.
    let mut seen = [false; 256];
    for _ in 0..n_blocks {
        if off + BLOCK_HEADER_LEN + DMTF_HEADER_LEN > rec_end {
            return Err(err(
                Truncated,
                "measurement_block",
                off,
                "measurement block header",
            ));
        }
        let (index, spec) = (data[off], data[off + 1]);
        let size = u16_at(data, off + 2);
        let (vtype, vsize) = (data[off + 4], u16_at(data, off + 5));
        let end = off + BLOCK_HEADER_LEN + size;
        if end > rec_end {
            return Err(err(
                Truncated,
                "measurement_block",
                off,
                format!("block {index} overruns the record"),
            ));
        }
        if seen[index as usize] || index == 0 || index == 0xFF {
            return Err(err(
                Invalid,
                "index",
                off,
                format!("block index {index} repeated or reserved"),
            ));
        }
        seen[index as usize] = true;
        if spec != SPEC_DMTF {
            return Err(err(
                Unsupported,
                "spec",
                off + 1,
                format!("block {index} spec {spec} is not DMTF"),
            ));
        }
        if size < DMTF_HEADER_LEN || vsize != size - DMTF_HEADER_LEN {
            return Err(err(
                Invalid,
                "size",
                off + 5,
                format!(
                    "block {index} value size {vsize} != {}",
                    size as isize - DMTF_HEADER_LEN as isize
                ),
            ));
        }
        blocks.push(MeasurementBlock {
            index,
            spec,
            value_type: vtype,
            value: &data[off + BLOCK_HEADER_LEN + DMTF_HEADER_LEN..end],
        });
        off = end;
    }
    if off != rec_end {
        return Err(err(
            TrailingBytes,
            "record",
            off,
            "measurement record longer than its blocks",
        ));
    }
    need(data, off, NONCE_LEN + 2, "responder_nonce")?;
    let responder_nonce = array::<NONCE_LEN>(&data[off..off + NONCE_LEN]);
    off += NONCE_LEN;
    let o_len = u16_at(data, off);
    off += 2;
    need(data, off, o_len, "opaque_data")?;
    let o_end = off + o_len;
    let mut opaque = Vec::new();
    while off < o_end {
        if off + 4 > o_end {
            return Err(err(Truncated, "opaque_data", off, "opaque TLV header"));
        }
        let t = u16_at(data, off) as u16;
        let len = u16_at(data, off + 2);
        if off + 4 + len > o_end {
            return Err(err(
                Truncated,
                "opaque_data",
                off,
                format!("opaque TLV {t} overruns the opaque data"),
            ));
        }
        opaque.push(OpaqueTlv {
            tlv_type: t,
            value: &data[off + 4..off + 4 + len],
            offset: off,
        });
        off += 4 + len;
    }
    need(data, off, SIGNATURE_LEN, "signature")?;
    let signed = &data[..off];
    let signature = array::<SIGNATURE_LEN>(&data[off..off + SIGNATURE_LEN]);
    off += SIGNATURE_LEN;
    if off != data.len() {
        return Err(err(
            TrailingBytes,
            "signature",
            off,
            format!("{} unsigned bytes after it", data.len() - off),
        ));
    }

    // The typed TLVs: first occurrence, each at most once; (value, value offset).
    let mut typed: [Option<(&[u8], usize)>; TYPED.len()] = [None; TYPED.len()];
    for o in &opaque {
        if device == Device::Switch && o.tlv_type == opaque::VBIOS_VERSION {
            continue;
        }
        if let Some(i) = TYPED.iter().position(|&t| t == o.tlv_type) {
            if typed[i].is_some() {
                return Err(err(
                    Invalid,
                    opaque_name(o.tlv_type).unwrap_or("opaque_data"),
                    o.offset,
                    format!("opaque TLV {} repeated", o.tlv_type),
                ));
            }
            typed[i] = Some((o.value, o.offset + 4));
        }
    }
    let get = |t: u16| typed[TYPED.iter().position(|&x| x == t).unwrap_or(0)];
    let vbios_version = match get(opaque::VBIOS_VERSION) {
        None => None,
        Some((v, at)) if v.len() != VBIOS_VERSION_LEN => {
            return Err(err(
                Invalid,
                "vbios_version",
                at,
                "VBIOS version is not 8 bytes",
            ))
        }
        Some((v, _)) => Some(array::<VBIOS_VERSION_LEN>(v)),
    };
    let fwid = match get(opaque::FWID) {
        None => None,
        Some((v, at)) if v.len() != FWID_LEN => {
            return Err(err(Invalid, "fwid", at, "FWID is not 48 bytes (SHA-384)"))
        }
        Some((v, _)) => Some(array::<FWID_LEN>(v)),
    };
    let switch_pdi = match get(opaque::SWITCH_PDI) {
        Some((v, at)) if v.len() % PDI_LEN != 0 => {
            return Err(err(
                Invalid,
                "switch_pdi",
                at,
                "switch PDIs are not 8-byte values",
            ))
        }
        other => other.map(|(v, _)| v),
    };
    let text_of = |t: u16, name: &'static str| -> Result<Option<&str>> {
        get(t).map(|(v, at)| text(v, name, at)).transpose()
    };
    let driver_version = text_of(opaque::DRIVER_VERSION, "driver_version")?;
    let chip_sku = text_of(opaque::CHIP_SKU, "chip_sku")?;
    let project = text_of(opaque::PROJECT, "project")?;
    let project_sku = text_of(opaque::PROJECT_SKU, "project_sku")?;
    Ok(GpuReport {
        request_param1: p1,
        request_param2: p2,
        request_nonce,
        slot,
        response_param1: rp1,
        response_param2: rp2,
        blocks,
        responder_nonce,
        opaque,
        signed,
        signature,
        driver_version,
        vbios_version,
        fwid,
        chip_sku,
        project,
        project_sku,
        switch_pdi,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A report shaped like a Hopper one: 64 SHA-384 blocks, the typed TLVs and a few
    /// others, a dummy signature (parsing does not check it).
    pub fn sample() -> Vec<u8> {
        let values: Vec<[u8; 48]> = (1..=64u8).map(|i| [i; 48]).collect();
        let blocks = (1..=64u8)
            .map(|i| MeasurementBlock {
                index: i,
                spec: SPEC_DMTF,
                value_type: 0x80 | (i % 3),
                value: &values[i as usize - 1],
            })
            .collect();
        let tlvs: [(u16, &[u8]); 9] = [
            (opaque::DRIVER_VERSION, b"550.90.07\0\0\0"),
            (
                opaque::VBIOS_VERSION,
                &[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0],
            ),
            (opaque::CHIP_SKU, b"882\0\0\0\0\0"),
            (opaque::PROJECT, b"1010"),
            (opaque::PROJECT_SKU, b"0200\0"),
            (opaque::FWID, &[0xf5; 48]),
            (opaque::PROTECTED_PCIE_STATUS, &[0x55]),
            (
                opaque::SWITCH_PDI,
                &[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
            (99, b"unknown kept"),
        ];
        let opaque = tlvs
            .iter()
            .map(|&(tlv_type, value)| OpaqueTlv {
                tlv_type,
                value,
                offset: 0,
            })
            .collect();
        GpuReport {
            request_param1: 1,
            request_param2: 0xFF,
            request_nonce: &[0x93; 32],
            slot: 0,
            response_param1: 0,
            response_param2: 0,
            blocks,
            responder_nonce: &[0xb4; 32],
            opaque,
            signed: &[],
            signature: &[0x5a; 96],
            driver_version: None,
            vbios_version: None,
            fwid: None,
            chip_sku: None,
            project: None,
            project_sku: None,
            switch_pdi: None,
        }
        .to_bytes()
    }

    fn code(data: &[u8]) -> (String, &'static str, usize) {
        let e = parse_report(data).unwrap_err();
        (e.code(), e.field, e.offset)
    }

    /// Offset of the first TLV's header in `sample()`.
    fn opaque_start(b: &[u8]) -> usize {
        let rec = u32::from_le_bytes([b[42], b[43], b[44], 0]) as usize;
        REQUEST_LEN + RESPONSE_HEADER_LEN + rec + NONCE_LEN + 2
    }

    #[test]
    fn parses_sample() {
        let b = sample();
        let r = parse_report(&b).unwrap();
        assert_eq!(r.blocks.len(), 64);
        assert_eq!(r.blocks[63].index, 64);
        assert_eq!(r.blocks[0].value, &[1u8; 48]);
        assert_eq!(r.driver_version, Some("550.90.07"));
        assert_eq!(r.vbios_version_text().as_deref(), Some("96.00.9F.00.01"));
        assert_eq!(
            (r.chip_sku, r.project, r.project_sku),
            (Some("882"), Some("1010"), Some("0200"))
        );
        assert_eq!(r.fwid, Some(&[0xf5; 48]));
        assert_eq!(r.switch_pdis().count(), 2);
        assert_eq!(r.opaque_value(99), Some(&b"unknown kept"[..]));
        assert_eq!(
            r.opaque_value(opaque::PROTECTED_PCIE_STATUS),
            Some(&[0x55][..])
        );
        assert_eq!(r.opaque.len(), 9);
        assert_eq!(r.signed, &b[..b.len() - 96]);
        assert_eq!(r.to_bytes(), b);
    }

    #[test]
    fn vbios_format() {
        assert_eq!(
            format_vbios_version(&[0x00, 0x5e, 0x00, 0x96, 0x01, 0, 0, 0]),
            "96.00.5E.00.01"
        );
    }

    #[test]
    fn caps_and_trailing() {
        let b = sample();
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            code(&long),
            ("gpu.format.trailing_bytes".into(), "signature", b.len())
        );
        let big = vec![0u8; MAX_REPORT + 1];
        assert_eq!(code(&big), ("gpu.format.too_large".into(), "report", 0));
        for cut in [0, 1, 36, 37, 44, 45, 100, b.len() - 97, b.len() - 1] {
            assert_eq!(code(&b[..cut]).0, "gpu.format.truncated", "cut {cut}");
        }
    }

    #[test]
    fn header_checks() {
        let b = sample();
        let mut x = b.clone();
        x[0] = 0x12;
        assert_eq!(code(&x), ("gpu.format.invalid".into(), "request", 0));
        let mut x = b.clone();
        x[2] = 0;
        assert_eq!(code(&x), ("gpu.format.invalid".into(), "request.param1", 2));
        let mut x = b.clone();
        x[38] = 0x61;
        assert_eq!(code(&x), ("gpu.format.invalid".into(), "response", 37));
    }

    #[test]
    fn block_checks() {
        let b = sample();
        let first = REQUEST_LEN + RESPONSE_HEADER_LEN;
        let mut x = b.clone();
        x[first + 55] = 1; // block 2 claims index 1
        assert_eq!(code(&x), ("gpu.format.invalid".into(), "index", first + 55));
        for reserved in [0u8, 0xFF] {
            let mut x = b.clone();
            x[first] = reserved;
            assert_eq!(code(&x), ("gpu.format.invalid".into(), "index", first));
        }
        let mut x = b.clone();
        x[first + 1] = 2;
        assert_eq!(
            code(&x),
            ("gpu.format.unsupported".into(), "spec", first + 1)
        );
        let mut x = b.clone();
        x[first + 5] = 47;
        assert_eq!(code(&x), ("gpu.format.invalid".into(), "size", first + 5));
        let mut x = b.clone();
        x[first + 2] = 2; // size 2: shorter than the DMTF header
        assert_eq!(code(&x), ("gpu.format.invalid".into(), "size", first + 5));
        let mut x = b.clone();
        x[first + 3] = 0xFF; // overruns the record
        assert_eq!(
            code(&x),
            ("gpu.format.truncated".into(), "measurement_block", first)
        );
        // One block fewer announced: the record is longer than its blocks.
        let mut x = b.clone();
        x[41] = 63;
        assert_eq!(
            code(&x),
            (
                "gpu.format.trailing_bytes".into(),
                "record",
                first + 63 * 55
            )
        );
    }

    /// Replace the value of the TLV of type `t` in `sample()` with `v` (same length).
    fn with_tlv(t: u16, v: &[u8]) -> (Vec<u8>, usize) {
        let mut b = sample();
        let mut off = opaque_start(&b);
        loop {
            let ty = u16_at(&b, off) as u16;
            let len = u16_at(&b, off + 2);
            if ty == t {
                assert_eq!(len, v.len());
                b[off + 4..off + 4 + len].copy_from_slice(v);
                return (b, off);
            }
            off += 4 + len;
        }
    }

    #[test]
    fn text_rules() {
        let (b, at) = with_tlv(opaque::CHIP_SKU, b"882\0\0\0\0x");
        assert_eq!(code(&b), ("gpu.format.invalid".into(), "chip_sku", at + 4));
        let (b, at) = with_tlv(opaque::PROJECT, b"1\x0710");
        assert_eq!(code(&b), ("gpu.format.invalid".into(), "project", at + 4));
        let (b, at) = with_tlv(opaque::PROJECT_SKU, b"02\xc3\xa9\0");
        assert_eq!(
            code(&b),
            ("gpu.format.invalid".into(), "project_sku", at + 4)
        );
        let (b, at) = with_tlv(opaque::DRIVER_VERSION, b"550.90.07\x7f\0\0");
        assert_eq!(
            code(&b),
            ("gpu.format.invalid".into(), "driver_version", at + 4)
        );
        let (b, _) = with_tlv(opaque::PROJECT, b"\0\0\0\0");
        assert_eq!(parse_report(&b).unwrap().project, Some(""));
    }

    #[test]
    fn typed_tlv_rules() {
        // A second DRIVER_VERSION in place of the unknown TLV 99.
        let (mut b, at) = with_tlv(99, b"unknown kept");
        b[at..at + 2].copy_from_slice(&opaque::DRIVER_VERSION.to_le_bytes());
        assert_eq!(
            code(&b),
            ("gpu.format.invalid".into(), "driver_version", at)
        );
        // Two unknown TLVs of one type are fine: only the typed ones are unique.
        let (mut b, at) = with_tlv(opaque::DRIVER_VERSION, b"550.90.07\0\0\0");
        b[at..at + 2].copy_from_slice(&99u16.to_le_bytes());
        let r = parse_report(&b).unwrap();
        assert_eq!(r.driver_version, None);
        assert_eq!(r.opaque_value(99), Some(&b"550.90.07\0\0\0"[..]));
        // PROJECT relabelled VBIOS_VERSION: a second VBIOS TLV, named at its header.
        let (mut b, at) = with_tlv(opaque::PROJECT, b"1010");
        b[at..at + 2].copy_from_slice(&opaque::VBIOS_VERSION.to_le_bytes());
        assert_eq!(code(&b), ("gpu.format.invalid".into(), "vbios_version", at));
        // The fixed-size TLVs: the original relabelled away, the 4-byte PROJECT TLV
        // relabelled as it, and the error names the value's offset.
        for (t, len, name) in [
            (opaque::VBIOS_VERSION, 8, "vbios_version"),
            (opaque::FWID, 48, "fwid"),
            (opaque::SWITCH_PDI, 16, "switch_pdi"),
        ] {
            let (mut x, orig) = with_tlv(t, &vec![0u8; len]);
            x[orig..orig + 2].copy_from_slice(&150u16.to_le_bytes());
            x[at..at + 2].copy_from_slice(&t.to_le_bytes());
            // 4 bytes: not 8, not 48, not a whole number of 8-byte PDIs.
            assert_eq!(code(&x), ("gpu.format.invalid".into(), name, at + 4));
        }
    }

    #[test]
    fn switch_vbios_tlv_is_left_to_the_switch_layer() {
        // Two VBIOS TLVs, one of 4 bytes: a GPU report is refused, a switch report keeps
        // both raw (the switch layer decodes its text form and checks repetition).
        let (mut b, at) = with_tlv(opaque::PROJECT, b"1010");
        b[at..at + 2].copy_from_slice(&opaque::VBIOS_VERSION.to_le_bytes());
        assert!(parse_device_report(&b, Device::Gpu).is_err());
        let r = parse_device_report(&b, Device::Switch).unwrap();
        assert_eq!(r.vbios_version, None);
        let n = r
            .opaque
            .iter()
            .filter(|o| o.tlv_type == opaque::VBIOS_VERSION)
            .count();
        assert_eq!(n, 2);
        // Everything else is parsed as for a GPU.
        assert_eq!(
            r.driver_version,
            parse_report(&sample()).unwrap().driver_version
        );
    }

    #[test]
    fn opaque_overruns() {
        let b = sample();
        let o = opaque_start(&b);
        let mut x = b.clone();
        x[o + 2] = 0xF0; // first TLV longer than the opaque data
        assert_eq!(code(&x), ("gpu.format.truncated".into(), "opaque_data", o));
        // Opaque length 2 more than the TLVs: a 2-byte stub TLV header at the end.
        let mut x = b.clone();
        let olen = u16_at(&x, o - 2) + 2;
        x[o - 2..o].copy_from_slice(&(olen as u16).to_le_bytes());
        x.extend_from_slice(&[0, 0]);
        let stub = o + olen - 2;
        assert_eq!(
            code(&x),
            ("gpu.format.truncated".into(), "opaque_data", stub)
        );
    }

    fn arb_block() -> impl Strategy<Value = (u8, Vec<u8>)> {
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..80))
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = parse_report(&data);
        }

        #[test]
        fn mutations_never_panic(pos in 0usize..4400, val in any::<u8>(), cut in 0usize..4400) {
            let mut b = sample();
            let p = pos % b.len();
            b[p] = val;
            let _ = parse_report(&b);
            let _ = parse_report(&b[..cut.min(b.len())]);
        }

        #[test]
        fn built_reports_round_trip(
            blocks in proptest::collection::vec(arb_block(), 0..40),
            tlvs in proptest::collection::vec(
                (100u16..200, proptest::collection::vec(any::<u8>(), 0..40)), 0..10),
            nonce in any::<[u8; 32]>(),
            slot in any::<u8>(),
        ) {
            // Distinct, unreserved indices.
            let mut used = [false; 256];
            let blocks: Vec<(u8, Vec<u8>)> = blocks
                .into_iter()
                .filter(|(i, _)| *i != 0 && *i != 0xFF && !std::mem::replace(&mut used[*i as usize], true))
                .collect();
            let sig = [7u8; 96];
            let rn = [9u8; 32];
            let r = GpuReport {
                request_param1: 1,
                request_param2: 0xFF,
                request_nonce: &nonce,
                slot,
                response_param1: 0,
                response_param2: 0,
                blocks: blocks.iter().map(|(i, v)| MeasurementBlock {
                    index: *i, spec: SPEC_DMTF, value_type: 1, value: v,
                }).collect(),
                responder_nonce: &rn,
                opaque: tlvs.iter().map(|(t, v)| OpaqueTlv { tlv_type: *t, value: v, offset: 0 }).collect(),
                signed: &[],
                signature: &sig,
                driver_version: None,
                vbios_version: None,
                fwid: None,
                chip_sku: None,
                project: None,
                project_sku: None,
                switch_pdi: None,
            };
            let b = r.to_bytes();
            let p = parse_report(&b).unwrap();
            prop_assert_eq!(&p.to_bytes(), &b);
            prop_assert_eq!(p.request_nonce, &nonce);
            prop_assert_eq!(p.slot, slot);
            prop_assert_eq!(p.blocks.len(), blocks.len());
            for (got, (i, v)) in p.blocks.iter().zip(&blocks) {
                prop_assert_eq!(got.index, *i);
                prop_assert_eq!(got.value, &v[..]);
            }
            prop_assert_eq!(p.opaque.len(), tlvs.len());
            prop_assert_eq!(p.signed.len(), b.len() - SIGNATURE_LEN);
        }
    }
}
