//! TPMS_ATTEST (Part 2, §10.12.12) restricted to quotes (TPMS_QUOTE_INFO, §10.12.4), and the
//! TPM2B_ATTEST wrapper (§10.12.13).

use crate::error::{ParseErrorKind, Platform, Result};
use crate::reader::Reader;
use crate::tpm::pcr::PcrSelectionList;

/// TPM_GENERATED_VALUE (Part 2, §6.2): every TPM-produced attestation starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE (Part 2, §6.9 Table 19).
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM2B_NAME max: sizeof(TPMU_NAME) = 2 + largest digest (SHA-512) = 66 bytes.
pub const MAX_NAME_SIZE: usize = 66;
/// TPM2B_DATA max: sizeof(TPMT_HA) = 2 + 64 = 66 bytes (Part 2, §10.4.3).
pub const MAX_EXTRA_DATA_SIZE: usize = 66;
/// TPM2B_DIGEST max: largest digest, SHA-512 = 64 bytes.
pub const MAX_DIGEST_SIZE: usize = 64;
/// TPM2B_ATTEST max: sizeof(TPMS_ATTEST) in the reference implementation is < 1 KiB; a
/// quote over 16 banks is well under 2 KiB.
pub const MAX_ATTEST_SIZE: usize = 2048;

/// TPMS_CLOCK_INFO (§10.11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// TPMS_QUOTE_INFO (§10.12.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    pub pcr_select: PcrSelectionList,
    pub pcr_digest: Vec<u8>,
}

/// A parsed quote attestation. `raw` is the exact signed byte string (the TPMS_ATTEST
/// without any TPM2B size prefix), which is what the AK signed (Part 3, §18.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    pub qualified_signer: Vec<u8>,
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub quote: QuoteInfo,
}

/// Parse a TPMS_ATTEST that must be a quote and must consume `buf` exactly.
pub fn parse_attest(buf: &[u8]) -> Result<Attest> {
    let mut r = Reader::new(buf, Platform::Tpm);
    if buf.len() > MAX_ATTEST_SIZE {
        return Err(r.err(
            ParseErrorKind::TooLarge,
            "TPMS_ATTEST",
            format!("{} bytes, at most {}", buf.len(), MAX_ATTEST_SIZE),
        ));
    }
    let magic = r.u32_be("TPMS_ATTEST.magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(r.err_at(
            0,
            ParseErrorKind::Invalid,
            "TPMS_ATTEST.magic",
            format!("0x{:08x}, expected 0x{:08x}", magic, TPM_GENERATED_VALUE),
        ));
    }
    let ty = r.u16_be("TPMS_ATTEST.type")?;
    if ty != TPM_ST_ATTEST_QUOTE {
        return Err(r.err_at(
            4,
            ParseErrorKind::Unsupported,
            "TPMS_ATTEST.type",
            format!(
                "0x{:04x}, only quotes (0x{:04x}) are accepted",
                ty, TPM_ST_ATTEST_QUOTE
            ),
        ));
    }
    let qualified_signer = r
        .tpm2b("TPMS_ATTEST.qualifiedSigner", MAX_NAME_SIZE)?
        .to_vec();
    let extra_data = r
        .tpm2b("TPMS_ATTEST.extraData", MAX_EXTRA_DATA_SIZE)?
        .to_vec();
    let clock = r.u64_be("TPMS_CLOCK_INFO.clock")?;
    let reset_count = r.u32_be("TPMS_CLOCK_INFO.resetCount")?;
    let restart_count = r.u32_be("TPMS_CLOCK_INFO.restartCount")?;
    let safe_at = r.offset();
    let safe = match r.u8("TPMS_CLOCK_INFO.safe")? {
        0 => false,
        1 => true,
        v => {
            // TPMI_YES_NO admits only 0 and 1 (Part 2, §9.2).
            return Err(r.err_at(
                safe_at,
                ParseErrorKind::Invalid,
                "TPMS_CLOCK_INFO.safe",
                format!("{} is not a TPMI_YES_NO", v),
            ));
        }
    };
    let firmware_version = r.u64_be("TPMS_ATTEST.firmwareVersion")?;
    let pcr_select = PcrSelectionList::parse(&mut r)?;
    let pcr_digest = r
        .tpm2b("TPMS_QUOTE_INFO.pcrDigest", MAX_DIGEST_SIZE)?
        .to_vec();
    r.expect_end("TPMS_ATTEST")?;
    Ok(Attest {
        qualified_signer,
        extra_data,
        clock_info: ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        },
        firmware_version,
        quote: QuoteInfo {
            pcr_select,
            pcr_digest,
        },
    })
}

/// Accept either a bare TPMS_ATTEST (what `tpm2_quote -m` writes) or a TPM2B_ATTEST. Returns
/// the parsed quote and the signed bytes (the TPMS_ATTEST without the size prefix).
pub fn parse_attest_any(buf: &[u8]) -> Result<(Attest, &[u8])> {
    let magic = TPM_GENERATED_VALUE.to_be_bytes();
    if buf.len() >= 6 && buf[..4] != magic && buf[2..6] == magic {
        let mut r = Reader::new(buf, Platform::Tpm);
        let inner = r.tpm2b("TPM2B_ATTEST.size", MAX_ATTEST_SIZE)?;
        r.expect_end("TPM2B_ATTEST")?;
        return Ok((parse_attest(inner)?, inner));
    }
    Ok((parse_attest(buf)?, buf))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic quote: sha256 PCRs 0..7, a 32-byte nonce.
    pub fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        v.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        v.extend_from_slice(&[0, 4, 0, 0x0b, 0xAA, 0xBB]); // qualifiedSigner
        v.extend_from_slice(&[0, 32]);
        v.extend_from_slice(&[7u8; 32]); // extraData
        v.extend_from_slice(&42u64.to_be_bytes());
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(&2u32.to_be_bytes());
        v.push(1);
        v.extend_from_slice(&0x2019_0203u64.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0, 0]);
        v.extend_from_slice(&[0, 32]);
        v.extend_from_slice(&[9u8; 32]);
        v
    }

    #[test]
    fn parses_quote() {
        let b = sample();
        let a = parse_attest(&b).unwrap();
        assert_eq!(a.extra_data, vec![7u8; 32]);
        assert_eq!(a.clock_info.clock, 42);
        assert!(a.clock_info.safe);
        assert_eq!(a.quote.pcr_select.selections[0].pcrs.len(), 8);
        assert_eq!(a.quote.pcr_digest, vec![9u8; 32]);
    }

    #[test]
    fn tpm2b_wrapper() {
        let b = sample();
        let mut w = (b.len() as u16).to_be_bytes().to_vec();
        w.extend_from_slice(&b);
        let (a, signed) = parse_attest_any(&w).unwrap();
        assert_eq!(signed, &b[..]);
        assert_eq!(a.clock_info.reset_count, 1);
    }

    #[test]
    fn errors() {
        let mut b = sample();
        b[5] = 0x17; // certify
        assert_eq!(
            parse_attest(&b).unwrap_err().code(),
            "tpm.format.unsupported"
        );
        let b = sample();
        for n in 0..b.len() {
            let e = parse_attest(&b[..n]).unwrap_err();
            assert!(matches!(
                e.kind,
                ParseErrorKind::Truncated | ParseErrorKind::Invalid
            ));
        }
        let mut b = sample();
        b.push(0);
        assert_eq!(
            parse_attest(&b).unwrap_err().kind,
            ParseErrorKind::TrailingBytes
        );
        let mut b = sample();
        b[0] = 0;
        assert_eq!(parse_attest(&b).unwrap_err().field, "TPMS_ATTEST.magic");
    }
}
