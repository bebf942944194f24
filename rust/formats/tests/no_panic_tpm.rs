//! Property tests: no input makes the TPM and event-log parsers panic — random bytes, and
//! truncations and bit flips of real quotes and logs (project vectors, plus the published
//! ones when present, as tests/vectors.py finds them).

use proptest::prelude::*;
use sealgate_formats::eventlog::parse_event_log;
use sealgate_formats::tpm::{parse_attest_any, parse_public_any, parse_signature};
use sealgate_formats::Platform;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Real inputs: (kind, bytes). Project vectors always; published ones when present.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["swtpm-rsa", "swtpm-ecc"] {
        let d = root().join("vectors/tpm").join(kind);
        for (k, f) in [
            ("quote", "quote.msg"),
            ("sig", "quote.sig"),
            ("public", "ak.pub"),
            ("log", "eventlog.bin"),
        ] {
            out.push((k, std::fs::read(d.join(f)).expect("project vector")));
        }
    }
    let shared = root().join("../shared/vectors/tpm");
    let gce = shared.join("gce-cos85-attestation/derived");
    for (k, f) in [
        ("quote", "quote_sha256.tpms_attest"),
        ("sig", "quote_sha256.tpmt_signature"),
        ("public", "ak_pub.tpmt_public"),
        ("log", "event_log.bin"),
    ] {
        if let Ok(b) = std::fs::read(gce.join(f)) {
            out.push((k, b));
        }
    }
    for f in [
        "glinux-alex.bin",
        "debian-10.bin",
        "eventlogwithsp800155.bin",
    ] {
        if let Ok(b) = std::fs::read(shared.join("eventlogs").join(f)) {
            out.push(("log", b));
        }
    }
    out
}

fn parse_all(kind: &str, b: &[u8]) {
    match kind {
        "quote" => drop(parse_attest_any(b)),
        "sig" => drop(parse_signature(b)),
        "public" => drop(parse_public_any(b)),
        _ => drop(parse_event_log(b, Platform::Tpm)),
    }
}

#[test]
fn real_inputs_parse() {
    for (kind, b) in corpus() {
        match kind {
            "quote" => {
                parse_attest_any(&b).unwrap();
            }
            "sig" => {
                parse_signature(&b).unwrap();
            }
            "public" => {
                parse_public_any(&b).unwrap();
            }
            _ => {
                parse_event_log(&b, Platform::Tpm).unwrap();
            }
        }
    }
}

#[test]
fn every_truncation_is_handled() {
    for (kind, b) in corpus() {
        // Logs are long: step through them; small structures: every length.
        let step = if b.len() > 4096 { 97 } else { 1 };
        for n in (0..b.len()).step_by(step) {
            parse_all(kind, &b[..n]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for k in ["quote", "sig", "public", "log"] {
            parse_all(k, &data);
        }
    }

    #[test]
    fn bit_flips_of_real_inputs(idx in 0usize..64, flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..6)) {
        let c = corpus();
        let (kind, orig) = &c[idx % c.len()];
        let mut b = orig.clone();
        for (pos, bit) in flips {
            let n = b.len();
            if n > 0 {
                b[pos % n] ^= 1 << bit;
            }
        }
        parse_all(kind, &b);
    }

    #[test]
    fn splices_of_real_inputs(idx in 0usize..64, at in any::<usize>(), junk in proptest::collection::vec(any::<u8>(), 0..64)) {
        let c = corpus();
        let (kind, orig) = &c[idx % c.len()];
        let at = at % (orig.len() + 1);
        let mut b = orig[..at].to_vec();
        b.extend_from_slice(&junk);
        b.extend_from_slice(&orig[at..]);
        parse_all(kind, &b);
    }
}
