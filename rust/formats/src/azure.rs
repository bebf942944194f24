//! Azure confidential VM evidence containers: the paravisor's HCL report and the bincode
//! `quote.bin` of the vTPM tooling.
//!
//! On an Azure CVM the guest has no SNP/TDX guest device: the paravisor (HCL) owns the
//! hardware report and publishes it, wrapped, in vTPM NV index 0x01400001. The layout
//! below is the one OpenHCL declares for its IGVM attestation report (`igvm_attest`:
//! `IgvmAttestRequestHeader`-style header, `IgvmAttestRequestData`) and that Microsoft's
//! "Azure confidential VM guest attestation" samples read; every field is little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | signature `"HCLA"` |
//! | 4 | 4 | version (1, or 2 on TDX-era paravisors) |
//! | 8 | 4 | report_size = 1236 + variable_data_size (the meaningful prefix) |
//! | 12 | 4 | request_type (2: the AK-certificate request the NV index holds) |
//! | 16 | 4 | status (0) |
//! | 20 | 12 | reserved (zero) |
//! | 32 | 1184 | hardware report: SNP ATTESTATION_REPORT, or TDREPORT_STRUCT (1024) + zero pad |
//! | 1216 | 20 | IGVM request data: data_size (= 20 + variable_data_size), version (1), report_type (2 SNP, 4 TDX), report_data_hash_type (1 SHA-256), variable_data_size |
//! | 1236 | n | variable data ("runtime data": JSON, hashed into the hardware report_data) |
//! | 1236+n | .. | zero padding to the NV index size (2600; 2048 in the first published form) |
//!
//! Nothing here hashes or verifies: the caller checks report_data against the runtime data
//! and the hardware report's signature (sealgate-verify / the Python facade).
//!
//! TDREPORT_STRUCT: Intel TDX Module ABI specification, "TDREPORT_STRUCT" (REPORTMACSTRUCT
//! 256 B, TEE_TCB_INFO 239 B, 17 reserved, TDINFO_STRUCT 512 B). Its MAC is keyed to the
//! platform and cannot be checked off it: a TDREPORT is only evidence through the TD quote
//! that the Quoting Enclave made from it.

use crate::error::{ParseError, ParseErrorKind, Platform, Result};
use crate::reader::Reader;

pub const HCL_HEADER_LEN: usize = 32;
pub const HCL_SIGNATURE: [u8; 4] = *b"HCLA";
pub const HW_REPORT_OFFSET: usize = HCL_HEADER_LEN;
/// The hardware report slot: the size of an SNP report (AMD 56860 Table 23).
pub const HW_REPORT_LEN: usize = 1184;
pub const REQUEST_DATA_OFFSET: usize = HW_REPORT_OFFSET + HW_REPORT_LEN;
pub const REQUEST_DATA_LEN: usize = 20;
pub const RUNTIME_DATA_OFFSET: usize = REQUEST_DATA_OFFSET + REQUEST_DATA_LEN;
/// An NV index holds at most a few KiB (TPM 2.0 Part 2 TPMS_NV_PUBLIC.dataSize is u16,
/// and the vTPM's NV space is far smaller); 8 KiB is above every published form.
pub const MAX_HCL_REPORT_LEN: usize = 8192;
/// `IgvmAttestRequestType` of the report the NV index carries.
pub const REQUEST_TYPE_AK_CERT: u32 = 2;
pub const REPORT_TYPE_SNP: u32 = 2;
pub const REPORT_TYPE_TDX: u32 = 4;
pub const HASH_TYPE_SHA256: u32 = 1;
pub const TD_REPORT_LEN: usize = 1024;
/// REPORTTYPE.Type of a TDX TDREPORT (TDX Module ABI, "REPORTTYPE").
pub const TD_REPORT_TYPE_TDX: u8 = 0x81;

/// The hardware report inside an HCL report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardwareKind {
    Snp,
    Tdx,
}

impl HardwareKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HardwareKind::Snp => "snp",
            HardwareKind::Tdx => "tdx",
        }
    }
}

/// The fields of a TDREPORT_STRUCT a TD quote body repeats (TDX Module ABI
/// "TDREPORT_STRUCT"; the quote body is Intel's DCAP "TD Quote Body").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// REPORTMACSTRUCT.REPORTTYPE (type, subtype, version, reserved).
    pub report_type: [u8; 4],
    pub cpu_svn: [u8; 16],
    pub report_data: [u8; 64],
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
}

/// A parsed HCL report. Byte ranges are kept as offsets into the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport {
    pub version: u32,
    pub report_size: u32,
    pub request_type: u32,
    pub kind: HardwareKind,
    /// IGVM request data `report_type` as stored (2 or 4).
    pub report_type: u32,
    pub hash_type: u32,
    /// The hardware report: 1184 bytes (SNP) or 1024 (TDREPORT), at offset 32.
    pub hardware: core::ops::Range<usize>,
    /// The runtime data exactly as stored (the bytes whose hash is report_data).
    pub runtime_data: core::ops::Range<usize>,
    /// The hardware report's report_data (SNP REPORT_DATA at 0x50; TDREPORT
    /// REPORTMACSTRUCT.REPORTDATA at 128).
    pub report_data: [u8; 64],
    /// Present for TDX.
    pub td_report: Option<TdReport>,
    /// Total input length (2600 or 2048 in the published forms).
    pub len: usize,
}

fn err(kind: ParseErrorKind, field: &'static str, offset: usize, detail: String) -> ParseError {
    ParseError::new(Platform::AzureHcl, kind, field, offset, detail)
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    // Callers check the length first (the header and request data are fixed-size).
    u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
}

/// Parse an HCL report (both the 2600- and the 2048-byte form): header, hardware report
/// kind and bytes, IGVM request data and the runtime data range. Trailing padding must be
/// zero: those bytes are covered by no hash, so anything there would ride along unchecked.
pub fn parse_hcl_report(buf: &[u8]) -> Result<HclReport> {
    if buf.len() > MAX_HCL_REPORT_LEN {
        return Err(err(
            ParseErrorKind::TooLarge,
            "HCL report",
            0,
            format!("{} bytes, at most {MAX_HCL_REPORT_LEN}", buf.len()),
        ));
    }
    if buf.len() < RUNTIME_DATA_OFFSET {
        return Err(err(
            ParseErrorKind::Truncated,
            "HCL report",
            buf.len(),
            format!(
                "{} bytes, header and hardware report need {RUNTIME_DATA_OFFSET}",
                buf.len()
            ),
        ));
    }
    if buf[..4] != HCL_SIGNATURE {
        return Err(err(
            ParseErrorKind::Invalid,
            "header.signature",
            0,
            format!("{:02x?}, expected \"HCLA\"", &buf[..4]),
        ));
    }
    let version = u32_at(buf, 4);
    if !(1..=2).contains(&version) {
        return Err(err(
            ParseErrorKind::Unsupported,
            "header.version",
            4,
            format!("version {version}, supported 1 and 2"),
        ));
    }
    let report_size = u32_at(buf, 8);
    let request_type = u32_at(buf, 12);
    if request_type != REQUEST_TYPE_AK_CERT {
        return Err(err(
            ParseErrorKind::Unsupported,
            "header.request_type",
            12,
            format!("request type {request_type}, expected {REQUEST_TYPE_AK_CERT}"),
        ));
    }
    let status = u32_at(buf, 16);
    if status != 0 {
        return Err(err(
            ParseErrorKind::Invalid,
            "header.status",
            16,
            format!("status {status:#x}: the paravisor reports a failed request"),
        ));
    }
    if buf[20..HCL_HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(err(
            ParseErrorKind::ReservedNonZero,
            "header.reserved",
            20,
            "reserved header bytes are not zero".into(),
        ));
    }

    // IGVM request data.
    let rd = REQUEST_DATA_OFFSET;
    let data_size = u32_at(buf, rd);
    let req_version = u32_at(buf, rd + 4);
    let report_type = u32_at(buf, rd + 8);
    let hash_type = u32_at(buf, rd + 12);
    let var_size = u32_at(buf, rd + 16);
    if req_version != 1 {
        return Err(err(
            ParseErrorKind::Unsupported,
            "request_data.version",
            rd + 4,
            format!("version {req_version}, expected 1"),
        ));
    }
    let kind = match report_type {
        REPORT_TYPE_SNP => HardwareKind::Snp,
        REPORT_TYPE_TDX => HardwareKind::Tdx,
        t => {
            return Err(err(
                ParseErrorKind::Unsupported,
                "request_data.report_type",
                rd + 8,
                format!("report type {t}; supported 2 (SNP) and 4 (TDX)"),
            ))
        }
    };
    if hash_type != HASH_TYPE_SHA256 {
        return Err(err(
            ParseErrorKind::Unsupported,
            "request_data.report_data_hash_type",
            rd + 12,
            format!("hash type {hash_type}; supported 1 (SHA-256)"),
        ));
    }
    let room = buf.len() - RUNTIME_DATA_OFFSET;
    if var_size as usize > room {
        return Err(err(
            ParseErrorKind::TooLarge,
            "request_data.variable_data_size",
            rd + 16,
            format!("{var_size} bytes of runtime data, {room} present"),
        ));
    }
    let var = var_size as usize;
    if data_size as usize != REQUEST_DATA_LEN + var {
        return Err(err(
            ParseErrorKind::Invalid,
            "request_data.data_size",
            rd,
            format!(
                "data_size {data_size}, expected {} (20 + variable_data_size)",
                REQUEST_DATA_LEN + var
            ),
        ));
    }
    if report_size as usize != RUNTIME_DATA_OFFSET + var {
        return Err(err(
            ParseErrorKind::Invalid,
            "header.report_size",
            8,
            format!(
                "report_size {report_size}, expected {} (1236 + variable_data_size)",
                RUNTIME_DATA_OFFSET + var
            ),
        ));
    }
    let end = RUNTIME_DATA_OFFSET + var;
    if let Some(p) = buf[end..].iter().position(|&b| b != 0) {
        return Err(err(
            ParseErrorKind::TrailingBytes,
            "padding",
            end + p,
            format!("non-zero byte after the runtime data ({var} bytes)"),
        ));
    }

    let hw = &buf[HW_REPORT_OFFSET..REQUEST_DATA_OFFSET];
    let (hardware, report_data, td_report) = match kind {
        HardwareKind::Snp => {
            // REPORT_DATA at 0x50, 64 bytes (AMD 56860 Table 23).
            let mut rdata = [0u8; 64];
            rdata.copy_from_slice(&hw[0x50..0x90]);
            (HW_REPORT_OFFSET..REQUEST_DATA_OFFSET, rdata, None)
        }
        HardwareKind::Tdx => {
            let pad = &hw[TD_REPORT_LEN..];
            if let Some(p) = pad.iter().position(|&b| b != 0) {
                return Err(err(
                    ParseErrorKind::ReservedNonZero,
                    "hardware_report.padding",
                    HW_REPORT_OFFSET + TD_REPORT_LEN + p,
                    "non-zero byte after the 1024-byte TDREPORT".into(),
                ));
            }
            let td = parse_td_report(&hw[..TD_REPORT_LEN], HW_REPORT_OFFSET)?;
            let rdata = td.report_data;
            (
                HW_REPORT_OFFSET..HW_REPORT_OFFSET + TD_REPORT_LEN,
                rdata,
                Some(td),
            )
        }
    };
    Ok(HclReport {
        version,
        report_size,
        request_type,
        kind,
        report_type,
        hash_type,
        hardware,
        runtime_data: RUNTIME_DATA_OFFSET..end,
        report_data,
        td_report,
        len: buf.len(),
    })
}

/// Parse a 1024-byte TDREPORT_STRUCT; `base` is its offset in the enclosing buffer (for
/// error locations).
pub fn parse_td_report(buf: &[u8], base: usize) -> Result<TdReport> {
    if buf.len() != TD_REPORT_LEN {
        return Err(err(
            if buf.len() < TD_REPORT_LEN {
                ParseErrorKind::Truncated
            } else {
                ParseErrorKind::TrailingBytes
            },
            "TDREPORT_STRUCT",
            base,
            format!("{} bytes, a TDREPORT is exactly {TD_REPORT_LEN}", buf.len()),
        ));
    }
    let mut r = Reader::new(buf, Platform::AzureHcl);
    let report_type: [u8; 4] = r.array("REPORTMACSTRUCT.REPORTTYPE")?;
    if report_type[0] != TD_REPORT_TYPE_TDX {
        return Err(err(
            ParseErrorKind::Invalid,
            "REPORTMACSTRUCT.REPORTTYPE.Type",
            base,
            format!("type {:#04x}, a TDX TDREPORT is 0x81", report_type[0]),
        ));
    }
    r.take(12, "REPORTMACSTRUCT.RESERVED1")?;
    let cpu_svn = r.array("REPORTMACSTRUCT.CPUSVN")?;
    r.take(96, "REPORTMACSTRUCT.TEE_TCB_INFO_HASH/TEE_INFO_HASH")?;
    let report_data = r.array("REPORTMACSTRUCT.REPORTDATA")?;
    r.take(64, "REPORTMACSTRUCT.RESERVED2/MAC")?;
    // TEE_TCB_INFO at 256.
    r.take(8, "TEE_TCB_INFO.VALID")?;
    let tee_tcb_svn = r.array("TEE_TCB_INFO.TEE_TCB_SVN")?;
    let mr_seam = r.array("TEE_TCB_INFO.MRSEAM")?;
    let mr_signer_seam = r.array("TEE_TCB_INFO.MRSIGNERSEAM")?;
    let seam_attributes = r.array("TEE_TCB_INFO.ATTRIBUTES")?;
    r.take(239 - 8 - 16 - 48 - 48 - 8, "TEE_TCB_INFO.rest")?;
    r.take(17, "TDREPORT_STRUCT.RESERVED")?;
    // TDINFO_STRUCT at 512.
    let td_attributes = r.array("TDINFO_STRUCT.ATTRIBUTES")?;
    let xfam = r.array("TDINFO_STRUCT.XFAM")?;
    let mr_td = r.array("TDINFO_STRUCT.MRTD")?;
    let mr_config_id = r.array("TDINFO_STRUCT.MRCONFIGID")?;
    let mr_owner = r.array("TDINFO_STRUCT.MROWNER")?;
    let mr_owner_config = r.array("TDINFO_STRUCT.MROWNERCONFIG")?;
    let mut rtmr = [[0u8; 48]; 4];
    for v in rtmr.iter_mut() {
        *v = r.array("TDINFO_STRUCT.RTMR")?;
    }
    r.take(48 + 64, "TDINFO_STRUCT.SERVTD_HASH/RESERVED")?;
    r.expect_end("TDREPORT_STRUCT")?;
    Ok(TdReport {
        report_type,
        cpu_svn,
        report_data,
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
    })
}

/// The vTPM quote as the Azure tooling serialises it (`bincode` 1.x, fixint little-endian):
/// `Quote { signature: Vec<u8>, message: Vec<u8>, pcrs: ... }`, each Vec a u64 length then
/// its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteBin {
    pub signature: Vec<u8>,
    /// TPMS_ATTEST (the signed message).
    pub message: Vec<u8>,
    /// SHA-256 PCR values in the order of the quote's selection.
    pub pcrs: Vec<[u8; 32]>,
    /// The 2024-01/02 layout (`pcrs: Vec<Vec<u8>>`, a u64 length before every PCR)
    /// rather than the current `Vec<[u8; 32]>`.
    pub legacy: bool,
}

/// A signature of an RSA key up to 4096 bits.
pub const MAX_QUOTE_BIN_SIGNATURE: usize = 512;
/// TPMS_ATTEST of a quote: magic, type, TPM2B_NAME (≤ 2+66), TPM2B_DATA extraData
/// (≤ 2+64), clock info 17, firmware 8, selection (≤ 4+16·6), digest (≤ 2+64).
pub const MAX_QUOTE_BIN_MESSAGE: usize = 1024;
/// PCRs 0..31 of one bank at most (TPMS_PCR_SELECT has 4 select bytes).
pub const MAX_QUOTE_BIN_PCRS: usize = 32;

fn vec_len(r: &mut Reader<'_>, field: &'static str, max: usize) -> Result<usize> {
    let at = r.offset();
    let n = r.u64_le(field)?;
    if n > max as u64 {
        return Err(r.err_at(
            at,
            ParseErrorKind::TooLarge,
            field,
            format!("length {n}, at most {max}"),
        ));
    }
    Ok(n as usize)
}

/// Parse `quote.bin` in either layout; the layout is told apart by the length of what
/// follows the PCR count (count × 32 or count × 40 bytes), which is unambiguous for any
/// count above zero.
pub fn parse_quote_bin(buf: &[u8]) -> Result<QuoteBin> {
    let mut r = Reader::new(buf, Platform::AzureQuoteBin);
    let n = vec_len(&mut r, "signature.len", MAX_QUOTE_BIN_SIGNATURE)?;
    let signature = r.take(n, "signature")?.to_vec();
    let n = vec_len(&mut r, "message.len", MAX_QUOTE_BIN_MESSAGE)?;
    let message = r.take(n, "message")?.to_vec();
    let count_at = r.offset();
    let count = vec_len(&mut r, "pcrs.len", MAX_QUOTE_BIN_PCRS)?;
    let rest = r.remaining();
    let legacy = if rest == count * 32 {
        false
    } else if rest == count * 40 {
        true
    } else {
        return Err(r.err_at(
            count_at,
            if rest < count * 32 {
                ParseErrorKind::Truncated
            } else {
                ParseErrorKind::TrailingBytes
            },
            "pcrs",
            format!(
                "{count} PCRs need {} or {} bytes, {rest} present",
                count * 32,
                count * 40
            ),
        ));
    };
    let mut pcrs = Vec::with_capacity(count);
    for _ in 0..count {
        if legacy {
            let at = r.offset();
            let l = r.u64_le("pcrs[].len")?;
            if l != 32 {
                return Err(r.err_at(
                    at,
                    ParseErrorKind::Invalid,
                    "pcrs[].len",
                    format!("PCR of {l} bytes, SHA-256 PCRs are 32"),
                ));
            }
        }
        pcrs.push(r.array::<32>("pcrs[]")?);
    }
    r.expect_end("quote.bin")?;
    Ok(QuoteBin {
        signature,
        message,
        pcrs,
        legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic SNP-shaped HCL report with `runtime` as variable data, `total` bytes long.
    fn hcl(kind: u32, runtime: &[u8], total: usize) -> Vec<u8> {
        let mut b = vec![0u8; total];
        b[..4].copy_from_slice(b"HCLA");
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..12].copy_from_slice(&((RUNTIME_DATA_OFFSET + runtime.len()) as u32).to_le_bytes());
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        let rd = REQUEST_DATA_OFFSET;
        b[rd..rd + 4].copy_from_slice(&((20 + runtime.len()) as u32).to_le_bytes());
        b[rd + 4..rd + 8].copy_from_slice(&1u32.to_le_bytes());
        b[rd + 8..rd + 12].copy_from_slice(&kind.to_le_bytes());
        b[rd + 12..rd + 16].copy_from_slice(&1u32.to_le_bytes());
        b[rd + 16..rd + 20].copy_from_slice(&(runtime.len() as u32).to_le_bytes());
        b[RUNTIME_DATA_OFFSET..RUNTIME_DATA_OFFSET + runtime.len()].copy_from_slice(runtime);
        if kind == REPORT_TYPE_TDX {
            b[HW_REPORT_OFFSET] = TD_REPORT_TYPE_TDX;
            // REPORTDATA at TDREPORT 128, MRTD at 528.
            b[HW_REPORT_OFFSET + 128] = 0xab;
            b[HW_REPORT_OFFSET + 528] = 0xcd;
        } else {
            b[HW_REPORT_OFFSET + 0x50] = 0xab;
        }
        b
    }

    #[test]
    fn both_forms_parse() {
        for total in [2600usize, 2048] {
            let b = hcl(REPORT_TYPE_SNP, b"{\"keys\":[]}", total);
            let h = parse_hcl_report(&b).unwrap();
            assert_eq!(h.kind, HardwareKind::Snp);
            assert_eq!(&b[h.runtime_data.clone()], b"{\"keys\":[]}");
            assert_eq!(h.hardware.len(), HW_REPORT_LEN);
            assert_eq!(h.report_data[0], 0xab);
            assert_eq!(h.len, total);
        }
    }

    #[test]
    fn tdx_report_fields() {
        let b = hcl(REPORT_TYPE_TDX, b"{}", 2600);
        let h = parse_hcl_report(&b).unwrap();
        let td = h.td_report.unwrap();
        assert_eq!(h.hardware.len(), TD_REPORT_LEN);
        assert_eq!(td.report_data[0], 0xab);
        assert_eq!(td.mr_td[0], 0xcd);
        assert_eq!(h.report_data, td.report_data);
    }

    #[test]
    fn bounds_and_codes() {
        let good = hcl(REPORT_TYPE_SNP, b"{}", 2600);
        // Truncated anywhere before the runtime data.
        for cut in [0usize, 4, 31, 1000, RUNTIME_DATA_OFFSET - 1] {
            let e = parse_hcl_report(&good[..cut]).unwrap_err();
            assert_eq!(e.code(), "azure.hcl.truncated", "cut {cut}");
        }
        // Oversized input.
        let mut big = good.clone();
        big.resize(MAX_HCL_REPORT_LEN + 1, 0);
        assert_eq!(
            parse_hcl_report(&big).unwrap_err().code(),
            "azure.hcl.too_large"
        );
        // variable_data_size beyond the buffer.
        let mut b = good.clone();
        let o = REQUEST_DATA_OFFSET + 16;
        b[o..o + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = parse_hcl_report(&b).unwrap_err();
        assert_eq!((e.code().as_str(), e.offset), ("azure.hcl.too_large", o));
        // Bad magic, unknown report type, other hash, padding, TDX pad.
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(
            parse_hcl_report(&b).unwrap_err().code(),
            "azure.hcl.invalid"
        );
        let mut b = good.clone();
        b[REQUEST_DATA_OFFSET + 8] = 3;
        assert_eq!(
            parse_hcl_report(&b).unwrap_err().code(),
            "azure.hcl.unsupported"
        );
        let mut b = good.clone();
        b[REQUEST_DATA_OFFSET + 12] = 2;
        assert_eq!(
            parse_hcl_report(&b).unwrap_err().field,
            "request_data.report_data_hash_type"
        );
        let mut b = good.clone();
        b[2599] = 1;
        let e = parse_hcl_report(&b).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.offset),
            ("azure.hcl.trailing_bytes", 2599)
        );
        let mut b = hcl(REPORT_TYPE_TDX, b"{}", 2600);
        b[HW_REPORT_OFFSET + TD_REPORT_LEN + 5] = 1;
        assert_eq!(
            parse_hcl_report(&b).unwrap_err().code(),
            "azure.hcl.reserved_nonzero"
        );
        // report_size must agree with the runtime data length.
        let mut b = good.clone();
        b[8] ^= 1;
        assert_eq!(
            parse_hcl_report(&b).unwrap_err().field,
            "header.report_size"
        );
    }

    #[test]
    fn never_panics_on_truncation_or_flips() {
        let good = hcl(REPORT_TYPE_TDX, b"{\"a\":1}", 2600);
        for cut in 0..good.len() {
            let _ = parse_hcl_report(&good[..cut]);
        }
        for pos in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[pos] ^= 0xff;
            let _ = parse_hcl_report(&b);
        }
    }

    fn quote_bin(legacy: bool, n: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&3u64.to_le_bytes());
        b.extend_from_slice(&[1, 2, 3]);
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&[9, 9]);
        b.extend_from_slice(&(n as u64).to_le_bytes());
        for i in 0..n {
            if legacy {
                b.extend_from_slice(&32u64.to_le_bytes());
            }
            b.extend_from_slice(&[i as u8; 32]);
        }
        b
    }

    #[test]
    fn quote_bin_layouts_agree() {
        let a = parse_quote_bin(&quote_bin(false, 24)).unwrap();
        let b = parse_quote_bin(&quote_bin(true, 24)).unwrap();
        assert!(!a.legacy && b.legacy);
        assert_eq!(
            (a.signature.clone(), a.message.clone(), a.pcrs.clone()),
            (b.signature, b.message, b.pcrs)
        );
        assert_eq!(a.pcrs[5], [5u8; 32]);
    }

    #[test]
    fn quote_bin_bounds() {
        let good = quote_bin(false, 24);
        for cut in 0..good.len() {
            assert!(parse_quote_bin(&good[..cut]).is_err());
        }
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            parse_quote_bin(&huge).unwrap_err().code(),
            "azure.quote_bin.too_large"
        );
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            parse_quote_bin(&extra).unwrap_err().code(),
            "azure.quote_bin.trailing_bytes"
        );
        let mut legacy = quote_bin(true, 2);
        let o = 8 + 3 + 8 + 2 + 8;
        legacy[o] = 20;
        assert_eq!(
            parse_quote_bin(&legacy).unwrap_err().code(),
            "azure.quote_bin.invalid"
        );
    }
}
