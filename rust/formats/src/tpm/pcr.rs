//! TPML_PCR_SELECTION (Part 2, §10.6.2 and §10.9.7).

use crate::error::{ParseErrorKind, Result};
use crate::reader::Reader;
use crate::tpm::alg::TpmAlg;

/// HASH_COUNT: a TPM reports at most one selection per implemented bank. Real TPMs have
/// at most 4–5 banks; 16 leaves room while bounding the loop.
pub const MAX_PCR_SELECTIONS: usize = 16;
/// sizeofSelect cap. PC Client TPMs have 24 PCRs (PCR_SELECT_MIN = 3); TSS2 allows 4
/// (TPM2_MAX_PCRS = 32). 8 bytes = 64 PCRs bounds the bitmap generously.
pub const MAX_PCR_SELECT_BYTES: usize = 8;

/// One bank's selection: the hash algorithm and the PCR indices set in the bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    pub hash: TpmAlg,
    /// sizeofSelect as it appeared on the wire.
    pub size_of_select: u8,
    /// Selected PCR indices, ascending (bit j of byte i is PCR 8*i + j).
    pub pcrs: Vec<u32>,
}

/// TPML_PCR_SELECTION, banks in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelectionList {
    pub selections: Vec<PcrSelection>,
}

impl PcrSelectionList {
    pub fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let at = r.offset();
        let count = r.u32_be("TPML_PCR_SELECTION.count")? as usize;
        if count > MAX_PCR_SELECTIONS {
            return Err(r.err_at(
                at,
                ParseErrorKind::TooLarge,
                "TPML_PCR_SELECTION.count",
                format!("{} selections, at most {}", count, MAX_PCR_SELECTIONS),
            ));
        }
        let mut selections = Vec::with_capacity(count);
        for _ in 0..count {
            let hat = r.offset();
            let hash = TpmAlg::from_u16(r.u16_be("TPMS_PCR_SELECTION.hash")?);
            if hash.digest_size().is_none() {
                return Err(r.err_at(
                    hat,
                    ParseErrorKind::Invalid,
                    "TPMS_PCR_SELECTION.hash",
                    format!("{} is not a hash algorithm", hash.name()),
                ));
            }
            let sat = r.offset();
            let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
            if size as usize > MAX_PCR_SELECT_BYTES {
                return Err(r.err_at(
                    sat,
                    ParseErrorKind::TooLarge,
                    "TPMS_PCR_SELECTION.sizeofSelect",
                    format!("{} bytes, at most {}", size, MAX_PCR_SELECT_BYTES),
                ));
            }
            let bitmap = r.take(size as usize, "TPMS_PCR_SELECTION.pcrSelect")?;
            let mut pcrs = Vec::new();
            for (i, byte) in bitmap.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        pcrs.push((i * 8 + bit) as u32);
                    }
                }
            }
            if selections.iter().any(|s: &PcrSelection| s.hash == hash) {
                return Err(r.err_at(
                    hat,
                    ParseErrorKind::Invalid,
                    "TPMS_PCR_SELECTION.hash",
                    format!("bank {} selected twice", hash.name()),
                ));
            }
            selections.push(PcrSelection {
                hash,
                size_of_select: size,
                pcrs,
            });
        }
        Ok(PcrSelectionList { selections })
    }

    /// Number of (bank, PCR) pairs selected.
    pub fn total(&self) -> usize {
        self.selections.iter().map(|s| s.pcrs.len()).sum()
    }

    /// Whether every (bank, pcr) in `other` is also selected here.
    pub fn covers(&self, other: &PcrSelectionList) -> bool {
        other.selections.iter().all(|o| {
            self.selections
                .iter()
                .find(|s| s.hash == o.hash)
                .is_some_and(|s| o.pcrs.iter().all(|p| s.pcrs.contains(p)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Platform;

    #[test]
    fn parses_bitmap() {
        // one bank sha256, PCRs 0,1,2,3,4,5,6,7,10
        let b = [0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0x04, 0x00];
        let mut r = Reader::new(&b, Platform::Tpm);
        let l = PcrSelectionList::parse(&mut r).unwrap();
        assert_eq!(l.selections[0].hash, TpmAlg::Sha256);
        assert_eq!(l.selections[0].pcrs, vec![0, 1, 2, 3, 4, 5, 6, 7, 10]);
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_non_hash_and_caps() {
        let b = [0, 0, 0, 1, 0, 0x01, 3, 0xff, 0, 0];
        assert_eq!(
            PcrSelectionList::parse(&mut Reader::new(&b, Platform::Tpm))
                .unwrap_err()
                .kind,
            ParseErrorKind::Invalid
        );
        let b = [0, 0, 0, 17];
        assert_eq!(
            PcrSelectionList::parse(&mut Reader::new(&b, Platform::Tpm))
                .unwrap_err()
                .kind,
            ParseErrorKind::TooLarge
        );
        let b = [0, 0, 0, 1, 0, 0x0b, 9];
        assert_eq!(
            PcrSelectionList::parse(&mut Reader::new(&b, Platform::Tpm))
                .unwrap_err()
                .kind,
            ParseErrorKind::TooLarge
        );
    }
}
