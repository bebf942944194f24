//! Clients and their flows, scheduled exactly like `run_clients` in scripts/bench_service.py
//! so both load generators measure the same thing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{self, SHA512};
use aws_lc_rs::rand::SystemRandom;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::evidence::{Built, SnpReporter, TdxQuoter, TpmQuoter, BINDING_LEN};
use crate::hpke::{Aead, RuntimeKey};
use crate::pb::{self, attestation_client::AttestationClient};
use crate::setup::{unhex, Setup};

/// Per-RPC deadline, as the Python load generator's `timeout=30`.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// HPKE `info` label (python/sealgate/broker/hpke.py `release_info`).
const RELEASE_INFO_LABEL: &[u8] = b"sealgate/v1 key-release\x00";

#[derive(Debug, Clone, Default)]
pub struct RunParams {
    /// Clients used in this run (the first N of the setup).
    pub clients: usize,
    /// Paced: flows/s offered in total; None = closed loop.
    pub rate: Option<f64>,
    /// CLOCK_MONOTONIC seconds (Python's time.monotonic) when the run starts.
    pub start: f64,
    pub seconds: f64,
}

enum Source {
    /// The AK, and the PCR values sent with every quote.
    Tpm(TpmQuoter, Vec<pb::PcrValue>),
    Snp(Arc<SnpReporter>),
    Tdx(Arc<TdxQuoter>),
}

pub struct Client {
    g: usize,
    node_id: String,
    stub: AttestationClient<Channel>,
    source: Source,
}

/// What every flow shares: the request constants and the pass-through evidence parts.
pub struct Shared {
    platform: pb::Platform,
    key_id: String,
    expected_key: Vec<u8>,
    snp_vcek: Vec<u8>,
    snp_chain: Vec<u8>,
    tdx_collateral: Vec<u8>,
}

pub struct Prepared {
    clients: Vec<Client>,
    shared: Arc<Shared>,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Build the evidence sources and open one connection per client.
pub async fn connect(setup: &Setup, n: usize) -> Result<Prepared, String> {
    let field = |name: &str, v: &str| unhex(v).map_err(|e| format!("{name}: {e}"));
    let mut shared = Shared {
        platform: match setup.platform.as_str() {
            "tpm" => pb::Platform::Tpm,
            "snp" => pb::Platform::Snp,
            "tdx" => pb::Platform::Tdx,
            other => return Err(format!("unknown platform {other:?}")),
        },
        key_id: setup.key_id.clone(),
        expected_key: field("expected_key", &setup.expected_key)?,
        snp_vcek: Vec::new(),
        snp_chain: Vec::new(),
        tdx_collateral: Vec::new(),
    };
    let mut snp = None;
    let mut tdx = None;
    match shared.platform {
        pb::Platform::Snp => {
            let s = setup.snp.as_ref().ok_or("platform snp needs \"snp\"")?;
            snp = Some(Arc::new(SnpReporter::new(
                field("snp.report", &s.report)?,
                &field("snp.vcek_pkcs8", &s.vcek_pkcs8)?,
            )?));
            shared.snp_vcek = field("snp.vcek", &s.vcek)?;
            shared.snp_chain = field("snp.cert_chain", &s.cert_chain)?;
        }
        pb::Platform::Tdx => {
            let t = setup.tdx.as_ref().ok_or("platform tdx needs \"tdx\"")?;
            tdx = Some(Arc::new(TdxQuoter::new(
                field("tdx.quote", &t.quote)?,
                &field("tdx.attestation_key_pkcs8", &t.attestation_key_pkcs8)?,
            )?));
            shared.tdx_collateral = field("tdx.collateral", &t.collateral)?;
        }
        _ => {}
    }
    let uri = format!("http://{}", setup.address);
    let mut clients = Vec::with_capacity(n);
    for (g, c) in setup.clients.iter().take(n).enumerate() {
        let source = match (&snp, &tdx) {
            (Some(r), _) => Source::Snp(r.clone()),
            (_, Some(q)) => Source::Tdx(q.clone()),
            _ => {
                let t = c
                    .tpm
                    .as_ref()
                    .ok_or_else(|| format!("client {g}: platform tpm needs \"tpm\""))?;
                let pcrs = t
                    .pcrs
                    .iter()
                    .map(|(i, v)| field("tpm.pcrs", v).map(|v| (*i, v)))
                    .collect::<Result<Vec<_>, _>>()?;
                let values = pcrs
                    .iter()
                    .map(|(i, v)| pb::PcrValue {
                        bank: "sha256".into(),
                        index: u32::from(*i),
                        value: v.clone(),
                    })
                    .collect();
                Source::Tpm(
                    TpmQuoter::new(
                        &field("tpm.ak_pkcs8", &t.ak_pkcs8)?,
                        field("tpm.ak_name", &t.ak_name)?,
                        t.clock,
                        t.firmware_version,
                        &pcrs,
                    )?,
                    values,
                )
            }
        };
        // One HTTP/2 connection per client: each node is its own machine, and separate
        // connections let SO_REUSEPORT spread clients over the server's processes.
        let channel = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("{uri}: {e}"))?
            .tcp_nodelay(true)
            .timeout(RPC_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("connect {uri}: {e}"))?;
        clients.push(Client {
            g,
            node_id: c.node_id.clone(),
            stub: AttestationClient::new(channel),
            source,
        });
    }
    Ok(Prepared {
        clients,
        shared: Arc::new(shared),
    })
}

/// HPKE `info` the server seals with: label ‖ u16 len ‖ key id ‖ u32 version ‖ u16 len ‖
/// challenge id (big-endian; python/sealgate/broker/hpke.py `release_info`).
fn release_info(key_id: &str, version: u32, challenge_id: &str) -> Option<Vec<u8>> {
    let kid = u16::try_from(key_id.len()).ok()?.to_be_bytes();
    let cid = u16::try_from(challenge_id.len()).ok()?.to_be_bytes();
    Some(
        [
            RELEASE_INFO_LABEL,
            &kid,
            key_id.as_bytes(),
            &version.to_be_bytes(),
            &cid,
            challenge_id.as_bytes(),
        ]
        .concat(),
    )
}

fn status_kind(rpc: &str, s: &tonic::Status) -> String {
    format!("{rpc}.{:?}", s.code())
}

/// One full flow. Err = the kind of failure, counted per kind in the result.
async fn flow(c: &mut Client, shared: &Shared, rng: &SystemRandom) -> Result<(), String> {
    let ch = c
        .stub
        .challenge(pb::ChallengeRequest {
            platform: shared.platform as i32,
            node_id: c.node_id.clone(),
        })
        .await
        .map_err(|s| status_kind("challenge", &s))?
        .into_inner();
    let runtime = RuntimeKey::generate();
    let mut binding = [0u8; BINDING_LEN];
    let mut h = digest::Context::new(&SHA512);
    h.update(&ch.nonce);
    h.update(runtime.public_bytes());
    binding.copy_from_slice(h.finish().as_ref());
    let (built, pcrs) = match &mut c.source {
        Source::Tpm(q, pcrs) => (q.quote(rng, &binding), pcrs.clone()),
        Source::Snp(r) => (r.report(rng, &binding), Vec::new()),
        Source::Tdx(q) => (q.quote(rng, &binding), Vec::new()),
    };
    let kind = match built {
        Built::Tpm { quote, signature } => pb::evidence::Kind::Tpm(pb::TpmEvidence {
            quote,
            signature,
            event_log: Vec::new(),
            pcrs,
        }),
        Built::Snp { report } => pb::evidence::Kind::Snp(pb::SnpEvidence {
            report,
            vcek: shared.snp_vcek.clone(),
            cert_chain: shared.snp_chain.clone(),
            crl: Vec::new(),
        }),
        Built::Tdx { quote } => pb::evidence::Kind::Tdx(pb::TdxEvidence {
            quote,
            collateral: shared.tdx_collateral.clone(),
            ccel: Vec::new(),
        }),
    };
    let resp = c
        .stub
        .attest(pb::AttestRequest {
            challenge_id: ch.challenge_id.clone(),
            node_id: c.node_id.clone(),
            evidence: Some(pb::Evidence { kind: Some(kind) }),
            runtime_public_key: runtime.public_bytes().to_vec(),
            suite: pb::HpkeSuite::X25519Sha256Aes256gcm as i32,
            key_ids: vec![shared.key_id.clone()],
            // A load-test node has no GPUs: the binding is the plain one.
            gpus: Vec::new(),
        })
        .await
        .map_err(|s| status_kind("attest", &s))?
        .into_inner();
    if let Some(f) = resp.evidence_failures.first() {
        return Err(format!("evidence.{}", f.code));
    }
    if let Some(d) = resp.denied.first() {
        let code = d.failures.first().map_or("", |f| f.code.as_str());
        return Err(format!("denied.{code}"));
    }
    let mut opened = false;
    for g in &resp.granted {
        if g.key_id != shared.key_id {
            return Err("granted.unrequested_key".into());
        }
        // The info binds key id, version and this challenge: a key sealed for another
        // attestation must not be accepted.
        if release_info(&g.key_id, g.version, &ch.challenge_id).as_deref() != Some(&g.info[..]) {
            return Err("granted.info_mismatch".into());
        }
        let key = runtime
            .open(Aead::Aes256Gcm, &g.sealed, &g.info, b"")
            .map_err(|e| format!("granted.open_failed.{e:?}"))?;
        if key != shared.expected_key {
            return Err("granted.key_mismatch".into());
        }
        opened = true;
    }
    if opened {
        Ok(())
    } else {
        Err("granted.none".into())
    }
}

/// CLOCK_MONOTONIC in seconds: the clock Python's `time.monotonic()` reads, so the parent's
/// start time means the same instant here.
fn monotonic_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// This process's user + system CPU seconds (getrusage(RUSAGE_SELF), all threads).
pub fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `mono` (CLOCK_MONOTONIC seconds) as a tokio Instant.
fn instant_at(mono: f64) -> Instant {
    let (now_i, now_m) = (Instant::now(), monotonic_now());
    if mono >= now_m {
        now_i + Duration::from_secs_f64(mono - now_m)
    } else {
        now_i
            .checked_sub(Duration::from_secs_f64(now_m - mono))
            .unwrap_or(now_i)
    }
}

#[derive(Default)]
struct Outcome {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

/// One client's share of a run. Closed loop (`rate` None): the next flow starts when the last
/// ends. Paced: client g's k-th flow is due at start + (k·total + g)/rate and its latency
/// counts from then, even if it starts late (no coordinated omission).
async fn client_loop(
    mut c: Client,
    shared: Arc<Shared>,
    total: usize,
    rate: Option<f64>,
    start: Instant,
    stop_at: Instant,
) -> (Client, Outcome) {
    let rng = SystemRandom::new();
    let mut out = Outcome::default();
    let mut k: u64 = 0;
    loop {
        let due = match rate {
            None => Instant::now().max(start),
            Some(r) => {
                let at = (k as f64 * total as f64 + c.g as f64) / r;
                k += 1;
                start + Duration::from_secs_f64(at)
            }
        };
        if due >= stop_at {
            break;
        }
        tokio::time::sleep_until(due).await;
        match flow(&mut c, &shared, &rng).await {
            Ok(()) => out.latencies.push((Instant::now() - due).as_secs_f64()),
            Err(kind) => *out.errors.entry(kind).or_default() += 1,
        }
    }
    (c, out)
}

pub struct RunResult {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
    /// CPU seconds of the run: `cpu_seconds()` at the end minus `cpu_start`.
    cpu_s: f64,
    /// The whole process's CPU seconds (start-up, setup parsing and RNG seeding included).
    process_cpu_s: f64,
    clocks: Vec<Option<u64>>,
}

impl RunResult {
    pub fn to_json(&self) -> String {
        let errors: u64 = self.errors.values().sum();
        serde_json::json!({
            "latencies": self.latencies,
            "errors": errors,
            "error_kinds": self.errors,
            "cpu_s": self.cpu_s,
            "process_cpu_s": self.process_cpu_s,
            "clocks": self.clocks,
        })
        .to_string()
    }
}

/// `cpu_start`: `cpu_seconds()` before the clients connected.
pub async fn run(prepared: Prepared, params: &RunParams, cpu_start: f64) -> RunResult {
    let start = instant_at(params.start);
    let stop_at = start + Duration::from_secs_f64(params.seconds);
    let total = prepared.clients.len();
    let mut tasks = tokio::task::JoinSet::new();
    for c in prepared.clients {
        tasks.spawn(client_loop(
            c,
            prepared.shared.clone(),
            total,
            params.rate,
            start,
            stop_at,
        ));
    }
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    let mut clocks = vec![None; total];
    while let Some(joined) = tasks.join_next().await {
        let (c, out) = joined.expect("client task panicked");
        latencies.extend(out.latencies);
        for (k, v) in out.errors {
            *errors.entry(k).or_insert(0) += v;
        }
        if let Source::Tpm(q, _) = &c.source {
            clocks[c.g] = Some(q.clock);
        }
    }
    let process_cpu_s = cpu_seconds();
    RunResult {
        latencies,
        errors,
        cpu_s: process_cpu_s - cpu_start,
        process_cpu_s,
        clocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_info_layout() {
        let got = release_info("k1", 3, "cid").unwrap();
        let want = [
            RELEASE_INFO_LABEL,
            &[0, 2],
            b"k1",
            &[0, 0, 0, 3],
            &[0, 3],
            b"cid",
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn monotonic_matches_tokio_instant() {
        let target = monotonic_now() + 0.5;
        let at = instant_at(target);
        let d = at - Instant::now();
        assert!(
            d > Duration::from_millis(400) && d <= Duration::from_millis(500),
            "{d:?}"
        );
    }
}
