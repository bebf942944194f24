//! The standard extensions chain building reads (RFC 5280 §4.2.1), decoded with
//! `x509-cert`'s types.

use super::{der_err, directory_string, Extension};
use crate::error::Result;
use der::{Decode, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, ExtendedKeyUsage, KeyUsage as XKeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};

pub const OID_SUBJECT_KEY_ID: &str = "2.5.29.14";
pub const OID_KEY_USAGE: &str = "2.5.29.15";
pub const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";
pub const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
pub const OID_AUTHORITY_KEY_ID: &str = "2.5.29.35";
pub const OID_EXTENDED_KEY_USAGE: &str = "2.5.29.37";

/// basicConstraints (§4.2.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicConstraints {
    pub ca: bool,
    pub path_len: Option<u8>,
}

/// keyUsage (§4.2.1.3), the bits the chain builder checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage {
    pub digital_signature: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

/// subjectKeyIdentifier (§4.2.1.2) and authorityKeyIdentifier's keyIdentifier (§4.2.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIds {
    pub subject: Option<Vec<u8>>,
    pub authority: Option<Vec<u8>>,
}

pub(super) struct Standard {
    pub basic_constraints: Option<BasicConstraints>,
    pub key_usage: Option<KeyUsage>,
    pub extended_key_usage: Option<Vec<String>>,
    pub key_ids: KeyIds,
    pub san_directory_attributes: Vec<(String, String)>,
}

impl Standard {
    pub(super) fn decode(exts: &[Extension]) -> Result<Self> {
        let mut out = Standard {
            basic_constraints: None,
            key_usage: None,
            extended_key_usage: None,
            key_ids: KeyIds::default(),
            san_directory_attributes: Vec::new(),
        };
        for e in exts {
            let v = e.value.as_slice();
            match e.oid.as_str() {
                OID_BASIC_CONSTRAINTS => {
                    let b = x509_cert::ext::pkix::BasicConstraints::from_der(v)
                        .map_err(|x| der_err("basicConstraints", x))?;
                    out.basic_constraints = Some(BasicConstraints {
                        ca: b.ca,
                        path_len: b.path_len_constraint,
                    });
                }
                OID_KEY_USAGE => {
                    let k = XKeyUsage::from_der(v).map_err(|x| der_err("keyUsage", x))?;
                    out.key_usage = Some(KeyUsage {
                        digital_signature: k.digital_signature(),
                        key_cert_sign: k.key_cert_sign(),
                        crl_sign: k.crl_sign(),
                    });
                }
                OID_EXTENDED_KEY_USAGE => {
                    let k = ExtendedKeyUsage::from_der(v)
                        .map_err(|x| der_err("extendedKeyUsage", x))?;
                    if k.0.iter().any(|o| !super::oid_minimal(o.as_bytes())) {
                        return Err(crate::error::ParseError::new(
                            crate::error::Platform::X509,
                            crate::error::ParseErrorKind::Invalid,
                            "extendedKeyUsage",
                            0,
                            "extendedKeyUsage: OBJECT IDENTIFIER is not minimally encoded",
                        ));
                    }
                    out.extended_key_usage = Some(k.0.iter().map(|o| o.to_string()).collect());
                }
                OID_SUBJECT_KEY_ID => {
                    let k = SubjectKeyIdentifier::from_der(v)
                        .map_err(|x| der_err("subjectKeyIdentifier", x))?;
                    out.key_ids.subject = Some(k.0.as_bytes().to_vec());
                }
                OID_AUTHORITY_KEY_ID => {
                    let k = AuthorityKeyIdentifier::from_der(v)
                        .map_err(|x| der_err("authorityKeyIdentifier", x))?;
                    out.key_ids.authority = k.key_identifier.map(|o| o.as_bytes().to_vec());
                }
                OID_SUBJECT_ALT_NAME => {
                    let s =
                        SubjectAltName::from_der(v).map_err(|x| der_err("subjectAltName", x))?;
                    for g in s.0 {
                        if let GeneralName::DirectoryName(n) = g {
                            for rdn in n.0.iter() {
                                for atv in rdn.0.iter() {
                                    let text = directory_string(atv.value.tag(), atv.value.value())
                                        .unwrap_or_default();
                                    out.san_directory_attributes
                                        .push((atv.oid.to_string(), text));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
