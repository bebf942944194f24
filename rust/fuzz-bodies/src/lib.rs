//! The bodies of sealgate's fuzz targets, in one place.
//!
//! Each target is a function from bytes to nothing that must never panic on any input, and
//! that asserts what must hold of whatever the parser accepts (round trips, the verifier's
//! own invariants, and, for the `*_resign` targets, that evidence correctly signed by a key
//! the harness holds does verify). cargo-fuzz (`fuzz/`, outside the workspace) and the
//! corpus replay test (`tests/replay.rs`, run by `cargo test --workspace`) both call
//! [`TARGETS`], so a crash found by either is a failure of the other too.
//!
//! Seeds come from the project's own `vectors/` ([`seeds`]); `fuzz-seed` writes them into
//! `fuzz/corpus/<target>/` for cargo-fuzz.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use sealgate_formats::azure::{self as az, parse_hcl_report, parse_quote_bin};
use sealgate_formats::azure_runtime::{parse_runtime_data, MAX_USER_DATA};
use sealgate_formats::eventlog::parse_event_log;
use sealgate_formats::nvgpu::{self as nv, opaque as nv_opaque};
use sealgate_formats::snp::{
    self, parse_report, Product, SigningKey, TcbLayout, REPORT_SIZE, SIGNED_LEN,
    SIG_ALGO_ECDSA_P384_SHA384,
};
use sealgate_formats::tdx::{parse_quote, INTEL_QE_VENDOR_ID, QE_REPORT_SIZE};
use sealgate_formats::tpm::{
    parse_attest, parse_attest_any, parse_public, parse_public_any, parse_signature,
    PcrSelectionList, Signature, TpmAlg,
};
use sealgate_formats::x509::{self as fx, vendor as xv};
use sealgate_formats::Platform;
use sealgate_verify::crypto::{self, Curve, Hash, VerifyingKey};
use sealgate_verify::eventlog::{compare, hash_of, replay, PcrMap};
use sealgate_verify::pki::{self, Origin, Profile, SigAlg};
use sealgate_verify::snp::Endorsement;
use sealgate_verify::snp::{check_endorsement, parse_and_verify, verify_report_signature};
use sealgate_verify::tdx::{compare_rtmrs, replay_ccel};
use sealgate_verify::tpm::{public_name, verify_quote, AkKey, QuoteExpectations};
use sealgate_verify::{audit, tdx, Failure};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zerocopy::FromBytes;

/// A fuzz target: its name (the cargo-fuzz binary and corpus directory) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target. `fuzz/fuzz_targets/<name>.rs` calls the body of the same name.
pub const TARGETS: &[Target] = &[
    ("tpm_attest", tpm_attest),
    ("tpm_public", tpm_public),
    ("tpm_signature", tpm_signature),
    ("tpm_eventlog", tpm_eventlog),
    ("tdx_ccel", tdx_ccel),
    ("snp_report", snp_report),
    ("tdx_quote", tdx_quote),
    ("tpm_quote_verify", tpm_quote_verify),
    ("snp_report_verify", snp_report_verify),
    ("tdx_quote_verify", tdx_quote_verify),
    ("tpm_quote_resign", tpm_quote_resign),
    ("snp_report_resign", snp_report_resign),
    ("tdx_quote_resign", tdx_quote_resign),
    ("audit_chain", audit_chain),
    ("x509", x509),
    ("azure_hcl", azure_hcl),
    ("azure_runtime", azure_runtime),
    ("azure_quote_bin", azure_quote_bin),
    ("nvgpu_report", nvgpu_report),
    ("nvgpu_report_resign", nvgpu_report_resign),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors")
}

// ---------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------

/// TPMS_ATTEST / TPM2B_ATTEST (TPM 2.0 Part 2, §10.12.12).
pub fn tpm_attest(data: &[u8]) {
    let Ok((a, signed)) = parse_attest_any(data) else {
        return;
    };
    // The signed bytes are the input or the input without its TPM2B size: a suffix.
    assert!(data.ends_with(signed) && data.len() - signed.len() <= 2);
    assert_eq!(parse_attest(signed).as_ref(), Ok(&a));
    // The other encoding of the same structure parses to the same quote.
    if signed.len() == data.len() {
        let mut wrapped = (signed.len() as u16).to_be_bytes().to_vec();
        wrapped.extend_from_slice(signed);
        let (b, inner) = parse_attest_any(&wrapped).expect("TPM2B_ATTEST of a valid quote");
        assert_eq!((b, inner), (a.clone(), signed));
    }
    let _ = sealgate_verify::tpm::selection_string(&a.quote.pcr_select);
    assert!(a.quote.pcr_select.covers(&a.quote.pcr_select));
    assert!(a.quote.pcr_select.covers(&PcrSelectionList::default()));
}

/// TPMT_PUBLIC / TPM2B_PUBLIC (Part 2, §12.2.4), then the AK built from it and its Name.
pub fn tpm_public(data: &[u8]) {
    let Ok(p) = parse_public_any(data) else {
        return;
    };
    assert_eq!(parse_public(&p.raw).as_ref(), Ok(&p));
    // The parser admits every hash nameAlg (SM3 too); the Name exists exactly when sealgate
    // can compute that hash, and callers refuse an AK without one.
    let name = public_name(&p);
    match hash_of(p.name_alg) {
        Some(h) => assert_eq!(name.as_ref().map(|n| n.len()), Some(2 + h.size())),
        None => assert_eq!(name, None),
    }
    if let Ok(ak) = AkKey::from_public(p) {
        assert_eq!(ak.name(), name);
    }
}

/// TPMT_SIGNATURE (Part 2, §11.3.4).
pub fn tpm_signature(data: &[u8]) {
    let Ok(sig) = parse_signature(data) else {
        return;
    };
    // verify_quote relies on this: every accepted signature hash is one sealgate computes.
    assert!(hash_of(sig.hash()).is_some(), "{:?}", sig.hash());
    let key = &fixed().tpm_rsa_ak.key;
    let _ = sealgate_verify::tpm::verify_signature(key, data, &sig);
    let _ = sealgate_verify::tpm::verify_signature(&fixed().tpm_ecc_ak.key, data, &sig);
}

/// A TCG PC Client event log (SHA-1 or crypto-agile) and its PCR replay.
pub fn tpm_eventlog(data: &[u8]) {
    let Ok(log) = parse_event_log(data, Platform::Tpm) else {
        return;
    };
    let _ = log.startup_locality();
    if let Ok(r) = replay(&log) {
        assert!(compare(&r.pcrs, &r.pcrs).is_empty());
        for (alg, bank) in &r.pcrs {
            let size = hash_of(*alg).expect("replayed bank is hashable").size();
            assert!(bank.values().all(|v| v.len() == size));
        }
    }
}

/// A CCEL (TDX's crypto-agile event log) and its RTMR replay.
pub fn tdx_ccel(data: &[u8]) {
    let Ok(log) = parse_event_log(data, Platform::Tdx) else {
        return;
    };
    if let Ok(r) = replay_ccel(&log) {
        assert!(compare_rtmrs(&r, &r).is_none());
    }
}

/// An SEV-SNP ATTESTATION_REPORT (SEV-SNP Firmware ABI, Table 23).
pub fn snp_report(data: &[u8]) {
    let r = match sealgate_verify::snp::parse(data) {
        Ok(r) => r,
        Err(e) => {
            let f = match e {
                sealgate_verify::Error::Parse(p) => Failure::from(&p),
                sealgate_verify::Error::Failed(f) => f,
            };
            assert!(f.code.starts_with("snp."), "{}", f.code);
            return;
        }
    };
    assert_eq!(data.len(), REPORT_SIZE);
    let _ = r.product_from_cpuid();
    for layout in [TcbLayout::MilanGenoa, TcbLayout::Turin] {
        for t in [r.current_tcb, r.reported_tcb, r.committed_tcb, r.launch_tcb] {
            let _ = t.decode(layout);
        }
    }
    let _ = (r.policy.unknown_bits(), r.platform_info.unknown_bits());
}

/// A TDX quote v4/v5 (Intel TDX DCAP Quoting Library API, Appendix A).
pub fn tdx_quote(data: &[u8]) {
    let Ok(q) = parse_quote(data) else {
        return;
    };
    assert!(q.signed_len <= data.len());
    assert_eq!(q.signed_region(data).len(), q.signed_len);
    let _ = q.is_debug();
}

// ---------------------------------------------------------------------------------------
// Parse, then verify with fixed keys (the project's vectors verify cleanly with them)
// ---------------------------------------------------------------------------------------

/// SEC1 point of `vectors/sev-snp/vcek-milan.der` (chip A's synthetic VCEK).
const VCEK_MILAN_POINT: &str = "04fad9df69ac6f2aba78ee9f3418dfa0cae36b2b6ba536d274e164510bf74329\
fe164e7743936258bf5caafb0bebaab1a2a052ba54291786a5e7b8885378e7ba68dc313c2350d909830cd41a32eb\
e7d0bd9fc0418dde8984556df0da466344bc94";
/// SEC1 point of the PCK leaf certificate in `vectors/tdx/quotes/v4.bin`.
const TDX_PCK_POINT: &str = "04ebc787a01e62517f917e0879a465c6ca8c246b959abb40de6d1df910a2929c\
487857eb892cb9f256ca609582d8a07f804ff2a24cab04b26b86f30acd71f0fafb";

/// Keys the verify targets use. The replay test checks that the project's valid vectors
/// verify with them, so a stale constant fails CI instead of silently lowering coverage.
pub struct Fixed {
    pub tpm_rsa_ak: AkKey,
    pub tpm_ecc_ak: AkKey,
    pub vcek: VerifyingKey,
    /// What vcek-milan.der endorses (vectors/sev-snp/README.md), hwID = chip A's CHIP_ID.
    pub vcek_endorsement: Endorsement,
    pub pck: VerifyingKey,
    /// Signing keys held by the `*_resign` targets.
    pub p256_a: EcdsaKeyPair,
    pub p256_b: EcdsaKeyPair,
    pub p384: EcdsaKeyPair,
    /// `p256_a` as a restricted-signing TPM AK (TPMT_PUBLIC, ECDSA/SHA-256).
    pub resign_ak: AkKey,
    /// The synthetic Milan hierarchy of `vectors/sev-snp` (ARK → ASK → VCEK chip A), the
    /// anchor and intermediate the `x509` target builds paths with.
    pub milan_ark: fx::Certificate,
    pub milan_ask: fx::Certificate,
    pub milan_vcek: fx::Certificate,
}

/// The DER of a one-block PEM vector (RFC 7468).
fn pem_vector(pem: &[u8]) -> Vec<u8> {
    der::pem::decode_vec(pem).expect("PEM vector").1
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ec_key(curve: Curve, sec1: &[u8]) -> VerifyingKey {
    let n = curve.coordinate_size();
    assert_eq!((sec1.len(), sec1[0]), (1 + 2 * n, 4));
    VerifyingKey::ec(curve, &sec1[1..1 + n], &sec1[1 + n..]).expect("fixed key")
}

fn ak_from(public: &[u8]) -> AkKey {
    AkKey::from_public(parse_public_any(public).expect("fixed AK parses")).expect("fixed AK")
}

fn fresh(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("keygen");
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("own key")
}

/// TPMT_PUBLIC of an ECC P-256 restricted signing key with scheme ECDSA/SHA-256 and the
/// attributes of a TCG AK (fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
/// restricted, sign; Part 2, §8.3), its unique field the SEC1 point `point`.
fn ecc_ak_public(point: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0023u16.to_be_bytes()); // TPM_ALG_ECC
    v.extend_from_slice(&0x000Bu16.to_be_bytes()); // nameAlg SHA-256
    v.extend_from_slice(&0x0005_0072u32.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    v.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric NULL
    v.extend_from_slice(&0x0018u16.to_be_bytes()); // scheme ECDSA
    v.extend_from_slice(&0x000Bu16.to_be_bytes()); //   SHA-256
    v.extend_from_slice(&0x0003u16.to_be_bytes()); // TPM_ECC_NIST_P256
    v.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf NULL
    for c in [&point[1..33], &point[33..65]] {
        v.extend_from_slice(&32u16.to_be_bytes());
        v.extend_from_slice(c);
    }
    v
}

/// The fixed keys, built once per process.
pub fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let report = include_bytes!("../../../vectors/sev-snp/report-v5.bin");
        let chip = parse_report(report).expect("report-v5.bin parses").chip_id;
        let p256_a = fresh(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let resign_ak = ak_from(&ecc_ak_public(p256_a.public_key().as_ref()));
        Fixed {
            tpm_rsa_ak: ak_from(include_bytes!("../../../vectors/tpm/swtpm-rsa/ak.pub")),
            tpm_ecc_ak: ak_from(include_bytes!("../../../vectors/tpm/swtpm-ecc/ak.pub")),
            vcek: ec_key(Curve::P384, &unhex(VCEK_MILAN_POINT)),
            vcek_endorsement: Endorsement {
                kind: SigningKey::Vcek,
                product: Some(Product::Milan),
                hwid: Some(chip.to_vec()),
                bootloader: Some(4),
                tee: Some(0),
                snp: Some(22),
                microcode: Some(213),
                fmc: None,
            },
            pck: ec_key(Curve::P256, &unhex(TDX_PCK_POINT)),
            p256_a,
            p256_b: fresh(&ECDSA_P256_SHA256_FIXED_SIGNING),
            p384: fresh(&ECDSA_P384_SHA384_FIXED_SIGNING),
            resign_ak,
            milan_ark: fx::parse_certificate(&pem_vector(include_bytes!(
                "../../../vectors/sev-snp/ark-milan.pem"
            )))
            .expect("ARK-Milan"),
            milan_ask: fx::parse_certificate(&pem_vector(include_bytes!(
                "../../../vectors/sev-snp/ask-milan.pem"
            )))
            .expect("ASK-Milan"),
            milan_vcek: fx::parse_certificate(include_bytes!(
                "../../../vectors/sev-snp/vcek-milan.der"
            ))
            .expect("VCEK-Milan"),
        }
    })
}

/// The nonce the project's TPM vectors carry (vectors/tpm/*/nonce.hex): bytes 0..31.
const TPM_NONCE: [u8; 32] = {
    let mut n = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        n[i] = i as u8;
        i += 1;
    }
    n
};

/// Input framing of `tpm_quote_verify`: one byte choosing the AK (even: the RSA vector AK,
/// odd: the ECC one), then TPMS_ATTEST and TPMT_SIGNATURE each behind a big-endian u16
/// length, then the event log (the rest).
pub fn frame_tpm(ak: u8, attest: &[u8], sig: &[u8], log: &[u8]) -> Vec<u8> {
    let mut v = vec![ak];
    for part in [attest, sig] {
        v.extend_from_slice(&(part.len() as u16).to_be_bytes());
        v.extend_from_slice(part);
    }
    v.extend_from_slice(log);
    v
}

fn take_u16_framed<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let n = u16::from_be_bytes(*len) as usize;
    let (part, rest) = (rest.get(..n)?, &rest[n..]);
    *data = rest;
    Some(part)
}

/// What `tpm_quote_verify` reports: the failure codes (empty: verified).
pub fn tpm_quote_verify_codes(data: &[u8]) -> Option<Vec<String>> {
    let (&which, mut rest) = data.split_first()?;
    let attest_raw = take_u16_framed(&mut rest)?;
    let sig_raw = take_u16_framed(&mut rest)?;
    let (attest, signed) = parse_attest_any(attest_raw).ok()?;
    let sig = parse_signature(sig_raw).ok()?;
    // PCR values as the appraisal computes them: the replayed event log (an unusable log
    // leaves none, so every quoted PCR is missing).
    let pcrs: PcrMap = parse_event_log(rest, Platform::Tpm)
        .ok()
        .and_then(|l| replay(&l).ok())
        .map(|r| r.pcrs)
        .unwrap_or_default();
    let f = fixed();
    let ak = if which % 2 == 0 {
        &f.tpm_rsa_ak
    } else {
        &f.tpm_ecc_ak
    };
    let min = PcrSelectionList {
        selections: vec![sealgate_formats::tpm::PcrSelection {
            hash: TpmAlg::Sha256,
            size_of_select: 3,
            pcrs: (0..8).collect(),
        }],
    };
    let exp = QuoteExpectations {
        nonce: Some(&TPM_NONCE),
        min_selection: Some(&min),
    };
    let out = verify_quote(signed, &attest, &sig, ak, &pcrs, &exp);
    Some(out.failures.into_iter().map(|f| f.code).collect())
}

/// TPM quote + signature + event log, verified against a vector AK.
pub fn tpm_quote_verify(data: &[u8]) {
    if let Some(codes) = tpm_quote_verify_codes(data) {
        assert!(codes.iter().all(|c| c.starts_with("tpm.")), "{codes:?}");
    }
}

/// SEV-SNP report verified with the vector VCEK, then compared with its endorsement.
pub fn snp_report_verify(data: &[u8]) {
    let f = fixed();
    match parse_and_verify(data, &f.vcek) {
        Ok(r) => {
            for p in [Product::Milan, Product::Genoa, Product::Turin] {
                let _ = check_endorsement(&r, &f.vcek_endorsement, p);
            }
        }
        Err(e) => assert!(e.code.starts_with("snp."), "{}", e.code),
    }
}

/// What `tdx_quote_verify` reports: the failure codes with the vector PCK key.
pub fn tdx_quote_verify_codes(data: &[u8]) -> Option<Vec<String>> {
    let q = parse_quote(data).ok()?;
    let _ = tdx::verify_quote(data, &q, None);
    let out = tdx::verify_quote(data, &q, Some(&fixed().pck));
    Some(out.into_iter().map(|f| f.code).collect())
}

/// TDX quote verified with the vector PCK key.
pub fn tdx_quote_verify(data: &[u8]) {
    if let Some(codes) = tdx_quote_verify_codes(data) {
        assert!(codes.iter().all(|c| c.starts_with("tdx.")), "{codes:?}");
    }
}

/// An NVIDIA GPU SPDM report (`nvgpu::parse_report`): what parses re-encodes to exactly
/// the input, its signed part is everything before the 96-byte signature, and its typed
/// fields are consistent with its TLVs.
pub fn nvgpu_report(data: &[u8]) {
    let r = match nv::parse_report(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.code().starts_with("gpu.format."), "{}", e.code());
            return;
        }
    };
    assert_eq!(r.to_bytes(), data);
    assert_eq!(r.signed, &data[..data.len() - nv::SIGNATURE_LEN]);
    let mut seen = [false; 256];
    for b in &r.blocks {
        assert!(b.index != 0 && b.index != 0xFF && !seen[b.index as usize]);
        seen[b.index as usize] = true;
    }
    assert_eq!(
        r.fwid.map(|f| &f[..]),
        r.opaque_value(nv_opaque::FWID),
        "FWID is the FWID TLV"
    );
    assert_eq!(
        r.switch_pdis().count() * nv::PDI_LEN,
        r.switch_pdi.map_or(0, <[u8]>::len)
    );
    if let Some(v) = r.driver_version {
        assert!(v.bytes().all(|c| (0x20..0x7F).contains(&c)));
    }
    let _ = r.vbios_version_text();
}

/// Any GPU report the fuzzer makes, re-signed with the harness's P-384 key: if it parses,
/// its signature verifies with that key, and one flipped signed byte breaks it (or the
/// parse).
pub fn nvgpu_report_resign(data: &[u8]) {
    let f = fixed();
    let key = sealgate_verify::nvgpu::device_key(f.p384.public_key().as_ref()).expect("own key");
    let mut b = data.to_vec();
    if b.len() >= nv::SIGNATURE_LEN {
        let cut = b.len() - nv::SIGNATURE_LEN;
        let sig = sign(&f.p384, &b[..cut]);
        b[cut..].copy_from_slice(&sig);
    }
    let exp = sealgate_verify::nvgpu::Expectations::default();
    let Ok(v) = sealgate_verify::nvgpu::verify_report(&b, &key, &exp) else {
        assert!(nv::parse_report(&b).is_err());
        return;
    };
    assert!(v.signature_verified, "{:?}", v.failures);
    let signed_len = v.report.signed.len();
    if signed_len == 0 {
        return;
    }
    let at = b[..signed_len]
        .iter()
        .map(|&x| usize::from(x))
        .sum::<usize>()
        % signed_len;
    b[at] ^= 0x01;
    if let Ok(v2) = sealgate_verify::nvgpu::verify_report(&b, &key, &exp) {
        assert!(
            !v2.signature_verified,
            "a flipped byte at {at} still verifies"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Re-sign and tamper: the fuzzer chooses the evidence, the harness signs it with keys it
// holds, and whatever the parser accepts must then verify. This reaches the checks behind
// the signatures, and catches a parser and a verifier that disagree about what is signed.
// ---------------------------------------------------------------------------------------

fn sign(key: &EcdsaKeyPair, msg: &[u8]) -> Vec<u8> {
    key.sign(&SystemRandom::new(), msg)
        .expect("sign")
        .as_ref()
        .to_vec()
}

/// TPM quote (any TPMS_ATTEST the fuzzer makes): its pcrDigest is recomputed over known
/// PCR values and it is signed with the harness's AK; then it must verify, or fail only
/// where the quote itself cannot be satisfied.
pub fn tpm_quote_resign(data: &[u8]) {
    let Ok((a, signed)) = parse_attest_any(data) else {
        return;
    };
    let f = fixed();
    let mut msg = signed.to_vec();
    // PCR i of every bank holds i repeated; banks without a digest size cannot have values.
    let mut pcrs = PcrMap::new();
    let mut unknown_bank = false;
    let mut h = crypto::Hasher::new(Hash::Sha256);
    for sel in &a.quote.pcr_select.selections {
        let Some(size) = sel.hash.digest_size() else {
            unknown_bank = unknown_bank || !sel.pcrs.is_empty();
            continue;
        };
        for &i in &sel.pcrs {
            let v = vec![i as u8; size];
            h.update(&v);
            pcrs.entry(sel.hash).or_default().insert(i, v);
        }
    }
    let digest = h.finish();
    let digest_patched = a.quote.pcr_digest.len() == digest.len();
    if digest_patched {
        // pcrDigest is the last field of TPMS_ATTEST for a quote (Part 2, §10.12.12).
        let n = msg.len();
        msg[n - digest.len()..].copy_from_slice(&digest);
        let b = parse_attest(&msg).expect("only pcrDigest changed");
        assert_eq!(b.quote.pcr_digest, digest);
        assert_eq!(
            (&b.extra_data, &b.quote.pcr_select),
            (&a.extra_data, &a.quote.pcr_select)
        );
    }
    let rs = sign(&f.p256_a, &msg);
    let mut sig = Vec::new();
    sig.extend_from_slice(&0x0018u16.to_be_bytes());
    sig.extend_from_slice(&0x000Bu16.to_be_bytes());
    for c in [&rs[..32], &rs[32..]] {
        sig.extend_from_slice(&32u16.to_be_bytes());
        sig.extend_from_slice(c);
    }
    let sig = parse_signature(&sig).expect("own signature parses");
    assert!(matches!(sig, Signature::Ecdsa { .. }));
    let attest = parse_attest(&msg).expect("re-signed quote parses");
    let exp = QuoteExpectations {
        nonce: Some(&attest.extra_data),
        min_selection: Some(&attest.quote.pcr_select),
    };
    let out = verify_quote(&msg, &attest, &sig, &f.resign_ak, &pcrs, &exp);
    let codes: Vec<&str> = out.failures.iter().map(|f| f.code.as_str()).collect();
    let expected: &[&str] = if unknown_bank {
        &["tpm.quote.pcr_missing"]
    } else if !digest_patched {
        &["tpm.quote.pcr_digest_mismatch"]
    } else {
        &[]
    };
    assert_eq!(codes, expected, "{:?}", out.failures);
    // Signed by another key: the signature check, and only it, must fail.
    let rs = sign(&f.p256_b, &msg);
    let other = Signature::Ecdsa {
        hash: TpmAlg::Sha256,
        r: rs[..32].to_vec(),
        s: rs[32..].to_vec(),
    };
    let out = verify_quote(&msg, &attest, &other, &f.resign_ak, &pcrs, &exp);
    assert_eq!(out.failures[0].code, "tpm.quote.signature_invalid");
}

/// SEV-SNP report (any bytes the fuzzer makes) signed with the harness's P-384 key: if it
/// parses it must verify, unless it says it is unsigned or uses another algorithm.
pub fn snp_report_resign(data: &[u8]) {
    let f = fixed();
    let point = f.p384.public_key().as_ref();
    let key = VerifyingKey::ec(Curve::P384, &point[1..49], &point[49..97]).expect("own key");
    let mut b = data.to_vec();
    if let Ok((raw, _)) = snp::RawReport::mut_from_prefix(&mut b) {
        let rs = sign(&f.p384, raw.signed_bytes());
        // R and S little-endian in 72-byte fields, zero-extended (ABI Chapter 10).
        for (field, c) in [
            (&mut raw.signature.r, &rs[..48]),
            (&mut raw.signature.s, &rs[48..]),
        ] {
            field.fill(0);
            for (i, x) in c.iter().rev().enumerate() {
                field[i] = *x;
            }
        }
    }
    let Ok(r) = parse_report(&b) else {
        assert!(parse_and_verify(&b, &key).is_err());
        return;
    };
    let res = verify_report_signature(&b, &r, &key).map_err(|e| e.code);
    if r.signing_key == SigningKey::None {
        assert_eq!(res, Err("snp.report.unsigned".into()));
    } else if r.signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        assert_eq!(
            res,
            Err("snp.report.unsupported_signature_algorithm".into())
        );
    } else {
        assert_eq!(res, Ok(()));
        // Any change to the signed bytes must break it.
        let at = b[..SIGNED_LEN]
            .iter()
            .map(|&x| usize::from(x))
            .sum::<usize>()
            % SIGNED_LEN;
        b[at] ^= 0x01;
        if let Ok(r2) = parse_report(&b) {
            assert!(
                verify_report_signature(&b, &r2, &key).is_err(),
                "byte {at:#x}"
            );
        }
    }
}

/// TDX quote (any bytes the fuzzer makes that parse) given a harness attestation key, the
/// QE binding recomputed and the QE report signed by a harness PCK key: it must verify
/// (apart from a non-Intel QE vendor, which the fuzzer may choose).
pub fn tdx_quote_resign(data: &[u8]) {
    let Ok(q) = parse_quote(data) else {
        return;
    };
    let f = fixed();
    let (att, pck) = (&f.p256_a, &f.p256_b);
    let ak = &att.public_key().as_ref()[1..];
    let pck_point = pck.public_key().as_ref();
    let pck_key = VerifyingKey::ec(Curve::P256, &pck_point[1..33], &pck_point[33..]).expect("own");
    // Quote Signature Data (A.4.7): signature_data_len u32, signature (64), attestation key
    // (64), Certification Data type u16 and size u32, then the QE report (384) and its
    // signature (64) (A.4.11).
    let sig_at = q.signed_len + 4;
    let ak_at = sig_at + 64;
    let qe_at = ak_at + 64 + 6;
    let qe_sig_at = qe_at + QE_REPORT_SIZE;
    let mut b = data.to_vec();
    b[ak_at..ak_at + 64].copy_from_slice(ak);
    let binding = crypto::hash(Hash::Sha256, &[ak, &q.signature_data.qe_auth_data]);
    b[qe_at + 320..qe_at + 352].copy_from_slice(&binding);
    b[qe_at + 352..qe_at + 384].fill(0);
    let qe_sig = sign(pck, &b[qe_at..qe_at + QE_REPORT_SIZE]);
    b[qe_sig_at..qe_sig_at + 64].copy_from_slice(&qe_sig);
    let quote_sig = sign(att, &b[..q.signed_len]);
    b[sig_at..sig_at + 64].copy_from_slice(&quote_sig);
    let q2 = parse_quote(&b).expect("only signatures, key and binding changed");
    // The parser reads these fields where the layout says they are.
    assert_eq!(&q2.signature_data.attestation_key[..], ak);
    assert_eq!(&q2.signature_data.qe_report_raw[..], &b[qe_at..qe_sig_at]);
    assert_eq!(&q2.signature_data.signature[..], &quote_sig[..]);
    assert_eq!((&q2.body, q2.signed_len), (&q.body, q.signed_len));
    let codes: Vec<String> = tdx::verify_quote(&b, &q2, Some(&pck_key))
        .into_iter()
        .map(|f| f.code)
        .collect();
    let expected: &[&str] = if q2.header.qe_vendor_id == INTEL_QE_VENDOR_ID {
        &[]
    } else {
        &["tdx.quote.unsupported_qe_vendor"]
    };
    assert_eq!(codes, expected);
    // The vector PCK key did not sign this QE report.
    let codes: Vec<String> = tdx::verify_quote(&b, &q2, Some(&f.pck))
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert!(codes.contains(&"tdx.qe.signature_invalid".to_string()));
}

// ---------------------------------------------------------------------------------------
// X.509
// ---------------------------------------------------------------------------------------

/// 2026-06-01T00:00:00Z: every non-expired certificate and CRL of `vectors/sev-snp` is
/// valid then.
pub const X509_AT: i64 = 1_780_272_000;

/// AMD's profile (pub. 57230 §2.1): RSA-PSS SHA-384, RSA-4096 issuers, the ARK's
/// self-signature checked.
pub fn amd_profile() -> Profile {
    Profile {
        algorithms: vec![SigAlg::RsaPss(Hash::Sha384)],
        max_depth: 3,
        issuer_rsa_bits: Some(4096),
        check_anchor_signature: true,
    }
}

/// An X.509 certificate or CRL (RFC 5280 §4.1, §5.1): parsed, its extensions decoded, and
/// put into the chain builder and the CRL check against the fixed Milan hierarchy as a
/// leaf, as an intermediate candidate and as an anchor. Whatever fails, fails with an
/// `x509.*` code (AMD extensions `snp.format.*`, SGX `tdx.format.*`).
pub fn x509(data: &[u8]) {
    let f = fixed();
    let profile = amd_profile();
    let chain_code = |r: Result<pki::Path, Failure>| match r {
        Ok(p) => {
            assert!(p.not_before <= p.not_after || p.certs.len() == 1);
            None
        }
        Err(e) => {
            assert!(e.code.starts_with("x509.chain."), "{}", e.code);
            Some(e.code)
        }
    };
    if let Ok(c) = fx::parse_certificate(data) {
        assert_eq!(c.der, data);
        assert_eq!(c.version, 3);
        assert!(data.windows(c.tbs.len()).any(|w| w == c.tbs.as_slice()));
        let mut oids: Vec<&str> = c.extensions.iter().map(|e| e.oid.as_str()).collect();
        oids.sort_unstable();
        assert!(oids.windows(2).all(|w| w[0] != w[1]), "duplicate extension");
        let _ = fx::public_key(&c);
        let _ = pki::sig_alg(&c.signature_alg);
        let _ = pki::verifying_key(&c);
        if let Err(e) = xv::amd_extensions(&c) {
            assert!(e.code().starts_with("snp.format."), "{}", e.code());
        }
        if let Some(e) = c.extension(xv::OID_DICE_TCB_INFO) {
            if let Err(e) = xv::dice_tcb_info(&e.value) {
                assert!(e.code().starts_with("x509.format."), "{}", e.code());
            }
        }
        if let Some(e) = c.extension(xv::OID_SGX_EXTENSIONS) {
            if let Err(e) = xv::sgx_extension(&e.value) {
                assert!(e.code().starts_with("tdx.format."), "{}", e.code());
            }
        }
        // As the leaf under the Milan ASK and ARK.
        let leaf = pki::build_path(
            &c,
            &[&f.milan_ask],
            &[&f.milan_ark],
            Some(X509_AT),
            &profile,
            None,
        );
        if let Ok(p) = &leaf {
            // The ARK itself is a path of one (the anchor); anything else starts at the leaf.
            if c.der != f.milan_ark.der {
                assert_eq!(p.certs[0], Origin::Leaf);
            }
            assert_eq!(p.certs.last(), Some(&Origin::Anchor(0)));
        }
        chain_code(leaf);
        // As a candidate issuer of the VCEK, next to the genuine ASK: a planted look-alike
        // may fail, never stop the genuine path.
        let with = pki::build_path(
            &f.milan_vcek,
            &[&c, &f.milan_ask],
            &[&f.milan_ark],
            Some(X509_AT),
            &profile,
            None,
        );
        assert_eq!(
            chain_code(with),
            None,
            "a planted certificate broke the Milan chain"
        );
        // As an anchor: itself, and whatever it signed.
        let own = pki::build_path(&c, &[], &[&c], None, &profile, None).expect("anchor");
        assert_eq!(own.certs, vec![Origin::Anchor(0)]);
        chain_code(pki::build_path(
            &f.milan_vcek,
            &[&f.milan_ask],
            &[&c],
            None,
            &profile,
            None,
        ));
    }
    if let Ok(crl) = fx::parse_crl(data) {
        assert_eq!(crl.der, data);
        assert!(crl.revoked.windows(2).all(|w| w[0] < w[1]));
        let _ = crl.revokes(&f.milan_vcek.serial);
        for issuer in [&f.milan_ark, &f.milan_ask] {
            if let Err(e) = pki::check_crl(&crl, issuer, Some(X509_AT), &profile, None) {
                assert!(e.code.starts_with("x509.crl."), "{}", e.code);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Audit chain
// ---------------------------------------------------------------------------------------

/// The audit hash chain over entries cut from the input at 0x00 bytes: the intact chain
/// verifies; an edited entry, a missing hash and a missing entry are found where they are.
pub fn audit_chain(data: &[u8]) {
    let entries: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let hashes = audit::chain(&audit::GENESIS, &entries);
    assert_eq!(audit::verify(&audit::GENESIS, &entries, &hashes), Ok(()));
    let n = entries.len();
    let i = usize::from(data.first().copied().unwrap_or(0)) % n;
    let mut edited: Vec<Vec<u8>> = entries.iter().map(|e| e.to_vec()).collect();
    edited[i].push(0x5a);
    let br = audit::verify(&audit::GENESIS, &edited, &hashes).unwrap_err();
    assert_eq!(
        (br.index, br.failure.code.as_str()),
        (i, "audit.chain.hash_mismatch")
    );
    let br = audit::verify(&audit::GENESIS, &entries, &hashes[..n - 1]).unwrap_err();
    assert_eq!(
        (br.index, br.failure.code.as_str()),
        (n - 1, "audit.chain.missing_hash")
    );
    let br = audit::verify(&audit::GENESIS, &entries[..n - 1], &hashes).unwrap_err();
    assert_eq!(
        (br.index, br.failure.code.as_str()),
        (n - 1, "audit.chain.missing_entry")
    );
    // A chain continued from a checkpoint gives the same links.
    if n > 1 {
        assert_eq!(audit::chain(&hashes[0], &entries[1..]), hashes[1..]);
    }
}

// ---------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------

fn read(rel: &str) -> Vec<u8> {
    let p = vectors().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Files of `vectors/<dir>` whose name starts with `prefix` and ends with `suffix`, sorted.
fn files(dir: &str, prefix: &str, suffix: &str) -> Vec<(String, Vec<u8>)> {
    let d = vectors().join(dir);
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let b = read(&format!("{dir}/{n}"));
            (format!("{}-{n}", dir.replace('/', "-")), b)
        })
        .collect()
}

const TPM_KINDS: [&str; 2] = ["swtpm-rsa", "swtpm-ecc"];

fn tpm_files(file: &str, malformed_prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = TPM_KINDS
        .iter()
        .map(|k| (format!("{k}-{file}"), read(&format!("tpm/{k}/{file}"))))
        .collect();
    out.extend(files("tpm/malformed", malformed_prefix, ".bin"));
    out
}

/// A CCEL as TDX firmware writes it (TCG PC Client PFP §10.2, UEFI 2.10 §38.4.1): the
/// SHA-1-format Spec ID event declaring one bank, SHA-384, then crypto-agile events for
/// MR indices 1..=4 (RTMR0..3) and one EV_NO_ACTION, then zero padding.
pub fn ccel_seed() -> Vec<u8> {
    use sealgate_formats::eventlog::{EV_NO_ACTION, SPEC_ID_EVENT03};
    let mut spec = SPEC_ID_EVENT03.to_vec();
    spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass
    spec.extend_from_slice(&[0, 2, 0, 2]); // specVersion 2.0 errata 0, uintnSize 2
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&[0x0c, 0x00, 48, 0]); // TPM_ALG_SHA384, 48 bytes
    spec.push(0); // vendorInfoSize
    let mut v = Vec::new();
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    v.extend_from_slice(&[0u8; 20]);
    v.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    v.extend_from_slice(&spec);
    for (mr, ty, data) in [
        (1u32, 0x8000_000Au32, &b"fv"[..]),
        (2, 0x8000_0001, b"var"),
        (3, 0x0000_000D, b"linux"),
        (4, 0x0000_000D, b"app"),
        (1, EV_NO_ACTION, b""),
    ] {
        v.extend_from_slice(&mr.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&0x000Cu16.to_le_bytes());
        v.extend_from_slice(&crypto::hash(Hash::Sha384, &[data]));
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
    }
    v.extend_from_slice(&[0u8; 64]);
    v
}

// ---------------------------------------------------------------------------------------
// Azure CVM containers
// ---------------------------------------------------------------------------------------

/// HCL report (rust/formats/src/azure.rs): what it accepts is self-consistent.
pub fn azure_hcl(data: &[u8]) {
    let Ok(h) = parse_hcl_report(data) else {
        return;
    };
    assert_eq!(h.len, data.len());
    assert!(h.runtime_data.start == az::RUNTIME_DATA_OFFSET && h.runtime_data.end <= data.len());
    assert_eq!(h.report_size as usize, h.runtime_data.end);
    assert!(data[h.runtime_data.end..].iter().all(|&b| b == 0));
    match h.kind {
        az::HardwareKind::Snp => {
            assert_eq!(h.hardware.len(), az::HW_REPORT_LEN);
            assert!(h.td_report.is_none());
        }
        az::HardwareKind::Tdx => {
            let td = h.td_report.as_ref().expect("a TDX report has its TDREPORT");
            assert_eq!(h.hardware.len(), az::TD_REPORT_LEN);
            assert_eq!(td.report_data, h.report_data);
        }
    }
    // The runtime data it points at goes through its own parser without panicking.
    let _ = parse_runtime_data(&data[h.runtime_data.clone()]);
}

/// HCL runtime data JSON (rust/formats/src/azure_runtime.rs).
pub fn azure_runtime(data: &[u8]) {
    let Ok(r) = parse_runtime_data(data) else {
        return;
    };
    assert!(r
        .user_data
        .as_ref()
        .is_none_or(|u| u.len() <= MAX_USER_DATA));
    for k in r.ak.iter().chain(r.ek.iter()) {
        assert!(k.kid == "HCLAkPub" || k.kid == "HCLEkPub");
    }
}

/// `quote.bin` (either bincode layout): re-encoded in the current layout, it parses to
/// the same parts.
pub fn azure_quote_bin(data: &[u8]) {
    let Ok(q) = parse_quote_bin(data) else {
        return;
    };
    let mut again = (q.signature.len() as u64).to_le_bytes().to_vec();
    again.extend_from_slice(&q.signature);
    again.extend_from_slice(&(q.message.len() as u64).to_le_bytes());
    again.extend_from_slice(&q.message);
    again.extend_from_slice(&(q.pcrs.len() as u64).to_le_bytes());
    for p in &q.pcrs {
        again.extend_from_slice(p);
    }
    let r = parse_quote_bin(&again).expect("the current layout of accepted parts");
    assert_eq!(
        (r.signature, r.message, r.pcrs),
        (q.signature, q.message, q.pcrs)
    );
}

/// Synthetic HCL reports around the project's SNP reports (the project has no Azure vector
/// of its own): SNP report ‖ IGVM request data ‖ runtime data JSON ‖ zero padding.
fn azure_hcl_seeds() -> Vec<(String, Vec<u8>)> {
    let runtime = br#"{"keys":[{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"sXch"}],"vm-configuration":{"secure-boot":true,"tpm-enabled":true},"user-data":"00ff"}"#;
    files("sev-snp", "report-", ".bin")
        .into_iter()
        .filter(|(_, r)| r.len() == az::HW_REPORT_LEN)
        .map(|(name, report)| {
            let mut b = b"HCLA".to_vec();
            for v in [
                1u32,
                (az::RUNTIME_DATA_OFFSET + runtime.len()) as u32,
                2,
                0,
                0,
                0,
                0,
            ] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&report);
            for v in [20 + runtime.len() as u32, 1, 2, 1, runtime.len() as u32] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(runtime);
            b.resize(2600, 0);
            (format!("hcl-{name}"), b)
        })
        .collect()
}

/// Seed inputs of target `name`, derived from the project's own `vectors/` only.
pub fn seeds(name: &str) -> Vec<(String, Vec<u8>)> {
    match name {
        "tpm_attest" | "tpm_quote_resign" => tpm_files("quote.msg", "quote-"),
        "tpm_public" => tpm_files("ak.pub", "ak-"),
        "tpm_signature" => tpm_files("quote.sig", "sig-"),
        "tpm_eventlog" => tpm_files("eventlog.bin", "eventlog-"),
        "tpm_quote_verify" => TPM_KINDS
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let r = |f: &str| read(&format!("tpm/{k}/{f}"));
                let framed = frame_tpm(
                    i as u8,
                    &r("quote.msg"),
                    &r("quote.sig"),
                    &r("eventlog.bin"),
                );
                (format!("{k}-framed"), framed)
            })
            .collect(),
        "tdx_ccel" => {
            // The project has no CCEL vector: a synthetic one (SHA-384, RTMR0..3), and the
            // TPM crypto-agile logs, the same format (TCG PC Client PFP §10.2).
            let mut v = vec![("synthetic-ccel".to_string(), ccel_seed())];
            v.extend(tpm_files("eventlog.bin", "eventlog-"));
            v
        }
        "snp_report" | "snp_report_verify" | "snp_report_resign" => {
            let mut v = files("sev-snp", "report-", ".bin");
            v.extend(files("sev-snp", "malformed-", ".bin"));
            v
        }
        "tdx_quote" | "tdx_quote_verify" | "tdx_quote_resign" => {
            let mut v = files("tdx/quotes", "", ".bin");
            v.extend(files("tdx/malformed", "", ".bin"));
            v
        }
        "x509" => {
            let mut v = files("sev-snp", "vcek-", ".der");
            v.extend(files("sev-snp", "vlek-", ".der"));
            v.extend(files("sev-snp", "crl-", ".der"));
            for pem in [
                "ark-milan",
                "ask-milan",
                "asvk-milan",
                "ark-genoa",
                "ark-turin",
            ] {
                let der = pem_vector(&read(&format!("sev-snp/{pem}.pem")));
                v.push((format!("sev-snp-{pem}.der"), der));
            }
            v
        }
        "audit_chain" => vec![
            ("empty".into(), Vec::new()),
            ("three".into(), b"\x02first\0second\0third".to_vec()),
        ],
        "azure_hcl" => azure_hcl_seeds(),
        "azure_runtime" => azure_hcl_seeds()
            .into_iter()
            .take(1)
            .map(|(n, b)| {
                let h = parse_hcl_report(&b).expect("seed");
                (format!("runtime-{n}"), b[h.runtime_data].to_vec())
            })
            .collect(),
        "azure_quote_bin" => {
            // quote.bin around the project's TPM quotes: u64 length-prefixed signature and
            // message, then 24 SHA-256 PCRs (current layout) or with a u64 length each (old).
            let sigs = tpm_files("quote.sig", "sig-");
            let mut out = Vec::new();
            for ((n, msg), (_, sig)) in tpm_files("quote.msg", "quote-").into_iter().zip(sigs) {
                for legacy in [false, true] {
                    let mut b = (sig.len() as u64).to_le_bytes().to_vec();
                    b.extend_from_slice(&sig);
                    b.extend_from_slice(&(msg.len() as u64).to_le_bytes());
                    b.extend_from_slice(&msg);
                    b.extend_from_slice(&24u64.to_le_bytes());
                    for i in 0..24u8 {
                        if legacy {
                            b.extend_from_slice(&32u64.to_le_bytes());
                        }
                        b.extend_from_slice(&[i; 32]);
                    }
                    out.push((format!("{n}-{}", if legacy { "old" } else { "current" }), b));
                }
            }
            out
        }
        "nvgpu_report" | "nvgpu_report_resign" => vec![
            ("hopper-synthetic".into(), nvgpu_seed(64, true)),
            ("drv545-shape".into(), nvgpu_seed(64, false)),
            ("two-blocks".into(), nvgpu_seed(2, true)),
        ],
        other => panic!("no target {other}"),
    }
}

/// An NVIDIA GPU report of the Hopper shape (DSP0274 §10.11: `n` DMTF SHA-384 blocks, the
/// opaque TLVs NVIDIA sends, FWID only if `fwid` as in drivers after 545), with a dummy
/// signature. Built here: the published reports live in the shared vectors, not the repo.
pub fn nvgpu_seed(n: u8, fwid: bool) -> Vec<u8> {
    let values: Vec<[u8; 48]> = (1..=n).map(|i| [i.wrapping_mul(37); 48]).collect();
    let mut tlvs: Vec<(u16, &[u8])> = vec![
        (nv_opaque::DRIVER_VERSION, b"550.90.07\0\0\0"),
        (
            nv_opaque::VBIOS_VERSION,
            &[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0],
        ),
        (nv_opaque::CHIP_SKU, b"882\0\0\0\0\0"),
        (nv_opaque::PROJECT, b"1010\0\0\0\0"),
        (nv_opaque::PROJECT_SKU, b"0200\0\0\0\0"),
        (nv_opaque::PROTECTED_PCIE_STATUS, &[0x55]),
        (nv_opaque::SWITCH_PDI, &[0x77; 16]),
        (34, &[1, 0, 0, 0]),
    ];
    if fwid {
        tlvs.push((nv_opaque::FWID, &[0xf5; 48]));
    }
    nv::GpuReport {
        request_param1: 1,
        request_param2: 0xFF,
        request_nonce: &[0x93; 32],
        slot: 0,
        response_param1: 0,
        response_param2: 0,
        blocks: values
            .iter()
            .enumerate()
            .map(|(i, v)| nv::MeasurementBlock {
                index: i as u8 + 1,
                spec: nv::SPEC_DMTF,
                value_type: 1,
                value: v,
            })
            .collect(),
        responder_nonce: &[0xb4; 32],
        opaque: tlvs
            .iter()
            .map(|&(tlv_type, value)| nv::OpaqueTlv {
                tlv_type,
                value,
                offset: 0,
            })
            .collect(),
        signed: &[],
        signature: &[0x5a; nv::SIGNATURE_LEN],
        driver_version: None,
        vbios_version: None,
        fwid: None,
        chip_sku: None,
        project: None,
        project_sku: None,
        switch_pdi: None,
    }
    .to_bytes()
}
