//! The audit hash chain (docs/audit.md): `h[i] = SHA-256(h[i-1] ‖ entry[i])`, `h[-1]` = 32 zero
//! bytes. Entries are opaque bytes here (the broker encodes them as deterministic CBOR,
//! RFC 8949 §4.2); this module only computes and checks the chain, so an edited, deleted or
//! reordered entry shows up as the first index whose stored hash does not match.

use crate::crypto::{hash, Hash};
use crate::failure::{hex, Failure};

/// Size of a chain link (SHA-256).
pub const LINK_SIZE: usize = 32;
/// The hash before the first entry.
pub const GENESIS: [u8; LINK_SIZE] = [0u8; LINK_SIZE];

/// One link: SHA-256(prev ‖ entry).
pub fn link(prev: &[u8], entry: &[u8]) -> Vec<u8> {
    hash(Hash::Sha256, &[prev, entry])
}

/// Every link of the chain over `entries`, starting from `prev` (GENESIS for a full chain).
pub fn chain<E: AsRef<[u8]>>(prev: &[u8], entries: &[E]) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.len());
    let mut cur = prev.to_vec();
    for e in entries {
        cur = link(&cur, e.as_ref());
        out.push(cur.clone());
    }
    out
}

/// Why a chain does not verify, with the first offending index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Index (into `entries`) of the first entry whose stored hash is wrong.
    pub index: usize,
    pub failure: Failure,
}

/// Check stored `hashes` against the chain recomputed from `entries` and `prev`.
///
/// Returns the first bad index. A length mismatch is reported at the first index that has
/// no partner.
pub fn verify<E: AsRef<[u8]>, H: AsRef<[u8]>>(
    prev: &[u8],
    entries: &[E],
    hashes: &[H],
) -> Result<(), ChainBreak> {
    if prev.len() != LINK_SIZE {
        return Err(ChainBreak {
            index: 0,
            failure: Failure::new(
                "audit.chain.bad_anchor",
                format!("anchor hash is {} bytes, expected {LINK_SIZE}", prev.len()),
            ),
        });
    }
    let mut cur = prev.to_vec();
    for (i, e) in entries.iter().enumerate() {
        cur = link(&cur, e.as_ref());
        let Some(stored) = hashes.get(i) else {
            return Err(ChainBreak {
                index: i,
                failure: Failure::new(
                    "audit.chain.missing_hash",
                    format!("entry {i} has no stored hash"),
                ),
            });
        };
        if stored.as_ref() != cur.as_slice() {
            return Err(ChainBreak {
                index: i,
                failure: Failure::new(
                    "audit.chain.hash_mismatch",
                    format!(
                        "entry {i}: stored hash {} but the chain gives {}",
                        hex(stored.as_ref()),
                        hex(&cur)
                    ),
                ),
            });
        }
    }
    if hashes.len() > entries.len() {
        return Err(ChainBreak {
            index: entries.len(),
            failure: Failure::new(
                "audit.chain.missing_entry",
                format!("{} hashes for {} entries", hashes.len(), entries.len()),
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Vec<u8>> {
        (0u8..5).map(|i| vec![i; 3 + i as usize]).collect()
    }

    #[test]
    fn link_is_sha256_of_prev_and_entry() {
        // SHA-256(32 zero bytes ‖ "abc"), computed with Python's hashlib.
        let h = link(&GENESIS, b"abc");
        assert_eq!(
            hex(&h),
            "365aa7d8f7f9402c4b9434502b4cc89ddb09fe50d7cd95b493b834c62d5a5370"
        );
        assert_ne!(link(&GENESIS, b"abd"), h);
    }

    #[test]
    fn intact_chain_verifies() {
        let e = entries();
        let h = chain(&GENESIS, &e);
        assert_eq!(verify(&GENESIS, &e, &h), Ok(()));
        // Continuing from a checkpoint gives the same links.
        let tail = chain(&h[1], &e[2..]);
        assert_eq!(tail, h[2..].to_vec());
    }

    #[test]
    fn edited_deleted_reordered_entries_are_found() {
        let e = entries();
        let h = chain(&GENESIS, &e);
        let mut edited = e.clone();
        edited[2][0] ^= 1;
        assert_eq!(verify(&GENESIS, &edited, &h).unwrap_err().index, 2);

        let mut deleted_e = e.clone();
        let mut deleted_h = h.clone();
        deleted_e.remove(1);
        deleted_h.remove(1);
        let br = verify(&GENESIS, &deleted_e, &deleted_h).unwrap_err();
        assert_eq!(
            (br.index, br.failure.code.as_str()),
            (1, "audit.chain.hash_mismatch")
        );

        let mut swapped_e = e.clone();
        let mut swapped_h = h.clone();
        swapped_e.swap(3, 4);
        swapped_h.swap(3, 4);
        assert_eq!(
            verify(&GENESIS, &swapped_e, &swapped_h).unwrap_err().index,
            3
        );

        let mut short = h.clone();
        short.pop();
        assert_eq!(
            verify(&GENESIS, &e, &short).unwrap_err().failure.code,
            "audit.chain.missing_hash"
        );
        assert_eq!(
            verify(&GENESIS, &e[..4], &h).unwrap_err().failure.code,
            "audit.chain.missing_entry"
        );
        assert_eq!(
            verify(&[0u8; 3], &e, &h).unwrap_err().failure.code,
            "audit.chain.bad_anchor"
        );
    }
}
