//! TPM 2.0 quote verification (TPM 2.0 Part 3, §18.4 TPM2_Quote; Part 1, §36 Attestation).

use crate::crypto::{self, CryptoError, Curve, Hash, Scheme, VerifyingKey};
use crate::eventlog::{hash_of, PcrMap};
use crate::failure::{hex, Failure};
use sealgate_formats::tpm::{
    Attest, EccCurve, PcrSelectionList, Public, PublicParms, Signature, TpmAlg,
};

/// An attestation key: its TPM public area when known (needed for the restricted-signing
/// check and the Name), and the verifying key.
#[derive(Debug)]
pub struct AkKey {
    pub public: Option<Public>,
    pub key: VerifyingKey,
}

impl AkKey {
    pub fn from_public(public: Public) -> Result<Self, Failure> {
        let key = match &public.parms {
            PublicParms::Rsa(r) => VerifyingKey::rsa(&r.modulus, &r.exponent.to_be_bytes()),
            PublicParms::Ecc(e) => match e.curve {
                EccCurve::NistP256 => VerifyingKey::ec(Curve::P256, &e.x, &e.y),
                EccCurve::NistP384 => VerifyingKey::ec(Curve::P384, &e.x, &e.y),
                other => Err(CryptoError::Unsupported(format!("curve {}", other.name()))),
            },
        }
        .map_err(|e| Failure::new("tpm.ak.unsupported_key", format!("{:?}", e)))?;
        Ok(AkKey {
            public: Some(public),
            key,
        })
    }

    /// An RSA key without TPM attributes (from an SPKI): restricted-signing is unknown.
    pub fn from_rsa(modulus: &[u8], exponent: &[u8]) -> Result<Self, Failure> {
        Self::bare(VerifyingKey::rsa(modulus, exponent))
    }

    /// An EC key without TPM attributes (from an SPKI).
    pub fn from_ecc(curve: Curve, x: &[u8], y: &[u8]) -> Result<Self, Failure> {
        Self::bare(VerifyingKey::ec(curve, x, y))
    }

    fn bare(key: Result<VerifyingKey, CryptoError>) -> Result<Self, Failure> {
        let key = key.map_err(|e| Failure::new("tpm.ak.unsupported_key", format!("{e:?}")))?;
        Ok(AkKey { public: None, key })
    }

    /// The AK's TPM Name, nameAlg ‖ H(TPMT_PUBLIC) (Part 1, §16).
    pub fn name(&self) -> Option<Vec<u8>> {
        self.public.as_ref().and_then(public_name)
    }
}

/// nameAlg ‖ H_nameAlg(TPMT_PUBLIC) (Part 1, §16); `None` if the name algorithm is not one
/// sealgate can compute.
pub fn public_name(p: &Public) -> Option<Vec<u8>> {
    let h = hash_of(p.name_alg)?;
    let mut name = p.name_alg.to_u16().to_be_bytes().to_vec();
    name.extend_from_slice(&crypto::hash(h, &[&p.raw]));
    Some(name)
}

/// Where quote verification reads PCR values from: a `PcrMap`, or values borrowed from the
/// caller without copying (the Python binding).
pub trait PcrSource {
    fn pcr(&self, bank: TpmAlg, index: u32) -> Option<&[u8]>;
}

impl PcrSource for PcrMap {
    fn pcr(&self, bank: TpmAlg, index: u32) -> Option<&[u8]> {
        self.get(&bank)
            .and_then(|b| b.get(&index))
            .map(|v| v.as_slice())
    }
}

/// What the caller demands of the quote.
#[derive(Debug, Default)]
pub struct QuoteExpectations<'a> {
    /// extraData must equal this (the challenge binding). `None`: not checked.
    pub nonce: Option<&'a [u8]>,
    /// The quote must select at least these PCRs.
    pub min_selection: Option<&'a PcrSelectionList>,
}

/// Outcome of checking one quote. `failures` empty means verified.
#[derive(Debug, Default)]
pub struct QuoteOutcome {
    pub failures: Vec<Failure>,
    /// The scheme hash is SHA-1: verified, but policy should refuse it.
    pub weak_hash: bool,
    /// Whether the AK is a restricted signing key (`None` when only an SPKI was given).
    pub ak_restricted: Option<bool>,
}

fn scheme_of(sig: &Signature) -> Scheme {
    match sig {
        Signature::Rsa {
            scheme: TpmAlg::RsaPss,
            ..
        } => Scheme::RsaPss,
        Signature::Rsa { .. } => Scheme::RsaPkcs1v15,
        Signature::Ecdsa { .. } => Scheme::Ecdsa,
    }
}

/// Check a TPMT_SIGNATURE over `message` with `key` (no quote semantics).
pub fn verify_signature(
    key: &VerifyingKey,
    message: &[u8],
    sig: &Signature,
) -> Result<(), CryptoError> {
    let h = hash_of(sig.hash())
        .ok_or_else(|| CryptoError::Unsupported(format!("hash {}", sig.hash().name())))?;
    match sig {
        Signature::Rsa { sig: s, .. } => key.verify_rsa(scheme_of(sig), h, message, s),
        Signature::Ecdsa { r, s, .. } => key.verify_ecdsa(h, message, r, s),
    }
}

/// Verify one quote: the AK's signature over the exact TPMS_ATTEST bytes, the AK's
/// attributes, the nonce, and the pcrDigest against `pcrs` (bank → index → value).
/// Every failure is reported, not just the first.
pub fn verify_quote(
    signed: &[u8],
    attest: &Attest,
    sig: &Signature,
    ak: &AkKey,
    pcrs: &impl PcrSource,
    exp: &QuoteExpectations<'_>,
) -> QuoteOutcome {
    let mut out = QuoteOutcome::default();

    // 1. The AK must be a restricted signing key: only then does the TPM refuse to sign
    //    external data that starts with TPM_GENERATED_VALUE, so a TPMS_ATTEST signed by it
    //    really came from the TPM (Part 1, §25.2.2 "Restricted Signing Key").
    if let Some(p) = &ak.public {
        let ok = p.attributes.is_restricted_signing();
        out.ak_restricted = Some(ok);
        if !ok {
            out.failures.push(Failure::new(
                "tpm.ak.not_restricted_signing",
                format!(
                    "AK objectAttributes 0x{:08x} lack restricted|sign (or set decrypt)",
                    p.attributes.0
                ),
            ));
        }
        // A restricted key with a fixed scheme can only sign with that scheme.
        let (scheme, scheme_hash) = match &p.parms {
            PublicParms::Rsa(r) => (r.scheme, r.scheme_hash),
            PublicParms::Ecc(e) => (e.scheme, e.scheme_hash),
        };
        if scheme != TpmAlg::Null && (scheme != sig.scheme() || scheme_hash != Some(sig.hash())) {
            out.failures.push(Failure::new(
                "tpm.quote.scheme_mismatch",
                format!(
                    "signature is {}/{}, the AK's scheme is {}/{}",
                    sig.scheme().name(),
                    sig.hash().name(),
                    scheme.name(),
                    scheme_hash.map(|h| h.name()).unwrap_or_default()
                ),
            ));
        }
    }

    // 2. The signature over the TPMS_ATTEST bytes.
    let h = hash_of(sig.hash()).expect("parser admits only SHA-1/256/384/512");
    out.weak_hash = h == Hash::Sha1;
    match verify_signature(&ak.key, signed, sig) {
        Ok(()) => {}
        Err(CryptoError::BadSignature) => out.failures.push(Failure::new(
            "tpm.quote.signature_invalid",
            format!(
                "{}/{} signature does not verify with the AK",
                sig.scheme().name(),
                sig.hash().name()
            ),
        )),
        Err(CryptoError::Unsupported(m)) | Err(CryptoError::BadKey(m)) => out
            .failures
            .push(Failure::new("tpm.quote.unsupported_scheme", m)),
    }

    // 3. Freshness: extraData carries the verifier's challenge binding.
    if let Some(n) = exp.nonce {
        if attest.extra_data != n {
            out.failures.push(Failure::new(
                "tpm.quote.nonce_mismatch",
                format!(
                    "extraData is {}, expected {}",
                    hex(&attest.extra_data),
                    hex(n)
                ),
            ));
        }
    }

    // 4. Minimum selection.
    if let Some(min) = exp.min_selection {
        if !attest.quote.pcr_select.covers(min) {
            out.failures.push(Failure::new(
                "tpm.quote.selection_insufficient",
                format!(
                    "quote selects {}, required {}",
                    selection_string(&attest.quote.pcr_select),
                    selection_string(min)
                ),
            ));
        }
    }

    // 5. pcrDigest = H(PCR values of the selection, banks in listed order, index ascending),
    //    H the signing scheme's hash (Part 3, §18.4.1; Part 1, §17.6.5).
    let mut hasher = crypto::Hasher::new(h);
    let mut missing = Vec::new();
    let mut bad_len = Vec::new();
    for sel in &attest.quote.pcr_select.selections {
        for idx in &sel.pcrs {
            match pcrs.pcr(sel.hash, *idx) {
                Some(v) => {
                    if Some(v.len()) != sel.hash.digest_size() {
                        bad_len.push(format!("{}:{} ({} bytes)", sel.hash.name(), idx, v.len()));
                    }
                    hasher.update(v);
                }
                None => missing.push(format!("{}:{}", sel.hash.name(), idx)),
            }
        }
    }
    if !missing.is_empty() {
        out.failures.push(Failure::new(
            "tpm.quote.pcr_missing",
            format!("no value supplied for quoted PCR {}", missing.join(", ")),
        ));
    } else if !bad_len.is_empty() {
        out.failures.push(Failure::new(
            "tpm.quote.pcr_value_invalid",
            format!("PCR values of the wrong length: {}", bad_len.join(", ")),
        ));
    } else {
        let digest = hasher.finish();
        if digest != attest.quote.pcr_digest {
            out.failures.push(Failure::new(
                "tpm.quote.pcr_digest_mismatch",
                format!(
                    "pcrDigest is {}, the supplied PCR values hash to {}",
                    hex(&attest.quote.pcr_digest),
                    hex(&digest)
                ),
            ));
        }
    }
    out
}

/// `sha256:0,1,2+sha1:0` — the tpm2-tools selection syntax.
pub fn selection_string(s: &PcrSelectionList) -> String {
    s.selections
        .iter()
        .map(|b| {
            let idx: Vec<String> = b.pcrs.iter().map(|i| i.to_string()).collect();
            format!("{}:{}", b.hash.name(), idx.join(","))
        })
        .collect::<Vec<_>>()
        .join("+")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyKind;
    use aws_lc_rs::signature::KeyPair;

    #[test]
    fn bare_keys_without_tpm_attributes() {
        let (_, kp) = crate::crypto::tests::p256_pair();
        let pt = kp.public_key().as_ref();
        let ak = AkKey::from_ecc(Curve::P256, &pt[1..33], &pt[33..65]).unwrap();
        assert!(ak.public.is_none() && ak.name().is_none());
        assert_eq!(ak.key.kind(), KeyKind::Ec(Curve::P256));
        // An off-curve point and an empty modulus are `tpm.ak.unsupported_key`.
        let bad = AkKey::from_ecc(Curve::P256, &pt[1..33], &[2; 32]).unwrap_err();
        assert_eq!(bad.code, "tpm.ak.unsupported_key");
        let bad = AkKey::from_rsa(&[], &[1, 0, 1]).unwrap_err();
        assert_eq!(bad.code, "tpm.ak.unsupported_key");
    }
}
