//! SEV-SNP report signature verification (the per-report hot path).
//!
//! The report is signed by the VCEK or VLEK with ECDSA P-384 / SHA-384 over bytes
//! 0x000–0x29F (SEV-SNP Firmware ABI rev 1.57, Table 23 and Chapter 10). R and S are stored
//! as 72-byte little-endian integers, zero-extended; the backend wants 48-byte big-endian
//! values, so each is reversed and its 24 high bytes must be zero. Certificate chains are
//! verified elsewhere (Python `cryptography`, once, then cached): this function only needs
//! the already-trusted P-384 key.

use crate::crypto::{Curve, Hash, KeyKind, VerifyingKey};
use crate::failure::{hex, Failure};
use sealgate_formats::snp::{
    is_unsupported_version, parse_report, AttestationReport, Product, SigningKey, SIGNED_LEN,
    SIG_ALGO_ECDSA_P384_SHA384, SIG_COMPONENT_LEN,
};
use sealgate_formats::ParseError;

/// P-384 scalars are 48 bytes.
const P384_LEN: usize = 48;

/// A parse error, with the unknown-version case given its own stable code
/// (`snp.report.unsupported_version`, README "AMD SEV-SNP") instead of `snp.format.unsupported`.
pub fn parse_failure(e: &ParseError) -> Option<Failure> {
    is_unsupported_version(e).then(|| Failure::new("snp.report.unsupported_version", e.to_string()))
}

/// Little-endian 72-byte field → 48-byte big-endian, or None when the value does not fit.
fn le72_to_be48(le: &[u8; SIG_COMPONENT_LEN]) -> Option<[u8; P384_LEN]> {
    if le[P384_LEN..].iter().any(|&b| b != 0) {
        return None;
    }
    let mut be = [0u8; P384_LEN];
    for (i, b) in le[..P384_LEN].iter().enumerate() {
        be[P384_LEN - 1 - i] = *b;
    }
    Some(be)
}

/// Verify the report signature with `key` (the VCEK/VLEK public key). `raw` must be the
/// bytes `report` was parsed from.
pub fn verify_report_signature(
    raw: &[u8],
    report: &AttestationReport,
    key: &VerifyingKey,
) -> Result<(), Failure> {
    if report.signing_key == SigningKey::None {
        return Err(Failure::new(
            "snp.report.unsigned",
            "SIGNING_KEY is 7 (no key): the report carries no signature",
        ));
    }
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(Failure::new(
            "snp.report.unsupported_signature_algorithm",
            format!(
                "SIGNATURE_ALGO {}, expected {} (ECDSA P-384 with SHA-384)",
                report.signature_algo, SIG_ALGO_ECDSA_P384_SHA384
            ),
        ));
    }
    if key.kind() != KeyKind::Ec(Curve::P384) {
        return Err(Failure::new(
            "snp.vcek.unsupported_key",
            format!("signing key is {:?}, expected a P-384 key", key.kind()),
        ));
    }
    let (Some(r), Some(s)) = (
        le72_to_be48(&report.signature_r),
        le72_to_be48(&report.signature_s),
    ) else {
        return Err(Failure::new(
            "snp.report.signature_invalid",
            "signature R or S exceeds 48 bytes (high bytes of the 72-byte field are not zero)",
        ));
    };
    let Some(signed) = raw.get(..SIGNED_LEN) else {
        return Err(Failure::new(
            "snp.report.signature_invalid",
            "report shorter than the signed region",
        ));
    };
    key.verify_ecdsa(Hash::Sha384, signed, &r, &s).map_err(|_| {
        Failure::new(
            "snp.report.signature_invalid",
            format!(
                "ECDSA P-384 signature over bytes 0x000-0x29F does not verify with the {} key",
                report.signing_key.as_str().to_uppercase()
            ),
        )
    })
}

/// What a VCEK/VLEK certificate endorses (its AMD extensions, pub. 57230 Table 8), read
/// once when the chain is verified and compared with every report it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsement {
    /// VCEK or VLEK (never `None`).
    pub kind: SigningKey,
    /// Product line named by the certificate's productName, if any.
    pub product: Option<Product>,
    /// hwID (VCEK only): 64-byte CHIP_ID, or its first 8 bytes on Turin.
    pub hwid: Option<Vec<u8>>,
    /// blSPL, teeSPL, snpSPL, ucodeSPL and (Turin) fmcSPL; `None` when an extension is absent.
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
    pub fmc: Option<u8>,
}

/// hwID length per product (AMD pub. 57230: Turin VCEKs carry the 8-byte form).
pub fn hwid_len(p: Product) -> usize {
    match p {
        Product::Turin => 8,
        _ => 64,
    }
}

/// Compare the endorsement with the report: signing-key kind, product, hwID = CHIP_ID
/// (VCEK), and every SPL = REPORTED_TCB (not CURRENT_TCB: the key is derived from the
/// reported TCB). Returns every mismatch.
pub fn check_endorsement(
    report: &AttestationReport,
    e: &Endorsement,
    product: Product,
) -> Vec<Failure> {
    let mut out = Vec::new();
    if report.signing_key != e.kind {
        out.push(Failure::new(
            "snp.vcek.kind_mismatch",
            format!(
                "report SIGNING_KEY is {}, certificate is a {}",
                report.signing_key.as_str(),
                e.kind.as_str().to_uppercase()
            ),
        ));
    }
    if let Some(p) = e.product {
        if p != product {
            out.push(Failure::new(
                "snp.vcek.product_mismatch",
                format!(
                    "certificate is for {}, report is {}",
                    p.as_str(),
                    product.as_str()
                ),
            ));
        }
    }
    if e.kind == SigningKey::Vcek {
        let n = hwid_len(product);
        let chip = &report.chip_id;
        match &e.hwid {
            None => out.push(Failure::new(
                "snp.vcek.missing_extension",
                "VCEK has no hwID extension",
            )),
            Some(h) if h.len() != n || h[..] != chip[..n] || chip[n..].iter().any(|&b| b != 0) => {
                out.push(Failure::new(
                    "snp.vcek.chip_id_mismatch",
                    format!(
                        "VCEK hwID {} is not the report CHIP_ID {}",
                        hex(h),
                        hex(chip)
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let t = report.reported_tcb.decode(product.tcb_layout());
    let mut fields = vec![
        ("bootloader", e.bootloader, t.bootloader),
        ("tee", e.tee, t.tee),
        ("snp", e.snp, t.snp),
        ("microcode", e.microcode, t.microcode),
    ];
    if let Some(fmc) = t.fmc {
        fields.insert(0, ("fmc", e.fmc, fmc));
    }
    let missing: Vec<&str> = fields
        .iter()
        .filter(|f| f.1.is_none())
        .map(|f| f.0)
        .collect();
    if !missing.is_empty() {
        out.push(Failure::new(
            "snp.vcek.missing_extension",
            format!(
                "certificate lacks SPL extensions for {}",
                missing.join(", ")
            ),
        ));
        return out;
    }
    let diff: Vec<String> = fields
        .iter()
        .filter(|f| f.1 != Some(f.2))
        .map(|f| format!("{} cert {} report {}", f.0, f.1.unwrap_or(0), f.2))
        .collect();
    if !diff.is_empty() {
        out.push(Failure::new(
            "snp.vcek.tcb_mismatch",
            format!(
                "certificate TCB differs from REPORTED_TCB: {}",
                diff.join(", ")
            ),
        ));
    }
    out
}

/// Parse and verify in one step (used by tests and benchmarks of the Rust layer).
pub fn parse_and_verify(raw: &[u8], key: &VerifyingKey) -> Result<AttestationReport, Failure> {
    let report =
        parse_report(raw).map_err(|e| parse_failure(&e).unwrap_or_else(|| Failure::from(&e)))?;
    verify_report_signature(raw, &report, key)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    use proptest::prelude::*;
    use sealgate_formats::snp::REPORT_SIZE;

    /// A v5 VCEK-signed report and its key, signed here with a fresh P-384 key.
    fn signed_report() -> (Vec<u8>, VerifyingKey) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let mut b = vec![0u8; REPORT_SIZE];
        b[0] = 5;
        b[8..16].copy_from_slice(&0x0003_0000u64.to_le_bytes());
        b[0x34] = 1;
        b[0x50] = 0x42;
        b[0x188..0x18B].copy_from_slice(&[0x19, 0x01, 0x01]);
        let sig = kp.sign(&rng, &b[..SIGNED_LEN]).unwrap();
        let sig = sig.as_ref();
        // Fixed encoding is r‖s big-endian; store each reversed in its 72-byte field.
        for i in 0..48 {
            b[SIGNED_LEN + i] = sig[47 - i];
            b[SIGNED_LEN + 72 + i] = sig[95 - i];
        }
        let pt = kp.public_key().as_ref();
        let key = VerifyingKey::ec(Curve::P384, &pt[1..49], &pt[49..97]).unwrap();
        (b, key)
    }

    #[test]
    fn good_signature_verifies() {
        let (b, key) = signed_report();
        let r = parse_and_verify(&b, &key).unwrap();
        assert_eq!(r.report_data[0], 0x42);
    }

    #[test]
    fn any_flip_in_signed_region_or_signature_fails() {
        let (b, key) = signed_report();
        // Every 7th byte of the signed area (all bytes is covered by the Python tests),
        // and the first bytes of R and S.
        let positions = (0..SIGNED_LEN)
            .step_by(7)
            .chain([SIGNED_LEN, SIGNED_LEN + 72]);
        for pos in positions {
            let mut m = b.clone();
            m[pos] ^= 0x01;
            match parse_and_verify(&m, &key) {
                Err(f) => assert!(f.code.starts_with("snp."), "{pos:#x}: {}", f.code),
                Ok(_) => panic!("flip at {pos:#x} accepted"),
            }
        }
    }

    #[test]
    fn high_bytes_of_r_must_be_zero() {
        let (mut b, key) = signed_report();
        b[SIGNED_LEN + 60] = 1;
        // The byte is inside R's 72-byte field but outside its 48 significant bytes; the
        // parser accepts it (not reserved), the verifier refuses it.
        assert_eq!(
            parse_and_verify(&b, &key).unwrap_err().code,
            "snp.report.signature_invalid"
        );
    }

    #[test]
    fn unsigned_and_unknown_algorithm() {
        let (mut b, key) = signed_report();
        b[0x48] = 7 << 2;
        assert_eq!(
            parse_and_verify(&b, &key).unwrap_err().code,
            "snp.report.unsigned"
        );
        let (mut b, key) = signed_report();
        b[0x34] = 2;
        assert_eq!(
            parse_and_verify(&b, &key).unwrap_err().code,
            "snp.report.unsupported_signature_algorithm"
        );
    }

    #[test]
    fn unknown_version_has_its_own_code() {
        let (mut b, key) = signed_report();
        b[0] = 4;
        assert_eq!(
            parse_and_verify(&b, &key).unwrap_err().code,
            "snp.report.unsupported_version"
        );
    }

    fn endorsement() -> Endorsement {
        Endorsement {
            kind: SigningKey::Vcek,
            product: Some(Product::Milan),
            hwid: Some(vec![0u8; 64]),
            bootloader: Some(0),
            tee: Some(0),
            snp: Some(0),
            microcode: Some(0),
            fmc: None,
        }
    }

    #[test]
    fn endorsement_checks() {
        let (b, _) = signed_report();
        let r = parse_report(&b).unwrap();
        assert!(check_endorsement(&r, &endorsement(), Product::Milan).is_empty());
        let mut e = endorsement();
        e.microcode = Some(1);
        e.hwid = Some(vec![1u8; 64]);
        let codes: Vec<String> = check_endorsement(&r, &e, Product::Milan)
            .into_iter()
            .map(|f| f.code)
            .collect();
        assert_eq!(
            codes,
            ["snp.vcek.chip_id_mismatch", "snp.vcek.tcb_mismatch"]
        );
        let mut e = endorsement();
        e.kind = SigningKey::Vlek;
        e.tee = None;
        let codes: Vec<String> = check_endorsement(&r, &e, Product::Genoa)
            .into_iter()
            .map(|f| f.code)
            .collect();
        assert_eq!(
            codes,
            [
                "snp.vcek.kind_mismatch",
                "snp.vcek.product_mismatch",
                "snp.vcek.missing_extension"
            ]
        );
        // Turin: an fmcSPL is required and the hwID is 8 bytes.
        let mut e = endorsement();
        e.product = Some(Product::Turin);
        e.hwid = Some(vec![0u8; 8]);
        let codes: Vec<String> = check_endorsement(&r, &e, Product::Turin)
            .into_iter()
            .map(|f| f.code)
            .collect();
        assert_eq!(codes, ["snp.vcek.missing_extension"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn mutations_never_panic(pos in 0usize..REPORT_SIZE, val in any::<u8>(), cut in 0usize..=REPORT_SIZE) {
            let (mut b, key) = signed_report();
            b[pos] = val;
            let _ = parse_and_verify(&b[..cut], &key);
            let _ = parse_and_verify(&b, &key);
        }
    }
}
