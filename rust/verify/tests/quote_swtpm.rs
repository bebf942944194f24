//! Verification over the project's swtpm vectors: the good quote verifies, and no mutation
//! of it panics or verifies.

use proptest::prelude::*;
use sealgate_formats::eventlog::parse_event_log;
use sealgate_formats::tpm::{parse_attest_any, parse_public_any, parse_signature, TpmAlg};
use sealgate_formats::Platform;
use sealgate_verify::eventlog::{replay, PcrMap};
use sealgate_verify::tpm::{verify_quote, AkKey, QuoteExpectations};
use std::path::PathBuf;

fn vec_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../vectors/tpm")
        .join(kind)
}

fn hexdecode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

struct Fixture {
    quote: Vec<u8>,
    sig: Vec<u8>,
    ak: AkKey,
    pcrs: PcrMap,
    nonce: Vec<u8>,
}

fn fixture(kind: &str) -> Fixture {
    let d = vec_dir(kind);
    let log = std::fs::read(d.join("eventlog.bin")).unwrap();
    let replayed = replay(&parse_event_log(&log, Platform::Tpm).unwrap()).unwrap();
    let mut pcrs = replayed.pcrs;
    // PCRs 1..7 not in the log hold zero; the sample log touches 0..9 so all are present.
    for i in 0..10 {
        pcrs.entry(TpmAlg::Sha256)
            .or_default()
            .entry(i)
            .or_insert_with(|| vec![0; 32]);
    }
    Fixture {
        quote: std::fs::read(d.join("quote.msg")).unwrap(),
        sig: std::fs::read(d.join("quote.sig")).unwrap(),
        ak: AkKey::from_public(
            parse_public_any(&std::fs::read(d.join("ak.pub")).unwrap()).unwrap(),
        )
        .unwrap(),
        pcrs,
        nonce: hexdecode(std::fs::read_to_string(d.join("nonce.hex")).unwrap().trim()),
    }
}

fn check(f: &Fixture, quote: &[u8], sig: &[u8]) -> Option<bool> {
    let (attest, signed) = parse_attest_any(quote).ok()?;
    let sig = parse_signature(sig).ok()?;
    let exp = QuoteExpectations {
        nonce: Some(&f.nonce),
        min_selection: None,
    };
    Some(
        verify_quote(signed, &attest, &sig, &f.ak, &f.pcrs, &exp)
            .failures
            .is_empty(),
    )
}

#[test]
fn good_quotes_verify() {
    for kind in ["swtpm-rsa", "swtpm-ecc"] {
        let f = fixture(kind);
        assert_eq!(check(&f, &f.quote, &f.sig), Some(true), "{kind}");
    }
}

#[test]
fn any_single_bit_flip_of_quote_or_signature_fails() {
    for kind in ["swtpm-rsa", "swtpm-ecc"] {
        let f = fixture(kind);
        for i in 0..f.quote.len() * 8 {
            let mut q = f.quote.clone();
            q[i / 8] ^= 1 << (i % 8);
            assert_ne!(check(&f, &q, &f.sig), Some(true), "{kind} quote bit {i}");
        }
        for i in 0..f.sig.len() * 8 {
            let mut s = f.sig.clone();
            s[i / 8] ^= 1 << (i % 8);
            assert_ne!(check(&f, &f.quote, &s), Some(true), "{kind} sig bit {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn mutations_never_verify(rsa in any::<bool>(), pos in any::<usize>(), val in 1u8..=255, in_sig in any::<bool>()) {
        let f = fixture(if rsa { "swtpm-rsa" } else { "swtpm-ecc" });
        let (mut q, mut s) = (f.quote.clone(), f.sig.clone());
        if in_sig { let n = s.len(); s[pos % n] ^= val; } else { let n = q.len(); q[pos % n] ^= val; }
        prop_assert_ne!(check(&f, &q, &s), Some(true));
    }
}
