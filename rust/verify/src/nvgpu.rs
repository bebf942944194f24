//! NVIDIA GPU report checks (the per-report hot path): the report signature, the request
//! nonce and the FWID binding to the leaf certificate.
//!
//! The signature is ECDSA P-384 / SHA-384 over request ‖ response before the signature
//! (DMTF DSP0274 §10.11, the signature format of §15 for TPM_ALG_ECDSA_ECC_NIST_P384: raw
//! r‖s, 48 bytes each, big-endian), by the leaf of the device certificate chain (the GSP
//! attestation key). The chain is verified and cached by the Python layer
//! (`sealgate.nvgpu.certs`); this module needs only the already-trusted key, and the leaf's
//! TCG DICE FWID (TCG DICE Attestation Architecture §6.1.1) to compare with the report's.
//! Nonce and FWID comparisons are constant time (aws-lc's `CRYPTO_memcmp`): neither value
//! is secret, but a comparison of attacker-chosen data with an expected value need not
//! leak how much of it matched.

use crate::crypto::{Curve, Hash, KeyKind, VerifyingKey};
use crate::failure::Failure;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use sealgate_formats::nvgpu::{parse_report, GpuReport, NONCE_LEN};
use sealgate_formats::ParseError;

/// P-384 coordinates and scalars are 48 bytes.
const P384_LEN: usize = 48;

/// The leaf's public key from its certificate's subjectPublicKey: an uncompressed SEC1
/// P-384 point (0x04 ‖ X ‖ Y; every NVIDIA device certificate is P-384).
pub fn device_key(point: &[u8]) -> Result<VerifyingKey, Failure> {
    if point.len() != 1 + 2 * P384_LEN || point[0] != 0x04 {
        return Err(Failure::new(
            "gpu.chain.bad_key",
            "leaf public key is not an uncompressed P-384 point",
        ));
    }
    VerifyingKey::ec(Curve::P384, &point[1..1 + P384_LEN], &point[1 + P384_LEN..])
        .map_err(|e| Failure::new("gpu.chain.bad_key", format!("leaf public key: {e:?}")))
}

/// ECDSA P-384 / SHA-384 over `signed`, raw r‖s `sig` (96 bytes), with `key`.
pub fn verify_signature(key: &VerifyingKey, signed: &[u8], sig: &[u8]) -> bool {
    key.kind() == KeyKind::Ec(Curve::P384)
        && sig.len() == 2 * P384_LEN
        && key
            .verify_ecdsa(Hash::Sha384, signed, &sig[..P384_LEN], &sig[P384_LEN..])
            .is_ok()
}

/// The report signature with the leaf key.
pub fn verify_report_signature(report: &GpuReport<'_>, key: &VerifyingKey) -> Result<(), Failure> {
    if verify_signature(key, report.signed, report.signature) {
        Ok(())
    } else {
        Err(Failure::new(
            "gpu.report.signature_invalid",
            "the report signature does not verify with the leaf",
        ))
    }
}

/// The report's request nonce equals the caller's 32-byte challenge (any other length is
/// a mismatch, as no report can carry it).
pub fn check_nonce(report: &GpuReport<'_>, expected: &[u8]) -> Result<(), Failure> {
    if expected.len() == NONCE_LEN
        && verify_slices_are_equal(expected, report.request_nonce).is_ok()
    {
        Ok(())
    } else {
        Err(Failure::new(
            "gpu.report.nonce_mismatch",
            "the report's request nonce is not the expected one",
        ))
    }
}

/// The report's FWID TLV against the leaf's DICE FWID. `Ok(false)`: the report has no FWID
/// TLV (opaque data of drivers up to 545), so nothing was compared and the claims say so.
pub fn check_fwid(report: &GpuReport<'_>, leaf_fwid: Option<&[u8]>) -> Result<bool, Failure> {
    let Some(fwid) = report.fwid else {
        return Ok(false);
    };
    match leaf_fwid {
        Some(l) if verify_slices_are_equal(l, fwid).is_ok() => Ok(true),
        _ => Err(Failure::new(
            "gpu.report.fwid_mismatch",
            "the report's FWID is not the leaf certificate's",
        )),
    }
}

/// What the caller expects of a report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expectations<'a> {
    /// The caller's nonce; None: not checked (the claims say so).
    pub nonce: Option<&'a [u8]>,
    /// The leaf certificate's SHA-384 FWID, if it has one.
    pub leaf_fwid: Option<&'a [u8]>,
}

/// A checked report and every failure found, in the order the API has always listed
/// them: nonce, signature, FWID.
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    pub report: GpuReport<'a>,
    pub signature_verified: bool,
    /// False when the report carries no FWID TLV (nothing to compare).
    pub fwid_checked: bool,
    pub failures: Vec<Failure>,
}

/// The per-report steady state: parse, nonce, signature, FWID. Only an unparseable report
/// is an error; every other problem is a failure in the verdict, all of them.
pub fn verify_report<'a>(
    raw: &'a [u8],
    key: &VerifyingKey,
    exp: &Expectations<'_>,
) -> Result<Verdict<'a>, ParseError> {
    let report = parse_report(raw)?;
    let mut failures = Vec::new();
    if let Some(n) = exp.nonce {
        failures.extend(check_nonce(&report, n).err());
    }
    let sig = verify_report_signature(&report, key);
    let signature_verified = sig.is_ok();
    failures.extend(sig.err());
    let fwid_checked = match check_fwid(&report, exp.leaf_fwid) {
        Ok(checked) => checked,
        Err(f) => {
            failures.push(f);
            true
        }
    };
    Ok(Verdict {
        report,
        signature_verified,
        fwid_checked,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    use proptest::prelude::*;
    use sealgate_formats::nvgpu::{opaque, MeasurementBlock, OpaqueTlv, SIGNATURE_LEN, SPEC_DMTF};

    const NONCE: [u8; 32] = [0x93; 32];
    const FWID: [u8; 48] = [0xf5; 48];

    /// A report with `n` SHA-384 blocks and a FWID TLV (if `fwid`), signed with a fresh
    /// P-384 key; the SEC1 point of that key.
    fn signed(n: u8, fwid: bool) -> (Vec<u8>, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let values: Vec<[u8; 48]> = (1..=n).map(|i| [i; 48]).collect();
        let mut tlvs: Vec<OpaqueTlv<'_>> = vec![OpaqueTlv {
            tlv_type: opaque::DRIVER_VERSION,
            value: b"550.90.07",
            offset: 0,
        }];
        if fwid {
            tlvs.push(OpaqueTlv {
                tlv_type: opaque::FWID,
                value: &FWID,
                offset: 0,
            });
        }
        let r = GpuReport {
            request_param1: 1,
            request_param2: 0xFF,
            request_nonce: &NONCE,
            slot: 0,
            response_param1: 0,
            response_param2: 0,
            blocks: values
                .iter()
                .enumerate()
                .map(|(i, v)| MeasurementBlock {
                    index: i as u8 + 1,
                    spec: SPEC_DMTF,
                    value_type: 1,
                    value: v,
                })
                .collect(),
            responder_nonce: &[1; 32],
            opaque: tlvs,
            signed: &[],
            signature: &[0; SIGNATURE_LEN],
            driver_version: None,
            vbios_version: None,
            fwid: None,
            chip_sku: None,
            project: None,
            project_sku: None,
            switch_pdi: None,
        };
        let mut b = r.to_bytes();
        let cut = b.len() - SIGNATURE_LEN;
        let sig = kp.sign(&rng, &b[..cut]).unwrap();
        b[cut..].copy_from_slice(sig.as_ref());
        (b, kp.public_key().as_ref().to_vec())
    }

    fn codes<'a>(v: &'a Verdict<'_>) -> Vec<&'a str> {
        v.failures.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn genuine_report_verifies() {
        let (b, pt) = signed(64, true);
        let key = device_key(&pt).unwrap();
        let exp = Expectations {
            nonce: Some(&NONCE),
            leaf_fwid: Some(&FWID),
        };
        let v = verify_report(&b, &key, &exp).unwrap();
        assert!(v.failures.is_empty(), "{:?}", v.failures);
        assert!(v.signature_verified && v.fwid_checked);
        // Without expectations: nothing compared, still no failure.
        let v = verify_report(&b, &key, &Expectations::default()).unwrap();
        assert_eq!(codes(&v), ["gpu.report.fwid_mismatch"]); // the leaf has no FWID
        let (b, pt) = signed(3, false);
        let v = verify_report(&b, &device_key(&pt).unwrap(), &exp).unwrap();
        assert!(v.failures.is_empty() && !v.fwid_checked);
    }

    #[test]
    fn every_failure_is_listed_in_order() {
        let (mut b, pt) = signed(8, true);
        let key = device_key(&pt).unwrap();
        b[4] ^= 1; // request nonce: breaks the nonce and the signature
        let other = [0u8; 48];
        let exp = Expectations {
            nonce: Some(&NONCE),
            leaf_fwid: Some(&other),
        };
        let v = verify_report(&b, &key, &exp).unwrap();
        assert_eq!(
            codes(&v),
            [
                "gpu.report.nonce_mismatch",
                "gpu.report.signature_invalid",
                "gpu.report.fwid_mismatch"
            ]
        );
        assert!(!v.signature_verified);
        let short = Expectations {
            nonce: Some(&NONCE[..16]),
            leaf_fwid: Some(&FWID),
        };
        let (b, _) = signed(1, true);
        let v = verify_report(&b, &key, &short).unwrap();
        // Another key signed it; a short nonce never matches.
        assert_eq!(
            codes(&v),
            ["gpu.report.nonce_mismatch", "gpu.report.signature_invalid"]
        );
    }

    #[test]
    fn parse_errors_are_errors() {
        let (b, pt) = signed(2, true);
        let key = device_key(&pt).unwrap();
        let e = verify_report(&b[..b.len() - 1], &key, &Expectations::default()).unwrap_err();
        assert_eq!(e.code(), "gpu.format.truncated");
    }

    #[test]
    fn device_key_must_be_an_uncompressed_p384_point() {
        let (_, pt) = signed(1, false);
        assert!(device_key(&pt).is_ok());
        let mut bad = pt.clone();
        bad[0] = 0x02;
        assert_eq!(device_key(&bad).unwrap_err().code, "gpu.chain.bad_key");
        assert_eq!(device_key(&pt[..65]).unwrap_err().code, "gpu.chain.bad_key");
        let mut off = pt.clone();
        off[96] ^= 1; // not on the curve
        assert_eq!(device_key(&off).unwrap_err().code, "gpu.chain.bad_key");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_flip_in_the_signed_bytes_or_signature_fails(pos in 0usize..10_000, bit in 0u8..8) {
            let (b, pt) = signed(4, true);
            let key = device_key(&pt).unwrap();
            let mut x = b.clone();
            let p = pos % x.len();
            x[p] ^= 1 << bit;
            let exp = Expectations { nonce: Some(&NONCE), leaf_fwid: Some(&FWID) };
            match verify_report(&x, &key, &exp) {
                Err(e) => prop_assert!(e.code().starts_with("gpu.format.")),
                Ok(v) => {
                    prop_assert!(!v.signature_verified);
                    prop_assert!(codes(&v).contains(&"gpu.report.signature_invalid"));
                }
            }
        }
    }
}
