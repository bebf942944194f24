//! Where a quote verification's time goes, in pure Rust (no Python): compares
//! `verify_quote` with the bare signature check on the project's swtpm vectors.
//! `cargo run --release --example quote_cost -p sealgate-verify`

use sealgate_formats::eventlog::parse_event_log;
use sealgate_formats::tpm::{parse_attest_any, parse_public_any, parse_signature, TpmAlg};
use sealgate_formats::Platform;
use sealgate_verify::eventlog::replay;
use sealgate_verify::tpm::{verify_quote, verify_signature, AkKey, QuoteExpectations};
use std::path::PathBuf;
use std::time::Instant;

fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vectors/tpm/swtpm-rsa");
    let quote = std::fs::read(d.join("quote.msg")).unwrap();
    let sig = parse_signature(&std::fs::read(d.join("quote.sig")).unwrap()).unwrap();
    let ak =
        AkKey::from_public(parse_public_any(&std::fs::read(d.join("ak.pub")).unwrap()).unwrap())
            .unwrap();
    let log = std::fs::read(d.join("eventlog.bin")).unwrap();
    let mut pcrs = replay(&parse_event_log(&log, Platform::Tpm).unwrap())
        .unwrap()
        .pcrs;
    for i in 0..24 {
        pcrs.entry(TpmAlg::Sha256)
            .or_default()
            .entry(i)
            .or_insert_with(|| vec![0; 32]);
    }
    let (attest, signed) = parse_attest_any(&quote).unwrap();
    let exp = QuoteExpectations::default();
    for _ in 0..3 {
        let q = per_call(20000, || {
            let (a, s) = parse_attest_any(&quote).unwrap();
            std::hint::black_box(verify_quote(s, &a, &sig, &ak, &pcrs, &exp));
        });
        let v = per_call(20000, || {
            std::hint::black_box(verify_quote(signed, &attest, &sig, &ak, &pcrs, &exp));
        });
        let b = per_call(20000, || {
            std::hint::black_box(verify_signature(&ak.key, signed, &sig).is_ok());
        });
        let p = per_call(200000, || {
            std::hint::black_box(parse_attest_any(&quote).unwrap());
        });
        println!("parse+verify_quote {q:.2}us verify_quote {v:.2}us bare {b:.2}us parse {p:.3}us");
    }
}
