//! The setup file `scripts/bench_service.py` writes: where the server is, the key to ask for
//! and its expected bytes, and each client's node identity and evidence material. Binary
//! fields are hex strings.

use serde::Deserialize;

/// Upper bound on clients in one setup: the benchmark uses 32; more would be a typo.
pub const MAX_CLIENTS: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// host:port of the gRPC server (plaintext, loopback).
    pub address: String,
    /// "tpm", "snp" or "tdx".
    pub platform: String,
    pub key_id: String,
    /// The model key the benchmark imported; every opened key must equal it.
    pub expected_key: String,
    pub clients: Vec<Client>,
    /// SNP: one report template shared by all clients (a synthetic CVM).
    #[serde(default)]
    pub snp: Option<SnpSetup>,
    /// TDX: one quote template shared by all clients (a synthetic TD).
    #[serde(default)]
    pub tdx: Option<TdxSetup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub node_id: String,
    /// TPM: the AK this node enrolled with.
    #[serde(default)]
    pub tpm: Option<TpmSetup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmSetup {
    /// The AK's P-256 private key, PKCS#8 DER.
    pub ak_pkcs8: String,
    /// The AK's Name (nameAlg ‖ digest of its TPMT_PUBLIC), the quote's qualifiedSigner.
    pub ak_name: String,
    /// TPMS_CLOCK_INFO.clock of the last quote; each quote adds one.
    pub clock: u64,
    /// TPMS_ATTEST.firmwareVersion.
    pub firmware_version: u64,
    /// (index, value) of the quoted SHA-256 PCRs, in index order.
    pub pcrs: Vec<(u8, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpSetup {
    /// A signed ATTESTATION_REPORT; REPORT_DATA and the signature are replaced per flow.
    pub report: String,
    /// The VCEK's P-384 private key, PKCS#8 DER.
    pub vcek_pkcs8: String,
    /// SnpEvidence.vcek and .cert_chain, passed through.
    pub vcek: String,
    pub cert_chain: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxSetup {
    /// A signed quote; REPORTDATA and the attestation key's signature are replaced per flow.
    pub quote: String,
    /// The attestation key (P-256), PKCS#8 DER.
    pub attestation_key_pkcs8: String,
    /// TdxEvidence.collateral, passed through.
    pub collateral: String,
}

impl Setup {
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Setup = serde_json::from_str(text).map_err(|e| format!("setup: {e}"))?;
        if s.clients.is_empty() || s.clients.len() > MAX_CLIENTS {
            return Err(format!(
                "setup: {} clients, expected 1..={MAX_CLIENTS}",
                s.clients.len()
            ));
        }
        Ok(s)
    }
}

/// Lowercase or uppercase hex, even length.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(format!("odd-length hex ({} digits)", b.len()));
    }
    b.chunks(2)
        .map(|p| match (nibble(p[0]), nibble(p[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err("not hex".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_table() {
        let cases: [(&str, Result<Vec<u8>, ()>); 5] = [
            ("", Ok(vec![])),
            ("00ff", Ok(vec![0, 255])),
            ("AbCd", Ok(vec![0xab, 0xcd])),
            ("abc", Err(())),
            ("zz", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(unhex(input).map_err(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn setup_rejects_unknown_fields_and_no_clients() {
        let base = r#"{"address":"a","platform":"tpm","key_id":"k","expected_key":"00""#;
        assert!(Setup::parse(&format!("{base},\"clients\":[]}}")).is_err());
        assert!(Setup::parse(&format!(
            "{base},\"clients\":[{{\"node_id\":\"n\"}}],\"extra\":1}}"
        ))
        .is_err());
        assert!(Setup::parse(&format!("{base},\"clients\":[{{\"node_id\":\"n\"}}]}}")).is_ok());
    }
}
