//! TCG PC Client event logs (TCG PC Client Platform Firmware Profile Specification, rev 1.05,
//! §10 "Event Logging"): the legacy SHA-1 format (TCG_PCR_EVENT only) and the crypto-agile
//! format (a TCG_PCR_EVENT carrying the Spec ID event, then TCG_PCR_EVENT2). Also used for the
//! Confidential Computing Event Log (CCEL), which is the crypto-agile format with MR indices.
//!
//! All integers are little-endian (§10.2). Parsing only: replay (hashing) is in the verify
//! crate.

use crate::error::{ParseErrorKind, Platform, Result};
use crate::reader::Reader;
use crate::tpm::alg::TpmAlg;

/// An event log larger than this is refused. Firmware logs are tens of KiB; the TDX CCEL
/// area is 64–256 KiB. 16 MiB bounds memory for a single request.
pub const MAX_EVENT_LOG_SIZE: usize = 16 << 20;
/// Bound on the number of events: real boot logs hold tens to a few hundred.
pub const MAX_EVENTS: usize = 1 << 16;
/// Bound on one event's data (EV_EFI_VARIABLE_DRIVER_CONFIG with a full `db` is ~10 KiB).
pub const MAX_EVENT_DATA_SIZE: usize = 1 << 20;
/// TPML_DIGEST_VALUES.count cap: HASH_COUNT; no TPM implements more than a handful of banks.
pub const MAX_DIGESTS_PER_EVENT: usize = 8;
/// TCG_EfiSpecIdEvent.numberOfAlgorithms cap (same reason).
pub const MAX_SPEC_ID_ALGORITHMS: usize = 8;

/// EV_NO_ACTION (§10.4.1): informational, never extended into a PCR.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// Spec ID event signature for crypto-agile logs (§10.4.5.1).
pub const SPEC_ID_EVENT03: &[u8; 16] = b"Spec ID Event03\0";
/// StartupLocality event signature (§10.4.5.3): PCR0 starts at the locality value.
pub const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// TCG_PCR_EVENT entries only, SHA-1 digests.
    Sha1Legacy,
    /// Spec ID Event03 then TCG_PCR_EVENT2 entries.
    CryptoAgile,
}

/// TCG_EfiSpecIdEvent (§10.4.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    pub platform_class: u32,
    pub spec_version_major: u8,
    pub spec_version_minor: u8,
    pub spec_errata: u8,
    pub uintn_size: u8,
    /// (algorithm, digest size) as the log declares them.
    pub algorithms: Vec<(TpmAlg, u16)>,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log (0-based, the Spec ID header event included).
    pub number: usize,
    /// Byte offset of the entry in the log.
    pub offset: usize,
    pub pcr_index: u32,
    pub event_type: u32,
    pub digests: Vec<(TpmAlg, Vec<u8>)>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    pub format: LogFormat,
    pub spec_id: Option<SpecIdEvent>,
    pub events: Vec<Event>,
    /// Trailing zero or 0xFF padding after the last event (CCEL areas are padded).
    pub padding: usize,
}

impl EventLog {
    /// The locality from a StartupLocality EV_NO_ACTION event, if any (§10.4.5.3).
    pub fn startup_locality(&self) -> Option<u8> {
        self.events.iter().find_map(|e| {
            if e.event_type == EV_NO_ACTION
                && e.pcr_index == 0
                && e.data.len() == 17
                && &e.data[..16] == STARTUP_LOCALITY
            {
                Some(e.data[16])
            } else {
                None
            }
        })
    }

    /// Hash banks the log carries.
    pub fn banks(&self) -> Vec<TpmAlg> {
        match &self.spec_id {
            Some(s) => s.algorithms.iter().map(|(a, _)| *a).collect(),
            None => vec![TpmAlg::Sha1],
        }
    }
}

/// Where trailing padding starts: the offset after the last byte that is not 0x00, or not
/// 0xFF, whichever is smaller. Computed once, so checking "is the rest padding?" at each
/// event is O(1) — a per-event scan would be quadratic on a crafted log of zero events.
fn padding_start(buf: &[u8]) -> usize {
    let after_last = |pad: u8| buf.iter().rposition(|&b| b != pad).map_or(0, |i| i + 1);
    after_last(0x00).min(after_last(0xff))
}

fn event_data<'a>(r: &mut Reader<'a>) -> Result<&'a [u8]> {
    let at = r.offset();
    let size = r.u32_le("TCG_PCR_EVENT.eventSize")? as usize;
    if size > MAX_EVENT_DATA_SIZE {
        return Err(r.err_at(
            at,
            ParseErrorKind::TooLarge,
            "TCG_PCR_EVENT.eventSize",
            format!("{} bytes, at most {}", size, MAX_EVENT_DATA_SIZE),
        ));
    }
    r.take(size, "TCG_PCR_EVENT.event")
}

fn parse_spec_id(data: &[u8], base: usize, platform: Platform) -> Result<SpecIdEvent> {
    let mut r = Reader::new(data, platform);
    let fix = |mut e: crate::ParseError| {
        e.offset += base;
        e
    };
    (|| {
        r.take(16, "TCG_EfiSpecIdEvent.signature")?;
        let platform_class = r.u32_le("TCG_EfiSpecIdEvent.platformClass")?;
        let spec_version_minor = r.u8("TCG_EfiSpecIdEvent.specVersionMinor")?;
        let spec_version_major = r.u8("TCG_EfiSpecIdEvent.specVersionMajor")?;
        let spec_errata = r.u8("TCG_EfiSpecIdEvent.specErrata")?;
        let uintn_size = r.u8("TCG_EfiSpecIdEvent.uintnSize")?;
        let at = r.offset();
        let n = r.u32_le("TCG_EfiSpecIdEvent.numberOfAlgorithms")? as usize;
        if n == 0 || n > MAX_SPEC_ID_ALGORITHMS {
            return Err(r.err_at(
                at,
                if n == 0 {
                    ParseErrorKind::Invalid
                } else {
                    ParseErrorKind::TooLarge
                },
                "TCG_EfiSpecIdEvent.numberOfAlgorithms",
                format!("{} algorithms, expected 1..={}", n, MAX_SPEC_ID_ALGORITHMS),
            ));
        }
        let mut algorithms = Vec::with_capacity(n);
        for _ in 0..n {
            let aat = r.offset();
            let alg = TpmAlg::from_u16(r.u16_le("TCG_EfiSpecIdEventAlgorithmSize.algorithmId")?);
            let size = r.u16_le("TCG_EfiSpecIdEventAlgorithmSize.digestSize")?;
            if let Some(expected) = alg.digest_size() {
                if expected != size as usize {
                    return Err(r.err_at(
                        aat,
                        ParseErrorKind::Invalid,
                        "TCG_EfiSpecIdEventAlgorithmSize.digestSize",
                        format!("{} digest size {}, expected {}", alg.name(), size, expected),
                    ));
                }
            } else if size as usize > 64 {
                return Err(r.err_at(
                    aat,
                    ParseErrorKind::TooLarge,
                    "TCG_EfiSpecIdEventAlgorithmSize.digestSize",
                    format!("unknown algorithm {} with digest size {}", alg.name(), size),
                ));
            }
            if algorithms.iter().any(|(a, _)| *a == alg) {
                return Err(r.err_at(
                    aat,
                    ParseErrorKind::Invalid,
                    "TCG_EfiSpecIdEventAlgorithmSize.algorithmId",
                    format!("{} listed twice", alg.name()),
                ));
            }
            algorithms.push((alg, size));
        }
        // vendorInfoSize + vendorInfo follow; their content is opaque.
        let vsize = r.u8("TCG_EfiSpecIdEvent.vendorInfoSize")? as usize;
        r.take(vsize, "TCG_EfiSpecIdEvent.vendorInfo")?;
        Ok(SpecIdEvent {
            platform_class,
            spec_version_major,
            spec_version_minor,
            spec_errata,
            uintn_size,
            algorithms,
        })
    })()
    .map_err(fix)
}

/// Parse a TCG event log. `platform` picks the error-code prefix (`tpm` for firmware logs,
/// `tdx` for CCEL).
pub fn parse_event_log(buf: &[u8], platform: Platform) -> Result<EventLog> {
    let mut r = Reader::new(buf, platform);
    if buf.len() > MAX_EVENT_LOG_SIZE {
        return Err(r.err(
            ParseErrorKind::TooLarge,
            "event log",
            format!("{} bytes, at most {}", buf.len(), MAX_EVENT_LOG_SIZE),
        ));
    }
    if buf.is_empty() {
        return Err(r.err(ParseErrorKind::Truncated, "event log", "empty event log"));
    }
    let mut events = Vec::new();

    // The first entry is always a TCG_PCR_EVENT (SHA-1 format), §10.2.1.
    let first_at = r.offset();
    let pcr_index = r.u32_le("TCG_PCR_EVENT.pcrIndex")?;
    let event_type = r.u32_le("TCG_PCR_EVENT.eventType")?;
    let digest = r.take(20, "TCG_PCR_EVENT.digest")?.to_vec();
    let data_at = r.offset() + 4;
    let data = event_data(&mut r)?;
    let spec_id =
        if event_type == EV_NO_ACTION && data.len() >= 16 && &data[..16] == SPEC_ID_EVENT03 {
            Some(parse_spec_id(data, data_at, platform)?)
        } else {
            None
        };
    events.push(Event {
        number: 0,
        offset: first_at,
        pcr_index,
        event_type,
        digests: vec![(TpmAlg::Sha1, digest)],
        data: data.to_vec(),
    });

    let mut padding = 0;
    let pad_at = padding_start(buf);
    while !r.is_empty() {
        if r.offset() >= pad_at {
            padding = r.remaining();
            break;
        }
        if events.len() >= MAX_EVENTS {
            return Err(r.err(
                ParseErrorKind::TooLarge,
                "event log",
                format!("more than {} events", MAX_EVENTS),
            ));
        }
        let at = r.offset();
        let pcr_index = r.u32_le("TCG_PCR_EVENT2.pcrIndex")?;
        let event_type = r.u32_le("TCG_PCR_EVENT2.eventType")?;
        let digests = match &spec_id {
            None => vec![(TpmAlg::Sha1, r.take(20, "TCG_PCR_EVENT.digest")?.to_vec())],
            Some(spec) => {
                let cat = r.offset();
                let count = r.u32_le("TPML_DIGEST_VALUES.count")? as usize;
                if count > MAX_DIGESTS_PER_EVENT {
                    return Err(r.err_at(
                        cat,
                        ParseErrorKind::TooLarge,
                        "TPML_DIGEST_VALUES.count",
                        format!("{} digests, at most {}", count, MAX_DIGESTS_PER_EVENT),
                    ));
                }
                let mut d = Vec::with_capacity(count);
                for _ in 0..count {
                    let hat = r.offset();
                    let alg = TpmAlg::from_u16(r.u16_le("TPMT_HA.hashAlg")?);
                    // The digest size comes from the Spec ID event, so even algorithms
                    // sealgate cannot compute can be skipped correctly (§10.2.2).
                    let Some(&(_, size)) = spec.algorithms.iter().find(|(a, _)| *a == alg) else {
                        return Err(r.err_at(
                            hat,
                            ParseErrorKind::Invalid,
                            "TPMT_HA.hashAlg",
                            format!("{} is not declared in the Spec ID event", alg.name()),
                        ));
                    };
                    d.push((alg, r.take(size as usize, "TPMT_HA.digest")?.to_vec()));
                }
                d
            }
        };
        let data = event_data(&mut r)?;
        events.push(Event {
            number: events.len(),
            offset: at,
            pcr_index,
            event_type,
            digests,
            data: data.to_vec(),
        });
    }
    Ok(EventLog {
        format: if spec_id.is_some() {
            LogFormat::CryptoAgile
        } else {
            LogFormat::Sha1Legacy
        },
        spec_id,
        events,
        padding,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Build a crypto-agile log with sha1+sha256 banks; `events` are (pcr, type, data).
    pub fn agile_log(events: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut spec = SPEC_ID_EVENT03.to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes());
        spec.extend_from_slice(&[0, 2, 0, 2]);
        spec.extend_from_slice(&2u32.to_le_bytes());
        spec.extend_from_slice(&[0x04, 0x00, 20, 0, 0x0b, 0x00, 32, 0]);
        spec.push(0);
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        v.extend_from_slice(&[0u8; 20]);
        v.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        v.extend_from_slice(&spec);
        for (pcr, ty, data) in events {
            v.extend_from_slice(&pcr.to_le_bytes());
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&2u32.to_le_bytes());
            v.extend_from_slice(&[0x04, 0x00]);
            v.extend_from_slice(&[0x11; 20]);
            v.extend_from_slice(&[0x0b, 0x00]);
            v.extend_from_slice(&[0x22; 32]);
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    #[test]
    fn parses_agile() {
        let mut loc = STARTUP_LOCALITY.to_vec();
        loc.push(3);
        let b = agile_log(&[
            (0, EV_NO_ACTION, &loc),
            (0, 0x8, b"abc"),
            (0xffff_ffff, 0x1, b""),
        ]);
        let log = parse_event_log(&b, Platform::Tpm).unwrap();
        assert_eq!(log.format, LogFormat::CryptoAgile);
        assert_eq!(log.events.len(), 4);
        assert_eq!(log.startup_locality(), Some(3));
        assert_eq!(log.banks(), vec![TpmAlg::Sha1, TpmAlg::Sha256]);
        assert_eq!(log.events[2].data, b"abc");
    }

    #[test]
    fn padding_and_truncation() {
        let mut b = agile_log(&[(0, 0x8, b"abc")]);
        let full = b.len();
        b.extend_from_slice(&[0xff; 100]);
        let log = parse_event_log(&b, Platform::Tdx).unwrap();
        assert_eq!(log.padding, 100);
        for n in 1..full {
            let e = parse_event_log(&b[..n], Platform::Tdx);
            // A cut inside an entry is an error; a cut at a boundary is a shorter log.
            if let Err(e) = e {
                assert!(e.code().starts_with("tdx.format."));
            }
        }
    }

    #[test]
    fn zero_events_then_junk_is_linear() {
        // 16-byte all-zero crypto-agile events (PCR 0, type 0, no digests, no data) up to
        // the cap, then one non-zero byte: must fail fast, not rescan the tail per event.
        let mut b = agile_log(&[]);
        b.extend_from_slice(&vec![0u8; 16 * (MAX_EVENTS + 10)]);
        b.push(1);
        let t = std::time::Instant::now();
        let e = parse_event_log(&b, Platform::Tpm).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::TooLarge);
        assert!(t.elapsed().as_secs() < 5);
    }

    #[test]
    fn legacy() {
        let mut v = Vec::new();
        for i in 0..3u32 {
            v.extend_from_slice(&i.to_le_bytes());
            v.extend_from_slice(&0x8u32.to_le_bytes());
            v.extend_from_slice(&[i as u8; 20]);
            v.extend_from_slice(&1u32.to_le_bytes());
            v.push(b'x');
        }
        let log = parse_event_log(&v, Platform::Tpm).unwrap();
        assert_eq!(log.format, LogFormat::Sha1Legacy);
        assert_eq!(log.events.len(), 3);
    }

    #[test]
    fn oversized_event() {
        let mut b = agile_log(&[]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_event_log(&b, Platform::Tpm).unwrap_err().kind,
            ParseErrorKind::TooLarge
        );
    }
}
