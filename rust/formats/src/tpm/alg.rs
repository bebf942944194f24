//! TPM_ALG_ID and TPM_ECC_CURVE constants (Part 2, §6.3 Table 9 and §6.4 Table 10).

/// The algorithm identifiers sealgate understands. Anything else is `Other(id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TpmAlg {
    Rsa,
    Sha1,
    Hmac,
    Aes,
    KeyedHash,
    Sha256,
    Sha384,
    Sha512,
    Null,
    Sm3_256,
    RsaSsa,
    RsaEs,
    RsaPss,
    Oaep,
    Ecdsa,
    Ecdh,
    Ecdaa,
    Sm2,
    EcSchnorr,
    Ecc,
    SymCipher,
    Cfb,
    Other(u16),
}

impl TpmAlg {
    pub fn from_u16(v: u16) -> Self {
        match v {
            0x0001 => TpmAlg::Rsa,
            0x0004 => TpmAlg::Sha1,
            0x0005 => TpmAlg::Hmac,
            0x0006 => TpmAlg::Aes,
            0x0008 => TpmAlg::KeyedHash,
            0x000B => TpmAlg::Sha256,
            0x000C => TpmAlg::Sha384,
            0x000D => TpmAlg::Sha512,
            0x0010 => TpmAlg::Null,
            0x0012 => TpmAlg::Sm3_256,
            0x0014 => TpmAlg::RsaSsa,
            0x0015 => TpmAlg::RsaEs,
            0x0016 => TpmAlg::RsaPss,
            0x0017 => TpmAlg::Oaep,
            0x0018 => TpmAlg::Ecdsa,
            0x0019 => TpmAlg::Ecdh,
            0x001A => TpmAlg::Ecdaa,
            0x001B => TpmAlg::Sm2,
            0x001C => TpmAlg::EcSchnorr,
            0x0023 => TpmAlg::Ecc,
            0x0025 => TpmAlg::SymCipher,
            0x0043 => TpmAlg::Cfb,
            other => TpmAlg::Other(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        match self {
            TpmAlg::Rsa => 0x0001,
            TpmAlg::Sha1 => 0x0004,
            TpmAlg::Hmac => 0x0005,
            TpmAlg::Aes => 0x0006,
            TpmAlg::KeyedHash => 0x0008,
            TpmAlg::Sha256 => 0x000B,
            TpmAlg::Sha384 => 0x000C,
            TpmAlg::Sha512 => 0x000D,
            TpmAlg::Null => 0x0010,
            TpmAlg::Sm3_256 => 0x0012,
            TpmAlg::RsaSsa => 0x0014,
            TpmAlg::RsaEs => 0x0015,
            TpmAlg::RsaPss => 0x0016,
            TpmAlg::Oaep => 0x0017,
            TpmAlg::Ecdsa => 0x0018,
            TpmAlg::Ecdh => 0x0019,
            TpmAlg::Ecdaa => 0x001A,
            TpmAlg::Sm2 => 0x001B,
            TpmAlg::EcSchnorr => 0x001C,
            TpmAlg::Ecc => 0x0023,
            TpmAlg::SymCipher => 0x0025,
            TpmAlg::Cfb => 0x0043,
            TpmAlg::Other(v) => v,
        }
    }

    /// Digest size of a hash algorithm, `None` for non-hash algorithms.
    pub fn digest_size(self) -> Option<usize> {
        match self {
            TpmAlg::Sha1 => Some(20),
            TpmAlg::Sha256 | TpmAlg::Sm3_256 => Some(32),
            TpmAlg::Sha384 => Some(48),
            TpmAlg::Sha512 => Some(64),
            _ => None,
        }
    }

    /// Bank name as tpm2-tools and sealgate's JSON spell it (`sha256`, ...).
    pub fn name(self) -> String {
        match self {
            TpmAlg::Rsa => "rsa".into(),
            TpmAlg::Sha1 => "sha1".into(),
            TpmAlg::Hmac => "hmac".into(),
            TpmAlg::Aes => "aes".into(),
            TpmAlg::KeyedHash => "keyedhash".into(),
            TpmAlg::Sha256 => "sha256".into(),
            TpmAlg::Sha384 => "sha384".into(),
            TpmAlg::Sha512 => "sha512".into(),
            TpmAlg::Null => "null".into(),
            TpmAlg::Sm3_256 => "sm3_256".into(),
            TpmAlg::RsaSsa => "rsassa".into(),
            TpmAlg::RsaEs => "rsaes".into(),
            TpmAlg::RsaPss => "rsapss".into(),
            TpmAlg::Oaep => "oaep".into(),
            TpmAlg::Ecdsa => "ecdsa".into(),
            TpmAlg::Ecdh => "ecdh".into(),
            TpmAlg::Ecdaa => "ecdaa".into(),
            TpmAlg::Sm2 => "sm2".into(),
            TpmAlg::EcSchnorr => "ecschnorr".into(),
            TpmAlg::Ecc => "ecc".into(),
            TpmAlg::SymCipher => "symcipher".into(),
            TpmAlg::Cfb => "cfb".into(),
            TpmAlg::Other(v) => format!("0x{:04x}", v),
        }
    }

    /// Inverse of `name` for hash banks.
    pub fn hash_from_name(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(TpmAlg::Sha1),
            "sha256" => Some(TpmAlg::Sha256),
            "sha384" => Some(TpmAlg::Sha384),
            "sha512" => Some(TpmAlg::Sha512),
            "sm3_256" => Some(TpmAlg::Sm3_256),
            _ => None,
        }
    }
}

/// TPM_ECC_CURVE (Part 2, §6.4 Table 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EccCurve {
    NistP256,
    NistP384,
    NistP521,
    Other(u16),
}

impl EccCurve {
    pub fn from_u16(v: u16) -> Self {
        match v {
            0x0003 => EccCurve::NistP256,
            0x0004 => EccCurve::NistP384,
            0x0005 => EccCurve::NistP521,
            other => EccCurve::Other(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        match self {
            EccCurve::NistP256 => 3,
            EccCurve::NistP384 => 4,
            EccCurve::NistP521 => 5,
            EccCurve::Other(v) => v,
        }
    }

    /// Field element size in bytes.
    pub fn coordinate_size(self) -> Option<usize> {
        match self {
            EccCurve::NistP256 => Some(32),
            EccCurve::NistP384 => Some(48),
            EccCurve::NistP521 => Some(66),
            EccCurve::Other(_) => None,
        }
    }

    pub fn name(self) -> String {
        match self {
            EccCurve::NistP256 => "nist_p256".into(),
            EccCurve::NistP384 => "nist_p384".into(),
            EccCurve::NistP521 => "nist_p521".into(),
            EccCurve::Other(v) => format!("0x{:04x}", v),
        }
    }
}
