//! AMD SEV-SNP ATTESTATION_REPORT.
//!
//! Source: "SEV Secure Nested Paging Firmware ABI Specification", AMD publication 56860,
//! revision 1.57: Table 23 "ATTESTATION_REPORT Structure", "GUEST_POLICY Structure" (Table 9
//! or 10 depending on the revision), Table 3 "TCB_VERSION Structure" (Milan/Genoa) and its
//! Turin variant (family 1Ah: FMC in byte 0), "PLATFORM_INFO" and the signature format of
//! Chapter 10 (ECDSA P-384 with SHA-384; R and S as 72-byte little-endian integers,
//! zero-extended). Table numbers shift by one between revisions; the structure names are the
//! stable reference. Report version 3 added the CPUID fields, version 5 the launch/current
//! mitigation vectors. Version 4 does not occur in released firmware and, like any other
//! unknown version, is rejected.
//!
//! The report is a fixed 1184-byte structure, declared once as [`RawReport`] (zerocopy, every
//! field at its Table 23 offset, checked by static size assertions). The parser views the
//! input as that structure, [`RawReport::validate`] checks versions, the key-info word and
//! every reserved range for zero (a non-zero reserved byte means a layout sealgate does not
//! understand), and the fields are decoded into [`AttestationReport`]. Builders of test and
//! load-generator evidence write through the same declaration (`FromZeros::new_zeroed`,
//! `FromBytes::mut_from_bytes`, `IntoBytes::as_bytes`).

use core::mem::{offset_of, size_of};

use crate::error::{ParseError, ParseErrorKind, Platform, Result};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Chapter 10: R and S are each a 72-byte little-endian field inside the 512-byte SIGNATURE.
pub const SIG_COMPONENT_LEN: usize = 72;

/// The SIGNATURE field (Table 23, 512 bytes) in the format of Chapter 10, table
/// "ECDSA P-384 with SHA-384 Signature Format". Offsets are within SIGNATURE.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawSignature {
    /// 0x000 R, little-endian, zero-extended from 48 bytes.
    pub r: [u8; SIG_COMPONENT_LEN],
    /// 0x048 S, little-endian, zero-extended from 48 bytes.
    pub s: [u8; SIG_COMPONENT_LEN],
    /// 0x090–0x1FF reserved, must be zero.
    reserved: [u8; 368],
}

/// CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP (Table 23, version 3+; reserved and zero in
/// version 2). Offsets are within the field.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawCpuid {
    /// +0 CPUID_FAM_ID: combined extended family and family.
    pub family: u8,
    /// +1 CPUID_MOD_ID: combined extended model and model.
    pub model: u8,
    /// +2 CPUID_STEP: stepping.
    pub stepping: u8,
}

/// CURRENT_BUILD / CURRENT_MINOR / CURRENT_MAJOR and a reserved byte (Table 23), and the
/// same for COMMITTED_*. Offsets are within the field.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawFirmwareVersion {
    /// +0 *_BUILD.
    pub build: u8,
    /// +1 *_MINOR.
    pub minor: u8,
    /// +2 *_MAJOR.
    pub major: u8,
    /// +3 reserved, must be zero.
    reserved: u8,
}

/// ATTESTATION_REPORT as laid out on the wire (Table 23), little-endian throughout.
/// Reserved fields are private: a builder starting from `FromZeros::new_zeroed` leaves them
/// zero, and [`RawReport::validate`] refuses a report where they are not.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct RawReport {
    /// 0x000 VERSION: 2, 3 or 5 here.
    pub version: U32,
    /// 0x004 GUEST_SVN.
    pub guest_svn: U32,
    /// 0x008 POLICY ("GUEST_POLICY Structure").
    pub policy: U64,
    /// 0x010 FAMILY_ID.
    pub family_id: [u8; 16],
    /// 0x020 IMAGE_ID.
    pub image_id: [u8; 16],
    /// 0x030 VMPL the report was requested at.
    pub vmpl: U32,
    /// 0x034 SIGNATURE_ALGO.
    pub signature_algo: U32,
    /// 0x038 CURRENT_TCB (TCB_VERSION).
    pub current_tcb: U64,
    /// 0x040 PLATFORM_INFO.
    pub platform_info: U64,
    /// 0x048 bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY, bits 31:5
    /// reserved.
    pub key_info: U32,
    /// 0x04C reserved.
    reserved_04c: [u8; 4],
    /// 0x050 REPORT_DATA: guest-supplied.
    pub report_data: [u8; 64],
    /// 0x090 MEASUREMENT: launch digest.
    pub measurement: [u8; 48],
    /// 0x0C0 HOST_DATA.
    pub host_data: [u8; 32],
    /// 0x0E0 ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// 0x110 AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// 0x140 REPORT_ID.
    pub report_id: [u8; 32],
    /// 0x160 REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// 0x180 REPORTED_TCB: the TCB the VCEK was derived from.
    pub reported_tcb: U64,
    /// 0x188 CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (version 3+).
    pub cpuid: RawCpuid,
    /// 0x18B–0x19F reserved.
    reserved_18b: [u8; 21],
    /// 0x1A0 CHIP_ID.
    pub chip_id: [u8; 64],
    /// 0x1E0 COMMITTED_TCB.
    pub committed_tcb: U64,
    /// 0x1E8 CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR, reserved.
    pub current_version: RawFirmwareVersion,
    /// 0x1EC COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR, reserved.
    pub committed_version: RawFirmwareVersion,
    /// 0x1F0 LAUNCH_TCB.
    pub launch_tcb: U64,
    /// 0x1F8 LAUNCH_MIT_VECTOR (version 5+; reserved before).
    pub launch_mit_vector: U64,
    /// 0x200 CURRENT_MIT_VECTOR (version 5+; reserved before).
    pub current_mit_vector: U64,
    /// 0x208–0x29F reserved.
    reserved_208: [u8; 152],
    /// 0x2A0 SIGNATURE over bytes 0x000–0x29F.
    pub signature: RawSignature,
}

// Table 23: the report is 0x4A0 bytes and SIGNATURE is its last 0x200.
const _: () = assert!(size_of::<RawReport>() == 0x4A0);
const _: () = assert!(size_of::<RawSignature>() == 0x200);
const _: () = assert!(SIGNED_LEN + size_of::<RawSignature>() == REPORT_SIZE);

/// The report is exactly this long (Table 23).
pub const REPORT_SIZE: usize = size_of::<RawReport>();
/// Bytes `..SIGNED_LEN` are signed; SIGNATURE starts there (Table 23).
pub const SIGNED_LEN: usize = offset_of!(RawReport, signature);
/// SIGNATURE_ALGO (Table 23, Chapter 10 "Signature Formats"): 1 = ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Report versions sealgate parses.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];

/// Which key signed the report (Table 23, SIGNING_KEY: bits 4:2 of the key-info word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// 0: Versioned Chip Endorsement Key.
    Vcek,
    /// 1: Versioned Loaded Endorsement Key (cloud-provider provisioned).
    Vlek,
    /// 7: no key; the report is unsigned.
    None,
}

impl SigningKey {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
            SigningKey::None => "none",
        }
    }
}

/// Processor product line, which fixes the TCB_VERSION byte layout and the AMD key
/// hierarchy (ARK/ASK per product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    pub fn from_name(s: &str) -> Option<Product> {
        match s {
            "Milan" => Some(Product::Milan),
            "Genoa" => Some(Product::Genoa),
            "Turin" => Some(Product::Turin),
            _ => None,
        }
    }

    /// From the report's CPUID fields (version 3+). Family 19h models 00h–0Fh are Milan,
    /// 10h–1Fh and A0h–AFh (Genoa, Bergamo, Siena) use the Genoa hierarchy; family 1Ah
    /// models 00h–1Fh are Turin. Anything else is unknown to sealgate.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Product::Turin),
            _ => None,
        }
    }

    /// TCB_VERSION layout used by this product line.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Turin => TcbLayout::Turin,
            _ => TcbLayout::MilanGenoa,
        }
    }
}

/// The two TCB_VERSION byte layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbLayout {
    /// Table 3 (Milan, Genoa): [BOOT_LOADER, TEE, rsvd×4, SNP, MICROCODE].
    MilanGenoa,
    /// Turin (family 1Ah): [FMC, BOOT_LOADER, TEE, SNP, rsvd×3, MICROCODE].
    Turin,
}

/// A decoded TCB_VERSION: security patch levels of each firmware component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin only.
    pub fmc: Option<u8>,
}

/// A raw TCB_VERSION (u64, little-endian in the report); decoding needs the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcbVersion(pub u64);

impl TcbVersion {
    pub fn decode(self, layout: TcbLayout) -> Tcb {
        let b = self.0.to_le_bytes();
        match layout {
            TcbLayout::MilanGenoa => Tcb {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                fmc: None,
            },
            TcbLayout::Turin => Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

/// GUEST_POLICY ("GUEST_POLICY Structure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    fn bit(self, n: u32) -> bool {
        self.0 >> n & 1 == 1
    }
    /// Bits 7:0: minimum ABI minor version.
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    /// Bits 15:8: minimum ABI major version.
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Bit 16: SMT allowed.
    pub fn smt(self) -> bool {
        self.bit(16)
    }
    /// Bit 17: reserved, must be one (firmware refuses a policy without it).
    pub fn reserved_one(self) -> bool {
        self.bit(17)
    }
    /// Bit 18: association with a migration agent allowed.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Bit 19: debugging allowed (host can read/write guest memory).
    pub fn debug(self) -> bool {
        self.bit(19)
    }
    /// Bit 20: guest may run on one socket only.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// Bit 21: CXL may be populated with guest memory.
    pub fn cxl_allow(self) -> bool {
        self.bit(21)
    }
    /// Bit 22: AES-256-XTS required for memory encryption.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// Bit 23: running with RAPL disabled required.
    pub fn rapl_dis(self) -> bool {
        self.bit(23)
    }
    /// Bit 24: ciphertext hiding for DRAM required.
    pub fn ciphertext_hiding(self) -> bool {
        self.bit(24)
    }
    /// Bit 25: guest support for SNP_PAGE_MOVE / page swap disabled.
    pub fn page_swap_disable(self) -> bool {
        self.bit(25)
    }
    /// Bits 63:26 (undefined in rev 1.57).
    pub fn unknown_bits(self) -> u64 {
        self.0 & !((1u64 << 26) - 1)
    }
}

/// PLATFORM_INFO (Table 23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    fn bit(self, n: u32) -> bool {
        self.0 >> n & 1 == 1
    }
    /// Bit 0: SMT enabled in the system.
    pub fn smt_enabled(self) -> bool {
        self.bit(0)
    }
    /// Bit 1: TSME enabled.
    pub fn tsme_enabled(self) -> bool {
        self.bit(1)
    }
    /// Bit 2: platform uses ECC memory.
    pub fn ecc_enabled(self) -> bool {
        self.bit(2)
    }
    /// Bit 3: RAPL disabled.
    pub fn rapl_disabled(self) -> bool {
        self.bit(3)
    }
    /// Bit 4: ciphertext hiding for DRAM enabled.
    pub fn ciphertext_hiding_enabled(self) -> bool {
        self.bit(4)
    }
    /// Bit 5: alias check of memory completed (mitigation of the "BadRAM" alias attack).
    pub fn alias_check_complete(self) -> bool {
        self.bit(5)
    }
    /// Bit 7: SEV-TIO enabled.
    pub fn tio_enabled(self) -> bool {
        self.bit(7)
    }
    /// Bits sealgate does not name (bit 6 and 63:8).
    pub fn unknown_bits(self) -> u64 {
        self.0 & !0xBF
    }
}

/// CPUID family/model/stepping (version 3+, [`RawCpuid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// Firmware version triple (Table 23 CURRENT_* / COMMITTED_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

/// A parsed ATTESTATION_REPORT: the fields of [`RawReport`] decoded, version-dependent
/// fields as `Option`s. Field names follow Table 23; offsets are in [`RawReport`] only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// VERSION.
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: GuestPolicy,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// VMPL the report was requested at.
    pub vmpl: u32,
    /// SIGNATURE_ALGO.
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// AUTHOR_KEY_EN: the author key digest is present.
    pub author_key_en: bool,
    /// MASK_CHIP_KEY: CHIP_ID was masked to zero.
    pub mask_chip_key: bool,
    /// SIGNING_KEY.
    pub signing_key: SigningKey,
    /// REPORT_DATA: guest-supplied.
    pub report_data: [u8; 64],
    /// MEASUREMENT: launch digest.
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB: the TCB the VCEK was derived from.
    pub reported_tcb: TcbVersion,
    /// CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP (version 3+).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// CURRENT_BUILD / CURRENT_MINOR / CURRENT_MAJOR.
    pub current_version: FirmwareVersion,
    /// COMMITTED_BUILD / COMMITTED_MINOR / COMMITTED_MAJOR.
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB.
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR (version 5+).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5+).
    pub current_mit_vector: Option<u64>,
    /// SIGNATURE.R, little-endian.
    pub signature_r: [u8; SIG_COMPONENT_LEN],
    /// SIGNATURE.S, little-endian.
    pub signature_s: [u8; SIG_COMPONENT_LEN],
}

impl AttestationReport {
    /// Product line from CPUID (version 3+), if recognised.
    pub fn product_from_cpuid(&self) -> Option<Product> {
        self.cpuid
            .and_then(|c| Product::from_cpuid(c.family, c.model))
    }
}

fn snp_err(
    offset: usize,
    kind: ParseErrorKind,
    field: &'static str,
    detail: impl Into<String>,
) -> ParseError {
    ParseError::new(Platform::Snp, kind, field, offset, detail)
}

/// `bytes` (a reserved range starting at report offset `at`) must be all zero.
fn reserved_zero(bytes: &[u8], at: usize, field: &'static str) -> Result<()> {
    if let Some(i) = bytes.iter().position(|&b| b != 0) {
        return Err(snp_err(
            at + i,
            ParseErrorKind::ReservedNonZero,
            field,
            format!("byte 0x{:03x} is 0x{:02x}, must be zero", at + i, bytes[i]),
        ));
    }
    Ok(())
}

impl From<&RawFirmwareVersion> for FirmwareVersion {
    fn from(v: &RawFirmwareVersion) -> Self {
        FirmwareVersion {
            major: v.major,
            minor: v.minor,
            build: v.build,
        }
    }
}

impl RawReport {
    /// The signed bytes (everything before SIGNATURE).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.as_bytes()[..SIGNED_LEN]
    }

    /// SIGNING_KEY (key-info bits 4:2): 0 VCEK, 1 VLEK, 7 none; other values are invalid.
    pub fn signing_key(&self) -> Result<SigningKey> {
        match (self.key_info.get() >> 2) & 7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            7 => Ok(SigningKey::None),
            other => Err(snp_err(
                offset_of!(RawReport, key_info),
                ParseErrorKind::Invalid,
                "ATTESTATION_REPORT.SIGNING_KEY",
                format!("{} (0 VCEK, 1 VLEK, 7 none)", other),
            )),
        }
    }

    /// Structural checks (Table 23): a supported VERSION, the key-info word's reserved bits
    /// and SIGNING_KEY value, and every reserved range zero for this version (the CPUID
    /// bytes are reserved before version 3, the mitigation vectors before version 5).
    pub fn validate(&self) -> Result<()> {
        let version = self.version.get();
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(snp_err(
                offset_of!(RawReport, version),
                ParseErrorKind::Unsupported,
                "ATTESTATION_REPORT.VERSION",
                format!("version {}, supported: 2, 3, 5", version),
            ));
        }
        let key_info = self.key_info.get();
        if key_info >> 5 != 0 {
            return Err(snp_err(
                offset_of!(RawReport, key_info),
                ParseErrorKind::ReservedNonZero,
                "ATTESTATION_REPORT.KEY_INFO",
                format!("0x{:08x}: bits 31:5 are reserved", key_info),
            ));
        }
        self.signing_key()?;
        reserved_zero(
            &self.reserved_04c,
            offset_of!(RawReport, reserved_04c),
            "ATTESTATION_REPORT.reserved_04c",
        )?;
        if version < 3 {
            reserved_zero(
                self.cpuid.as_bytes(),
                offset_of!(RawReport, cpuid),
                "ATTESTATION_REPORT.reserved_18b",
            )?;
        }
        reserved_zero(
            &self.reserved_18b,
            offset_of!(RawReport, reserved_18b),
            "ATTESTATION_REPORT.reserved_18b",
        )?;
        reserved_zero(
            &[self.current_version.reserved],
            offset_of!(RawReport, current_version) + offset_of!(RawFirmwareVersion, reserved),
            "ATTESTATION_REPORT.CURRENT_VERSION.reserved",
        )?;
        reserved_zero(
            &[self.committed_version.reserved],
            offset_of!(RawReport, committed_version) + offset_of!(RawFirmwareVersion, reserved),
            "ATTESTATION_REPORT.COMMITTED_VERSION.reserved",
        )?;
        if version < 5 {
            reserved_zero(
                self.launch_mit_vector.as_bytes(),
                offset_of!(RawReport, launch_mit_vector),
                "ATTESTATION_REPORT.reserved_208",
            )?;
            reserved_zero(
                self.current_mit_vector.as_bytes(),
                offset_of!(RawReport, current_mit_vector),
                "ATTESTATION_REPORT.reserved_208",
            )?;
        }
        reserved_zero(
            &self.reserved_208,
            offset_of!(RawReport, reserved_208),
            "ATTESTATION_REPORT.reserved_208",
        )?;
        reserved_zero(
            &self.signature.reserved,
            offset_of!(RawReport, signature) + offset_of!(RawSignature, reserved),
            "ATTESTATION_REPORT.SIGNATURE.reserved",
        )
    }
}

/// Parse a 1184-byte ATTESTATION_REPORT of version 2, 3 or 5. The input must be exactly one
/// report (configfs-tsm `outblob` and SNP_GET_REPORT both return exactly that).
pub fn parse_report(buf: &[u8]) -> Result<AttestationReport> {
    if buf.len() > REPORT_SIZE {
        return Err(snp_err(
            REPORT_SIZE,
            ParseErrorKind::TrailingBytes,
            "ATTESTATION_REPORT",
            format!("{} bytes, a report is exactly {}", buf.len(), REPORT_SIZE),
        ));
    }
    let raw = RawReport::ref_from_bytes(buf).map_err(|_| {
        snp_err(
            buf.len(),
            ParseErrorKind::Truncated,
            "ATTESTATION_REPORT",
            format!("{} bytes, a report is exactly {}", buf.len(), REPORT_SIZE),
        )
    })?;
    raw.validate()?;
    let version = raw.version.get();
    let key_info = raw.key_info.get();
    let RawCpuid {
        family,
        model,
        stepping,
    } = raw.cpuid;
    Ok(AttestationReport {
        version,
        guest_svn: raw.guest_svn.get(),
        policy: GuestPolicy(raw.policy.get()),
        family_id: raw.family_id,
        image_id: raw.image_id,
        vmpl: raw.vmpl.get(),
        signature_algo: raw.signature_algo.get(),
        current_tcb: TcbVersion(raw.current_tcb.get()),
        platform_info: PlatformInfo(raw.platform_info.get()),
        author_key_en: key_info & 1 == 1,
        mask_chip_key: key_info >> 1 & 1 == 1,
        signing_key: raw.signing_key()?,
        report_data: raw.report_data,
        measurement: raw.measurement,
        host_data: raw.host_data,
        id_key_digest: raw.id_key_digest,
        author_key_digest: raw.author_key_digest,
        report_id: raw.report_id,
        report_id_ma: raw.report_id_ma,
        reported_tcb: TcbVersion(raw.reported_tcb.get()),
        cpuid: (version >= 3).then_some(Cpuid {
            family,
            model,
            stepping,
        }),
        chip_id: raw.chip_id,
        committed_tcb: TcbVersion(raw.committed_tcb.get()),
        current_version: (&raw.current_version).into(),
        committed_version: (&raw.committed_version).into(),
        launch_tcb: TcbVersion(raw.launch_tcb.get()),
        launch_mit_vector: (version >= 5).then_some(raw.launch_mit_vector.get()),
        current_mit_vector: (version >= 5).then_some(raw.current_mit_vector.get()),
        signature_r: raw.signature.r,
        signature_s: raw.signature.s,
    })
}

/// True when `e` is the "unknown report version" error (callers give it its own code,
/// `snp.report.unsupported_version`: a report from newer firmware is not garbage).
pub fn is_unsupported_version(e: &ParseError) -> bool {
    e.kind == ParseErrorKind::Unsupported && e.field == "ATTESTATION_REPORT.VERSION"
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zerocopy::FromZeros;

    /// A well-formed report of `version` with recognisable field values, built through
    /// the declared layout.
    pub fn sample(version: u32) -> Vec<u8> {
        let mut r = RawReport::new_zeroed();
        r.version = version.into();
        r.guest_svn = 7.into();
        r.policy = 0x0003_0000.into();
        r.vmpl = 1.into();
        r.signature_algo = 1.into();
        r.key_info = 0b0000_0100.into(); // VLEK
        r.report_data[0] = 0xAA;
        r.measurement[0] = 0xBB;
        // REPORTED_TCB in Turin layout: fmc=1 bl=3 tee=2 snp=5 ucode=97.
        r.reported_tcb = u64::from_le_bytes([1, 3, 2, 5, 0, 0, 0, 97]).into();
        if version >= 3 {
            r.cpuid = RawCpuid {
                family: 0x1A,
                model: 0x02,
                stepping: 0x01,
            };
        }
        r.chip_id[0] = 0xCC;
        (
            r.current_version.build,
            r.current_version.minor,
            r.current_version.major,
        ) = (3, 58, 1);
        if version >= 5 {
            r.launch_mit_vector = 0x0B.into();
            r.current_mit_vector = 0x0B.into();
        }
        r.signature.r[0] = 1;
        r.signature.s[0] = 2;
        r.as_bytes().to_vec()
    }

    #[test]
    fn declared_offsets_match_table_23() {
        // The spec's offsets, stated once more here only to check the declaration.
        assert_eq!(offset_of!(RawReport, key_info), 0x48);
        assert_eq!(offset_of!(RawReport, report_data), 0x50);
        assert_eq!(offset_of!(RawReport, measurement), 0x90);
        assert_eq!(offset_of!(RawReport, reported_tcb), 0x180);
        assert_eq!(offset_of!(RawReport, cpuid), 0x188);
        assert_eq!(offset_of!(RawReport, chip_id), 0x1A0);
        assert_eq!(offset_of!(RawReport, current_version), 0x1E8);
        assert_eq!(offset_of!(RawReport, launch_mit_vector), 0x1F8);
        assert_eq!(offset_of!(RawReport, signature), 0x2A0);
        assert_eq!(
            offset_of!(RawReport, signature) + offset_of!(RawSignature, s),
            0x2E8
        );
    }

    #[test]
    fn parses_each_version() {
        for v in SUPPORTED_VERSIONS {
            let r = parse_report(&sample(v)).unwrap();
            assert_eq!(r.version, v);
            assert_eq!(r.guest_svn, 7);
            assert_eq!(r.vmpl, 1);
            assert_eq!(r.signing_key, SigningKey::Vlek);
            assert_eq!(r.report_data[0], 0xAA);
            assert_eq!(r.measurement[0], 0xBB);
            assert_eq!(r.chip_id[0], 0xCC);
            assert_eq!(
                r.current_version,
                FirmwareVersion {
                    major: 1,
                    minor: 58,
                    build: 3
                }
            );
            assert_eq!(r.cpuid.is_some(), v >= 3);
            assert_eq!(r.launch_mit_vector, (v >= 5).then_some(0x0B));
            assert!(r.policy.smt() && r.policy.reserved_one() && !r.policy.debug());
            assert_eq!(r.signature_r[0], 1);
            assert_eq!(r.signature_s[0], 2);
        }
    }

    #[test]
    fn turin_tcb_layout_differs_from_milan() {
        let r = parse_report(&sample(5)).unwrap();
        assert_eq!(r.product_from_cpuid(), Some(Product::Turin));
        let turin = r.reported_tcb.decode(TcbLayout::Turin);
        assert_eq!(
            turin,
            Tcb {
                fmc: Some(1),
                bootloader: 3,
                tee: 2,
                snp: 5,
                microcode: 97
            }
        );
        let milan = r.reported_tcb.decode(TcbLayout::MilanGenoa);
        assert_eq!((milan.bootloader, milan.tee, milan.snp), (1, 3, 0));
    }

    #[test]
    fn milan_tcb_from_go_sev_guest() {
        // go-sev-guest's Milan v2 test report: 0x4405000000000002 = bl 2, tee 0, snp 5, ucode 68.
        let t = TcbVersion(0x4405_0000_0000_0002).decode(TcbLayout::MilanGenoa);
        assert_eq!(
            (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
            (2, 0, 5, 68, None)
        );
    }

    #[test]
    fn rejects_unknown_versions() {
        for v in [0u32, 1, 4, 6, 0xFFFF_FFFF] {
            let mut b = sample(5);
            b[0..4].copy_from_slice(&v.to_le_bytes());
            let e = parse_report(&b).unwrap_err();
            assert!(is_unsupported_version(&e), "{v}: {e}");
            assert_eq!(e.code(), "snp.format.unsupported");
        }
    }

    #[test]
    fn lengths() {
        let b = sample(2);
        assert_eq!(
            parse_report(&b[..100]).unwrap_err().code(),
            "snp.format.truncated"
        );
        assert_eq!(
            parse_report(&[]).unwrap_err().code(),
            "snp.format.truncated"
        );
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            parse_report(&long).unwrap_err().code(),
            "snp.format.trailing_bytes"
        );
    }

    #[test]
    fn reserved_ranges_must_be_zero() {
        // (version, offset) pairs inside reserved ranges.
        let cases = [
            (2, 0x04C),
            (2, 0x188),
            (3, 0x18B),
            (5, 0x19F),
            (2, 0x1EB),
            (2, 0x1EF),
            (3, 0x1F8),
            (5, 0x208),
            (5, 0x29F),
            (5, 0x330),
            (5, 0x49F),
        ];
        for (v, off) in cases {
            let mut b = sample(v);
            b[off] = 1;
            let e = parse_report(&b).unwrap_err();
            assert_eq!(e.code(), "snp.format.reserved_nonzero", "v{v} 0x{off:x}");
            assert_eq!(e.offset, off);
        }
        // Bits 31:5 of the key-info word.
        let mut b = sample(5);
        b[0x48] |= 0x20;
        assert_eq!(
            parse_report(&b).unwrap_err().code(),
            "snp.format.reserved_nonzero"
        );
    }

    #[test]
    fn signing_key_values() {
        for (bits, want) in [
            (0u8, Some(SigningKey::Vcek)),
            (1, Some(SigningKey::Vlek)),
            (7, Some(SigningKey::None)),
        ] {
            let mut b = sample(5);
            b[0x48] = bits << 2 | 0b11;
            let r = parse_report(&b).unwrap();
            assert_eq!(Some(r.signing_key), want);
            assert!(r.author_key_en && r.mask_chip_key);
        }
        for bits in 2u8..7 {
            let mut b = sample(5);
            b[0x48] = bits << 2;
            assert_eq!(parse_report(&b).unwrap_err().code(), "snp.format.invalid");
        }
    }

    #[test]
    fn product_from_cpuid() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xA0), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = parse_report(&data);
        }

        #[test]
        fn truncations_are_errors(cut in 0usize..REPORT_SIZE) {
            let b = sample(5);
            prop_assert_eq!(parse_report(&b[..cut]).unwrap_err().code(), "snp.format.truncated");
        }

        #[test]
        fn bit_flips_never_panic(v in prop::sample::select(vec![2u32, 3, 5]), pos in 0usize..REPORT_SIZE, bit in 0u8..8) {
            let mut b = sample(v);
            b[pos] ^= 1 << bit;
            let _ = parse_report(&b);
        }
    }
}
