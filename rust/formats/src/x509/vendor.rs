//! Vendor extensions in attestation certificates.
//!
//! - AMD VCEK/VLEK (pub. 57230, the VCEK/KDS specification, §3.1 Table 8), under
//!   1.3.6.1.4.1.3704.1: structVersion (.1), productName (.2), the TCB security patch
//!   levels blSPL (.3.1), teeSPL (.3.2), snpSPL (.3.3), ucodeSPL (.3.8), fmcSPL (.3.9),
//!   hwID (.4, the raw CHIP_ID bytes, not DER-wrapped) and cspId (.5, on a VLEK).
//! - Intel SGX PCK (Intel SGX PCK Certificate and CRL Profile §1.3.5), 1.2.840.113741.1.13.1:
//!   PPID (.1), TCB (.2: sixteen component SVNs .2.1-.2.16, PCESVN .2.17, CPUSVN .2.18),
//!   PCE-ID (.3), FMSPC (.4), SGX type (.5), platform instance id (.6, Platform CA only).
//! - TCG DICE, 2.23.133.5.4.1, in either shape found in devices: DiceTcbInfo (DICE
//!   Attestation Architecture §6.1.1, context-tagged optional fields) or the earlier
//!   CompositeDeviceID of the DICE/RIoT layering (`SEQUENCE { version INTEGER, deviceID
//!   SubjectPublicKeyInfo, fwid FWID }`), which NVIDIA's GPU certificates carry.

use super::{der_err, Certificate};
use crate::error::{ParseError, ParseErrorKind, Platform, Result};
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Reader, SliceReader, Tag, Tagged};

pub const OID_AMD_PREFIX: &str = "1.3.6.1.4.1.3704.1";
pub const OID_SGX_EXTENSIONS: &str = "1.2.840.113741.1.13.1";
pub const OID_DICE_TCB_INFO: &str = "2.23.133.5.4.1";

/// Largest SGX extension accepted (Intel's are about 600 bytes).
pub const MAX_SGX_EXTENSION_LEN: usize = 4096;
/// Most elements in one SEQUENCE of a vendor extension.
pub const MAX_ITEMS: usize = 64;

/// The elements of a constructed value given as its full TLV, each as (tag, value, offset).
fn children<'a>(
    tlv: &'a [u8],
    field: &'static str,
    platform: Platform,
) -> Result<Vec<(Tag, &'a [u8], usize)>> {
    let mut r = SliceReader::new(tlv).map_err(|e| der_err(field, e))?;
    let outer = AnyRef::decode(&mut r).map_err(|e| der_err(field, e))?;
    r.finish(()).map_err(|e| der_err(field, e))?;
    if !outer.tag().is_constructed() {
        return Err(ParseError::new(
            platform,
            ParseErrorKind::Invalid,
            field,
            0,
            format!("{field}: not a constructed value"),
        ));
    }
    let body = outer.value();
    elements(body, tlv.len() - body.len(), field, platform)
}

/// The elements inside the content octets `body` of a constructed value (`base`: the
/// offset of `body` in the extension, for error locations).
fn elements<'a>(
    body: &'a [u8],
    base: usize,
    field: &'static str,
    platform: Platform,
) -> Result<Vec<(Tag, &'a [u8], usize)>> {
    let mut r = SliceReader::new(body).map_err(|e| der_err(field, e))?;
    let mut out = Vec::new();
    while !r.is_finished() {
        if out.len() >= MAX_ITEMS {
            return Err(ParseError::new(
                platform,
                ParseErrorKind::TooLarge,
                field,
                base,
                format!("{field}: more than {MAX_ITEMS} elements"),
            ));
        }
        let at = base + u32::from(r.position()) as usize;
        let a = AnyRef::decode(&mut r).map_err(|e| der_err(field, e))?;
        out.push((a.tag(), a.value(), at));
    }
    Ok(out)
}

/// An unsigned INTEGER's content (DER: minimal, non-negative) that fits in 64 bits.
fn uint(v: &[u8], platform: Platform, field: &'static str, offset: usize) -> Result<u64> {
    let bad = |d: &str| {
        ParseError::new(
            platform,
            ParseErrorKind::Invalid,
            field,
            offset,
            format!("{field}: {d}"),
        )
    };
    if v.is_empty() {
        return Err(bad("empty INTEGER"));
    }
    if v[0] & 0x80 != 0 {
        return Err(bad("negative INTEGER"));
    }
    if v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0 {
        return Err(bad("non-minimal INTEGER"));
    }
    let mag = if v[0] == 0 { &v[1..] } else { v };
    if mag.len() > 8 {
        return Err(bad("INTEGER too large"));
    }
    Ok(mag.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

fn oid_of(v: &[u8], platform: Platform, field: &'static str, offset: usize) -> Result<String> {
    ObjectIdentifier::from_bytes(v)
        .ok()
        .filter(|_| super::oid_minimal(v))
        .map(|o| o.to_string())
        .ok_or(())
        .map_err(|_| {
            ParseError::new(
                platform,
                ParseErrorKind::Invalid,
                field,
                offset,
                format!("{field}: bad OBJECT IDENTIFIER"),
            )
        })
}

// ---- AMD ----------------------------------------------------------------------------------

/// What an AMD VCEK or VLEK states about the chip and TCB it endorses; None where absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmdExtensions {
    pub struct_version: Option<u64>,
    pub product_name: Option<String>,
    pub bl_spl: Option<u8>,
    pub tee_spl: Option<u8>,
    pub snp_spl: Option<u8>,
    pub ucode_spl: Option<u8>,
    pub fmc_spl: Option<u8>,
    pub hwid: Option<Vec<u8>>,
    pub csp_id: Option<String>,
}

fn amd_bad(oid: &str, d: String) -> ParseError {
    ParseError::new(
        Platform::Snp,
        ParseErrorKind::Invalid,
        "VCEK extension",
        0,
        format!("extension {oid} {d}"),
    )
}

fn amd_int(cert: &Certificate, suffix: &str) -> Result<Option<u64>> {
    let oid = format!("{OID_AMD_PREFIX}.{suffix}");
    let Some(e) = cert.extension(&oid) else {
        return Ok(None);
    };
    let a = AnyRef::from_der(&e.value).map_err(|_| amd_bad(&oid, "is not one DER value".into()))?;
    if a.tag() != Tag::Integer {
        return Err(amd_bad(
            &oid,
            format!("has tag 0x{:02x}, not INTEGER", u8::from(a.tag())),
        ));
    }
    uint(a.value(), Platform::Snp, "VCEK extension", 0)
        .map(Some)
        .map_err(|_| amd_bad(&oid, "is not a non-negative INTEGER".into()))
}

fn amd_spl(cert: &Certificate, suffix: &str) -> Result<Option<u8>> {
    match amd_int(cert, suffix)? {
        None => Ok(None),
        Some(v) => u8::try_from(v).map(Some).map_err(|_| {
            amd_bad(
                &format!("{OID_AMD_PREFIX}.{suffix}"),
                format!("value {v} is not a byte"),
            )
        }),
    }
}

fn amd_str(cert: &Certificate, suffix: &str) -> Result<Option<String>> {
    let oid = format!("{OID_AMD_PREFIX}.{suffix}");
    let Some(e) = cert.extension(&oid) else {
        return Ok(None);
    };
    let a = AnyRef::from_der(&e.value).map_err(|_| amd_bad(&oid, "is not one DER value".into()))?;
    match a.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
            Ok(Some(String::from_utf8_lossy(a.value()).into_owned()))
        }
        t => Err(amd_bad(&oid, format!("has tag 0x{:02x}", u8::from(t)))),
    }
}

/// The AMD extensions of a VCEK or VLEK certificate.
pub fn amd_extensions(cert: &Certificate) -> Result<AmdExtensions> {
    Ok(AmdExtensions {
        struct_version: amd_int(cert, "1")?,
        product_name: amd_str(cert, "2")?,
        bl_spl: amd_spl(cert, "3.1")?,
        tee_spl: amd_spl(cert, "3.2")?,
        snp_spl: amd_spl(cert, "3.3")?,
        ucode_spl: amd_spl(cert, "3.8")?,
        fmc_spl: amd_spl(cert, "3.9")?,
        hwid: cert
            .extension(&format!("{OID_AMD_PREFIX}.4"))
            .map(|e| e.value.clone()),
        csp_id: amd_str(cert, "5")?,
    })
}

// ---- Intel SGX ----------------------------------------------------------------------------

/// The SGX extension fields TCB evaluation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxExtension {
    pub ppid: Vec<u8>,
    /// The sixteen SGX TCB component SVNs (.2.1 .. .2.16).
    pub cpusvn_components: [u64; 16],
    pub pcesvn: u64,
    pub cpusvn: Vec<u8>,
    pub pceid: Vec<u8>,
    pub fmspc: Vec<u8>,
    pub sgx_type: u64,
    pub platform_instance_id: Option<Vec<u8>>,
}

fn sgx_err(
    kind: ParseErrorKind,
    field: &'static str,
    offset: usize,
    d: impl Into<String>,
) -> ParseError {
    ParseError::new(
        Platform::Tdx,
        kind,
        field,
        offset,
        format!("SGX extension: {}", d.into()),
    )
}

/// Parse the DER value of extension 1.2.840.113741.1.13.1.
pub fn sgx_extension(raw: &[u8]) -> Result<SgxExtension> {
    const F: &str = "SGX extension";
    let tdx = Platform::Tdx;
    if raw.len() > MAX_SGX_EXTENSION_LEN {
        return Err(sgx_err(ParseErrorKind::TooLarge, F, 0, "too large"));
    }
    let sub = |e: ParseError| ParseError {
        platform: tdx,
        kind: if e.kind == ParseErrorKind::TooLarge {
            ParseErrorKind::TooLarge
        } else {
            ParseErrorKind::Invalid
        },
        ..e
    };
    let top = children(raw, F, tdx).map_err(sub)?;
    let oid_tcb = format!("{OID_SGX_EXTENSIONS}.2");
    let mut comps: [Option<u64>; 16] = [None; 16];
    let mut pcesvn = None;
    let mut cpusvn = None;
    let mut fields: Vec<(String, Tag, &[u8], usize)> = Vec::new();
    for (tag, v, off) in top {
        if tag != Tag::Sequence {
            return Err(sgx_err(
                ParseErrorKind::Invalid,
                F,
                off,
                "entry is not a SEQUENCE",
            ));
        }
        let items = elements(v, off, F, tdx).map_err(sub)?;
        if items.len() != 2 || items[0].0 != Tag::ObjectIdentifier {
            return Err(sgx_err(ParseErrorKind::Invalid, F, off, "entry shape"));
        }
        let oid = oid_of(items[0].1, tdx, F, off)?;
        let (vtag, vval, _) = items[1];
        if oid == oid_tcb {
            if vtag != Tag::Sequence {
                return Err(sgx_err(
                    ParseErrorKind::Invalid,
                    F,
                    off,
                    "TCB is not a SEQUENCE",
                ));
            }
            for (ttag, tv, toff) in elements(vval, off, F, tdx).map_err(sub)? {
                let pair = if ttag == Tag::Sequence {
                    elements(tv, toff, F, tdx).map_err(sub)?
                } else {
                    Vec::new()
                };
                if pair.len() != 2 || pair[0].0 != Tag::ObjectIdentifier {
                    return Err(sgx_err(ParseErrorKind::Invalid, F, toff, "TCB entry shape"));
                }
                let soid = oid_of(pair[0].1, tdx, F, off)?;
                let (stag, sv, _) = pair[1];
                if soid == format!("{oid_tcb}.18") {
                    if stag != Tag::OctetString || sv.len() != 16 {
                        return Err(sgx_err(
                            ParseErrorKind::Invalid,
                            "SGX.CPUSVN",
                            off,
                            "CPUSVN",
                        ));
                    }
                    cpusvn = Some(sv.to_vec());
                    continue;
                }
                if stag != Tag::Integer {
                    return Err(sgx_err(
                        ParseErrorKind::Invalid,
                        F,
                        off,
                        format!("{soid} not INTEGER"),
                    ));
                }
                let val = uint(sv, tdx, F, off)?;
                if soid == format!("{oid_tcb}.17") {
                    pcesvn = Some(val);
                } else if let Some(idx) = soid.strip_prefix(&format!("{oid_tcb}.")) {
                    if let Ok(i) = idx.parse::<usize>() {
                        if (1..=16).contains(&i) {
                            comps[i - 1] = Some(val);
                        }
                    }
                }
            }
        } else {
            fields.push((oid, vtag, vval, off));
        }
    }
    let get = |suffix: &str| {
        let oid = format!("{OID_SGX_EXTENSIONS}.{suffix}");
        fields.iter().find(|f| f.0 == oid).map(|f| (f.1, f.2, f.3))
    };
    let octets = |suffix: &str, size: usize, name: &'static str| -> Result<Vec<u8>> {
        match get(suffix) {
            None => Err(sgx_err(
                ParseErrorKind::Invalid,
                name,
                0,
                format!("lacks {name}"),
            )),
            Some((t, v, off)) if t != Tag::OctetString || v.len() != size => Err(sgx_err(
                ParseErrorKind::Invalid,
                name,
                off,
                format!("{name} malformed"),
            )),
            Some((_, v, _)) => Ok(v.to_vec()),
        }
    };
    let (Some(pcesvn), Some(cpusvn)) = (pcesvn, cpusvn) else {
        return Err(sgx_err(
            ParseErrorKind::Invalid,
            "SGX.TCB",
            0,
            "TCB lacks components",
        ));
    };
    let mut components = [0u64; 16];
    for (i, c) in comps.iter().enumerate() {
        components[i] = c.ok_or_else(|| {
            sgx_err(
                ParseErrorKind::Invalid,
                "SGX.TCB",
                0,
                "TCB lacks components",
            )
        })?;
    }
    let sgx_type = match get("5") {
        None => 0,
        Some((_, v, off)) => uint(v, tdx, F, off)?,
    };
    Ok(SgxExtension {
        ppid: octets("1", 16, "PPID")?,
        cpusvn_components: components,
        pcesvn,
        cpusvn,
        pceid: octets("3", 2, "PCE-ID")?,
        fmspc: octets("4", 6, "FMSPC")?,
        sgx_type,
        platform_instance_id: get("6")
            .filter(|(t, _, _)| *t == Tag::OctetString)
            .map(|(_, v, _)| v.to_vec()),
    })
}

// ---- TCG DICE -----------------------------------------------------------------------------

/// One FWID: a hash algorithm and a digest (DICE Attestation Architecture §6.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fwid {
    pub hash_alg: String,
    pub digest: Vec<u8>,
}

/// DiceTcbInfo (all fields OPTIONAL, IMPLICIT context tags [0]..[10]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiceTcbInfo {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub svn: Option<u64>,
    pub layer: Option<u64>,
    pub index: Option<u64>,
    pub fwids: Vec<Fwid>,
    /// OperationalFlags BIT STRING content (first byte: unused bits), as carried.
    pub flags: Option<Vec<u8>>,
    pub vendor_info: Option<Vec<u8>>,
    pub tcb_type: Option<Vec<u8>>,
    /// CompositeDeviceID shape only: its version and the device key (DER SPKI).
    pub composite_version: Option<u64>,
    pub device_public_key: Option<Vec<u8>>,
}

fn fwid(v: &[u8], off: usize) -> Result<Fwid> {
    const F: &str = "DiceTcbInfo";
    let p = Platform::X509;
    let parts = elements(v, off, F, p)?;
    if parts.len() != 2 || parts[0].0 != Tag::ObjectIdentifier || parts[1].0 != Tag::OctetString {
        return Err(ParseError::new(
            p,
            ParseErrorKind::Invalid,
            F,
            off,
            format!("{F}: FWID shape"),
        ));
    }
    Ok(Fwid {
        hash_alg: oid_of(parts[0].1, p, F, off)?,
        digest: parts[1].1.to_vec(),
    })
}

/// Parse a DiceTcbInfo extension value.
pub fn dice_tcb_info(raw: &[u8]) -> Result<DiceTcbInfo> {
    const F: &str = "DiceTcbInfo";
    let p = Platform::X509;
    let bad = |off: usize, d: &str| {
        ParseError::new(p, ParseErrorKind::Invalid, F, off, format!("{F}: {d}"))
    };
    let mut out = DiceTcbInfo::default();
    let items = children(raw, F, p)?;
    if items.first().is_some_and(|i| i.0 == Tag::Integer) {
        let [(_, ver, voff), (ktag, key, koff), (ftag, fw, foff)] = items.as_slice() else {
            return Err(bad(0, "CompositeDeviceID is not (version, deviceID, fwid)"));
        };
        if *ktag != Tag::Sequence || *ftag != Tag::Sequence {
            return Err(bad(
                *koff,
                "CompositeDeviceID deviceID or fwid is not a SEQUENCE",
            ));
        }
        let spki = super::der_tlv(u8::from(*ktag), key);
        x509_cert::spki::SubjectPublicKeyInfoRef::from_der(&spki)
            .map_err(|_| bad(*koff, "deviceID is not a SubjectPublicKeyInfo"))?;
        out.composite_version = Some(uint(ver, p, F, *voff)?);
        out.device_public_key = Some(spki);
        out.fwids.push(fwid(fw, *foff)?);
        return Ok(out);
    }
    let mut last: Option<u8> = None;
    for (tag, v, off) in items {
        let Tag::ContextSpecific {
            constructed,
            number,
        } = tag
        else {
            return Err(bad(off, "field without a context tag"));
        };
        let n = number.value();
        if last.is_some_and(|l| n <= l) {
            return Err(bad(off, "fields out of order or repeated"));
        }
        last = Some(n);
        let text = || {
            std::str::from_utf8(v)
                .map(str::to_owned)
                .map_err(|_| bad(off, "string is not UTF-8"))
        };
        match (n, constructed) {
            (0, false) => out.vendor = Some(text()?),
            (1, false) => out.model = Some(text()?),
            (2, false) => out.version = Some(text()?),
            (3, false) => out.svn = Some(uint(v, p, F, off)?),
            (4, false) => out.layer = Some(uint(v, p, F, off)?),
            (5, false) => out.index = Some(uint(v, p, F, off)?),
            (6, true) => {
                for (ftag, fv, foff) in elements(v, off, F, p)? {
                    if ftag != Tag::Sequence {
                        return Err(bad(foff, "FWID is not a SEQUENCE"));
                    }
                    out.fwids.push(fwid(fv, foff)?);
                }
            }
            (7, false) => out.flags = Some(v.to_vec()),
            (8, false) => out.vendor_info = Some(v.to_vec()),
            (9, false) => out.tcb_type = Some(v.to_vec()),
            (10, false) => {}
            _ => return Err(bad(off, "unknown or mis-encoded field")),
        }
    }
    Ok(out)
}
