//! Property tests: no input makes the TDX quote parser or the CCEL parser panic — random
//! bytes, and truncations and bit flips of real quotes (project vectors/tdx, plus the
//! published ones when present, as tests/vectors.py finds them). Also replays every
//! malformed project vector as an ordinary test with the error code it must produce.

use proptest::prelude::*;
use sealgate_formats::eventlog::parse_event_log;
use sealgate_formats::tdx::parse_quote;
use sealgate_formats::Platform;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn quotes() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in ["v4.bin", "v5_tdx10.bin", "v5_tdx15.bin"] {
        out.push(std::fs::read(root().join("vectors/tdx/quotes").join(f)).expect("project vector"));
    }
    let shared = root().join("../shared/vectors/tdx");
    for f in [
        "dcapqvl-emr-v4/tdx_quote",
        "dcapqvl-v5-tcb-unsupported/tdx_quote_outdated",
        "trustee-spr-v4-with-pcs2023/tdx_quote_4.dat",
        "gce-cos113-ccel/cos-113-tdx-quote.dat",
    ] {
        if let Ok(b) = std::fs::read(shared.join(f)) {
            out.push(b);
        }
    }
    out
}

#[test]
fn real_quotes_parse() {
    for q in quotes() {
        let p = parse_quote(&q).expect("real quote parses");
        assert!(p
            .signature_data
            .pck_chain
            .starts_with(b"-----BEGIN CERTIFICATE-----"));
    }
}

#[test]
fn malformed_vectors_fail_with_their_code() {
    let dir = root().join("vectors/tdx/malformed");
    let expected =
        std::fs::read_to_string(root().join("vectors/tdx/expected.json")).expect("expected.json");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("malformed dir") {
        let path = entry.expect("entry").path();
        let name = format!("malformed/{}", path.file_name().unwrap().to_string_lossy());
        let data = std::fs::read(&path).expect("read");
        let err = parse_quote(&data).expect_err(&name);
        // expected.json lists `"<name>": {"errors": ["<code>"]}`; a substring check keeps
        // this test free of a JSON dependency.
        let at = expected
            .find(&format!("\"{name}\""))
            .expect("listed in expected.json");
        let tail = &expected[at..];
        let code_at = tail.find("tdx.format.").expect("a tdx.format code");
        let code: String = tail[code_at..].chars().take_while(|c| *c != '"').collect();
        assert_eq!(err.code(), code, "{name}");
        n += 1;
    }
    assert!(n >= 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let _ = parse_quote(&data);
        let _ = parse_event_log(&data, Platform::Tdx);
    }

    #[test]
    fn mutated_real_quotes(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
    ) {
        let all = quotes();
        let mut q = all[which.index(all.len())].clone();
        for (i, x) in flips {
            let at = i.index(q.len());
            q[at] ^= x;
        }
        let keep = cut.index(q.len() + 1);
        q.truncate(keep);
        if let Ok(p) = parse_quote(&q) {
            // A successful parse accounts for every byte.
            prop_assert!(p.signed_len <= q.len());
        }
    }
}
