//! The fuzz corpus as an ordinary test: every target's body runs on its seeds (from
//! `vectors/`), on deterministic truncations and bit flips of them, on the committed
//! regressions in `fuzz/regressions/<target>/` and on whatever `cargo fuzz` has collected in
//! `fuzz/corpus/<target>/` on this machine. A panic in any of them fails the test with the
//! target and input named.

use sealgate_fuzz_bodies::tpm_quote_verify_codes;
use sealgate_fuzz_bodies::{ccel_seed, fixed, seeds, target, tdx_quote_verify_codes, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Run `body` on `input`; a panic becomes an Err naming the input.
fn run(name: &str, what: &str, body: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| body(input))).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{name} on {what}: {msg}")
    })
}

fn files_in(d: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(d) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    out.sort();
    out
}

#[test]
fn seeds_and_their_mutations() {
    let mut failures = Vec::new();
    let mut runs = 0usize;
    for (name, body) in TARGETS {
        let s = seeds(name);
        assert!(!s.is_empty(), "{name} has no seeds");
        for (seed, b) in &s {
            failures.extend(run(name, seed, *body, b).err());
            // Truncations (about 64 per seed) and single bit flips (64 positions).
            let step = (b.len() / 64).max(1);
            for n in (0..b.len()).step_by(step) {
                failures.extend(run(name, &format!("{seed}[..{n}]"), *body, &b[..n]).err());
            }
            for k in 0..64usize.min(b.len() * 8) {
                let bit = k * (b.len() * 8) / 64.min(b.len() * 8);
                let mut m = b.clone();
                m[bit / 8] ^= 1 << (bit % 8);
                failures.extend(run(name, &format!("{seed} bit {bit}"), *body, &m).err());
            }
            runs += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the runs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(runs > 100, "{runs} seeds");
}

#[test]
fn regressions_and_local_corpus() {
    let mut failures = Vec::new();
    for (name, body) in TARGETS {
        for sub in ["regressions", "corpus"] {
            for (path, b) in files_in(&fuzz_dir().join(sub).join(name)) {
                failures.extend(run(name, &path, *body, &b).err());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The verify targets start from evidence that verifies with their fixed keys, so the
/// fuzzer begins behind every signature check (and a stale key constant fails here).
#[test]
fn valid_vectors_verify_with_the_fixed_keys() {
    for (seed, b) in seeds("tpm_quote_verify") {
        assert_eq!(tpm_quote_verify_codes(&b), Some(vec![]), "{seed}");
    }
    for (seed, b) in seeds("tdx_quote_verify") {
        let valid = ["v4.bin", "v5_tdx10.bin", "v5_tdx15.bin", "v4_trailing.bin"];
        if valid.iter().any(|v| seed == format!("tdx-quotes-{v}")) {
            assert_eq!(tdx_quote_verify_codes(&b), Some(vec![]), "{seed}");
        }
    }
    let log =
        sealgate_formats::eventlog::parse_event_log(&ccel_seed(), sealgate_formats::Platform::Tdx)
            .expect("synthetic CCEL parses");
    let rtmrs = sealgate_verify::tdx::replay_ccel(&log).expect("replays");
    assert!(rtmrs.iter().all(|r| r != &[0u8; 48]), "every RTMR extended");
    let f = fixed();
    let (_, report) = seeds("snp_report_verify")
        .into_iter()
        .find(|(n, _)| n == "sev-snp-report-v5.bin")
        .expect("report-v5.bin");
    let r = sealgate_verify::snp::parse_and_verify(&report, &f.vcek).expect("verifies");
    let e = sealgate_verify::snp::check_endorsement(
        &r,
        &f.vcek_endorsement,
        sealgate_formats::snp::Product::Milan,
    );
    assert!(e.is_empty(), "{e:?}");
    // The x509 target's fixed hierarchy verifies, so the body starts behind its checks.
    sealgate_verify::pki::build_path(
        &f.milan_vcek,
        &[&f.milan_ask],
        &[&f.milan_ark],
        Some(sealgate_fuzz_bodies::X509_AT),
        &sealgate_fuzz_bodies::amd_profile(),
        None,
    )
    .expect("the Milan chain verifies");
}

/// One cargo-fuzz target per body and no other: fuzz/Cargo.toml and fuzz/fuzz_targets/
/// list exactly TARGETS.
#[test]
fn every_body_has_a_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut bins: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .filter(|n| n != "sealgate-fuzz")
        .collect();
    bins.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(bins, names);
    for n in &names {
        let src = std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{n}.rs")))
            .unwrap_or_else(|e| panic!("fuzz_targets/{n}.rs: {e}"));
        assert!(
            src.contains(&format!("sealgate_fuzz_bodies::{n}(")),
            "{n}.rs calls another body"
        );
        assert!(target(n).is_some());
    }
}
