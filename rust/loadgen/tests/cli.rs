//! The binary's command line (this test also makes `cargo test --workspace --release` build
//! target/release/sealgate-loadgen, which tests/test_loadgen.py runs).

use std::process::Command;

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sealgate-loadgen"))
        .args(args)
        .output()
        .expect("run sealgate-loadgen")
}

#[test]
fn usage_errors_exit_nonzero_with_a_message() {
    let cases: [(&[&str], i32, &str); 5] = [
        (&[], 2, "usage"),
        (&["bogus"], 2, "usage"),
        (&["run"], 1, "needs a SETUP.json"),
        (
            &["run", "/nonexistent.json", "--clients", "1"],
            1,
            "/nonexistent.json",
        ),
        (&["selftest-hpke", "00"], 1, "SK_HEX SEALED_HEX INFO_HEX"),
    ];
    for (args, code, msg) in cases {
        let out = loadgen(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

#[test]
fn selftest_hpke_refuses_a_wrong_key() {
    // 32-byte key, 48 bytes that are not a sealed message for it.
    let out = loadgen(&["selftest-hpke", &"11".repeat(32), &"22".repeat(48), ""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("open failed"));
}
