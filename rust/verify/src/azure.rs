//! Azure CVM checks: what the runtime data's keys must be, the paravisor's binding of the
//! runtime data into the hardware report, the caller's user data and the vTPM AK's scheme.
//!
//! The containers are parsed by `sealgate_formats::azure` / `azure_runtime`; the hardware
//! report and the vTPM quote are verified by `crate::snp` and `crate::tpm`, the same
//! functions `verify snp` and `verify tpm` use. These are the decisions in between, each
//! failure with its stable code.

use crate::crypto::{hash, Hash};
use crate::failure::{hex, Failure};
use base64ct::{Base64UrlUnpadded, Encoding};
use sealgate_formats::azure_runtime::{Jwk, RuntimeData};
use sealgate_formats::tpm::{Signature, TpmAlg};
use std::borrow::Cow;

/// `user-data` is the 64 bytes of NV index 0x01400002.
pub const USER_DATA_LEN: usize = 64;
/// RSA moduli accepted for the AK (the vTPM's AK is RSA-2048).
pub const AK_MIN_BITS: usize = 2048;
pub const AK_MAX_BITS: usize = 4096;
/// TPM 2.0 Part 2 §6.3: TPM_ALG_RSASSA, TPM_ALG_SHA256.
const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_SHA256: u16 = 0x000B;

/// Bits of an unsigned big-endian magnitude.
pub fn rsa_bits(n: &[u8]) -> usize {
    match n.iter().position(|&b| b != 0) {
        None => 0,
        Some(i) => (n.len() - i - 1) * 8 + (8 - n[i].leading_zeros() as usize),
    }
}

/// The runtime data's checked keys: HCLAkPub (always present) and HCLEkPub (absent from
/// old reports), with the AK's modulus size.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub ak: &'a Jwk,
    pub ek: Option<&'a Jwk>,
    pub ak_bits: usize,
}

/// An RSA public JWK (RFC 7518 §6.3.1): `kty` RSA, `n` and `e` unsigned big-endian
/// values of minimal length (§6.3.1.1).
fn check_jwk(j: &Jwk) -> Result<(), Failure> {
    if j.kty != "RSA" {
        return Err(Failure::new(
            "azure.runtime_data.ak_unsupported",
            format!("{}: kty {:?}, not RSA", j.kid, j.kty),
        ));
    }
    if j.n.first().is_none_or(|&b| b == 0) || j.e.first().is_none_or(|&b| b == 0) {
        return Err(Failure::new(
            "azure.runtime_data.invalid",
            format!("{}: n/e are not minimal big-endian", j.kid),
        ));
    }
    Ok(())
}

/// What the keys must be: an AK that is an RSA-2048..4096 signing key with e = 65537
/// (`azure.runtime_data.ak_missing` / `ak_unsupported` / `invalid`). The first paravisor
/// releases wrote `key_ops: ["encrypt"]` for the AK; that exact form is accepted too.
pub fn check_keys(rt: &RuntimeData) -> Result<Keys<'_>, Failure> {
    let Some(ak) = rt.ak.as_ref() else {
        return Err(Failure::new(
            "azure.runtime_data.ak_missing",
            "runtime data carries no HCLAkPub",
        ));
    };
    check_jwk(ak)?;
    if let Some(ek) = &rt.ek {
        check_jwk(ek)?;
    }
    let ops = &ak.key_ops;
    let signs = ops.iter().any(|o| o == "sign") || ops.as_slice() == ["encrypt"];
    if !signs {
        return Err(Failure::new(
            "azure.runtime_data.ak_unsupported",
            format!("HCLAkPub key_ops {ops:?}"),
        ));
    }
    let bits = rsa_bits(&ak.n);
    if !(AK_MIN_BITS..=AK_MAX_BITS).contains(&bits) || ak.e != [1, 0, 1] {
        let e = if ak.e.len() <= 8 {
            ak.e.iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
                .to_string()
        } else {
            format!("0x{}", hex(&ak.e))
        };
        return Err(Failure::new(
            "azure.runtime_data.ak_unsupported",
            format!(
                "HCLAkPub is RSA-{bits} e={e}; RSA-{AK_MIN_BITS}..{AK_MAX_BITS} with e=65537 is accepted"
            ),
        ));
    }
    Ok(Keys {
        ak,
        ek: rt.ek.as_ref(),
        ak_bits: bits,
    })
}

/// RFC 7638 §3 JWK thumbprint of an RSA key: SHA-256 over the required members `e`, `kty`,
/// `n` in lexicographic order without whitespace, base64url without padding.
pub fn jwk_thumbprint(n: &[u8], e: &[u8]) -> String {
    let canon = format!(
        "{{\"e\":\"{}\",\"kty\":\"RSA\",\"n\":\"{}\"}}",
        b64url(e),
        b64url(n)
    );
    b64url(&hash(Hash::Sha256, &[canon.as_bytes()]))
}

/// The paravisor's binding (`report_data_hash_type` 1): report_data[0:32] = SHA-256 of the
/// runtime data as stored, report_data[32:64] zero.
pub fn check_binding(report_data: &[u8; 64], runtime_sha256: &[u8]) -> Option<Failure> {
    let mut expected = [0u8; 64];
    expected[..32].copy_from_slice(runtime_sha256);
    (report_data != &expected).then(|| {
        let (got, want) = (hex(report_data), hex(&expected));
        Failure::new(
            "azure.hcl.report_data_mismatch",
            format!(
                "hardware report_data {got}, expected SHA-256 of the runtime data followed by zeros ({want})"
            ),
        )
    })
}

/// `user-data` against what the caller expects, both zero-padded to 64 bytes (the NV
/// index is 64 bytes; a shorter value is its prefix). `want` longer than 64 bytes is a
/// usage error the caller refuses before this.
pub fn check_user_data(got: Option<&[u8]>, want: &[u8]) -> Option<Failure> {
    let pad = |b: &[u8]| {
        let mut v = b.to_vec();
        if v.len() < USER_DATA_LEN {
            v.resize(USER_DATA_LEN, 0);
        }
        v
    };
    let want = pad(want);
    match got {
        Some(g) if pad(g) == want => None,
        _ => Some(Failure::new(
            "azure.runtime_data.user_data_mismatch",
            format!(
                "user-data {}, expected {}",
                got.map(hex).unwrap_or_else(|| "absent".into()),
                hex(&want)
            ),
        )),
    }
}

/// A quote signature as TPMT_SIGNATURE: given as one already, or as the raw RSASSA
/// signature the vTPM APIs and trustee's JSON carry (exactly the modulus' length: a
/// TPMT_SIGNATURE of that key is 6 bytes longer, so the two never collide). The raw form is
/// RSASSA-PKCS1-v1_5 with SHA-256 (the HCL AK's scheme), wrapped as
/// TPMT_SIGNATURE{RSASSA, SHA-256, TPM2B} (TPM 2.0 Part 2 §11.3.4) for the one TPM verifier.
pub fn tpmt_signature(sig: &[u8], modulus_len: usize) -> Cow<'_, [u8]> {
    if sig.len() != modulus_len || modulus_len > usize::from(u16::MAX) {
        return Cow::Borrowed(sig);
    }
    let mut out = Vec::with_capacity(6 + sig.len());
    out.extend_from_slice(&TPM_ALG_RSASSA.to_be_bytes());
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    out.extend_from_slice(&(sig.len() as u16).to_be_bytes());
    out.extend_from_slice(sig);
    Cow::Owned(out)
}

/// The HCL AK signs RSASSA-PKCS1-v1_5 with SHA-256; a JWK carries no TPM scheme, so the
/// verifier pins it rather than accept what the quote says.
pub fn check_ak_scheme(sig: &Signature) -> Option<Failure> {
    let (scheme, h) = (sig.scheme(), sig.hash());
    (scheme != TpmAlg::RsaSsa || h != TpmAlg::Sha256).then(|| {
        Failure::new(
            "tpm.quote.unsupported_scheme",
            format!(
                "vTPM quote signed {}/{}; the HCL AK signs rsassa/sha256",
                scheme.name(),
                h.name()
            ),
        )
    })
}

/// base64url without padding (RFC 4648 §5; RFC 7515 §2), for the thumbprint.
fn b64url(b: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(kid: &str, n: Vec<u8>, ops: &[&str]) -> Jwk {
        Jwk {
            kid: kid.into(),
            kty: "RSA".into(),
            n,
            e: vec![1, 0, 1],
            key_ops: ops.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn rt(ak: Option<Jwk>) -> RuntimeData {
        RuntimeData {
            ak,
            ek: None,
            vm_configuration: vec![],
            user_data: None,
        }
    }

    #[test]
    fn bits_and_base64url() {
        assert_eq!(rsa_bits(&[0, 0x80, 0]), 16);
        assert_eq!(rsa_bits(&[1]), 1);
        assert_eq!(rsa_bits(&[0, 0]), 0);
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1: the example RSA key's thumbprint.
        let n_b64 = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = Base64UrlUnpadded::decode_vec(n_b64).unwrap();
        assert_eq!(
            jwk_thumbprint(&n, &[1, 0, 1]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn keys_are_checked() {
        let n = {
            let mut n = vec![0xc5u8; 256];
            n[255] |= 1;
            n
        };
        assert_eq!(
            check_keys(&rt(None)).unwrap_err().code,
            "azure.runtime_data.ak_missing"
        );
        let good = rt(Some(jwk("HCLAkPub", n.clone(), &["sign"])));
        assert_eq!(check_keys(&good).unwrap().ak_bits, 2048);
        assert!(check_keys(&rt(Some(jwk("HCLAkPub", n.clone(), &["encrypt"])))).is_ok());
        let e = check_keys(&rt(Some(jwk("HCLAkPub", n.clone(), &["encrypt", "x"])))).unwrap_err();
        assert_eq!(e.code, "azure.runtime_data.ak_unsupported");
        assert_eq!(e.message, r#"HCLAkPub key_ops ["encrypt", "x"]"#);
        let e = check_keys(&rt(Some(jwk("HCLAkPub", n[..128].to_vec(), &["sign"])))).unwrap_err();
        assert!(e.message.starts_with("HCLAkPub is RSA-1024 e=65537"));
        let mut lead = n.clone();
        lead.insert(0, 0);
        let e = check_keys(&rt(Some(jwk("HCLAkPub", lead, &["sign"])))).unwrap_err();
        assert_eq!(e.code, "azure.runtime_data.invalid");
        let mut ec = jwk("HCLAkPub", n, &["sign"]);
        ec.kty = "EC".into();
        assert_eq!(
            check_keys(&rt(Some(ec))).unwrap_err().code,
            "azure.runtime_data.ak_unsupported"
        );
    }

    #[test]
    fn binding_and_user_data() {
        let sha = [7u8; 32];
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(&sha);
        assert!(check_binding(&rd, &sha).is_none());
        rd[63] = 1;
        assert_eq!(
            check_binding(&rd, &sha).unwrap().code,
            "azure.hcl.report_data_mismatch"
        );
        assert!(check_user_data(Some(&[1, 2]), &[1, 2, 0]).is_none());
        assert!(check_user_data(Some(&[1, 2]), &[1, 3]).is_some());
        let f = check_user_data(None, &[1]).unwrap();
        assert!(f.message.starts_with("user-data absent, expected 01000000"));
    }

    #[test]
    fn raw_signatures_are_wrapped_once() {
        let raw = [9u8; 256];
        let t = tpmt_signature(&raw, 256);
        assert_eq!(&t[..6], &[0x00, 0x14, 0x00, 0x0b, 0x01, 0x00]);
        assert_eq!(tpmt_signature(&t, 256), t);
    }
}
