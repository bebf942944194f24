//! X.509 v3 certificates and v2 CRLs (RFC 5280) for every platform's PKI.
//!
//! Decoding is RustCrypto's `x509-cert` (strict DER through the `der` crate); this module
//! turns its types into the owned, flat view verification reads, keeps the exact signed
//! bytes (`tbs`) as they appear in the input, and decodes the standard extensions the chain
//! builder needs (basic constraints, key usage, extended key usage, key identifiers, the
//! subject alternative name's directory names) once, at parse time: a certificate whose
//! extension is malformed or duplicated (RFC 5280 §4.2 "MUST NOT include more than one
//! instance of a particular extension") is refused here, not later in a chain check.
//!
//! AMD signs its VCEKs with serial number 0 (RFC 5280 §4.1.2.2 asks CAs for positive
//! serials but tells users to be prepared for others): the serial is kept as the signed
//! big-endian bytes it is, never refused for its value.
//!
//! Vendor extensions live in `vendor`: AMD 1.3.6.1.4.1.3704.1.*, Intel SGX
//! 1.2.840.113741.1.13.1 and TCG DICE 2.23.133.5.4.1.
//!
//! No signature is checked here (sealgate-verify does that).

pub mod ext;
pub mod vendor;

use crate::error::{ParseError, ParseErrorKind, Platform, Result};
use der::asn1::{AnyRef, BitString, ObjectIdentifier};
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::crl::TbsCertList;
use x509_cert::name::Name;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;

pub use ext::{BasicConstraints, KeyIds, KeyUsage};

/// Largest DER certificate accepted (vendor certificates are 1-2 KiB; EK certificates with
/// long SANs stay well under this).
pub const MAX_CERT_LEN: usize = 16 << 10;
/// Largest DER CRL accepted (AMD's and Intel's are a few KiB; 4 MiB leaves room for growth).
pub const MAX_CRL_LEN: usize = 4 << 20;
/// Most revoked entries one CRL may list.
pub const MAX_CRL_ENTRIES: usize = 1 << 16;
/// Most extensions one certificate may carry.
pub const MAX_EXTENSIONS: usize = 64;

pub(crate) const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

fn perr(
    kind: ParseErrorKind,
    field: &'static str,
    offset: usize,
    detail: impl Into<String>,
) -> ParseError {
    ParseError::new(Platform::X509, kind, field, offset, detail)
}

/// A `der` decoding error as a parse error of `field`.
pub(crate) fn der_err(field: &'static str, e: der::Error) -> ParseError {
    let offset = e.position().map(|p| u32::from(p) as usize).unwrap_or(0);
    let kind = match e.kind() {
        der::ErrorKind::Incomplete { .. } => ParseErrorKind::Truncated,
        der::ErrorKind::TrailingData { .. } => ParseErrorKind::TrailingBytes,
        der::ErrorKind::Overlength | der::ErrorKind::Overflow => ParseErrorKind::TooLarge,
        _ => ParseErrorKind::Invalid,
    };
    perr(kind, field, offset, format!("{field}: {}", e.kind()))
}

/// An algorithm identifier: its OID and the raw DER of its parameters (absent or NULL kept
/// apart, as the signature profiles of some vendors care).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmId {
    pub oid: String,
    pub params: Option<Vec<u8>>,
}

impl AlgorithmId {
    fn from_owned(a: &AlgorithmIdentifierOwned, field: &'static str) -> Result<Self> {
        let params = match &a.parameters {
            None => None,
            Some(p) => Some(p.to_der().map_err(|e| der_err(field, e))?),
        };
        Ok(AlgorithmId {
            oid: a.oid.to_string(),
            params,
        })
    }
}

/// One extension as carried (RFC 5280 §4.1: `extnValue` is the OCTET STRING's content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub oid: String,
    pub critical: bool,
    pub value: Vec<u8>,
}

/// The fields of a certificate verification reads (RFC 5280 §4.1).
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The whole certificate as given.
    pub der: Vec<u8>,
    /// `tbsCertificate` exactly as it appears in `der` (what the issuer signed).
    pub tbs: Vec<u8>,
    /// 1, 2 or 3.
    pub version: u8,
    /// The serial number's INTEGER content: signed big-endian two's complement.
    pub serial: Vec<u8>,
    pub signature_alg: AlgorithmId,
    /// The signature BIT STRING's bytes (no unused bits allowed).
    pub signature: Vec<u8>,
    /// Raw DER of the issuer and subject Names.
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
    /// The first commonName of each Name ("" when there is none).
    pub issuer_cn: String,
    pub subject_cn: String,
    /// Validity as Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Raw DER SubjectPublicKeyInfo, its algorithm, and the subjectPublicKey bits (PKCS#1
    /// RSAPublicKey for RSA, the SEC1 point for EC).
    pub spki: Vec<u8>,
    pub spki_alg: AlgorithmId,
    pub public_key_bits: Vec<u8>,
    pub extensions: Vec<Extension>,
    pub basic_constraints: Option<BasicConstraints>,
    pub key_usage: Option<KeyUsage>,
    pub extended_key_usage: Option<Vec<String>>,
    pub key_ids: KeyIds,
    /// (attribute OID, value) of every directoryName in the subjectAltName, in order
    /// (the TCG EK profile puts the TPM manufacturer, model and version there).
    pub san_directory_attributes: Vec<(String, String)>,
}

impl Certificate {
    /// The extension with `oid`, if present (at most one: duplicates are refused).
    pub fn extension(&self, oid: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.oid == oid)
    }

    pub fn is_ca(&self) -> bool {
        self.basic_constraints.is_some_and(|b| b.ca)
    }

    pub fn is_self_issued(&self) -> bool {
        self.issuer == self.subject
    }
}

fn unix(t: &Time) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

fn bits(b: &BitString, field: &'static str) -> Result<Vec<u8>> {
    b.as_bytes().map(<[u8]>::to_vec).ok_or_else(|| {
        perr(
            ParseErrorKind::Invalid,
            field,
            0,
            format!("{field}: BIT STRING has unused bits"),
        )
    })
}

fn name_der(n: &Name, field: &'static str) -> Result<Vec<u8>> {
    n.to_der().map_err(|e| der_err(field, e))
}

/// The first commonName attribute of a Name, as text ("" when absent or not a string).
pub fn common_name(n: &Name) -> String {
    for rdn in n.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_CN {
                return directory_string(atv.value.tag(), atv.value.value()).unwrap_or_default();
            }
        }
    }
    String::new()
}

/// A DirectoryString's text (RFC 5280 §4.1.2.4), or None for other types.
pub(crate) fn directory_string(tag: Tag, v: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            Some(String::from_utf8_lossy(v).into_owned())
        }
        Tag::BmpString => {
            if v.len() & 1 == 1 {
                return None;
            }
            let units: Vec<u16> = v
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// Whether an OBJECT IDENTIFIER's content octets are minimal (X.690 §8.19.2: a
/// subidentifier's first octet is never 0x80). `const-oid` decodes a padded subidentifier to
/// the same arc, so without this check two encodings would name one OID here while other
/// verifiers refuse the certificate: a parser differential an attacker could aim at.
pub(crate) fn oid_minimal(content: &[u8]) -> bool {
    let mut at_start = true;
    for &b in content {
        if at_start && b == 0x80 {
            return false;
        }
        at_start = b & 0x80 == 0;
    }
    true
}

fn check_oid(oid: &ObjectIdentifier, field: &'static str) -> Result<()> {
    if oid_minimal(oid.as_bytes()) {
        Ok(())
    } else {
        Err(perr(
            ParseErrorKind::Invalid,
            field,
            0,
            format!("{field}: OBJECT IDENTIFIER {oid} is not minimally encoded"),
        ))
    }
}

/// Every OID of a Name's attributes is minimal.
fn check_name_oids(n: &Name, field: &'static str) -> Result<()> {
    for rdn in n.0.iter() {
        for atv in rdn.0.iter() {
            check_oid(&atv.oid, field)?;
        }
    }
    Ok(())
}

fn check_alg_oids(a: &AlgorithmIdentifierOwned, field: &'static str) -> Result<()> {
    check_oid(&a.oid, field)?;
    // Parameters that are themselves an OID (a named curve) or hold algorithm identifiers
    // (RSASSA-PSS) are checked where they are decoded.
    if let Some(p) = &a.parameters {
        if p.tag() == Tag::ObjectIdentifier && !oid_minimal(p.value()) {
            return Err(perr(
                ParseErrorKind::Invalid,
                field,
                0,
                format!("{field}: parameter OID is not minimally encoded"),
            ));
        }
    }
    Ok(())
}

/// The outer `SEQUENCE { tbs, signatureAlgorithm, signatureValue }` shared by certificates
/// and CRLs: the raw tbs TLV and the two signature fields.
fn signed<'a>(
    data: &'a [u8],
    field: &'static str,
) -> Result<(&'a [u8], AlgorithmIdentifierOwned, BitString)> {
    let mut r = SliceReader::new(data).map_err(|e| der_err(field, e))?;
    let out = r
        .sequence(|seq| {
            let tbs = seq.tlv_bytes()?;
            let alg = AlgorithmIdentifierOwned::decode(seq)?;
            let sig = BitString::decode(seq)?;
            Ok((tbs, alg, sig))
        })
        .map_err(|e| der_err(field, e))?;
    r.finish(out).map_err(|e| der_err(field, e))
}

/// Parse exactly one DER certificate.
pub fn parse_certificate(data: &[u8]) -> Result<Certificate> {
    const F: &str = "Certificate";
    if data.len() > MAX_CERT_LEN {
        return Err(perr(
            ParseErrorKind::TooLarge,
            F,
            0,
            format!(
                "certificate of {} bytes (at most {MAX_CERT_LEN})",
                data.len()
            ),
        ));
    }
    let (tbs_raw, sig_alg, sig) = signed(data, F)?;
    let tbs = TbsCertificate::from_der(tbs_raw).map_err(|e| der_err("tbsCertificate", e))?;
    // RFC 5280 §4.1.1.2: signatureAlgorithm MUST equal tbsCertificate.signature.
    if tbs.signature != sig_alg {
        return Err(perr(
            ParseErrorKind::Invalid,
            "Certificate.signatureAlgorithm",
            0,
            "signatureAlgorithm differs from tbsCertificate.signature",
        ));
    }
    check_alg_oids(&sig_alg, "Certificate.signatureAlgorithm")?;
    check_alg_oids(
        &tbs.subject_public_key_info.algorithm,
        "subjectPublicKeyInfo.algorithm",
    )?;
    check_name_oids(&tbs.issuer, "tbsCertificate.issuer")?;
    check_name_oids(&tbs.subject, "tbsCertificate.subject")?;
    // Every attestation hierarchy (AMD, Intel, TCG EK, NVIDIA) issues v3 certificates; a
    // v1/v2 certificate carries no basicConstraints and could not be a CA here anyway.
    if tbs.version != Version::V3 {
        return Err(perr(
            ParseErrorKind::Invalid,
            "tbsCertificate.version",
            0,
            "X.509 version other than 3; only v3 is accepted",
        ));
    }
    let exts = tbs.extensions.as_deref().unwrap_or(&[]);
    if exts.len() > MAX_EXTENSIONS {
        return Err(perr(
            ParseErrorKind::TooLarge,
            "tbsCertificate.extensions",
            0,
            format!("{} extensions (at most {MAX_EXTENSIONS})", exts.len()),
        ));
    }
    let mut extensions: Vec<Extension> = Vec::with_capacity(exts.len());
    for e in exts {
        check_oid(&e.extn_id, "tbsCertificate.extensions")?;
        let oid = e.extn_id.to_string();
        if extensions.iter().any(|x| x.oid == oid) {
            return Err(perr(
                ParseErrorKind::Invalid,
                "tbsCertificate.extensions",
                0,
                format!("extension {oid} appears more than once"),
            ));
        }
        extensions.push(Extension {
            oid,
            critical: e.critical,
            value: e.extn_value.as_bytes().to_vec(),
        });
    }
    let std_ext = ext::Standard::decode(&extensions)?;
    let spki = &tbs.subject_public_key_info;
    Ok(Certificate {
        der: data.to_vec(),
        tbs: tbs_raw.to_vec(),
        version: match tbs.version {
            Version::V1 => 1,
            Version::V2 => 2,
            Version::V3 => 3,
        },
        serial: tbs.serial_number.as_bytes().to_vec(),
        signature_alg: AlgorithmId::from_owned(&sig_alg, "Certificate.signatureAlgorithm")?,
        signature: bits(&sig, "Certificate.signatureValue")?,
        issuer: name_der(&tbs.issuer, "tbsCertificate.issuer")?,
        subject: name_der(&tbs.subject, "tbsCertificate.subject")?,
        issuer_cn: common_name(&tbs.issuer),
        subject_cn: common_name(&tbs.subject),
        not_before: unix(&tbs.validity.not_before),
        not_after: unix(&tbs.validity.not_after),
        spki: spki
            .to_der()
            .map_err(|e| der_err("subjectPublicKeyInfo", e))?,
        spki_alg: AlgorithmId {
            oid: spki.algorithm.oid.to_string(),
            params: match &spki.algorithm.parameters {
                None => None,
                Some(p) => Some(p.to_der().map_err(|e| der_err("subjectPublicKeyInfo", e))?),
            },
        },
        public_key_bits: bits(
            &spki.subject_public_key,
            "subjectPublicKeyInfo.subjectPublicKey",
        )?,
        extensions,
        basic_constraints: std_ext.basic_constraints,
        key_usage: std_ext.key_usage,
        extended_key_usage: std_ext.extended_key_usage,
        key_ids: std_ext.key_ids,
        san_directory_attributes: std_ext.san_directory_attributes,
    })
}

/// An X.509 v2 CRL (RFC 5280 §5.1): who issued it, when, and the revoked serials.
#[derive(Debug, Clone)]
pub struct Crl {
    pub der: Vec<u8>,
    pub tbs: Vec<u8>,
    pub signature_alg: AlgorithmId,
    pub signature: Vec<u8>,
    pub issuer: Vec<u8>,
    pub issuer_cn: String,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Revoked serial numbers (INTEGER contents, as in `Certificate::serial`), sorted.
    pub revoked: Vec<Vec<u8>>,
}

impl Crl {
    /// Whether the CRL lists `serial` (the INTEGER content of a certificate's serial).
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked
            .binary_search_by(|s| s.as_slice().cmp(serial))
            .is_ok()
    }
}

/// Parse exactly one DER CRL.
pub fn parse_crl(data: &[u8]) -> Result<Crl> {
    const F: &str = "CertificateList";
    if data.len() > MAX_CRL_LEN {
        return Err(perr(
            ParseErrorKind::TooLarge,
            F,
            0,
            format!("CRL of {} bytes (at most {MAX_CRL_LEN})", data.len()),
        ));
    }
    let (tbs_raw, sig_alg, sig) = signed(data, F)?;
    let tbs = TbsCertList::from_der(tbs_raw).map_err(|e| der_err("tbsCertList", e))?;
    if tbs.signature != sig_alg {
        return Err(perr(
            ParseErrorKind::Invalid,
            "CertificateList.signatureAlgorithm",
            0,
            "signatureAlgorithm differs from tbsCertList.signature",
        ));
    }
    // RFC 5280 §5.1.2.1: a CRL is v1 (no version field) or v2 (INTEGER 1); x509-cert's
    // shared Version type would also take v3.
    if tbs.version == Version::V3 {
        return Err(perr(
            ParseErrorKind::Invalid,
            "tbsCertList.version",
            0,
            "CRL version other than v1 or v2",
        ));
    }
    check_alg_oids(&sig_alg, "CertificateList.signatureAlgorithm")?;
    check_name_oids(&tbs.issuer, "tbsCertList.issuer")?;
    for e in tbs.crl_extensions.as_deref().unwrap_or(&[]) {
        check_oid(&e.extn_id, "tbsCertList.crlExtensions")?;
    }
    let entries = tbs.revoked_certificates.as_deref().unwrap_or(&[]);
    if entries.len() > MAX_CRL_ENTRIES {
        return Err(perr(
            ParseErrorKind::TooLarge,
            "tbsCertList.revokedCertificates",
            0,
            format!(
                "{} revoked entries (at most {MAX_CRL_ENTRIES})",
                entries.len()
            ),
        ));
    }
    let mut revoked: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.serial_number.as_bytes().to_vec())
        .collect();
    revoked.sort();
    revoked.dedup();
    Ok(Crl {
        der: data.to_vec(),
        tbs: tbs_raw.to_vec(),
        signature_alg: AlgorithmId::from_owned(&sig_alg, "CertificateList.signatureAlgorithm")?,
        signature: bits(&sig, "CertificateList.signatureValue")?,
        issuer: name_der(&tbs.issuer, "tbsCertList.issuer")?,
        issuer_cn: common_name(&tbs.issuer),
        this_update: unix(&tbs.this_update),
        next_update: tbs.next_update.as_ref().map(unix),
        revoked,
    })
}

/// A DER TLV with a definite length (X.690 §8.1.3: short form below 128, else the fewest
/// length octets), for re-framing a decoded value and for encoders in the other crates.
pub fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = Vec::with_capacity(n + 6);
    out.push(tag);
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = (n as u64).to_be_bytes();
        let skip = len.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The size in bits of an RSA modulus given as a big-endian magnitude.
pub fn modulus_bits(modulus: &[u8]) -> usize {
    let m = &modulus[modulus
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(modulus.len())..];
    match m.first() {
        None => 0,
        Some(&top) => m.len() * 8 - top.leading_zeros() as usize,
    }
}

/// A public key as its algorithm defines it (RFC 3279 §2.3.1, RFC 5480 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian magnitudes.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// Named curve OID and the SEC1 point.
    Ec { curve: String, point: Vec<u8> },
    /// Another algorithm (its OID): sealgate verifies no signature with it.
    Other(String),
}

pub const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
pub const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
pub const OID_P256: &str = "1.2.840.10045.3.1.7";
pub const OID_P384: &str = "1.3.132.0.34";

/// The certificate's subject public key, decoded.
pub fn public_key(cert: &Certificate) -> Result<PublicKey> {
    const F: &str = "subjectPublicKeyInfo";
    match cert.spki_alg.oid.as_str() {
        OID_RSA_ENCRYPTION => {
            let mut r = SliceReader::new(&cert.public_key_bits).map_err(|e| der_err(F, e))?;
            let (n, e) = r
                .sequence(|s| {
                    let n = der::asn1::UintRef::decode(s)?;
                    let e = der::asn1::UintRef::decode(s)?;
                    Ok((n.as_bytes().to_vec(), e.as_bytes().to_vec()))
                })
                .map_err(|e| der_err(F, e))?;
            r.finish(()).map_err(|e| der_err(F, e))?;
            Ok(PublicKey::Rsa {
                modulus: n,
                exponent: e,
            })
        }
        OID_EC_PUBLIC_KEY => {
            let params = cert.spki_alg.params.as_deref().unwrap_or(&[]);
            let curve = ObjectIdentifier::from_der(params).map_err(|_| {
                perr(
                    ParseErrorKind::Invalid,
                    F,
                    0,
                    "EC key without a named curve",
                )
            })?;
            Ok(PublicKey::Ec {
                curve: curve.to_string(),
                point: cert.public_key_bits.clone(),
            })
        }
        other => Ok(PublicKey::Other(other.to_string())),
    }
}

/// RSASSA-PSS parameters (RFC 8017 A.2.3; defaults SHA-1, MGF1-SHA-1, salt 20, trailer 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PssParams {
    pub hash: String,
    pub mgf_hash: String,
    pub salt_length: u64,
}

pub const OID_SHA1: &str = "1.3.14.3.2.26";
pub const OID_MGF1: &str = "1.2.840.113549.1.1.8";

/// Decode RSASSA-PSS-params from an AlgorithmIdentifier's parameters.
pub fn pss_params(params: Option<&[u8]>) -> Result<PssParams> {
    const F: &str = "RSASSA-PSS-params";
    let bad = |d: &str| perr(ParseErrorKind::Invalid, F, 0, format!("{F}: {d}"));
    let mut out = PssParams {
        hash: OID_SHA1.into(),
        mgf_hash: OID_SHA1.into(),
        salt_length: 20,
    };
    let Some(p) = params else { return Ok(out) };
    let mut r = SliceReader::new(p).map_err(|e| der_err(F, e))?;
    let fields: Vec<(u8, Vec<u8>)> = r
        .sequence(|s| {
            let mut v = Vec::new();
            while !s.is_finished() {
                let a = AnyRef::decode(s)?;
                let n = match a.tag() {
                    Tag::ContextSpecific {
                        constructed: true,
                        number,
                    } => number.value(),
                    t => {
                        return Err(der::Error::from(der::ErrorKind::TagUnexpected {
                            expected: None,
                            actual: t,
                        }))
                    }
                };
                v.push((n, a.value().to_vec()));
            }
            Ok(v)
        })
        .map_err(|e| der_err(F, e))?;
    r.finish(()).map_err(|e| der_err(F, e))?;
    let mut last: Option<u8> = None;
    for (n, v) in fields {
        if last.is_some_and(|l| n <= l) {
            return Err(bad("fields out of order or repeated"));
        }
        last = Some(n);
        match n {
            0 => {
                let a = AlgorithmIdentifierOwned::from_der(&v).map_err(|e| der_err(F, e))?;
                check_oid(&a.oid, F)?;
                out.hash = a.oid.to_string();
            }
            1 => {
                let a = AlgorithmIdentifierOwned::from_der(&v).map_err(|e| der_err(F, e))?;
                check_oid(&a.oid, F)?;
                if a.oid.to_string() != OID_MGF1 {
                    return Err(bad("mask generation function is not MGF1"));
                }
                let inner = a.parameters.ok_or_else(|| bad("MGF1 without a hash"))?;
                let h =
                    AlgorithmIdentifierOwned::from_der(&inner.to_der().map_err(|e| der_err(F, e))?)
                        .map_err(|e| der_err(F, e))?;
                check_oid(&h.oid, F)?;
                out.mgf_hash = h.oid.to_string();
            }
            2 => {
                let u = der::asn1::UintRef::from_der(&v).map_err(|e| der_err(F, e))?;
                let b = u.as_bytes();
                if b.len() > 4 {
                    return Err(bad("salt length too large"));
                }
                out.salt_length = b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
            }
            3 => {
                let u = der::asn1::UintRef::from_der(&v).map_err(|e| der_err(F, e))?;
                if u.as_bytes() != [1] {
                    return Err(bad("trailer field is not 1"));
                }
            }
            _ => return Err(bad("unknown field")),
        }
    }
    Ok(out)
}

/// ECDSA-Sig-Value (RFC 5480 §2.2 / RFC 3279 §2.2.3): r and s as big-endian magnitudes.
pub fn ecdsa_sig_value(sig: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    const F: &str = "ECDSA-Sig-Value";
    let mut r = SliceReader::new(sig).map_err(|e| der_err(F, e))?;
    let rs = r
        .sequence(|s| {
            let a = der::asn1::UintRef::decode(s)?;
            let b = der::asn1::UintRef::decode(s)?;
            Ok((a.as_bytes().to_vec(), b.as_bytes().to_vec()))
        })
        .map_err(|e| der_err(F, e))?;
    r.finish(rs).map_err(|e| der_err(F, e))
}

#[cfg(test)]
mod tests;
