//! Fresh evidence over a flow's binding, byte-for-byte what sealgate's Python test collectors
//! produce (`sealgate.testing.softtpm.SoftAk.quote`, `sealgate.testing.snp.build_report`,
//! `sealgate.testing.tdx.FakeIntel.quote`), at a fraction of the CPU.
//!
//! TPM quotes are built whole (they are small). SNP reports and TDX quotes are built once by
//! the parent as templates; each flow copies the template, writes the binding into the
//! report-data field and signs again. Templates are checked by `sealgate-formats`' parsers
//! when loaded, and every write goes through that crate's declared layouts (`RawReport`,
//! `RawTdBody10`, `RawEcdsaSignatureData`), so no offset is written here.

use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use sealgate_formats::{snp, tdx};
use zerocopy::FromBytes;

/// Length of the runtime-key binding SHA-512(nonce ‖ runtime_public_key).
pub const BINDING_LEN: usize = 64;

// TPM 2.0 Part 2 constants.
/// TPM_GENERATED_VALUE (§6.2).
const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// TPM_ST_ATTEST_QUOTE (§6.9).
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ALG_SHA256 and TPM_ALG_ECDSA (§6.3).
const TPM_ALG_SHA256: u16 = 0x000B;
const TPM_ALG_ECDSA: u16 = 0x0018;
/// sizeofSelect for 24 PCRs (PC Client platforms: 3 bytes, §10.6.2).
const PCR_SELECT_SIZE: usize = 3;
/// TPMS_ATTEST.extraData of a quote here: the binding's first 32 bytes (sealgate's rule).
const TPM_EXTRA_DATA_LEN: usize = 32;
/// A P-256 coordinate / ECDSA component.
const P256_LEN: usize = 32;
/// A P-384 ECDSA component.
const P384_LEN: usize = 48;

/// Evidence of one flow, ready to go into an `Evidence` message.
pub enum Built {
    Tpm { quote: Vec<u8>, signature: Vec<u8> },
    Snp { report: Vec<u8> },
    Tdx { quote: Vec<u8> },
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// TPM2B_*: a u16 size then the bytes (Part 2 §10.4).
fn put_tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    put_u16(out, u16::try_from(data.len()).expect("TPM2B fits u16"));
    out.extend_from_slice(data);
}

/// A software AK quoting the SHA-256 bank, like `SoftAk.quote` over a `SoftwareTpm`.
pub struct TpmQuoter {
    key: EcdsaKeyPair,
    /// TPM2B_NAME contents: nameAlg ‖ H(TPMT_PUBLIC).
    ak_name: Vec<u8>,
    /// TPMS_CLOCK_INFO.clock of the last quote.
    pub clock: u64,
    firmware_version: u64,
    /// TPML_PCR_SELECTION for the quoted PCRs (computed once).
    selection: Vec<u8>,
    /// TPM2B_DIGEST pcrDigest: SHA-256 over the selected values in index order (computed
    /// once: the PCRs do not change during a run).
    pcr_digest: Vec<u8>,
}

impl TpmQuoter {
    /// `pcrs`: (index, 32-byte SHA-256 value), the PCRs to quote.
    pub fn new(
        ak_pkcs8: &[u8],
        ak_name: Vec<u8>,
        clock: u64,
        firmware_version: u64,
        pcrs: &[(u8, Vec<u8>)],
    ) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ak_pkcs8)
            .map_err(|e| format!("AK is not a P-256 PKCS#8 key: {e}"))?;
        let mut sorted: Vec<&(u8, Vec<u8>)> = pcrs.iter().collect();
        sorted.sort_by_key(|(i, _)| *i);
        // TPMS_PCR_SELECTION (§10.6.2): a bitmap, PCR i = bit (i mod 8) of byte i/8.
        let mut bitmap = [0u8; PCR_SELECT_SIZE];
        let mut ctx = digest::Context::new(&SHA256);
        for (i, value) in &sorted {
            let i = usize::from(*i);
            if i >= 8 * PCR_SELECT_SIZE || value.len() != SHA256.output_len {
                return Err(format!("PCR {i}: index or value length out of range"));
            }
            bitmap[i / 8] |= 1 << (i % 8);
            ctx.update(value);
        }
        // TPML_PCR_SELECTION (§10.9.7): count, then {hash, sizeofSelect, pcrSelect}.
        let mut selection = Vec::new();
        put_u32(&mut selection, 1);
        put_u16(&mut selection, TPM_ALG_SHA256);
        selection.push(PCR_SELECT_SIZE as u8);
        selection.extend_from_slice(&bitmap);
        Ok(Self {
            key,
            ak_name,
            clock,
            firmware_version,
            selection,
            pcr_digest: ctx.finish().as_ref().to_vec(),
        })
    }

    /// TPMS_ATTEST of a quote (§10.12.12 with TPMS_QUOTE_INFO, §10.12.4). The clock moves
    /// one tick per quote; resetCount 1, restartCount 0, safe YES, as `SoftAk.quote`.
    pub fn attest(&mut self, extra_data: &[u8]) -> Vec<u8> {
        self.clock += 1;
        let mut a = Vec::with_capacity(160);
        put_u32(&mut a, TPM_GENERATED_VALUE);
        put_u16(&mut a, TPM_ST_ATTEST_QUOTE);
        put_tpm2b(&mut a, &self.ak_name); // qualifiedSigner
        put_tpm2b(&mut a, extra_data); // extraData
                                       // TPMS_CLOCK_INFO (§10.11.1): clock, resetCount, restartCount, safe.
        put_u64(&mut a, self.clock);
        put_u32(&mut a, 1);
        put_u32(&mut a, 0);
        a.push(1);
        put_u64(&mut a, self.firmware_version);
        a.extend_from_slice(&self.selection);
        put_tpm2b(&mut a, &self.pcr_digest);
        a
    }

    /// (TPMS_ATTEST, TPMT_SIGNATURE) over the binding's first 32 bytes.
    pub fn quote(&mut self, rng: &SystemRandom, binding: &[u8; BINDING_LEN]) -> Built {
        let quote = self.attest(&binding[..TPM_EXTRA_DATA_LEN]);
        let sig = self.key.sign(rng, &quote).expect("ECDSA P-256 signing");
        let (r, s) = sig.as_ref().split_at(P256_LEN);
        // TPMT_SIGNATURE (§11.3.4): sigAlg ECDSA, TPMS_SIGNATURE_ECDSA {hash, r, s} with r
        // and s as TPM2B_ECC_PARAMETER (§11.3.2).
        let mut signature = Vec::with_capacity(8 + 2 * P256_LEN);
        put_u16(&mut signature, TPM_ALG_ECDSA);
        put_u16(&mut signature, TPM_ALG_SHA256);
        put_tpm2b(&mut signature, r);
        put_tpm2b(&mut signature, s);
        Built::Tpm { quote, signature }
    }
}

/// An SEV-SNP guest: a report template re-signed by the VCEK with each binding.
pub struct SnpReporter {
    key: EcdsaKeyPair,
    template: Vec<u8>,
}

impl SnpReporter {
    pub fn new(template: Vec<u8>, vcek_pkcs8: &[u8]) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, vcek_pkcs8)
            .map_err(|e| format!("VCEK is not a P-384 PKCS#8 key: {e}"))?;
        snp::parse_report(&template)
            .map_err(|e| format!("SNP report template does not parse: {e:?}"))?;
        Ok(Self { key, template })
    }

    /// The template with REPORT_DATA = binding, signed again (AMD SEV-SNP ABI, Table
    /// "ATTESTATION_REPORT Structure": the signature covers everything before SIGNATURE;
    /// "ECDSA P-384 with SHA-384 Signature" table: R then S, each a 72-byte little-endian
    /// integer, zero-extended).
    pub fn report(&self, rng: &SystemRandom, binding: &[u8; BINDING_LEN]) -> Built {
        let mut report = self.template.clone();
        // The template parsed in `new`, so it has the report's exact size.
        let raw = snp::RawReport::mut_from_bytes(&mut report).expect("template is one report");
        raw.report_data = *binding;
        let sig = self
            .key
            .sign(rng, raw.signed_bytes())
            .expect("ECDSA P-384 signing");
        let (r, s) = sig.as_ref().split_at(P384_LEN);
        for (field, component) in [(&mut raw.signature.r, r), (&mut raw.signature.s, s)] {
            field.fill(0);
            for (dst, src) in field.iter_mut().zip(component.iter().rev()) {
                *dst = *src;
            }
        }
        Built::Snp { report }
    }
}

/// A TD: a quote template whose REPORTDATA is replaced and whose attestation-key signature
/// is made again. The QE report and PCK chain inside stay valid: they certify the
/// attestation key, not the TD report.
pub struct TdxQuoter {
    key: EcdsaKeyPair,
    template: Vec<u8>,
    /// Offset of the TD Quote Body in the quote.
    body_at: usize,
    /// Length of the signed region (header ‖ [descriptor ‖] body).
    signed_len: usize,
    /// Offset of the Quote Signature Data.
    signature_data_at: usize,
}

impl TdxQuoter {
    pub fn new(template: Vec<u8>, attestation_key_pkcs8: &[u8]) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, attestation_key_pkcs8)
            .map_err(|e| format!("attestation key is not a P-256 PKCS#8 key: {e}"))?;
        let parsed = tdx::parse_quote(&template)
            .map_err(|e| format!("TDX quote template does not parse: {e:?}"))?;
        let public = key.public_key().as_ref();
        // Uncompressed SEC1 point 04 ‖ x ‖ y; the quote carries x ‖ y.
        if public[1..] != parsed.signature_data.attestation_key[..] {
            return Err("the attestation key is not the one the template's QE certified".into());
        }
        Ok(Self {
            key,
            template,
            body_at: parsed.body_offset,
            signed_len: parsed.signed_len,
            signature_data_at: parsed.signature_data_offset,
        })
    }

    /// The template with REPORTDATA = binding and the ECDSA P-256 signature over header ‖
    /// body made again (A.4 "Quote Signature Data": signature r ‖ s, 32 bytes each,
    /// big-endian). A TDX 1.5 body starts with the TDX 1.0 fields, so the 1.0 layout
    /// locates REPORTDATA in both.
    pub fn quote(&self, rng: &SystemRandom, binding: &[u8; BINDING_LEN]) -> Built {
        let mut quote = self.template.clone();
        // The template parsed in `new`: the body and signature data are where it said.
        let (body, _) = tdx::RawTdBody10::mut_from_prefix(&mut quote[self.body_at..])
            .expect("template body parsed");
        body.report_data = *binding;
        let sig = self
            .key
            .sign(rng, &quote[..self.signed_len])
            .expect("ECDSA P-256 signing");
        let (sd, _) =
            tdx::RawEcdsaSignatureData::mut_from_prefix(&mut quote[self.signature_data_at..])
                .expect("template signature data parsed");
        sd.signature.copy_from_slice(sig.as_ref());
        Built::Tdx { quote }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_verify::crypto::{Curve, Hash, VerifyingKey};

    fn vector(path: &str) -> Vec<u8> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors");
        std::fs::read(root.join(path)).unwrap()
    }

    fn pkcs8(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn verifying_key(
        curve: Curve,
        pkcs8: &[u8],
        alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
    ) -> VerifyingKey {
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8).unwrap();
        let point = kp.public_key().as_ref();
        let n = curve.coordinate_size();
        VerifyingKey::ec(curve, &point[1..1 + n], &point[1 + n..]).unwrap()
    }

    fn binding(fill: u8) -> [u8; BINDING_LEN] {
        let mut b = [fill; BINDING_LEN];
        b[0] = 0xA5;
        b[63] = 0x5A;
        b
    }

    /// TPMS_ATTEST from `SoftAk.quote(b"\x22" * 32, {i: bytes([i]) * 32}, sha256:0-7)` with
    /// Name 000b ‖ 11…11 and clock 1000 before the quote (python, sealgate.testing.softtpm).
    const SOFTAK_ATTEST: &str = "\
        ff54434780180022000b111111111111111111111111111111111111111111111111111111111111\
        11110020222222222222222222222222222222222222222222222222222222222222222200000000\
        000003e9000000010000000001201910230016363600000001000b03ff00000020db05e55d619324\
        7cd749ccc4bcecd7efa1aaeda3e11093a042c9f97957bc16d7";

    fn softak_quoter(key: &[u8]) -> TpmQuoter {
        let name = [&[0x00, 0x0B][..], &[0x11; 32]].concat();
        let pcrs: Vec<(u8, Vec<u8>)> = (0..8).map(|i| (i, vec![i; 32])).collect();
        TpmQuoter::new(key, name, 1000, 0x2019_1023_0016_3636, &pcrs).unwrap()
    }

    #[test]
    fn tpm_attest_matches_python_softak() {
        let key = pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let mut q = softak_quoter(&key);
        let got = q.attest(&[0x22; 32]);
        assert_eq!(got, crate::setup::unhex(SOFTAK_ATTEST).unwrap());
        assert_eq!(q.clock, 1001);
    }

    #[test]
    fn tpm_quote_parses_and_verifies() {
        use sealgate_formats::tpm::{
            attest::parse_attest,
            signature::{parse_signature, Signature},
        };
        let key = pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let vk = verifying_key(Curve::P256, &key, &ECDSA_P256_SHA256_FIXED_SIGNING);
        let mut q = softak_quoter(&key);
        let b = binding(7);
        let Built::Tpm { quote, signature } = q.quote(&SystemRandom::new(), &b) else {
            unreachable!()
        };
        let a = parse_attest(&quote).unwrap();
        assert_eq!(a.extra_data, b[..32]);
        assert_eq!(a.clock_info.clock, 1001);
        let Signature::Ecdsa { r, s, .. } = parse_signature(&signature).unwrap() else {
            panic!("not ECDSA")
        };
        vk.verify_ecdsa(Hash::Sha256, &quote, &r, &s).unwrap();
        // A second quote ticks the clock.
        q.quote(&SystemRandom::new(), &b);
        assert_eq!(q.clock, 1002);
    }

    #[test]
    fn tpm_bad_inputs_refused() {
        let key = pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let name = vec![0; 34];
        type Pcrs = Vec<(u8, Vec<u8>)>;
        let cases: [(&[u8], Pcrs); 3] = [
            (&key, vec![(24, vec![0; 32])]),
            (&key, vec![(0, vec![0; 20])]),
            (b"not a key", vec![]),
        ];
        for (k, pcrs) in cases {
            assert!(TpmQuoter::new(k, name.clone(), 0, 0, &pcrs).is_err());
        }
    }

    #[test]
    fn snp_patch_and_resign_verify_with_the_project_verifier() {
        let key = pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING);
        let vk = verifying_key(Curve::P384, &key, &ECDSA_P384_SHA384_FIXED_SIGNING);
        let template = vector("sev-snp/report-v5.bin");
        let r = SnpReporter::new(template.clone(), &key).unwrap();
        let b = binding(3);
        let Built::Snp { report } = r.report(&SystemRandom::new(), &b) else {
            unreachable!()
        };
        assert_eq!(report.len(), template.len());
        let parsed = snp::parse_report(&report).unwrap();
        assert_eq!(parsed.report_data, b);
        sealgate_verify::snp::verify_report_signature(&report, &parsed, &vk).unwrap();
        // Only REPORT_DATA and the signature changed.
        let changed: Vec<usize> = (0..report.len())
            .filter(|&i| report[i] != template[i])
            .collect();
        assert!(changed
            .iter()
            .all(|&i| (0x50..0x90).contains(&i) || (0x2A0..0x330).contains(&i)));
    }

    #[test]
    fn tdx_patch_and_resign_for_v4_and_v5() {
        for (path, body_at) in [("tdx/quotes/v4.bin", 48), ("tdx/quotes/v5_tdx15.bin", 54)] {
            let template = vector(path);
            // The template is signed by FakeIntel's attestation key, which this test does not
            // have; a new key refused, then the template's AK field pointed at ours.
            let key = pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING);
            assert!(TdxQuoter::new(template.clone(), &key).is_err());
            let parsed = tdx::parse_quote(&template).unwrap();
            let mut ours = template.clone();
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key).unwrap();
            let (sd, _) = tdx::RawEcdsaSignatureData::mut_from_prefix(
                &mut ours[parsed.signature_data_offset..],
            )
            .unwrap();
            sd.attestation_key
                .copy_from_slice(&kp.public_key().as_ref()[1..]);
            let q = TdxQuoter::new(ours.clone(), &key).unwrap();
            assert_eq!(q.body_at, body_at, "{path}");
            // Only REPORTDATA (body offset 520, A.3.2) and the signature (after the u32
            // signature data length) change.
            let sig_at = parsed.signed_len + 4;
            let b = binding(9);
            let Built::Tdx { quote } = q.quote(&SystemRandom::new(), &b) else {
                unreachable!()
            };
            let p = tdx::parse_quote(&quote).unwrap();
            assert_eq!(p.body.report_data, b, "{path}");
            assert!(
                (0..quote.len())
                    .filter(|&i| quote[i] != ours[i])
                    .all(|i| (body_at + 520..body_at + 584).contains(&i)
                        || (sig_at..sig_at + 64).contains(&i)),
                "{path}"
            );
            let failures = sealgate_verify::tdx::verify_quote(&quote, &p, None);
            assert!(
                !failures
                    .iter()
                    .any(|f| f.code == "tdx.quote.signature_invalid"),
                "{path}: {failures:?}"
            );
        }
    }
}
