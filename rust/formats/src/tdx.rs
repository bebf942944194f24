//! Intel TDX quotes, versions 4 and 5 (Intel TDX DCAP Quote Generation Library and Quote
//! Verification Library, "Intel TDX DCAP Quoting Library API", Appendix A "Quote Format";
//! section numbers below refer to that appendix).
//!
//! ```text
//! v4: Header(48) ‖ TD Report Body 1.0(584)                    ‖ u32 sig_len ‖ Quote Signature Data
//! v5: Header(48) ‖ u16 body_type ‖ u32 body_size ‖ Body(584|648) ‖ u32 sig_len ‖ Quote Signature Data
//! Quote Signature Data (A.4, ECDSA-256): signature(64) ‖ attestation key(64) ‖ Certification Data
//! Certification Data (A.4.x): u16 type ‖ u32 size ‖ data
//!   type 6 = QE Report Certification Data: QE report(384) ‖ QE report signature(64)
//!            ‖ QE Authentication Data (u16 size ‖ data) ‖ Certification Data (type 5)
//!   type 5 = PCK certificate chain, concatenated PEM (PCK, PCK CA, Root CA)
//! ```
//!
//! All integers are little-endian. Parsing only: signature and binding checks are in
//! `sealgate-verify`. The quote buffer may carry bytes after the signature data (real quotes
//! come in fixed 5006/8000-byte buffers padded with zeros); they are tolerated and counted.

use crate::error::{ParseErrorKind, Platform, Result};
use crate::reader::Reader;

/// A quote buffer larger than this is refused before reading: the biggest real quote is
/// about 5 KiB; configfs-tsm hands out at most a few pages. 1 MiB bounds one request.
pub const MAX_QUOTE_BUFFER: usize = 1 << 20;
/// Quote Signature Data length cap (A.3 "Quote Signature Data Len"): 64 + 64 + a type-6
/// certification data holding a three-certificate PEM chain is ~4.5 KiB. 64 KiB leaves room
/// for larger chains without letting a length field drive an allocation.
pub const MAX_SIGNATURE_DATA_SIZE: usize = 64 << 10;
/// Certification Data size cap (A.4 "Certification Data.size"), same reasoning.
pub const MAX_CERT_DATA_SIZE: usize = 60 << 10;
/// QE Authentication Data size cap (A.4 "QE Authentication Data", u16 size). Intel's QE
/// emits 32 bytes; the field could say 65535.
pub const MAX_QE_AUTH_DATA_SIZE: usize = 4 << 10;
/// Nesting depth of Certification Data: type 6 wraps exactly one type 5 (A.4.11).
pub const MAX_CERT_DATA_DEPTH: usize = 2;

/// Quote header size (A.3 "Quote Header", 48 bytes).
pub const HEADER_SIZE: usize = 48;
/// TD Quote Body for TDX 1.0 (A.3.2 "TD Quote Body", 584 bytes).
pub const TD_REPORT_BODY_10_SIZE: usize = 584;
/// TD Quote Body for TDX 1.5 (A.3.3, adds TEE_TCB_SVN2(16) and MRSERVICETD(48)): 648 bytes.
pub const TD_REPORT_BODY_15_SIZE: usize = 648;
/// SGX report body used for the QE report (SGX SDK `sgx_report_body_t`, 384 bytes).
pub const QE_REPORT_SIZE: usize = 384;
/// ECDSA P-256 signature r ‖ s and public key x ‖ y (A.4 "ECDSA 256-bit Quote Signature Data").
pub const ECDSA_SIG_SIZE: usize = 64;
pub const ECDSA_KEY_SIZE: usize = 64;

// The declared layouts add up to the spec's sizes (A.3 tables; `sgx_report_body_t`).
const _: () = assert!(2 + 2 + 4 + 2 + 2 + 16 + 20 == HEADER_SIZE);
const _: () =
    assert!(16 + 48 + 48 + 8 + 8 + 8 + 48 + 48 + 48 + 48 + 4 * 48 + 64 == TD_REPORT_BODY_10_SIZE);
const _: () = assert!(TD_REPORT_BODY_10_SIZE + 16 + 48 == TD_REPORT_BODY_15_SIZE);
const _: () = assert!(16 + 4 + 28 + 16 + 32 + 32 + 32 + 96 + 2 + 2 + 60 + 64 == QE_REPORT_SIZE);

/// Header.attestation_key_type: 2 = ECDSA-256-with-P-256 (A.3). Type 3 (P-384) is reserved.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// Header.tee_type: 0x00000081 = TDX (0 is SGX, which sealgate does not verify).
pub const TEE_TYPE_TDX: u32 = 0x81;
/// v5 body types (A.3.1 "Quote Body Descriptor"): 1 = SGX enclave report, 2 = TD report
/// TDX 1.0, 3 = TD report TDX 1.5.
pub const BODY_TYPE_SGX: u16 = 1;
pub const BODY_TYPE_TD10: u16 = 2;
pub const BODY_TYPE_TD15: u16 = 3;
/// Certification data types (A.4.9 / A.4.11).
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;
pub const CERT_TYPE_QE_REPORT: u16 = 6;
/// Intel's QE vendor ID (A.3 "QE Vendor ID").
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Quote Header (A.3, Table "Quote Header").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    /// Bytes 8..10, "Reserved" for TDX in A.3; the QE writes its SVN there.
    pub qe_svn: u16,
    /// Bytes 10..12, likewise the PCE SVN.
    pub pce_svn: u16,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// TD Quote Body (A.3.2 TDX 1.0 / A.3.3 TDX 1.5). Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReportBody {
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
    pub report_data: [u8; 64],
    /// TDX 1.5 only (body type 3).
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only (body type 3).
    pub mr_service_td: Option<[u8; 48]>,
}

/// SGX report body of the Quoting Enclave (SGX SDK `sgx_report_body_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
}

/// Quote Signature Data for ECDSA-256 with a type-6 certification data (A.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureData {
    /// ECDSA signature r ‖ s over the signed region.
    pub signature: [u8; 64],
    /// Attestation public key x ‖ y.
    pub attestation_key: [u8; 64],
    pub qe_report: QeReport,
    /// The exact 384 QE report bytes (what the PCK signed).
    pub qe_report_raw: [u8; QE_REPORT_SIZE],
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: Vec<u8>,
    /// Type of the innermost certification data (always 5 once parsed).
    pub cert_data_type: u16,
    /// PCK certificate chain, PEM as carried (may include a trailing NUL).
    pub pck_chain: Vec<u8>,
}

/// A parsed TDX quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub header: QuoteHeader,
    /// v5 body type (2 or 3); None for v4.
    pub body_type: Option<u16>,
    pub body: TdReportBody,
    /// Length of the signed region: header ‖ [type ‖ size ‖] body.
    pub signed_len: usize,
    pub signature_data: SignatureData,
    /// Bytes after the signature data (tolerated; reported as a claim).
    pub trailing_bytes: usize,
}

impl Quote {
    /// The bytes the attestation key signs (A.4: "Header and TD Quote Body", with the v5
    /// body descriptor in between).
    pub fn signed_region<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[..self.signed_len.min(buf.len())]
    }

    pub fn is_debug(&self) -> bool {
        self.body.td_attributes[0] & 1 != 0
    }
}

fn header(r: &mut Reader<'_>) -> Result<QuoteHeader> {
    let at = r.offset();
    let version = r.u16_le("Quote Header.version")?;
    if version != 4 && version != 5 {
        return Err(r.err_at(
            at,
            ParseErrorKind::Unsupported,
            "Quote Header.version",
            format!("quote version {version}, expected 4 or 5"),
        ));
    }
    let kat = r.offset();
    let att_key_type = r.u16_le("Quote Header.attestation_key_type")?;
    if att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(r.err_at(
            kat,
            ParseErrorKind::Unsupported,
            "Quote Header.attestation_key_type",
            format!("attestation key type {att_key_type}, expected 2 (ECDSA-256-with-P-256)"),
        ));
    }
    let tat = r.offset();
    let tee_type = r.u32_le("Quote Header.tee_type")?;
    if tee_type != TEE_TYPE_TDX {
        return Err(r.err_at(
            tat,
            ParseErrorKind::Unsupported,
            "Quote Header.tee_type",
            format!("TEE type 0x{tee_type:x}, expected 0x81 (TDX)"),
        ));
    }
    Ok(QuoteHeader {
        version,
        att_key_type,
        tee_type,
        qe_svn: r.u16_le("Quote Header.qe_svn")?,
        pce_svn: r.u16_le("Quote Header.pce_svn")?,
        qe_vendor_id: r.array("Quote Header.qe_vendor_id")?,
        user_data: r.array("Quote Header.user_data")?,
    })
}

fn td_body(r: &mut Reader<'_>, v15: bool) -> Result<TdReportBody> {
    Ok(TdReportBody {
        tee_tcb_svn: r.array("TD Quote Body.TEE_TCB_SVN")?,
        mr_seam: r.array("TD Quote Body.MRSEAM")?,
        mr_signer_seam: r.array("TD Quote Body.MRSIGNERSEAM")?,
        seam_attributes: r.array("TD Quote Body.SEAMATTRIBUTES")?,
        td_attributes: r.array("TD Quote Body.TDATTRIBUTES")?,
        xfam: r.array("TD Quote Body.XFAM")?,
        mr_td: r.array("TD Quote Body.MRTD")?,
        mr_config_id: r.array("TD Quote Body.MRCONFIGID")?,
        mr_owner: r.array("TD Quote Body.MROWNER")?,
        mr_owner_config: r.array("TD Quote Body.MROWNERCONFIG")?,
        rtmr: [
            r.array("TD Quote Body.RTMR0")?,
            r.array("TD Quote Body.RTMR1")?,
            r.array("TD Quote Body.RTMR2")?,
            r.array("TD Quote Body.RTMR3")?,
        ],
        report_data: r.array("TD Quote Body.REPORTDATA")?,
        tee_tcb_svn2: if v15 {
            Some(r.array("TD Quote Body.TEE_TCB_SVN2")?)
        } else {
            None
        },
        mr_service_td: if v15 {
            Some(r.array("TD Quote Body.MRSERVICETD")?)
        } else {
            None
        },
    })
}

/// SGX report body (`sgx_report_body_t`, Intel SGX SDK `sgx_report.h`), read in wire order.
/// Reserved ranges are skipped, not checked: the QE report is signed by the PCK key, and
/// newer QEs fill some of them (CONFIGID, ISVFAMILYID and ISVEXTPRODID live there in SGX2).
fn qe_report(raw: &[u8; QE_REPORT_SIZE]) -> Result<QeReport> {
    let mut r = Reader::new(raw, Platform::Tdx);
    let cpu_svn = r.array("QE Report.CPUSVN")?;
    let misc_select = r.u32_le("QE Report.MISCSELECT")?;
    r.take(28, "QE Report.reserved1")?;
    let attributes = r.array("QE Report.ATTRIBUTES")?;
    let mr_enclave = r.array("QE Report.MRENCLAVE")?;
    r.take(32, "QE Report.reserved2")?;
    let mr_signer = r.array("QE Report.MRSIGNER")?;
    r.take(96, "QE Report.reserved3")?;
    let isv_prod_id = r.u16_le("QE Report.ISVPRODID")?;
    let isv_svn = r.u16_le("QE Report.ISVSVN")?;
    r.take(60, "QE Report.reserved4")?;
    let report_data = r.array("QE Report.REPORTDATA")?;
    r.expect_end("QE Report")?;
    Ok(QeReport {
        cpu_svn,
        misc_select,
        attributes,
        mr_enclave,
        mr_signer,
        isv_prod_id,
        isv_svn,
        report_data,
    })
}

/// Certification Data header: type and size, size capped.
fn cert_data_header<'a>(r: &mut Reader<'a>) -> Result<(u16, &'a [u8], usize)> {
    let ty = r.u16_le("Certification Data.type")?;
    let sat = r.offset();
    let size = r.u32_le("Certification Data.size")? as usize;
    if size > MAX_CERT_DATA_SIZE {
        return Err(r.err_at(
            sat,
            ParseErrorKind::TooLarge,
            "Certification Data.size",
            format!("{size} bytes, at most {MAX_CERT_DATA_SIZE}"),
        ));
    }
    let data_at = r.offset();
    let data = r.take(size, "Certification Data.data")?;
    Ok((ty, data, data_at))
}

fn signature_data(r: &mut Reader<'_>) -> Result<SignatureData> {
    let signature = r.array("Quote Signature Data.signature")?;
    let attestation_key = r.array("Quote Signature Data.attestation_key")?;
    let cat = r.offset();
    let (ty, data, data_at) = cert_data_header(r)?;
    if ty != CERT_TYPE_QE_REPORT {
        // Types 1–4 (PPID encodings) and a bare type 5 carry no QE report, so the quote
        // cannot be tied to a PCK; TDX quotes from Intel's QE always use type 6 (A.4.11).
        return Err(r.err_at(
            cat,
            ParseErrorKind::Unsupported,
            "Certification Data.type",
            format!("certification data type {ty}, expected 6 (QE report certification data)"),
        ));
    }
    // Nested reader over the type-6 payload; offsets are shifted back to quote offsets.
    let mut inner = Reader::new(data, r.platform());
    let shift = |mut e: crate::ParseError| {
        e.offset += data_at;
        e
    };
    let parsed = (|| -> Result<SignatureData> {
        let qe_report_raw: [u8; QE_REPORT_SIZE] =
            inner.array("QE Report Certification Data.qe_report")?;
        let qe_report_signature =
            inner.array("QE Report Certification Data.qe_report_signature")?;
        let aat = inner.offset();
        let auth_size = inner.u16_le("QE Authentication Data.size")? as usize;
        if auth_size > MAX_QE_AUTH_DATA_SIZE {
            return Err(inner.err_at(
                aat,
                ParseErrorKind::TooLarge,
                "QE Authentication Data.size",
                format!("{auth_size} bytes, at most {MAX_QE_AUTH_DATA_SIZE}"),
            ));
        }
        let qe_auth_data = inner
            .take(auth_size, "QE Authentication Data.data")?
            .to_vec();
        let nat = inner.offset();
        let (nty, ndata, _) = cert_data_header(&mut inner)?;
        if nty != CERT_TYPE_PCK_CHAIN {
            return Err(inner.err_at(
                nat,
                ParseErrorKind::Unsupported,
                "Certification Data.type",
                format!("nested certification data type {nty}, expected 5 (PCK certificate chain)"),
            ));
        }
        // Type 6 holds exactly one nested certification data (depth MAX_CERT_DATA_DEPTH).
        inner.expect_end("QE Report Certification Data")?;
        Ok(SignatureData {
            signature,
            attestation_key,
            qe_report: qe_report(&qe_report_raw)?,
            qe_report_raw,
            qe_report_signature,
            qe_auth_data,
            cert_data_type: nty,
            pck_chain: ndata.to_vec(),
        })
    })();
    parsed.map_err(shift)
}

/// Parse a TDX quote v4 or v5.
pub fn parse_quote(buf: &[u8]) -> Result<Quote> {
    let mut r = Reader::new(buf, Platform::Tdx);
    if buf.len() > MAX_QUOTE_BUFFER {
        return Err(r.err(
            ParseErrorKind::TooLarge,
            "quote",
            format!("{} bytes, at most {}", buf.len(), MAX_QUOTE_BUFFER),
        ));
    }
    let header = header(&mut r)?;
    let (body_type, v15) = if header.version == 5 {
        let at = r.offset();
        let ty = r.u16_le("Quote Body Descriptor.type")?;
        let sat = r.offset();
        let size = r.u32_le("Quote Body Descriptor.size")? as usize;
        let expected = match ty {
            BODY_TYPE_TD10 => TD_REPORT_BODY_10_SIZE,
            BODY_TYPE_TD15 => TD_REPORT_BODY_15_SIZE,
            other => {
                return Err(r.err_at(
                    at,
                    ParseErrorKind::Unsupported,
                    "Quote Body Descriptor.type",
                    format!(
                        "body type {other}, expected 2 (TDX 1.0) or 3 (TDX 1.5){}",
                        if other == BODY_TYPE_SGX {
                            "; SGX enclave quotes are not verified"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        };
        if size != expected {
            return Err(r.err_at(
                sat,
                ParseErrorKind::Invalid,
                "Quote Body Descriptor.size",
                format!("body size {size} for type {ty}, expected {expected}"),
            ));
        }
        (Some(ty), ty == BODY_TYPE_TD15)
    } else {
        (None, false)
    };
    let body = td_body(&mut r, v15)?;
    let signed_len = r.offset();
    let lat = r.offset();
    let sig_len = r.u32_le("Quote Signature Data Len")? as usize;
    if sig_len > MAX_SIGNATURE_DATA_SIZE {
        return Err(r.err_at(
            lat,
            ParseErrorKind::TooLarge,
            "Quote Signature Data Len",
            format!("{sig_len} bytes, at most {MAX_SIGNATURE_DATA_SIZE}"),
        ));
    }
    let sig_at = r.offset();
    let sig_bytes = r.take(sig_len, "Quote Signature Data")?;
    let mut sr = Reader::new(sig_bytes, Platform::Tdx);
    let signature_data = signature_data(&mut sr)
        .and_then(|s| sr.expect_end("Quote Signature Data").map(|_| s))
        .map_err(|mut e| {
            e.offset += sig_at;
            e
        })?;
    Ok(Quote {
        header,
        body_type,
        body,
        signed_len,
        signature_data,
        trailing_bytes: r.remaining(),
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A structurally valid quote with zero signatures (for parser tests).
    pub fn sample(version: u16, body_type: u16, chain: &[u8], trailing: usize) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&version.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0x81u32.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&[0; 20]);
        let body_len = if body_type == BODY_TYPE_TD15 {
            648
        } else {
            584
        };
        if version == 5 {
            q.extend_from_slice(&body_type.to_le_bytes());
            q.extend_from_slice(&(body_len as u32).to_le_bytes());
        }
        q.extend((0..body_len).map(|i| i as u8));
        let mut inner = vec![0u8; 384 + 64];
        inner.extend_from_slice(&32u16.to_le_bytes());
        inner.extend_from_slice(&[7u8; 32]);
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        inner.extend_from_slice(chain);
        let mut sig = vec![1u8; 128];
        sig.extend_from_slice(&6u16.to_le_bytes());
        sig.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        sig.extend_from_slice(&inner);
        q.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig);
        q.extend_from_slice(&vec![0u8; trailing]);
        q
    }

    #[test]
    fn v4_and_v5() {
        let q = parse_quote(&sample(4, 2, b"PEM", 70)).unwrap();
        assert_eq!(q.header.version, 4);
        assert_eq!(q.body_type, None);
        assert_eq!(q.signed_len, 48 + 584);
        assert_eq!(q.trailing_bytes, 70);
        assert_eq!(q.signature_data.pck_chain, b"PEM");
        assert_eq!(q.signature_data.qe_auth_data, vec![7u8; 32]);
        assert_eq!(q.body.tee_tcb_svn[1], 1);
        assert!(q.body.tee_tcb_svn2.is_none());
        let q = parse_quote(&sample(5, 3, b"PEM", 0)).unwrap();
        assert_eq!(q.body_type, Some(3));
        assert_eq!(q.signed_len, 48 + 6 + 648);
        assert!(q.body.mr_service_td.is_some());
        let q = parse_quote(&sample(5, 2, b"PEM", 0)).unwrap();
        assert_eq!(q.signed_len, 48 + 6 + 584);
    }

    #[test]
    fn rejects() {
        let mut b = sample(4, 2, b"x", 0);
        b[0] = 3;
        assert_eq!(
            parse_quote(&b).unwrap_err().code(),
            "tdx.format.unsupported"
        );
        let mut b = sample(4, 2, b"x", 0);
        b[4] = 0;
        assert_eq!(parse_quote(&b).unwrap_err().field, "Quote Header.tee_type");
        let mut b = sample(5, 2, b"x", 0);
        b[50] = 0x49; // size 584 -> 585
        assert_eq!(
            parse_quote(&b).unwrap_err().field,
            "Quote Body Descriptor.size"
        );
        let b = sample(5, 1, b"x", 0);
        assert_eq!(
            parse_quote(&b).unwrap_err().code(),
            "tdx.format.unsupported"
        );
        let b = sample(4, 2, b"chain", 0);
        for n in 0..b.len() {
            assert_eq!(
                parse_quote(&b[..n]).unwrap_err().code(),
                "tdx.format.truncated",
                "cut at {n}"
            );
        }
        // Signature data length larger than the cap.
        let mut b = sample(4, 2, b"x", 0);
        b[632..636].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert_eq!(parse_quote(&b).unwrap_err().code(), "tdx.format.too_large");
        // Extra bytes inside the signature data are an error (only after it is tolerated).
        let mut b = sample(4, 2, b"x", 0);
        let len = u32::from_le_bytes(b[632..636].try_into().unwrap()) + 1;
        b[632..636].copy_from_slice(&len.to_le_bytes());
        b.push(0);
        assert_eq!(
            parse_quote(&b).unwrap_err().code(),
            "tdx.format.trailing_bytes"
        );
    }
}
