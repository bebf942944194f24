//! `sealgate-loadgen`: the service benchmark's load generator (scripts/bench_service.py).
//!
//! Each client is a node with its own HTTP/2 connection, running full flows: Challenge →
//! fresh X25519 runtime key → evidence over SHA-512(nonce ‖ runtime key) → Attest → HPKE
//! open of every granted key, compared with the key the benchmark imported. Written in Rust
//! so the load generator's CPU per flow stays small next to the server's on a shared
//! 2-core machine (the service target counts the load generator in: docs/benchmarks.md).
//!
//! ```text
//! sealgate-loadgen run SETUP.json --clients N --seconds S [--rate FLOWS_PER_S] [--threads T]
//!     connects N clients, prints "ready", reads the start time (CLOCK_MONOTONIC seconds)
//!     from stdin, runs, prints one JSON result line
//! sealgate-loadgen selftest-hpke SK_HEX SEALED_HEX INFO_HEX
//!     opens an X25519/HKDF-SHA256/AES-256-GCM sealed message (empty aad), prints it in hex
//! ```

mod evidence;
mod flow;
mod hpke;
mod setup;

use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Generated from protos/sealgate/v1 by build.rs (client side only).
pub mod pb {
    tonic::include_proto!("sealgate.v1");
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: sealgate-loadgen run SETUP.json --clients N --seconds S [--rate R] [--threads T]\n\
         \x20      sealgate-loadgen selftest-hpke SK_HEX SEALED_HEX INFO_HEX"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("selftest-hpke") => selftest_hpke(&args[1..]),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealgate-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn selftest_hpke(args: &[String]) -> Result<(), String> {
    let [sk, sealed, info] = args else {
        return Err("selftest-hpke takes SK_HEX SEALED_HEX INFO_HEX".into());
    };
    let key = hpke::RuntimeKey::from_private_bytes(&setup::unhex(sk)?)
        .ok_or("not an X25519 private key")?;
    let pt = key
        .open(
            hpke::Aead::Aes256Gcm,
            &setup::unhex(sealed)?,
            &setup::unhex(info)?,
            b"",
        )
        .map_err(|e| format!("open failed: {e:?}"))?;
    println!("{}", flow::hex(&pt));
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let mut path = None;
    let mut params = flow::RunParams::default();
    let mut threads = 0usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        let bad = |name: &str| format!("{name}: not a number");
        match a.as_str() {
            "--clients" => params.clients = value(a)?.parse().map_err(|_| bad(a))?,
            "--seconds" => params.seconds = value(a)?.parse().map_err(|_| bad(a))?,
            "--rate" => params.rate = Some(value(a)?.parse().map_err(|_| bad(a))?),
            "--threads" => threads = value(a)?.parse().map_err(|_| bad(a))?,
            p if path.is_none() && !p.starts_with("--") => path = Some(p.to_string()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let path = path.ok_or("run needs a SETUP.json")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let setup = setup::Setup::parse(&text)?;
    if params.clients == 0 || params.clients > setup.clients.len() {
        return Err(format!(
            "--clients {} but the setup has {} clients",
            params.clients,
            setup.clients.len()
        ));
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(params.seconds) || params.rate.is_some_and(|r| !positive(r)) {
        return Err("--seconds and --rate must be positive".into());
    }
    // current_thread by default: the per-flow work is small and a second thread only adds
    // hand-offs (measured in the README's benchmark notes); --threads N for a multi-thread
    // runtime.
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("tokio runtime: {e}"))?;
    // aws-lc seeds its per-thread DRBG (CPU jitter entropy, tens of ms) at the first random
    // draw. Do it here, before the measured part, as the Python load generator's OpenSSL is
    // seeded before its runs start; the seeding still counts in `process_cpu_s`.
    let _ = hpke::RuntimeKey::generate();
    // The run's CPU counts from here: connecting the clients, then the flows (the Python
    // load generator's figure also includes making its channels).
    let cpu_start = flow::cpu_seconds();
    let clients = rt.block_on(flow::connect(&setup, params.clients))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;
    params.start = line
        .trim()
        .parse()
        .map_err(|_| format!("expected a start time on stdin, got {line:?}"))?;
    let result = rt.block_on(flow::run(clients, &params, cpu_start));
    writeln!(out, "{}", result.to_json()).map_err(|e| e.to_string())?;
    Ok(())
}
