//! `fuzz-seed DIR`: write every target's seeds into `DIR/<target>/` (the cargo-fuzz corpus
//! layout), from the project's `vectors/`. Existing files are kept; seeds are named after
//! their vector, so re-running rewrites them in place.

use sealgate_fuzz_bodies::{seeds, TARGETS};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: fuzz-seed DIR   (writes DIR/<target>/<seed>)");
        return ExitCode::from(2);
    };
    let mut n = 0;
    for (name, _) in TARGETS {
        let d = PathBuf::from(dir).join(name);
        if let Err(e) = std::fs::create_dir_all(&d) {
            eprintln!("{}: {e}", d.display());
            return ExitCode::from(2);
        }
        for (seed, bytes) in seeds(name) {
            if let Err(e) = std::fs::write(d.join(&seed), bytes) {
                eprintln!("{}: {e}", d.join(&seed).display());
                return ExitCode::from(2);
            }
            n += 1;
        }
    }
    println!("{n} seeds for {} targets in {dir}", TARGETS.len());
    ExitCode::SUCCESS
}
