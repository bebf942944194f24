//! TDX quote signatures, the QE binding and CCEL → RTMR replay.
//!
//! Per quote (Intel TDX DCAP Quoting Library API, Appendix A.4; Intel's QVL
//! `QuoteVerifier::verify`):
//! 1. the attestation key (P-256) signs header ‖ [v5 body descriptor ‖] TD quote body;
//! 2. the PCK key (P-256, from the PCK certificate the caller verified) signs the QE report;
//! 3. QE report.report_data = SHA-256(attestation key ‖ QE authentication data) ‖ 32 zeros,
//!    which ties the attestation key to the QE the PCK vouches for.
//!
//! The PCK chain, CRLs and TCB collateral are checked once per chain in Python
//! (`sealgate.tdx`) and cached, so steady state here is two P-256 verifications.

use crate::crypto::{self, Curve, Hash, VerifyingKey};
use crate::failure::{hex, Error, Failure};
use sealgate_formats::eventlog::{parse_event_log, EventLog, EV_NO_ACTION};
use sealgate_formats::tdx::{Quote, INTEL_QE_VENDOR_ID};
use sealgate_formats::tpm::TpmAlg;
use sealgate_formats::Platform;

/// RTMR width: SHA-384 (TDX Module ABI spec, TDG.MR.RTMR.EXTEND).
pub const RTMR_SIZE: usize = 48;
/// CCEL MR index → RTMR: index 0 is MRTD (not replayable from the log), 1..=4 are RTMR0..3
/// (UEFI spec 2.10 §38.4.1 "EFI_CC_MEASUREMENT_PROTOCOL", CC MR index mapping for TDX).
pub const CCEL_FIRST_RTMR_INDEX: u32 = 1;
pub const CCEL_RTMR_COUNT: usize = 4;

/// TD_ATTRIBUTES, a little-endian u64 in the TD quote body (Intel TDX Module ABI
/// specification, "TDATTRIBUTES"): the bits appraisal reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes(pub u64);

impl TdAttributes {
    pub fn from_le(raw: &[u8; 8]) -> Self {
        TdAttributes(u64::from_le_bytes(*raw))
    }
    fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }
    /// Bit 0 DEBUG: the TD runs in debug mode; the host can read its state.
    pub fn debug(self) -> bool {
        self.bit(0)
    }
    /// Bit 28 SEPT_VE_DISABLE: EPT violations are not converted to #VE.
    pub fn sept_ve_disable(self) -> bool {
        self.bit(28)
    }
    /// Bit 30 PKS: supervisor protection keys allowed.
    pub fn pks(self) -> bool {
        self.bit(30)
    }
    /// Bit 31 KL: Key Locker allowed.
    pub fn kl(self) -> bool {
        self.bit(31)
    }
    /// Bit 63 PERFMON: performance monitoring allowed.
    pub fn perfmon(self) -> bool {
        self.bit(63)
    }
}

/// The PCK certificate's public key (P-256, affine coordinates), which signs the QE report.
pub fn pck_key(x: &[u8], y: &[u8]) -> Result<VerifyingKey, Failure> {
    VerifyingKey::ec(Curve::P256, x, y)
        .map_err(|e| Failure::new("tdx.pck.key_invalid", format!("PCK key: {e:?}")))
}

/// Every failure of the per-quote checks (all are reported, not just the first).
pub fn verify_quote(buf: &[u8], quote: &Quote, pck: Option<&VerifyingKey>) -> Vec<Failure> {
    let mut out = Vec::new();
    // Only Intel's QE is appraisable: its identity (TD_QE) is what the collateral describes
    // (A.3 "QE Vendor ID"; Intel's QVL and dcap-qvl refuse other vendors too).
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
        out.push(Failure::new(
            "tdx.quote.unsupported_qe_vendor",
            format!(
                "QE vendor ID {}, expected Intel's {}",
                hex(&quote.header.qe_vendor_id),
                hex(&INTEL_QE_VENDOR_ID)
            ),
        ));
    }
    let sd = &quote.signature_data;
    let ak = &sd.attestation_key;
    match VerifyingKey::ec(Curve::P256, &ak[..32], &ak[32..]) {
        Ok(key) => {
            if key
                .verify_ecdsa(
                    Hash::Sha256,
                    quote.signed_region(buf),
                    &sd.signature[..32],
                    &sd.signature[32..],
                )
                .is_err()
            {
                out.push(Failure::new(
                    "tdx.quote.signature_invalid",
                    format!(
                        "quote signature does not verify with the attestation key {} over {} signed bytes",
                        hex(ak),
                        quote.signed_len
                    ),
                ));
            }
        }
        // A key that is not on the curve cannot have signed anything: same code as a bad
        // signature, so consumers need not special-case it.
        Err(e) => out.push(Failure::new(
            "tdx.quote.signature_invalid",
            format!(
                "attestation key {} is not a valid P-256 point: {e:?}",
                hex(ak)
            ),
        )),
    }
    // QE report data binds the attestation key and QE auth data (A.4.11 "QE Report").
    let expected = crypto::hash(Hash::Sha256, &[ak, &sd.qe_auth_data]);
    let rd = &sd.qe_report.report_data;
    if rd[..32] != expected[..] || rd[32..].iter().any(|&b| b != 0) {
        out.push(Failure::new(
            "tdx.qe.binding_mismatch",
            format!(
                "QE report_data {} is not SHA-256(attestation key ‖ QE auth data) {} followed by zeros",
                hex(rd),
                hex(&expected)
            ),
        ));
    }
    if let Some(pck) = pck {
        let s = &sd.qe_report_signature;
        if pck
            .verify_ecdsa(Hash::Sha256, &sd.qe_report_raw, &s[..32], &s[32..])
            .is_err()
        {
            out.push(Failure::new(
                "tdx.qe.signature_invalid",
                "QE report signature does not verify with the PCK certificate's key",
            ));
        }
    }
    out
}

/// Replay a CCEL (TCG2 crypto-agile, SHA-384) into RTMR0..3, starting from zero.
pub fn replay_ccel(log: &EventLog) -> Result<[[u8; RTMR_SIZE]; CCEL_RTMR_COUNT], Failure> {
    if !log.banks().contains(&TpmAlg::Sha384) {
        return Err(Failure::new(
            "tdx.ccel.no_sha384",
            "the CCEL declares no SHA-384 bank; RTMRs are SHA-384",
        ));
    }
    let mut rtmr: Vec<Vec<u8>> = (0..CCEL_RTMR_COUNT).map(|_| vec![0u8; RTMR_SIZE]).collect();
    for ev in &log.events {
        if ev.event_type == EV_NO_ACTION {
            continue;
        }
        let idx = ev.pcr_index;
        if !(CCEL_FIRST_RTMR_INDEX..CCEL_FIRST_RTMR_INDEX + CCEL_RTMR_COUNT as u32).contains(&idx) {
            return Err(Failure::new(
                "tdx.ccel.invalid_mr_index",
                format!(
                    "event {} at offset {} has MR index {}, expected 1..4 (RTMR0..3)",
                    ev.number, ev.offset, idx
                ),
            ));
        }
        let Some((_, digest)) = ev.digests.iter().find(|(a, _)| *a == TpmAlg::Sha384) else {
            return Err(Failure::new(
                "tdx.ccel.missing_digest",
                format!(
                    "event {} at offset {} has no SHA-384 digest",
                    ev.number, ev.offset
                ),
            ));
        };
        crypto::extend(
            Hash::Sha384,
            &mut rtmr[(idx - CCEL_FIRST_RTMR_INDEX) as usize],
            digest,
        );
    }
    let mut out = [[0u8; RTMR_SIZE]; CCEL_RTMR_COUNT];
    for (o, r) in out.iter_mut().zip(rtmr) {
        o.copy_from_slice(&r);
    }
    Ok(out)
}

/// The CCEL of a quote replayed and compared with its RTMRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcelCheck {
    pub replayed: [[u8; RTMR_SIZE]; CCEL_RTMR_COUNT],
    /// `tdx.ccel.replay_mismatch` when a replayed RTMR differs from the quoted one.
    pub mismatch: Option<Failure>,
}

/// Parse a CCEL, replay it and compare the result with `quote`'s RTMRs. A log that does
/// not parse or cannot be replayed is an error (there is nothing to compare).
pub fn check_ccel(ccel: &[u8], quote: &Quote) -> Result<CcelCheck, Error> {
    let log = parse_event_log(ccel, Platform::Tdx)?;
    let replayed = replay_ccel(&log)?;
    let mismatch = compare_rtmrs(&replayed, &quote.body.rtmr);
    Ok(CcelCheck { replayed, mismatch })
}

/// Compare replayed RTMRs with the quote's; `None` when they all agree.
pub fn compare_rtmrs(
    replayed: &[[u8; RTMR_SIZE]; 4],
    quoted: &[[u8; RTMR_SIZE]; 4],
) -> Option<Failure> {
    let bad: Vec<String> = (0..4)
        .filter(|&i| replayed[i] != quoted[i])
        .map(|i| {
            format!(
                "RTMR{i} replayed {} quoted {}",
                hex(&replayed[i]),
                hex(&quoted[i])
            )
        })
        .collect();
    if bad.is_empty() {
        None
    } else {
        Some(Failure::new(
            "tdx.ccel.replay_mismatch",
            format!("CCEL replay disagrees with the quote: {}", bad.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::p256_pair;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::KeyPair;
    use proptest::prelude::*;
    use sealgate_formats::tdx::parse_quote;

    /// Build a signed v4/v5 quote: (bytes, PCK verifying key).
    fn signed_quote(version: u16, body_type: u16, trailing: usize) -> (Vec<u8>, VerifyingKey) {
        let rng = SystemRandom::new();
        let (_, att) = p256_pair();
        let (pck_vk, pck) = p256_pair();
        let ak = &att.public_key().as_ref()[1..];
        let auth = [9u8; 32];
        let mut qe = vec![0u8; 384];
        let h = crypto::hash(Hash::Sha256, &[ak, &auth]);
        qe[320..352].copy_from_slice(&h);
        qe[258] = 7; // isv_svn
        let qe_sig = pck.sign(&rng, &qe).unwrap();
        let mut q = Vec::new();
        q.extend_from_slice(&version.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0x81u32.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&sealgate_formats::tdx::INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&[0; 20]);
        let body_len = if body_type == 3 { 648 } else { 584 };
        if version == 5 {
            q.extend_from_slice(&body_type.to_le_bytes());
            q.extend_from_slice(&(body_len as u32).to_le_bytes());
        }
        q.extend((0..body_len).map(|i| (i * 7) as u8));
        let sig = att.sign(&rng, &q).unwrap();
        let chain = b"-----BEGIN CERTIFICATE-----\n";
        let mut inner = qe.clone();
        inner.extend_from_slice(qe_sig.as_ref());
        inner.extend_from_slice(&32u16.to_le_bytes());
        inner.extend_from_slice(&auth);
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        inner.extend_from_slice(chain);
        let mut sd = sig.as_ref().to_vec();
        sd.extend_from_slice(ak);
        sd.extend_from_slice(&6u16.to_le_bytes());
        sd.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        sd.extend_from_slice(&inner);
        q.extend_from_slice(&(sd.len() as u32).to_le_bytes());
        q.extend_from_slice(&sd);
        q.extend_from_slice(&vec![0u8; trailing]);
        (q, pck_vk)
    }

    fn codes(buf: &[u8], pck: &VerifyingKey) -> Vec<String> {
        match parse_quote(buf) {
            Ok(q) => verify_quote(buf, &q, Some(pck))
                .into_iter()
                .map(|f| f.code)
                .collect(),
            Err(e) => vec![e.code()],
        }
    }

    #[test]
    fn valid_quotes() {
        for (v, t) in [(4, 2), (5, 2), (5, 3)] {
            let (q, pck) = signed_quote(v, t, 10);
            assert!(codes(&q, &pck).is_empty(), "v{v} type {t}");
        }
    }

    #[test]
    fn every_signed_byte_matters() {
        let (q, pck) = signed_quote(5, 3, 0);
        let parsed = parse_quote(&q).unwrap();
        // Header+descriptor+body: flipping any byte breaks the quote signature or the parse.
        for i in (0..parsed.signed_len).step_by(13) {
            let mut b = q.clone();
            b[i] ^= 0x40;
            let c = codes(&b, &pck);
            assert!(!c.is_empty(), "byte {i} not covered");
        }
        // QE report bytes: break the PCK signature (and report_data the binding).
        let qe_at = parsed.signed_len + 4 + 128 + 6;
        let mut b = q.clone();
        b[qe_at + 258] ^= 1;
        assert_eq!(codes(&b, &pck), vec!["tdx.qe.signature_invalid"]);
        let mut b = q.clone();
        b[qe_at + 330] ^= 1;
        assert_eq!(
            codes(&b, &pck),
            vec!["tdx.qe.binding_mismatch", "tdx.qe.signature_invalid"]
        );
        // QE auth data feeds the binding.
        let mut b = q.clone();
        b[qe_at + 384 + 64 + 2] ^= 1;
        assert_eq!(codes(&b, &pck), vec!["tdx.qe.binding_mismatch"]);
        // Wrong PCK key.
        let (other, _) = p256_pair();
        assert_eq!(codes(&q, &other), vec!["tdx.qe.signature_invalid"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics_random(data in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let _ = parse_quote(&data).map(|q| verify_quote(&data, &q, None));
        }

        #[test]
        fn never_panics_mutated(cut in 0usize..5000, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
            let (mut q, pck) = signed_quote(4, 2, 3);
            for (i, x) in flips {
                let n = q.len();
                q[i % n] ^= x;
            }
            q.truncate(cut.min(q.len()));
            if let Ok(p) = parse_quote(&q) {
                let _ = verify_quote(&q, &p, Some(&pck));
            }
        }
    }

    /// A CCEL with a SHA-384 bank extending RTMR0 (MR 1), RTMR2 (MR 3) and an EV_NO_ACTION
    /// event at MR 2.
    fn ccel_bytes() -> Vec<u8> {
        use sealgate_formats::eventlog::SPEC_ID_EVENT03;
        let mut spec = SPEC_ID_EVENT03.to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes());
        spec.extend_from_slice(&[0, 2, 0, 2]);
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&[0x0c, 0x00, 48, 0]);
        spec.push(0);
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        v.extend_from_slice(&[0u8; 20]);
        v.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        v.extend_from_slice(&spec);
        for (mr, ty) in [(1u32, 8u32), (2, 3), (3, 0xd)] {
            v.extend_from_slice(&mr.to_le_bytes());
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&[0x0c, 0x00]);
            v.extend_from_slice(&[mr as u8; 48]);
            v.extend_from_slice(&0u32.to_le_bytes());
        }
        v.extend_from_slice(&[0u8; 64]);
        v
    }

    #[test]
    fn ccel_replay() {
        let log = parse_event_log(&ccel_bytes(), Platform::Tdx).unwrap();
        let r = replay_ccel(&log).unwrap();
        let mut e0 = vec![0u8; 48];
        crypto::extend(Hash::Sha384, &mut e0, &[1u8; 48]);
        assert_eq!(r[0].to_vec(), e0);
        assert_eq!(r[1], [0u8; 48]); // EV_NO_ACTION skipped
        assert_ne!(r[2], [0u8; 48]);
        assert_eq!(r[3], [0u8; 48]);
        assert!(compare_rtmrs(&r, &r).is_none());
        let mut q = r;
        q[3][0] = 1;
        assert_eq!(
            compare_rtmrs(&r, &q).unwrap().code,
            "tdx.ccel.replay_mismatch"
        );
    }

    #[test]
    fn ccel_checked_against_the_quote() {
        let (q, _) = signed_quote(4, 2, 0);
        let mut quote = parse_quote(&q).unwrap();
        let c = check_ccel(&ccel_bytes(), &quote).unwrap();
        let f = c.mismatch.unwrap();
        assert_eq!(f.code, "tdx.ccel.replay_mismatch");
        assert!(f
            .message
            .starts_with("CCEL replay disagrees with the quote: RTMR0 replayed "));
        assert_eq!(f.message.matches("; RTMR").count(), 3, "{}", f.message);
        quote.body.rtmr = c.replayed;
        quote.body.rtmr[2][47] ^= 1;
        let f = check_ccel(&ccel_bytes(), &quote).unwrap().mismatch.unwrap();
        assert_eq!(
            f.message,
            format!(
                "CCEL replay disagrees with the quote: RTMR2 replayed {} quoted {}",
                hex(&c.replayed[2]),
                hex(&quote.body.rtmr[2])
            )
        );
        quote.body.rtmr = c.replayed;
        assert!(check_ccel(&ccel_bytes(), &quote)
            .unwrap()
            .mismatch
            .is_none());
        // Unparseable log: a parse error; a log that cannot be replayed: a failure.
        assert!(matches!(
            check_ccel(&[1, 2, 3], &quote),
            Err(Error::Parse(_))
        ));
        let mut bad = ccel_bytes();
        let first_event = bad.len() - 64 - 3 * (4 + 4 + 4 + 2 + 48 + 4);
        bad[first_event] = 9; // MR index 9: no such RTMR
        match check_ccel(&bad, &quote) {
            Err(Error::Failed(f)) => assert_eq!(f.code, "tdx.ccel.invalid_mr_index"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn td_attribute_bits() {
        let a = TdAttributes::from_le(&[0x01, 0, 0, 0x50, 0, 0, 0, 0x80]);
        assert!(a.debug() && a.sept_ve_disable() && a.pks() && !a.kl() && a.perfmon());
        let a = TdAttributes::from_le(&[0, 0, 0, 0x80, 0, 0, 0, 0]);
        assert!(!a.debug() && !a.sept_ve_disable() && !a.pks() && a.kl() && !a.perfmon());
    }
}
