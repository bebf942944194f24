//! TPMT_PUBLIC / TPM2B_PUBLIC for RSA and ECC keys (Part 2, §12.2.4 and §12.2.5).
//!
//! The Name of an object is nameAlg ‖ H_nameAlg(TPMT_PUBLIC) (Part 1, §16); the hash is done
//! by the verify crate over `Public::raw`, which is kept exactly as received.

use crate::error::{ParseErrorKind, Platform, Result};
use crate::reader::Reader;
use crate::tpm::alg::{EccCurve, TpmAlg};

/// TPM2B_PUBLIC_KEY_RSA max: MAX_RSA_KEY_BYTES = 512 (RSA-4096).
pub const MAX_RSA_KEY_BYTES: usize = 512;
/// TPM2B_ECC_PARAMETER max: MAX_ECC_KEY_BYTES = 66 (P-521).
pub const MAX_ECC_KEY_BYTES: usize = 66;
/// TPM2B_DIGEST (authPolicy) max: SHA-512.
pub const MAX_POLICY_SIZE: usize = 64;
/// Upper bound on a TPMT_PUBLIC: header + 64-byte policy + parms + 512-byte modulus < 1 KiB.
pub const MAX_PUBLIC_SIZE: usize = 1024;

/// TPMA_OBJECT bits (Part 2, §8.3.2 Table 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const ST_CLEAR: u32 = 1 << 2;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN_ENCRYPT: u32 = 1 << 18;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit == bit
    }

    /// An attestation key: restricted signing key that never leaves its TPM
    /// (TCG "TPM 2.0 Keys for Device Identity and Attestation", §4: AK attributes).
    pub fn is_restricted_signing(self) -> bool {
        self.has(Self::RESTRICTED) && self.has(Self::SIGN_ENCRYPT) && !self.has(Self::DECRYPT)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaParms {
    pub symmetric: TpmAlg,
    pub scheme: TpmAlg,
    pub scheme_hash: Option<TpmAlg>,
    pub key_bits: u16,
    /// Public exponent; the wire value 0 means the default 65537 (Part 2, §12.2.3.5).
    pub exponent: u32,
    pub modulus: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccParms {
    pub symmetric: TpmAlg,
    pub scheme: TpmAlg,
    pub scheme_hash: Option<TpmAlg>,
    pub curve: EccCurve,
    pub kdf: TpmAlg,
    pub x: Vec<u8>,
    pub y: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParms {
    Rsa(RsaParms),
    Ecc(EccParms),
}

/// A parsed TPMT_PUBLIC with its exact bytes (`raw`) for Name computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub name_alg: TpmAlg,
    pub attributes: ObjectAttributes,
    pub auth_policy: Vec<u8>,
    pub parms: PublicParms,
    pub raw: Vec<u8>,
}

fn sym_def_object(r: &mut Reader<'_>) -> Result<TpmAlg> {
    // TPMT_SYM_DEF_OBJECT (§11.1.7): algorithm, then keyBits and mode unless TPM_ALG_NULL.
    let alg = TpmAlg::from_u16(r.u16_be("TPMT_SYM_DEF_OBJECT.algorithm")?);
    if alg != TpmAlg::Null {
        r.u16_be("TPMT_SYM_DEF_OBJECT.keyBits")?;
        r.u16_be("TPMT_SYM_DEF_OBJECT.mode")?;
    }
    Ok(alg)
}

fn scheme_with_hash(r: &mut Reader<'_>, field: &'static str) -> Result<(TpmAlg, Option<TpmAlg>)> {
    // TPMT_RSA_SCHEME / TPMT_ECC_SCHEME (§11.2.4.2, §11.2.5.6): the details union holds a
    // hashAlg for every scheme except NULL and RSAES; ECDAA adds a count.
    let scheme = TpmAlg::from_u16(r.u16_be(field)?);
    let hash = match scheme {
        TpmAlg::Null | TpmAlg::RsaEs => None,
        TpmAlg::Ecdaa => {
            let h = TpmAlg::from_u16(r.u16_be("TPMS_SCHEME_ECDAA.hashAlg")?);
            r.u16_be("TPMS_SCHEME_ECDAA.count")?;
            Some(h)
        }
        _ => Some(TpmAlg::from_u16(r.u16_be("TPMS_SCHEME_HASH.hashAlg")?)),
    };
    Ok((scheme, hash))
}

/// Parse a TPMT_PUBLIC that must consume `buf` exactly.
pub fn parse_public(buf: &[u8]) -> Result<Public> {
    let mut r = Reader::new(buf, Platform::Tpm);
    if buf.len() > MAX_PUBLIC_SIZE {
        return Err(r.err(
            ParseErrorKind::TooLarge,
            "TPMT_PUBLIC",
            format!("{} bytes, at most {}", buf.len(), MAX_PUBLIC_SIZE),
        ));
    }
    let ty = TpmAlg::from_u16(r.u16_be("TPMT_PUBLIC.type")?);
    let nat = r.offset();
    let name_alg = TpmAlg::from_u16(r.u16_be("TPMT_PUBLIC.nameAlg")?);
    if name_alg.digest_size().is_none() {
        return Err(r.err_at(
            nat,
            ParseErrorKind::Invalid,
            "TPMT_PUBLIC.nameAlg",
            format!("{} is not a hash algorithm", name_alg.name()),
        ));
    }
    let attributes = ObjectAttributes(r.u32_be("TPMT_PUBLIC.objectAttributes")?);
    let auth_policy = r.tpm2b("TPMT_PUBLIC.authPolicy", MAX_POLICY_SIZE)?.to_vec();
    let parms = match ty {
        TpmAlg::Rsa => {
            let symmetric = sym_def_object(&mut r)?;
            let (scheme, scheme_hash) = scheme_with_hash(&mut r, "TPMT_RSA_SCHEME.scheme")?;
            let key_bits = r.u16_be("TPMS_RSA_PARMS.keyBits")?;
            let exponent = r.u32_be("TPMS_RSA_PARMS.exponent")?;
            let mat = r.offset();
            let modulus = r
                .tpm2b("TPMT_PUBLIC.unique.rsa", MAX_RSA_KEY_BYTES)?
                .to_vec();
            if modulus.len() * 8 != key_bits as usize {
                return Err(r.err_at(
                    mat,
                    ParseErrorKind::Invalid,
                    "TPMT_PUBLIC.unique.rsa",
                    format!(
                        "modulus is {} bits, keyBits says {}",
                        modulus.len() * 8,
                        key_bits
                    ),
                ));
            }
            PublicParms::Rsa(RsaParms {
                symmetric,
                scheme,
                scheme_hash,
                key_bits,
                exponent: if exponent == 0 { 65537 } else { exponent },
                modulus,
            })
        }
        TpmAlg::Ecc => {
            let symmetric = sym_def_object(&mut r)?;
            let (scheme, scheme_hash) = scheme_with_hash(&mut r, "TPMT_ECC_SCHEME.scheme")?;
            let curve = EccCurve::from_u16(r.u16_be("TPMS_ECC_PARMS.curveID")?);
            let kdf = TpmAlg::from_u16(r.u16_be("TPMT_KDF_SCHEME.scheme")?);
            if kdf != TpmAlg::Null {
                r.u16_be("TPMT_KDF_SCHEME.hashAlg")?;
            }
            let x = r.tpm2b("TPMS_ECC_POINT.x", MAX_ECC_KEY_BYTES)?.to_vec();
            let y = r.tpm2b("TPMS_ECC_POINT.y", MAX_ECC_KEY_BYTES)?.to_vec();
            PublicParms::Ecc(EccParms {
                symmetric,
                scheme,
                scheme_hash,
                curve,
                kdf,
                x,
                y,
            })
        }
        other => {
            return Err(r.err_at(
                0,
                ParseErrorKind::Unsupported,
                "TPMT_PUBLIC.type",
                format!("{} keys are not supported (RSA or ECC only)", other.name()),
            ))
        }
    };
    r.expect_end("TPMT_PUBLIC")?;
    Ok(Public {
        name_alg,
        attributes,
        auth_policy,
        parms,
        raw: buf.to_vec(),
    })
}

/// Accept TPMT_PUBLIC or TPM2B_PUBLIC. A TPMT_PUBLIC starts with its type (RSA 0x0001,
/// KEYEDHASH 0x0008, ECC 0x0023, SYMCIPHER 0x0025); no TPM2B_PUBLIC is that small, so any
/// other first u16 is a TPM2B size, which must then match the rest exactly.
pub fn parse_public_any(buf: &[u8]) -> Result<Public> {
    if buf.len() < 2 {
        return parse_public(buf);
    }
    let first = u16::from_be_bytes([buf[0], buf[1]]);
    if matches!(first, 0x0001 | 0x0008 | 0x0023 | 0x0025) {
        return parse_public(buf);
    }
    let mut r = Reader::new(buf, Platform::Tpm);
    let inner = r.tpm2b("TPM2B_PUBLIC.size", MAX_PUBLIC_SIZE)?;
    r.expect_end("TPM2B_PUBLIC")?;
    parse_public(inner).map_err(|mut e| {
        e.offset += 2;
        e
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn rsa_ak() -> Vec<u8> {
        let mut v = vec![0x00, 0x01, 0x00, 0x0b];
        v.extend_from_slice(&0x0005_0072u32.to_be_bytes());
        v.extend_from_slice(&[0, 0]); // authPolicy
        v.extend_from_slice(&[0x00, 0x10]); // symmetric NULL
        v.extend_from_slice(&[0x00, 0x14, 0x00, 0x0b]); // RSASSA-SHA256
        v.extend_from_slice(&2048u16.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&256u16.to_be_bytes());
        v.extend_from_slice(&[0xC5; 256]);
        v
    }

    #[test]
    fn parses_rsa() {
        let b = rsa_ak();
        let p = parse_public(&b).unwrap();
        assert!(p.attributes.is_restricted_signing());
        match p.parms {
            PublicParms::Rsa(r) => {
                assert_eq!(r.exponent, 65537);
                assert_eq!(r.scheme, TpmAlg::RsaSsa);
                assert_eq!(r.scheme_hash, Some(TpmAlg::Sha256));
            }
            _ => panic!("not rsa"),
        }
        let mut w = (b.len() as u16).to_be_bytes().to_vec();
        w.extend_from_slice(&b);
        assert_eq!(parse_public_any(&w).unwrap().raw, b);
    }

    #[test]
    fn rejects() {
        let b = rsa_ak();
        for n in 0..b.len() {
            assert!(parse_public(&b[..n]).is_err());
        }
        let mut b2 = b.clone();
        b2[1] = 0x08; // keyedhash
        assert_eq!(
            parse_public(&b2).unwrap_err().kind,
            ParseErrorKind::Unsupported
        );
        let mut b3 = b.clone();
        b3.push(0);
        assert_eq!(
            parse_public(&b3).unwrap_err().kind,
            ParseErrorKind::TrailingBytes
        );
    }
}
