//! TPMT_SIGNATURE (Part 2, §11.3.4) for RSASSA, RSAPSS and ECDSA.

use crate::error::{ParseErrorKind, Platform, Result};
use crate::reader::Reader;
use crate::tpm::alg::TpmAlg;
use crate::tpm::public::{MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// TPMS_SIGNATURE_RSA with sigAlg RSASSA (PKCS#1 v1.5) or RSAPSS.
    Rsa {
        scheme: TpmAlg,
        hash: TpmAlg,
        sig: Vec<u8>,
    },
    /// TPMS_SIGNATURE_ECC with sigAlg ECDSA; r and s as big-endian integers.
    Ecdsa {
        hash: TpmAlg,
        r: Vec<u8>,
        s: Vec<u8>,
    },
}

impl Signature {
    pub fn scheme(&self) -> TpmAlg {
        match self {
            Signature::Rsa { scheme, .. } => *scheme,
            Signature::Ecdsa { .. } => TpmAlg::Ecdsa,
        }
    }

    pub fn hash(&self) -> TpmAlg {
        match self {
            Signature::Rsa { hash, .. } | Signature::Ecdsa { hash, .. } => *hash,
        }
    }
}

/// Parse a TPMT_SIGNATURE that must consume `buf` exactly.
pub fn parse_signature(buf: &[u8]) -> Result<Signature> {
    let mut r = Reader::new(buf, Platform::Tpm);
    let alg = TpmAlg::from_u16(r.u16_be("TPMT_SIGNATURE.sigAlg")?);
    let hat = r.offset();
    let sig = match alg {
        TpmAlg::RsaSsa | TpmAlg::RsaPss => {
            let hash = TpmAlg::from_u16(r.u16_be("TPMS_SIGNATURE_RSA.hash")?);
            check_hash(&r, hat, hash)?;
            let sig = r
                .tpm2b("TPMS_SIGNATURE_RSA.sig", MAX_RSA_KEY_BYTES)?
                .to_vec();
            Signature::Rsa {
                scheme: alg,
                hash,
                sig,
            }
        }
        TpmAlg::Ecdsa => {
            let hash = TpmAlg::from_u16(r.u16_be("TPMS_SIGNATURE_ECC.hash")?);
            check_hash(&r, hat, hash)?;
            let rr = r
                .tpm2b("TPMS_SIGNATURE_ECC.signatureR", MAX_ECC_KEY_BYTES)?
                .to_vec();
            let ss = r
                .tpm2b("TPMS_SIGNATURE_ECC.signatureS", MAX_ECC_KEY_BYTES)?
                .to_vec();
            Signature::Ecdsa { hash, r: rr, s: ss }
        }
        other => {
            return Err(r.err_at(
                0,
                ParseErrorKind::Unsupported,
                "TPMT_SIGNATURE.sigAlg",
                format!(
                    "{} signatures are not supported (RSASSA, RSAPSS, ECDSA)",
                    other.name()
                ),
            ))
        }
    };
    r.expect_end("TPMT_SIGNATURE")?;
    Ok(sig)
}

fn check_hash(r: &Reader<'_>, at: usize, hash: TpmAlg) -> Result<()> {
    match hash {
        TpmAlg::Sha1 | TpmAlg::Sha256 | TpmAlg::Sha384 | TpmAlg::Sha512 => Ok(()),
        other => Err(r.err_at(
            at,
            ParseErrorKind::Unsupported,
            "TPMT_SIGNATURE.hash",
            format!("{} is not a supported signature hash", other.name()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_and_rsa() {
        let mut b = vec![0x00, 0x18, 0x00, 0x0b, 0x00, 0x20];
        b.extend_from_slice(&[1u8; 32]);
        b.extend_from_slice(&[0x00, 0x20]);
        b.extend_from_slice(&[2u8; 32]);
        match parse_signature(&b).unwrap() {
            Signature::Ecdsa { hash, r, s } => {
                assert_eq!(hash, TpmAlg::Sha256);
                assert_eq!(r, vec![1u8; 32]);
                assert_eq!(s, vec![2u8; 32]);
            }
            _ => panic!(),
        }
        let mut b = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
        b.extend_from_slice(&[3u8; 256]);
        assert_eq!(parse_signature(&b).unwrap().scheme(), TpmAlg::RsaSsa);
        let b = [0x00, 0x05, 0x00, 0x0b];
        assert_eq!(
            parse_signature(&b).unwrap_err().kind,
            ParseErrorKind::Unsupported
        );
    }
}
