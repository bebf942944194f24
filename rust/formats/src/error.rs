//! Typed parse errors shared by every evidence format.
//!
//! A parse error names the platform, what went wrong, the field being read and the byte
//! offset where it happened, so an operator can find the fault in a hex dump. The stable
//! machine code is `<platform>.format.<kind>` (catalogued in python/sealgate/codes.py).

use core::fmt;

/// Which evidence family a parser was reading; it prefixes the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Tpm,
    Snp,
    Tdx,
    /// X.509 certificates and CRLs, shared by every platform's PKI.
    X509,
    /// An NVIDIA confidential GPU's SPDM attestation report (`gpu.format.*`).
    Gpu,
    /// The HCL report of an Azure confidential VM (the paravisor's attestation report).
    AzureHcl,
    /// The bincode `quote.bin` of Azure vTPM tooling (signature, message, PCRs).
    AzureQuoteBin,
    /// The HCL report's runtime data (JSON with the vTPM keys as JWKs).
    AzureRuntimeData,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Tpm => "tpm",
            Platform::Snp => "snp",
            Platform::Tdx => "tdx",
            Platform::X509 => "x509",
            Platform::Gpu => "gpu",
            Platform::AzureHcl => "azure.hcl",
            Platform::AzureQuoteBin => "azure.quote_bin",
            Platform::AzureRuntimeData => "azure.runtime_data",
        }
    }
}

/// What went wrong while reading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Input ended before the field did.
    Truncated,
    /// A length field exceeds the cap the format (or sealgate) allows.
    TooLarge,
    /// A value is outside the set the specification allows (bad magic, bad enum, ...).
    Invalid,
    /// A well-formed value sealgate deliberately does not handle (other attestation types,
    /// unknown report versions, ...).
    Unsupported,
    /// Bytes remain after a structure that must consume its input exactly.
    TrailingBytes,
    /// A reserved / must-be-zero field is not zero.
    ReservedNonZero,
}

impl ParseErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::Truncated => "truncated",
            ParseErrorKind::TooLarge => "too_large",
            ParseErrorKind::Invalid => "invalid",
            ParseErrorKind::Unsupported => "unsupported",
            ParseErrorKind::TrailingBytes => "trailing_bytes",
            ParseErrorKind::ReservedNonZero => "reserved_nonzero",
        }
    }
}

/// A parse failure with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub platform: Platform,
    pub kind: ParseErrorKind,
    /// Spec name of the field being read, e.g. `TPMS_ATTEST.extraData`.
    pub field: &'static str,
    /// Byte offset into the input where the field starts.
    pub offset: usize,
    /// Human detail: actual vs expected values. Never contains secrets (inputs are evidence).
    pub detail: String,
}

impl ParseError {
    pub fn new(
        platform: Platform,
        kind: ParseErrorKind,
        field: &'static str,
        offset: usize,
        detail: impl Into<String>,
    ) -> Self {
        ParseError {
            platform,
            kind,
            field,
            offset,
            detail: detail.into(),
        }
    }

    /// Stable machine code, `component.sub.event`: `<platform>.format.<kind>`, and for the
    /// Azure containers (already two parts) `azure.hcl.<kind>`, `azure.quote_bin.<kind>`,
    /// `azure.runtime_data.<kind>`.
    pub fn code(&self) -> String {
        match self.platform {
            Platform::AzureHcl | Platform::AzureQuoteBin | Platform::AzureRuntimeData => {
                format!("{}.{}", self.platform.as_str(), self.kind.as_str())
            }
            _ => format!("{}.format.{}", self.platform.as_str(), self.kind.as_str()),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {} ({}): {}",
            self.field,
            self.offset,
            self.kind.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for ParseError {}

pub type Result<T> = core::result::Result<T, ParseError>;
