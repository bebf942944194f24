//! SEV-SNP report signature verification (the per-report hot path).
//!
//! The report is signed by the VCEK or VLEK with ECDSA P-384 / SHA-384 over bytes
//! 0x000–0x29F (SEV-SNP Firmware ABI rev 1.57, Table 23 and Chapter 10). R and S are stored
//! as 72-byte little-endian integers, zero-extended; the backend wants 48-byte big-endian
//! values, so each is reversed and its 24 high bytes must be zero. Certificate chains are
//! verified elsewhere (Python `cryptography`, once, then cached): this function only needs
//! the already-trusted P-384 key.

use crate::crypto::{Curve, Hash, KeyKind, VerifyingKey};
use crate::failure::{hex, Error, Failure};
use sealgate_formats::snp::{
    is_unsupported_version, parse_report, AttestationReport, Product, SigningKey, SIGNED_LEN,
    SIG_ALGO_ECDSA_P384_SHA384, SIG_COMPONENT_LEN,
};
use sealgate_formats::ParseError;

/// P-384 scalars are 48 bytes.
const P384_LEN: usize = 48;

/// Length of REPORT_DATA (Firmware ABI Table 23, offset 0x50).
pub const REPORT_DATA_LEN: usize = 64;

/// A parse error, with the unknown-version case given its own stable code
/// (`snp.report.unsupported_version`) instead of `snp.format.unsupported`: a report from
/// newer firmware is well-formed evidence sealgate cannot appraise yet, not garbage.
fn parse_error(e: ParseError) -> Error {
    if is_unsupported_version(&e) {
        Error::Failed(Failure::new(
            "snp.report.unsupported_version",
            e.to_string(),
        ))
    } else {
        Error::Parse(e)
    }
}

/// Parse an ATTESTATION_REPORT; unknown versions are `snp.report.unsupported_version`.
pub fn parse(raw: &[u8]) -> Result<AttestationReport, Error> {
    parse_report(raw).map_err(parse_error)
}

/// The VCEK/VLEK public key from its certificate's subjectPublicKey: an uncompressed SEC1
/// P-384 point (0x04 ‖ X ‖ Y; AMD pub. 57230 §3.2 "VCEK" gives the key as secp384r1).
pub fn endorsement_key(point: &[u8]) -> Result<VerifyingKey, Failure> {
    if point.len() != 1 + 2 * P384_LEN || point[0] != 0x04 {
        return Err(Failure::new(
            "snp.vcek.unsupported_key",
            "public key is not an uncompressed P-384 point",
        ));
    }
    VerifyingKey::ec(Curve::P384, &point[1..1 + P384_LEN], &point[1 + P384_LEN..])
        .map_err(|e| Failure::new("snp.vcek.unsupported_key", format!("{e:?}")))
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

/// The product line a report is read as, and the contradiction found on the way, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductChoice {
    /// `None` when nothing names the line (a v2 report, no CPUID, nothing else given).
    pub product: Option<Product>,
    /// `snp.report.product_mismatch` when the caller's or the chain's line contradicts the
    /// report's own CPUID.
    pub mismatch: Option<Failure>,
}

impl ProductChoice {
    /// The line whose TCB layout decodes the report: Milan when unknown, because only
    /// Turin's layout differs (Firmware ABI Table 3) and Turin firmware emits v3+ reports,
    /// which carry CPUID.
    pub fn layout(&self) -> Product {
        self.product.unwrap_or(Product::Milan)
    }

    /// `snp.report.unknown_product` when no line could be settled.
    pub fn unknown(&self) -> Option<Failure> {
        self.product.is_none().then(|| {
            Failure::new(
                "snp.report.unknown_product",
                "cannot tell the product line; pass --product",
            )
        })
    }
}

/// Settle the product line: `explicit` (the caller's) > the report's CPUID (v3+) > the
/// line the chain was verified for > the certificate's productName. The CPUID is the
/// report's own, signed statement, so an explicit or chain line that contradicts it is a
/// failure rather than a silent override.
pub fn resolve_product(
    explicit: Option<Product>,
    cpuid: Option<Product>,
    chain: Option<Product>,
    certificate: Option<Product>,
) -> ProductChoice {
    let mismatch = match (explicit, cpuid, chain) {
        (Some(e), Some(c), _) if e != c => Some(Failure::new(
            "snp.report.product_mismatch",
            format!(
                "report CPUID says {}, verification asked for {}",
                c.as_str(),
                e.as_str()
            ),
        )),
        (None, Some(c), Some(ch)) if c != ch => Some(Failure::new(
            "snp.report.product_mismatch",
            format!(
                "report CPUID says {}, chain is for {}",
                c.as_str(),
                ch.as_str()
            ),
        )),
        _ => None,
    };
    ProductChoice {
        product: explicit.or(cpuid).or(chain).or(certificate),
        mismatch,
    }
}

/// REPORT_DATA against the expected value, zero-padded to 64 bytes (the guest supplies at
/// most 64 bytes; SNP_GUEST_REQUEST pads with zeros). A longer expectation cannot match.
pub fn check_report_data(report: &AttestationReport, want: &[u8]) -> Result<(), Failure> {
    let mut padded = [0u8; REPORT_DATA_LEN];
    let fits = want.len() <= REPORT_DATA_LEN;
    if fits {
        padded[..want.len()].copy_from_slice(want);
    }
    if fits && padded == report.report_data {
        return Ok(());
    }
    Err(Failure::new(
        "snp.report.report_data_mismatch",
        format!(
            "REPORT_DATA {}, expected {}",
            hex(&report.report_data),
            if fits { hex(&padded) } else { hex(want) }
        ),
    ))
}

/// What the verifier knows besides the report: the endorsement key with what its
/// certificate endorses, and the caller's expectations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expectations<'a> {
    /// The caller's product line (`--product`), if given.
    pub product: Option<Product>,
    /// The line the certificate chain was verified for, if known.
    pub chain_product: Option<Product>,
    /// Expected REPORT_DATA (zero-padded to 64 bytes).
    pub report_data: Option<&'a [u8]>,
}

/// A checked report: the line it was read as and every failure found.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub report: AttestationReport,
    pub product: Product,
    pub failures: Vec<Failure>,
}

/// The per-report steady state: parse, signature, product line, endorsement (when the
/// certificate's extensions are known) and REPORT_DATA. Only an unparseable report is an
/// error; every other problem is a failure in the verdict, all of them.
pub fn verify_report(
    raw: &[u8],
    key: &VerifyingKey,
    endorsement: Option<&Endorsement>,
    exp: &Expectations<'_>,
) -> Result<Verdict, Error> {
    let report = parse(raw)?;
    let mut failures = Vec::new();
    if let Err(f) = verify_report_signature(raw, &report, key) {
        failures.push(f);
    }
    let choice = resolve_product(
        exp.product,
        report.product_from_cpuid(),
        exp.chain_product,
        endorsement.and_then(|e| e.product),
    );
    failures.extend(choice.mismatch.clone());
    failures.extend(choice.unknown());
    let product = choice.layout();
    if let Some(e) = endorsement {
        failures.extend(check_endorsement(&report, e, product));
    }
    if let Some(want) = exp.report_data {
        failures.extend(check_report_data(&report, want).err());
    }
    Ok(Verdict {
        report,
        product,
        failures,
    })
}

/// A report whose endorsement key could not be established (its chain failed, which is
/// already a failure): the line it is read as for its claims, and the checks that need no
/// key. `certificate` is the product the leaf certificate names, if it could be read. An
/// unknown line is not reported again: the evidence is already rejected and the chain
/// failure says why.
pub fn check_unendorsed(
    report: &AttestationReport,
    product: Option<Product>,
    certificate: Option<Product>,
    report_data: Option<&[u8]>,
) -> (Product, Vec<Failure>) {
    let choice = resolve_product(product, report.product_from_cpuid(), None, certificate);
    let mut failures: Vec<Failure> = choice.mismatch.clone().into_iter().collect();
    if let Some(want) = report_data {
        failures.extend(check_report_data(report, want).err());
    }
    (choice.layout(), failures)
}

/// Parse and check the signature only (tests and benchmarks of the Rust layer).
pub fn parse_and_verify(raw: &[u8], key: &VerifyingKey) -> Result<AttestationReport, Failure> {
    let report = parse(raw).map_err(|e| match e {
        Error::Parse(p) => Failure::from(&p),
        Error::Failed(f) => f,
    })?;
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

    #[test]
    fn endorsement_key_is_an_uncompressed_p384_point() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pt = kp.public_key().as_ref().to_vec();
        assert_eq!(
            endorsement_key(&pt).unwrap().kind(),
            KeyKind::Ec(Curve::P384)
        );
        let mut compressed = pt.clone();
        compressed[0] = 0x02;
        let mut off_curve = pt.clone();
        off_curve[96] ^= 1;
        for bad in [&pt[..96], &compressed[..], &off_curve[..], &[][..]] {
            assert_eq!(
                endorsement_key(bad).unwrap_err().code,
                "snp.vcek.unsupported_key"
            );
        }
    }

    fn codes(f: &[Failure]) -> Vec<&str> {
        f.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn product_precedence_and_mismatch() {
        use Product::{Genoa, Milan, Turin};
        let r = |e, c, ch, cert| resolve_product(e, c, ch, cert);
        // Explicit > CPUID > chain > certificate.
        assert_eq!(
            r(Some(Genoa), None, Some(Milan), Some(Turin)).product,
            Some(Genoa)
        );
        assert_eq!(r(None, Some(Turin), None, Some(Milan)).product, Some(Turin));
        assert_eq!(r(None, None, Some(Genoa), Some(Milan)).product, Some(Genoa));
        assert_eq!(r(None, None, None, Some(Milan)).product, Some(Milan));
        let none = r(None, None, None, None);
        assert_eq!((none.product, none.layout()), (None, Milan));
        assert_eq!(none.unknown().unwrap().code, "snp.report.unknown_product");
        assert!(r(None, None, None, Some(Turin)).unknown().is_none());
        // The report's CPUID contradicts the caller or the chain.
        let m = r(Some(Genoa), Some(Milan), None, None);
        assert_eq!(m.product, Some(Genoa));
        assert_eq!(
            m.mismatch.unwrap().message,
            "report CPUID says Milan, verification asked for Genoa"
        );
        let m = r(None, Some(Milan), Some(Turin), None);
        assert_eq!(m.product, Some(Milan));
        assert_eq!(
            m.mismatch.unwrap().message,
            "report CPUID says Milan, chain is for Turin"
        );
        // An explicit line overrides the chain without a failure when CPUID agrees; a
        // certificate productName never raises a mismatch here (the endorsement check does).
        assert!(r(Some(Milan), Some(Milan), Some(Genoa), None)
            .mismatch
            .is_none());
        assert!(r(None, Some(Milan), None, Some(Genoa)).mismatch.is_none());
        assert!(r(Some(Genoa), None, Some(Milan), None).mismatch.is_none());
    }

    #[test]
    fn report_data_is_zero_padded() {
        let (b, _) = signed_report();
        let r = parse_report(&b).unwrap();
        assert!(check_report_data(&r, &[0x42]).is_ok());
        assert!(check_report_data(&r, &[0x42, 0, 0]).is_ok());
        let mut full = [0u8; 64];
        full[0] = 0x42;
        assert!(check_report_data(&r, &full).is_ok());
        let f = check_report_data(&r, &[0x43]).unwrap_err();
        assert_eq!(f.code, "snp.report.report_data_mismatch");
        assert_eq!(
            f.message,
            format!(
                "REPORT_DATA 42{}, expected 43{}",
                "0".repeat(126),
                "0".repeat(126)
            )
        );
        assert!(check_report_data(&r, &[]).is_err());
        // Longer than the field: cannot match, even when the first 64 bytes do.
        let mut long = full.to_vec();
        long.push(0);
        assert!(check_report_data(&r, &long).is_err());
    }

    #[test]
    fn verify_report_collects_every_failure() {
        let (b, key) = signed_report();
        let ok = verify_report(&b, &key, Some(&endorsement()), &Expectations::default()).unwrap();
        assert_eq!(ok.product, Product::Milan); // v5 CPUID family 0x19 model 0x01
        assert!(ok.failures.is_empty(), "{:?}", ok.failures);
        let exp = Expectations {
            product: Some(Product::Genoa),
            chain_product: None,
            report_data: Some(&[1]),
        };
        let mut bad = b.clone();
        bad[0x90] ^= 1; // MEASUREMENT: breaks the signature only
        let v = verify_report(&bad, &key, Some(&endorsement()), &exp).unwrap();
        assert_eq!(v.product, Product::Genoa);
        assert_eq!(
            codes(&v.failures),
            [
                "snp.report.signature_invalid",
                "snp.report.product_mismatch",
                "snp.vcek.product_mismatch",
                "snp.report.report_data_mismatch"
            ]
        );
        // No endorsement: no endorsement checks; the chain's line is used and contradicts
        // CPUID.
        let exp = Expectations {
            chain_product: Some(Product::Turin),
            ..Expectations::default()
        };
        let v = verify_report(&b, &key, None, &exp).unwrap();
        assert_eq!(codes(&v.failures), ["snp.report.product_mismatch"]);
        // A v2 report (no CPUID) with nothing naming the line.
        let mut v2 = b.clone();
        v2[0] = 2;
        v2[0x188..0x18B].copy_from_slice(&[0, 0, 0]);
        let v = verify_report(&v2, &key, None, &Expectations::default()).unwrap();
        assert_eq!(
            codes(&v.failures),
            ["snp.report.signature_invalid", "snp.report.unknown_product"]
        );
        // Unparseable and unknown versions are errors, not verdicts.
        assert!(matches!(
            verify_report(&b[..100], &key, None, &Expectations::default()),
            Err(Error::Parse(_))
        ));
        let mut v4 = b.clone();
        v4[0] = 4;
        match verify_report(&v4, &key, None, &Expectations::default()) {
            Err(Error::Failed(f)) => assert_eq!(f.code, "snp.report.unsupported_version"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unendorsed_reports_name_no_unknown_product() {
        let (b, _) = signed_report();
        let r = parse_report(&b).unwrap();
        assert_eq!(
            check_unendorsed(&r, None, None, None),
            (Product::Milan, vec![])
        );
        let (p, f) = check_unendorsed(&r, Some(Product::Turin), Some(Product::Genoa), Some(&[9]));
        assert_eq!(p, Product::Turin);
        assert_eq!(
            codes(&f),
            [
                "snp.report.product_mismatch",
                "snp.report.report_data_mismatch"
            ]
        );
        let mut v2 = b.clone();
        v2[0] = 2;
        v2[0x188..0x18B].copy_from_slice(&[0, 0, 0]);
        let r = parse_report(&v2).unwrap();
        assert_eq!(
            check_unendorsed(&r, None, Some(Product::Turin), None).0,
            Product::Turin
        );
        assert_eq!(
            check_unendorsed(&r, None, None, None),
            (Product::Milan, vec![])
        );
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
