//! TCG event-log replay into PCR values (TCG PC Client PFP rev 1.05, §10; TPM 2.0 Part 1,
//! §17.2 "PCR extend").

use crate::crypto::{self, Hash};
use crate::failure::{hex, Failure};
use sealgate_formats::eventlog::{EventLog, EV_NO_ACTION};
use sealgate_formats::tpm::TpmAlg;
use std::collections::BTreeMap;

/// PCR indices a log may extend. PC Client TPMs have 24 PCRs; 0xFFFFFFFF is the
/// "no PCR" index some firmware uses for informational events (skipped, not end of log).
pub const MAX_PCR_INDEX: u32 = 31;
pub const NO_PCR_INDEX: u32 = 0xFFFF_FFFF;

pub fn hash_of(alg: TpmAlg) -> Option<Hash> {
    match alg {
        TpmAlg::Sha1 => Some(Hash::Sha1),
        TpmAlg::Sha256 => Some(Hash::Sha256),
        TpmAlg::Sha384 => Some(Hash::Sha384),
        TpmAlg::Sha512 => Some(Hash::Sha512),
        _ => None,
    }
}

/// PCR values per bank: bank → PCR index → value.
pub type PcrMap = BTreeMap<TpmAlg, BTreeMap<u32, Vec<u8>>>;

/// Result of a replay: the values of every PCR the log extends, per bank sealgate can hash.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub pcrs: PcrMap,
    /// Banks declared by the log that sealgate cannot compute (e.g. SM3), left out.
    pub skipped_banks: Vec<TpmAlg>,
    /// StartupLocality found in the log, if any.
    pub startup_locality: Option<u8>,
}

/// Replay `log`. Errors are structural problems that make the replay meaningless.
pub fn replay(log: &EventLog) -> Result<Replay, Failure> {
    let mut out = Replay {
        startup_locality: log.startup_locality(),
        ..Default::default()
    };
    let mut banks: Vec<(TpmAlg, Hash)> = Vec::new();
    for alg in log.banks() {
        match hash_of(alg) {
            Some(h) => banks.push((alg, h)),
            None => out.skipped_banks.push(alg),
        }
    }
    for (alg, _) in &banks {
        out.pcrs.insert(*alg, BTreeMap::new());
    }
    for ev in &log.events {
        // EV_NO_ACTION events are never extended (PFP §10.4.1), including the Spec ID,
        // StartupLocality and SP800-155 events.
        if ev.event_type == EV_NO_ACTION || ev.pcr_index == NO_PCR_INDEX {
            continue;
        }
        if ev.pcr_index > MAX_PCR_INDEX {
            return Err(Failure::new(
                "tpm.eventlog.invalid_pcr_index",
                format!(
                    "event {} at offset {} extends PCR {}, which does not exist",
                    ev.number, ev.offset, ev.pcr_index
                ),
            ));
        }
        for (alg, h) in &banks {
            let Some((_, digest)) = ev.digests.iter().find(|(a, _)| a == alg) else {
                return Err(Failure::new(
                    "tpm.eventlog.missing_digest",
                    format!(
                        "event {} at offset {} has no {} digest",
                        ev.number,
                        ev.offset,
                        alg.name()
                    ),
                ));
            };
            let bank = out.pcrs.get_mut(alg).expect("bank inserted above");
            let pcr = bank.entry(ev.pcr_index).or_insert_with(|| {
                let mut init = vec![0u8; h.size()];
                // PFP §10.4.5.3: with a StartupLocality event, PCR0 starts at the locality
                // (0x00…03 or 0x00…04) instead of zero.
                if ev.pcr_index == 0 {
                    if let Some(l) = out.startup_locality {
                        *init.last_mut().expect("non-empty") = l;
                    }
                }
                init
            });
            crypto::extend(*h, pcr, digest);
        }
    }
    Ok(out)
}

/// A PCR whose replayed value differs from the quoted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrMismatch {
    pub bank: TpmAlg,
    pub index: u32,
    pub replayed: Vec<u8>,
    pub quoted: Vec<u8>,
}

/// Compare replayed PCRs with quoted ones, over the PCRs present in both.
pub fn compare(replay: &PcrMap, quoted: &PcrMap) -> Vec<PcrMismatch> {
    let mut out = Vec::new();
    for (bank, values) in quoted {
        let Some(rbank) = replay.get(bank) else {
            continue;
        };
        for (idx, q) in values {
            if let Some(r) = rbank.get(idx) {
                if r != q {
                    out.push(PcrMismatch {
                        bank: *bank,
                        index: *idx,
                        replayed: r.clone(),
                        quoted: q.clone(),
                    });
                }
            }
        }
    }
    out
}

/// A replay that disagrees with the quote: the failure, and the PCRs (`bank:index`) that
/// differ, for the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMismatch {
    pub failure: Failure,
    pub pcrs: Vec<String>,
}

/// Compare a replay with the quoted PCRs; `None` when every PCR present in both agrees.
pub fn check_replay(replay: &PcrMap, quoted: &PcrMap) -> Option<ReplayMismatch> {
    let m = compare(replay, quoted);
    (!m.is_empty()).then(|| ReplayMismatch {
        failure: mismatch_failure(&m),
        pcrs: m
            .iter()
            .map(|x| format!("{}:{}", x.bank.name(), x.index))
            .collect(),
    })
}

/// `tpm.eventlog.replay_mismatch`, naming every differing PCR with both values.
pub fn mismatch_failure(m: &[PcrMismatch]) -> Failure {
    let names: Vec<String> = m
        .iter()
        .map(|x| format!("{}:{}", x.bank.name(), x.index))
        .collect();
    let detail: Vec<String> = m
        .iter()
        .map(|x| {
            format!(
                "{}:{} replayed {} quoted {}",
                x.bank.name(),
                x.index,
                hex(&x.replayed),
                hex(&x.quoted)
            )
        })
        .collect();
    Failure::new(
        "tpm.eventlog.replay_mismatch",
        format!(
            "event log replay disagrees with the quote for PCR {}: {}",
            names.join(", "),
            detail.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(TpmAlg, u32, u8)]) -> PcrMap {
        let mut m = PcrMap::new();
        for &(b, i, v) in entries {
            m.entry(b).or_default().insert(i, vec![v; 2]);
        }
        m
    }

    #[test]
    fn replay_mismatch_names_every_differing_pcr() {
        let replayed = map(&[
            (TpmAlg::Sha256, 0, 1),
            (TpmAlg::Sha256, 9, 2),
            (TpmAlg::Sha1, 0, 3),
        ]);
        assert!(check_replay(&replayed, &replayed).is_none());
        // PCRs only in one of the two are not compared (the quote decides what is quoted).
        let quoted = map(&[(TpmAlg::Sha256, 0, 1), (TpmAlg::Sha256, 7, 5)]);
        assert!(check_replay(&replayed, &quoted).is_none());
        let quoted = map(&[
            (TpmAlg::Sha256, 0, 4),
            (TpmAlg::Sha256, 9, 5),
            (TpmAlg::Sha1, 0, 3),
        ]);
        let m = check_replay(&replayed, &quoted).unwrap();
        assert_eq!(m.pcrs, ["sha256:0", "sha256:9"]);
        assert_eq!(m.failure.code, "tpm.eventlog.replay_mismatch");
        assert_eq!(
            m.failure.message,
            "event log replay disagrees with the quote for PCR sha256:0, sha256:9: \
             sha256:0 replayed 0101 quoted 0404; sha256:9 replayed 0202 quoted 0505"
        );
    }
}
