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
//! All integers are little-endian. The fixed structures (header, v5 body descriptor, TD
//! report bodies, QE report, the ECDSA signature-data prefix and the certification data
//! header) are declared once as zerocopy structs with static size assertions; the parser
//! reads them in place and the variable parts with the bounds-checked `Reader`. Builders of
//! test and load-generator evidence write through the same declarations. Parsing only:
//! signature and binding checks are in `sealgate-verify`. The quote buffer may carry bytes after the signature data (real quotes
//! come in fixed 5006/8000-byte buffers padded with zeros); they are tolerated and counted.

use core::mem::{offset_of, size_of};

use crate::error::{ParseErrorKind, Platform, Result};
use crate::reader::Reader;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

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

/// Quote Header (A.3 "Quote Header"), 48 bytes; offsets from the start of the quote.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawHeader {
    /// 0 Version: 4 or 5.
    pub version: U16,
    /// 2 Attestation Key Type.
    pub att_key_type: U16,
    /// 4 TEE Type.
    pub tee_type: U32,
    /// 8 "Reserved" for TDX in A.3; the QE writes its SVN there.
    pub qe_svn: U16,
    /// 10 likewise the PCE SVN.
    pub pce_svn: U16,
    /// 12 QE Vendor ID.
    pub qe_vendor_id: [u8; 16],
    /// 28 User Data.
    pub user_data: [u8; 20],
}

/// v5 Quote Body Descriptor (A.3.1), between the header and the body.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawBodyDescriptor {
    /// +0 Quote Body Type.
    pub body_type: U16,
    /// +2 Size of the body that follows.
    pub size: U32,
}

/// TD Quote Body for TDX 1.0 (A.3.2 "TD Quote Body"); offsets from the start of the body.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawTdBody10 {
    /// 0 TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// 16 MRSEAM.
    pub mr_seam: [u8; 48],
    /// 64 MRSIGNERSEAM.
    pub mr_signer_seam: [u8; 48],
    /// 112 SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// 120 TDATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// 128 XFAM.
    pub xfam: [u8; 8],
    /// 136 MRTD.
    pub mr_td: [u8; 48],
    /// 184 MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// 232 MROWNER.
    pub mr_owner: [u8; 48],
    /// 280 MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// 328 RTMR0..RTMR3, 48 bytes each.
    pub rtmr: [[u8; 48]; 4],
    /// 520 REPORTDATA.
    pub report_data: [u8; 64],
}

/// TD Quote Body for TDX 1.5 (A.3.3): the TDX 1.0 body, then two fields.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawTdBody15 {
    /// 0 the TDX 1.0 body (A.3.2).
    pub v10: RawTdBody10,
    /// 584 TEE_TCB_SVN2.
    pub tee_tcb_svn2: [u8; 16],
    /// 600 MRSERVICETD.
    pub mr_service_td: [u8; 48],
}

/// SGX report body of the Quoting Enclave (Intel SGX SDK `sgx_report.h`,
/// `sgx_report_body_t`). Reserved ranges are private and not checked: the QE report is
/// signed by the PCK key, and newer QEs fill some of them (CONFIGID, ISVFAMILYID and
/// ISVEXTPRODID live there in SGX2).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawQeReport {
    /// 0 CPUSVN.
    pub cpu_svn: [u8; 16],
    /// 16 MISCSELECT.
    pub misc_select: U32,
    /// 20 reserved1 (ISVEXTPRODID in SGX2).
    reserved1: [u8; 28],
    /// 48 ATTRIBUTES.
    pub attributes: [u8; 16],
    /// 64 MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// 96 reserved2.
    reserved2: [u8; 32],
    /// 128 MRSIGNER.
    pub mr_signer: [u8; 32],
    /// 160 reserved3 (CONFIGID in SGX2).
    reserved3: [u8; 96],
    /// 256 ISVPRODID.
    pub isv_prod_id: U16,
    /// 258 ISVSVN.
    pub isv_svn: U16,
    /// 260 reserved4 (CONFIGSVN, ISVFAMILYID in SGX2).
    reserved4: [u8; 60],
    /// 320 REPORTDATA.
    pub report_data: [u8; 64],
}

/// The fixed start of the ECDSA 256-bit Quote Signature Data (A.4); Certification Data
/// follows.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawEcdsaSignatureData {
    /// 0 ECDSA signature r ‖ s (big-endian, 32 bytes each) over header ‖ [descriptor ‖] body.
    pub signature: [u8; 64],
    /// 64 attestation public key x ‖ y.
    pub attestation_key: [u8; 64],
}

/// Certification Data header (A.4 "Certification Data"); `size` bytes of data follow.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawCertDataHeader {
    /// +0 Certification Data Type.
    pub cert_type: U16,
    /// +2 Size.
    pub size: U32,
}

// The declarations have the sizes of the spec's tables (A.3, A.3.1–A.3.3, A.4;
// `sgx_report_body_t`).
const _: () = assert!(size_of::<RawHeader>() == 48);
const _: () = assert!(size_of::<RawBodyDescriptor>() == 6);
const _: () = assert!(size_of::<RawTdBody10>() == 584);
const _: () = assert!(size_of::<RawTdBody15>() == 648);
const _: () = assert!(size_of::<RawQeReport>() == 384);
const _: () = assert!(size_of::<RawEcdsaSignatureData>() == 128);
const _: () = assert!(size_of::<RawCertDataHeader>() == 6);

/// Quote header size (A.3).
pub const HEADER_SIZE: usize = size_of::<RawHeader>();
/// TD Quote Body for TDX 1.0 (A.3.2).
pub const TD_REPORT_BODY_10_SIZE: usize = size_of::<RawTdBody10>();
/// TD Quote Body for TDX 1.5 (A.3.3).
pub const TD_REPORT_BODY_15_SIZE: usize = size_of::<RawTdBody15>();
/// The QE report (`sgx_report_body_t`).
pub const QE_REPORT_SIZE: usize = size_of::<RawQeReport>();

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
    /// Offset of the TD Quote Body in the quote (after the header and, in v5, the body
    /// descriptor).
    pub body_offset: usize,
    /// Length of the signed region: header ‖ [type ‖ size ‖] body.
    pub signed_len: usize,
    /// Offset of the Quote Signature Data (after its u32 length).
    pub signature_data_offset: usize,
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

impl RawHeader {
    /// The header fields sealgate requires (A.3): version 4 or 5, attestation key type 2,
    /// TEE type TDX. The header is at offset 0 of the quote, so offsets are quote offsets.
    pub fn validate(&self) -> Result<()> {
        self.validate_first(HEADER_SIZE)
    }

    /// [`RawHeader::validate`] over the fields that lie within the first `available` bytes:
    /// a quote cut inside the header is still refused for a wrong version or type first
    /// (the check order of a field-by-field read).
    fn validate_first(&self, available: usize) -> Result<()> {
        let err = |offset, field, detail| {
            Err(crate::ParseError::new(
                Platform::Tdx,
                ParseErrorKind::Unsupported,
                field,
                offset,
                detail,
            ))
        };
        let present = |offset: usize, size: usize| offset + size <= available;
        let version = self.version.get();
        let at = offset_of!(RawHeader, version);
        if present(at, size_of::<U16>()) && version != 4 && version != 5 {
            return err(
                at,
                "Quote Header.version",
                format!("quote version {version}, expected 4 or 5"),
            );
        }
        let att_key_type = self.att_key_type.get();
        let at = offset_of!(RawHeader, att_key_type);
        if present(at, size_of::<U16>()) && att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return err(
                at,
                "Quote Header.attestation_key_type",
                format!("attestation key type {att_key_type}, expected 2 (ECDSA-256-with-P-256)"),
            );
        }
        let tee_type = self.tee_type.get();
        let at = offset_of!(RawHeader, tee_type);
        if present(at, size_of::<U32>()) && tee_type != TEE_TYPE_TDX {
            return err(
                at,
                "Quote Header.tee_type",
                format!("TEE type 0x{tee_type:x}, expected 0x81 (TDX)"),
            );
        }
        Ok(())
    }
}

impl From<&RawHeader> for QuoteHeader {
    fn from(h: &RawHeader) -> Self {
        QuoteHeader {
            version: h.version.get(),
            att_key_type: h.att_key_type.get(),
            tee_type: h.tee_type.get(),
            qe_svn: h.qe_svn.get(),
            pce_svn: h.pce_svn.get(),
            qe_vendor_id: h.qe_vendor_id,
            user_data: h.user_data,
        }
    }
}

impl TdReportBody {
    fn new(b: &RawTdBody10, v15: Option<&RawTdBody15>) -> Self {
        TdReportBody {
            tee_tcb_svn: b.tee_tcb_svn,
            mr_seam: b.mr_seam,
            mr_signer_seam: b.mr_signer_seam,
            seam_attributes: b.seam_attributes,
            td_attributes: b.td_attributes,
            xfam: b.xfam,
            mr_td: b.mr_td,
            mr_config_id: b.mr_config_id,
            mr_owner: b.mr_owner,
            mr_owner_config: b.mr_owner_config,
            rtmr: b.rtmr,
            report_data: b.report_data,
            tee_tcb_svn2: v15.map(|b| b.tee_tcb_svn2),
            mr_service_td: v15.map(|b| b.mr_service_td),
        }
    }
}

impl From<&RawQeReport> for QeReport {
    fn from(r: &RawQeReport) -> Self {
        QeReport {
            cpu_svn: r.cpu_svn,
            misc_select: r.misc_select.get(),
            attributes: r.attributes,
            mr_enclave: r.mr_enclave,
            mr_signer: r.mr_signer,
            isv_prod_id: r.isv_prod_id.get(),
            isv_svn: r.isv_svn.get(),
            report_data: r.report_data,
        }
    }
}

/// Certification Data header: type and size, size capped.
fn cert_data_header<'a>(r: &mut Reader<'a>) -> Result<(u16, &'a [u8], usize)> {
    let at = r.offset();
    let h = r.read::<RawCertDataHeader>("Certification Data")?;
    let size = h.size.get() as usize;
    if size > MAX_CERT_DATA_SIZE {
        return Err(r.err_at(
            at + offset_of!(RawCertDataHeader, size),
            ParseErrorKind::TooLarge,
            "Certification Data.size",
            format!("{size} bytes, at most {MAX_CERT_DATA_SIZE}"),
        ));
    }
    let data_at = r.offset();
    let data = r.take(size, "Certification Data.data")?;
    Ok((h.cert_type.get(), data, data_at))
}

fn signature_data(r: &mut Reader<'_>) -> Result<SignatureData> {
    let prefix = r.read::<RawEcdsaSignatureData>("Quote Signature Data")?;
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
        let qe_report = inner.read::<RawQeReport>("QE Report Certification Data.qe_report")?;
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
            signature: prefix.signature,
            attestation_key: prefix.attestation_key,
            qe_report: qe_report.into(),
            qe_report_raw: zerocopy::transmute!(qe_report.clone()),
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
    if buf.len() < HEADER_SIZE {
        // Cut inside the header: the fields that are there are checked first.
        let mut h = RawHeader::new_zeroed();
        h.as_mut_bytes()[..buf.len()].copy_from_slice(buf);
        h.validate_first(buf.len())?;
    }
    let raw_header = r.read::<RawHeader>("Quote Header")?;
    raw_header.validate()?;
    let header = QuoteHeader::from(raw_header);
    let (body_type, v15) = if header.version == 5 {
        let at = r.offset();
        let d = r.read::<RawBodyDescriptor>("Quote Body Descriptor")?;
        let ty = d.body_type.get();
        let size = d.size.get() as usize;
        let expected = match ty {
            BODY_TYPE_TD10 => TD_REPORT_BODY_10_SIZE,
            BODY_TYPE_TD15 => TD_REPORT_BODY_15_SIZE,
            other => {
                return Err(r.err_at(
                    at + offset_of!(RawBodyDescriptor, body_type),
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
                at + offset_of!(RawBodyDescriptor, size),
                ParseErrorKind::Invalid,
                "Quote Body Descriptor.size",
                format!("body size {size} for type {ty}, expected {expected}"),
            ));
        }
        (Some(ty), ty == BODY_TYPE_TD15)
    } else {
        (None, false)
    };
    let body_offset = r.offset();
    let body = if v15 {
        let b = r.read::<RawTdBody15>("TD Quote Body")?;
        TdReportBody::new(&b.v10, Some(b))
    } else {
        TdReportBody::new(r.read::<RawTdBody10>("TD Quote Body")?, None)
    };
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
        body_offset,
        signed_len,
        signature_data_offset: sig_at,
        signature_data,
        trailing_bytes: r.remaining(),
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A structurally valid quote with zero signatures (for parser tests), built through the
    /// declared layouts. Body bytes count up from 0 so fields are recognisable.
    pub fn sample(version: u16, body_type: u16, chain: &[u8], trailing: usize) -> Vec<u8> {
        let mut h = RawHeader::new_zeroed();
        h.version = version.into();
        h.att_key_type = ATT_KEY_TYPE_ECDSA_P256.into();
        h.tee_type = TEE_TYPE_TDX.into();
        h.qe_vendor_id = INTEL_QE_VENDOR_ID;
        let mut q = h.as_bytes().to_vec();
        let body_len = if body_type == BODY_TYPE_TD15 {
            TD_REPORT_BODY_15_SIZE
        } else {
            TD_REPORT_BODY_10_SIZE
        };
        if version == 5 {
            let d = RawBodyDescriptor {
                body_type: body_type.into(),
                size: (body_len as u32).into(),
            };
            q.extend_from_slice(d.as_bytes());
        }
        q.extend((0..body_len).map(|i| i as u8));
        let mut inner = RawQeReport::new_zeroed().as_bytes().to_vec();
        inner.extend_from_slice(&[0; 64]); // QE report signature
        inner.extend_from_slice(&32u16.to_le_bytes());
        inner.extend_from_slice(&[7u8; 32]);
        let pck = RawCertDataHeader {
            cert_type: CERT_TYPE_PCK_CHAIN.into(),
            size: (chain.len() as u32).into(),
        };
        inner.extend_from_slice(pck.as_bytes());
        inner.extend_from_slice(chain);
        let prefix = RawEcdsaSignatureData {
            signature: [1; 64],
            attestation_key: [1; 64],
        };
        let mut sig = prefix.as_bytes().to_vec();
        let qe = RawCertDataHeader {
            cert_type: CERT_TYPE_QE_REPORT.into(),
            size: (inner.len() as u32).into(),
        };
        sig.extend_from_slice(qe.as_bytes());
        sig.extend_from_slice(&inner);
        q.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig);
        q.extend_from_slice(&vec![0u8; trailing]);
        q
    }

    #[test]
    fn declared_offsets_match_appendix_a() {
        // The spec's offsets, stated once more here only to check the declarations.
        assert_eq!(offset_of!(RawHeader, qe_vendor_id), 12);
        assert_eq!(offset_of!(RawTdBody10, td_attributes), 120);
        assert_eq!(offset_of!(RawTdBody10, mr_td), 136);
        assert_eq!(offset_of!(RawTdBody10, rtmr), 328);
        assert_eq!(offset_of!(RawTdBody10, report_data), 520);
        assert_eq!(offset_of!(RawTdBody15, mr_service_td), 600);
        assert_eq!(offset_of!(RawQeReport, mr_enclave), 64);
        assert_eq!(offset_of!(RawQeReport, mr_signer), 128);
        assert_eq!(offset_of!(RawQeReport, isv_prod_id), 256);
        assert_eq!(offset_of!(RawQeReport, report_data), 320);
    }

    #[test]
    fn short_header_checks_the_fields_it_has() {
        let b = sample(4, 2, b"x", 0);
        let mut bad_version = b[..20].to_vec();
        bad_version[0] = 3;
        assert_eq!(
            parse_quote(&bad_version).unwrap_err().code(),
            "tdx.format.unsupported"
        );
        let mut bad_tee = b[..8].to_vec();
        bad_tee[4] = 0;
        assert_eq!(
            parse_quote(&bad_tee).unwrap_err().field,
            "Quote Header.tee_type"
        );
        // A field not wholly present is not judged: truncated.
        let mut cut_tee = b[..7].to_vec();
        cut_tee[4] = 0;
        assert_eq!(
            parse_quote(&cut_tee).unwrap_err().code(),
            "tdx.format.truncated"
        );
        assert_eq!(
            parse_quote(&b[..1]).unwrap_err().code(),
            "tdx.format.truncated"
        );
    }

    #[test]
    fn offsets_recorded_by_the_parser() {
        let q = parse_quote(&sample(4, 2, b"PEM", 0)).unwrap();
        assert_eq!((q.body_offset, q.signature_data_offset), (48, 48 + 584 + 4));
        let q = parse_quote(&sample(5, 3, b"PEM", 0)).unwrap();
        assert_eq!((q.body_offset, q.signature_data_offset), (54, 54 + 648 + 4));
    }

    #[test]
    fn error_locations() {
        // Field checks report the field's quote offset (A.3, A.3.1).
        let mut b = sample(5, 2, b"x", 0);
        b[2] = 3;
        let e = parse_quote(&b).unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("Quote Header.attestation_key_type", 2)
        );
        let mut b = sample(5, 2, b"x", 0);
        b[48] = 9;
        let e = parse_quote(&b).unwrap_err();
        assert_eq!((e.field, e.offset), ("Quote Body Descriptor.type", 48));
        let mut b = sample(5, 2, b"x", 0);
        b[50] ^= 1;
        let e = parse_quote(&b).unwrap_err();
        assert_eq!((e.field, e.offset), ("Quote Body Descriptor.size", 50));
        // Outer certification data size over the cap: at its size field, 48+584+4+128+2.
        let mut b = sample(4, 2, b"x", 0);
        b[766..770].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = parse_quote(&b).unwrap_err();
        assert_eq!(
            (e.code(), e.field, e.offset),
            (
                "tdx.format.too_large".to_string(),
                "Certification Data.size",
                766
            )
        );
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
