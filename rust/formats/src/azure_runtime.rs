//! The HCL report's runtime data ("variable data"): the JSON the paravisor hashes into the
//! hardware report's report_data.
//!
//! Shape (as the Azure paravisor writes it; Microsoft "Azure confidential VM guest
//! attestation"):
//! `{"keys": [JWK...], "vm-configuration": {...}, "user-data": "<hex>"}`, the keys RSA public
//! JWKs (RFC 7517, RFC 7518 §6.3.1) with `kid` `HCLAkPub` (the vTPM attestation key) and
//! `HCLEkPub` (its endorsement key). This parser is strict where the bytes are the
//! attester's: JSON syntax by serde_json (RFC 8259; lone surrogates and non-finite numbers
//! refused), duplicate member names refused (RFC 8259 §4 leaves them undefined, and two
//! readers must not see two different AKs), nesting and counts bounded, `n`/`e`
//! canonical base64url without padding (RFC 7515 §2, decoded by base64ct, which refuses
//! non-canonical trailing bits). What the keys mean (RSA, size, exponent, key_ops) is
//! checked by the caller; members sealgate does not read are carried, unread.

use crate::error::{ParseError, ParseErrorKind, Platform, Result};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// The runtime data is part of an HCL report (8 KiB at most, `azure::MAX_HCL_REPORT_LEN`).
pub const MAX_RUNTIME_DATA: usize = 8192;
/// Object → keys array → JWK → key_ops array → string: 5 levels; one spare.
pub const MAX_DEPTH: usize = 6;
/// Entries of `keys` (the paravisor writes two).
pub const MAX_KEYS: usize = 8;
pub const MAX_KEY_OPS: usize = 8;
pub const MAX_VM_CONFIGURATION: usize = 64;
pub const MAX_VM_STRING: usize = 256;
/// `user-data`: the 64 bytes of NV index 0x01400002 as hex.
pub const MAX_USER_DATA: usize = 64;
/// RSA moduli up to 8192 bits as base64url.
pub const MAX_B64_LEN: usize = 2048;
pub const AK_KID: &str = "HCLAkPub";
pub const EK_KID: &str = "HCLEkPub";

/// A JSON value with object members in document order (duplicates refused while parsing).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> core::result::Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> core::result::Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> core::result::Result<Json, E> {
        Ok(Json::Num(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> core::result::Result<Json, E> {
        Ok(Json::Num(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> core::result::Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Num)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> core::result::Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> core::result::Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> core::result::Result<Json, A::Error> {
        let mut out: Vec<(String, Json)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(de::Error::custom(format!(
                    "member {:?} appears twice",
                    k.chars().take(40).collect::<String>()
                )));
            }
            let v = map.next_value()?;
            out.push((k, v));
        }
        Ok(Json::Obj(out))
    }
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A scalar `vm-configuration` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// An RSA JWK's members as stored (`kty` unchecked: the caller decides what it accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub key_ops: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeData {
    pub ak: Option<Jwk>,
    pub ek: Option<Jwk>,
    /// Members in document order.
    pub vm_configuration: Vec<(String, Scalar)>,
    pub user_data: Option<Vec<u8>>,
}

fn invalid(field: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError::new(
        Platform::AzureRuntimeData,
        ParseErrorKind::Invalid,
        field,
        0,
        detail,
    )
}

fn depth_ok(v: &Json) -> bool {
    // Iterative (no recursion on attacker-chosen nesting).
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return false;
        }
        match v {
            Json::Arr(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Json::Obj(m) => stack.extend(m.iter().map(|(_, x)| (x, d + 1))),
            _ => {}
        }
    }
    true
}

fn b64url(v: Option<&Json>, field: &'static str) -> Result<Vec<u8>> {
    match v {
        Some(Json::Str(s)) if s.len() <= MAX_B64_LEN => Base64UrlUnpadded::decode_vec(s)
            .map_err(|_| invalid(field, "not canonical base64url without padding")),
        _ => Err(invalid(field, "not a base64url string")),
    }
}

fn jwk(v: &Json, kid: &str) -> Result<Jwk> {
    let kty = match v.get("kty") {
        Some(Json::Str(s)) if s.len() <= 16 => s.clone(),
        _ => {
            return Err(invalid(
                "keys[].kty",
                format!("{kid}: kty is not a short string"),
            ))
        }
    };
    let key_ops = match v.get("key_ops") {
        None => Vec::new(),
        Some(Json::Arr(a)) if a.len() <= MAX_KEY_OPS => a
            .iter()
            .map(|o| match o {
                Json::Str(s) if s.len() <= 32 => Ok(s.clone()),
                _ => Err(invalid(
                    "keys[].key_ops",
                    format!("{kid}: a key_ops entry is not a short string"),
                )),
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => {
            return Err(invalid(
                "keys[].key_ops",
                format!("{kid}: key_ops is not a list of at most {MAX_KEY_OPS} strings"),
            ))
        }
    };
    Ok(Jwk {
        kid: kid.to_owned(),
        kty,
        n: b64url(v.get("n"), "keys[].n")?,
        e: b64url(v.get("e"), "keys[].e")?,
        key_ops,
    })
}

/// Parse the runtime data bytes (exactly as stored in the HCL report).
pub fn parse_runtime_data(buf: &[u8]) -> Result<RuntimeData> {
    if buf.len() > MAX_RUNTIME_DATA {
        return Err(ParseError::new(
            Platform::AzureRuntimeData,
            ParseErrorKind::TooLarge,
            "runtime data",
            0,
            format!("{} bytes, at most {MAX_RUNTIME_DATA}", buf.len()),
        ));
    }
    let doc: Json = serde_json::from_slice(buf).map_err(|e| {
        invalid(
            "runtime data",
            format!("not JSON (line {} column {}): {e}", e.line(), e.column()),
        )
    })?;
    if !depth_ok(&doc) {
        return Err(invalid(
            "runtime data",
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if !matches!(doc, Json::Obj(_)) {
        return Err(invalid("runtime data", "not a JSON object"));
    }
    let keys = match doc.get("keys") {
        Some(Json::Arr(a)) if a.len() <= MAX_KEYS => a,
        _ => {
            return Err(invalid(
                "keys",
                format!("not a list of at most {MAX_KEYS} keys"),
            ))
        }
    };
    let (mut ak, mut ek) = (None, None);
    for k in keys {
        let (kid, slot) = match k.get("kid") {
            Some(Json::Str(s)) if s == AK_KID => (AK_KID, &mut ak),
            Some(Json::Str(s)) if s == EK_KID => (EK_KID, &mut ek),
            _ => continue, // another key: carried, unread
        };
        if slot.is_some() {
            return Err(invalid("keys[].kid", format!("{kid} appears twice")));
        }
        *slot = Some(jwk(k, kid)?);
    }
    let mut vm_configuration = Vec::new();
    match doc.get("vm-configuration") {
        None => {}
        Some(Json::Obj(m)) if m.len() <= MAX_VM_CONFIGURATION => {
            for (k, v) in m {
                let s = match v {
                    Json::Bool(b) => Scalar::Bool(*b),
                    Json::Num(n) if n.is_i64() => Scalar::Int(n.as_i64().unwrap_or_default()),
                    Json::Str(s) if s.len() <= MAX_VM_STRING => Scalar::Str(s.clone()),
                    _ => {
                        return Err(invalid(
                            "vm-configuration",
                            format!(
                                "member {:?} is not a boolean, integer or short string",
                                k.chars().take(40).collect::<String>()
                            ),
                        ))
                    }
                };
                vm_configuration.push((k.clone(), s));
            }
        }
        Some(_) => {
            return Err(invalid(
                "vm-configuration",
                format!("not an object of at most {MAX_VM_CONFIGURATION} members"),
            ))
        }
    }
    let user_data = match doc.get("user-data") {
        None => None,
        Some(Json::Str(s)) if s.len() <= 2 * MAX_USER_DATA && s.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(s.len() / 2);
            for pair in s.as_bytes().chunks(2) {
                let hex = core::str::from_utf8(pair).ok();
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    // from_str_radix takes a leading '+': only hex digits are hex.
                    Some(b) if pair.iter().all(u8::is_ascii_hexdigit) => out.push(b),
                    _ => return Err(invalid("user-data", "not hex")),
                }
            }
            Some(out)
        }
        Some(_) => {
            return Err(invalid(
                "user-data",
                format!("not hex of at most {MAX_USER_DATA} bytes"),
            ))
        }
    };
    Ok(RuntimeData {
        ak,
        ek,
        vm_configuration,
        user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"keys":[{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"sXch"},{"kid":"HCLEkPub","key_ops":["encrypt"],"kty":"RSA","e":"AQAB","n":"AQID"},{"kid":"other"}],"vm-configuration":{"secure-boot":true,"vmUniqueId":"X","n":3},"user-data":"00ff"}"#;

    #[test]
    fn parses() {
        let r = parse_runtime_data(GOOD.as_bytes()).unwrap();
        let ak = r.ak.unwrap();
        assert_eq!(
            (ak.kid.as_str(), ak.e.as_slice()),
            ("HCLAkPub", &[1u8, 0, 1][..])
        );
        assert_eq!(r.ek.unwrap().n, vec![1, 2, 3]);
        assert_eq!(
            r.vm_configuration[0],
            ("secure-boot".into(), Scalar::Bool(true))
        );
        assert_eq!(r.vm_configuration[2], ("n".into(), Scalar::Int(3)));
        assert_eq!(r.user_data, Some(vec![0, 0xff]));
    }

    fn code(s: &str) -> String {
        parse_runtime_data(s.as_bytes()).unwrap_err().code()
    }

    #[test]
    fn refuses() {
        assert_eq!(code("{"), "azure.runtime_data.invalid");
        assert_eq!(
            code(r#"{"keys":[],"keys":[]}"#),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB=","n":"AQ"}]}"#),
            "azure.runtime_data.invalid"
        );
        // Unused bits set ("AR" is not the canonical spelling of 0x01).
        assert_eq!(
            code(r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AR","n":"AQ"}]}"#),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQ+B","n":"AQ"}]}"#),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(r#"{"keys":[],"user-data":"+1"}"#),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(r#"{"keys":[],"vm-configuration":{"a":1.5}}"#),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(r#"{"keys":[],"x":"\ud800"}"#),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(&format!("{}1{}", "[".repeat(200), "]".repeat(200))),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(&format!(
                r#"{{"keys":[],"x":{}1{}}}"#,
                "[".repeat(6),
                "]".repeat(6)
            )),
            "azure.runtime_data.invalid"
        );
        assert_eq!(
            code(&" ".repeat(MAX_RUNTIME_DATA + 1)),
            "azure.runtime_data.too_large"
        );
        let two_aks = r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"AQ"},{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"AQ"}]}"#;
        assert_eq!(code(two_aks), "azure.runtime_data.invalid");
    }

    #[test]
    fn never_panics_on_truncation() {
        for cut in 0..GOOD.len() {
            let _ = parse_runtime_data(&GOOD.as_bytes()[..cut]);
        }
    }
}
