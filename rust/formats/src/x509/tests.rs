//! X.509 parsing on the repository's own vectors (`vectors/sev-snp`: an AMD-shaped
//! hierarchy with a serial-0 VCEK, RSA-PSS ASK/ARK and CRLs) and on variants of them
//! re-encoded with `x509-cert`, so each refusal is the one defect put in.

use super::vendor::{amd_extensions, dice_tcb_info};
use super::*;
use der::asn1::OctetString;
use proptest::prelude::*;

const VCEK: &[u8] = include_bytes!("../../../../vectors/sev-snp/vcek-milan.der");
const VCEK_REVOKED: &[u8] = include_bytes!("../../../../vectors/sev-snp/vcek-milan-revoked.der");
const VLEK: &[u8] = include_bytes!("../../../../vectors/sev-snp/vlek-milan.der");
const ARK_PEM: &[u8] = include_bytes!("../../../../vectors/sev-snp/ark-milan.pem");
const ASK_PEM: &[u8] = include_bytes!("../../../../vectors/sev-snp/ask-milan.pem");
const CRL: &[u8] = include_bytes!("../../../../vectors/sev-snp/crl-milan.der");
const CRL_EXPIRED: &[u8] = include_bytes!("../../../../vectors/sev-snp/crl-milan-expired.der");

/// The DER inside a one-block PEM file.
fn pem_der(pem: &[u8]) -> Vec<u8> {
    der::pem::decode_vec(pem).expect("PEM vector").1
}

fn code(r: Result<impl std::fmt::Debug>) -> String {
    r.expect_err("refused").code()
}

/// The VCEK decoded with `x509-cert`, edited by `f`, re-encoded (signature unchanged: the
/// parser checks no signature).
fn edited(f: impl FnOnce(&mut x509_cert::Certificate)) -> Vec<u8> {
    let mut c = x509_cert::Certificate::from_der(VCEK).expect("vector decodes");
    f(&mut c);
    c.to_der().expect("re-encodes")
}

fn with_extension(oid: &str, value: Vec<u8>) -> Vec<u8> {
    edited(|c| {
        c.tbs_certificate
            .extensions
            .get_or_insert_with(Vec::new)
            .push(x509_cert::ext::Extension {
                extn_id: ObjectIdentifier::new_unwrap(oid),
                critical: false,
                extn_value: OctetString::new(value).expect("octets"),
            })
    })
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    der_tlv(tag, content)
}

const SHA384_OID_DER: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
];

fn fwid(digest: &[u8]) -> Vec<u8> {
    tlv(0x30, &[SHA384_OID_DER, &tlv(0x04, digest)].concat())
}

#[test]
fn vcek_with_serial_zero_parses() {
    let c = parse_certificate(VCEK).expect("VCEK parses");
    assert_eq!(c.version, 3);
    // AMD's VCEKs carry serial 0 (RFC 5280 §4.1.2.2 says to be prepared for it).
    assert_eq!(c.serial, vec![0]);
    assert_eq!(c.subject_cn, "SEV-VCEK");
    assert_eq!(c.issuer_cn, "SEV-Milan");
    assert_eq!(c.signature_alg.oid, "1.2.840.113549.1.1.10"); // RSASSA-PSS
    assert_eq!(c.spki_alg.oid, OID_EC_PUBLIC_KEY);
    assert!(!c.is_ca() && !c.is_self_issued());
    assert_eq!(c.der, VCEK);
    // tbs is the exact signed span of the input.
    assert!(VCEK.windows(c.tbs.len()).any(|w| w == c.tbs.as_slice()));
    match public_key(&c).expect("key") {
        PublicKey::Ec { curve, point } => {
            assert_eq!(curve, OID_P384);
            assert_eq!((point.len(), point[0]), (97, 4));
        }
        other => panic!("{other:?}"),
    }
    let p = pss_params(c.signature_alg.params.as_deref()).expect("PSS params");
    assert_eq!(
        (p.hash.as_str(), p.mgf_hash.as_str(), p.salt_length),
        ("2.16.840.1.101.3.4.2.2", "2.16.840.1.101.3.4.2.2", 48)
    );
    let amd = amd_extensions(&c).expect("AMD extensions");
    assert_eq!(amd.product_name.as_deref(), Some("Milan-B0"));
    assert_eq!(
        (amd.bl_spl, amd.tee_spl, amd.snp_spl, amd.ucode_spl),
        (Some(4), Some(0), Some(22), Some(213))
    );
    assert_eq!(amd.hwid.map(|h| h.len()), Some(64));
    assert_eq!(amd.csp_id, None);
    let revoked = parse_certificate(VCEK_REVOKED).expect("parses");
    assert_eq!(revoked.serial, vec![0x5e, 0xa1]);
}

#[test]
fn vlek_has_a_csp_id_and_no_hwid() {
    let c = parse_certificate(VLEK).expect("VLEK parses");
    let amd = amd_extensions(&c).expect("AMD extensions");
    assert_eq!(amd.hwid, None);
    assert_eq!(amd.csp_id.as_deref(), Some("CN=sealgate-test-csp.example"));
}

#[test]
fn ask_and_ark_are_rsa_4096_cas() {
    let ark = parse_certificate(&pem_der(ARK_PEM)).expect("ARK");
    let ask = parse_certificate(&pem_der(ASK_PEM)).expect("ASK");
    assert!(ark.is_ca() && ark.is_self_issued());
    assert!(ask.is_ca() && !ask.is_self_issued());
    assert_eq!(ask.issuer, ark.subject);
    assert_eq!(ark.subject_cn, "ARK-Milan");
    assert_eq!(ask.subject_cn, "SEV-Milan");
    for c in [&ark, &ask] {
        match public_key(c).expect("key") {
            PublicKey::Rsa { modulus, exponent } => {
                let m = &modulus[modulus.iter().position(|&b| b != 0).unwrap()..];
                assert_eq!(m.len(), 512);
                assert_eq!(exponent, vec![1, 0, 1]);
            }
            other => panic!("{other:?}"),
        }
        let ku = c.key_usage.expect("keyUsage");
        assert!(ku.key_cert_sign && ku.crl_sign);
    }
}

#[test]
fn crl_lists_the_revoked_serial() {
    let crl = parse_crl(CRL).expect("CRL parses");
    let ark = parse_certificate(&pem_der(ARK_PEM)).expect("ARK");
    assert_eq!(crl.issuer, ark.subject);
    assert_eq!(crl.issuer_cn, "ARK-Milan");
    assert!(crl.revokes(&[0x5e, 0xa1]));
    assert!(!crl.revokes(&[0]));
    assert!(crl.next_update.is_some_and(|n| n > crl.this_update));
    let old = parse_crl(CRL_EXPIRED).expect("parses");
    assert!(old.next_update.expect("nextUpdate") < crl.this_update);
    // A certificate is not a CRL and a CRL is not a certificate.
    assert!(parse_crl(VCEK).is_err());
    assert!(parse_certificate(CRL).is_err());
}

#[test]
fn truncated_input_is_truncated() {
    for cut in [0, 1, 4, VCEK.len() / 2, VCEK.len() - 1] {
        assert_eq!(
            code(parse_certificate(&VCEK[..cut])),
            "x509.format.truncated",
            "cut {cut}"
        );
    }
    assert_eq!(
        code(parse_crl(&CRL[..CRL.len() - 1])),
        "x509.format.truncated"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut b = VCEK.to_vec();
    b.push(0);
    assert_eq!(code(parse_certificate(&b)), "x509.format.trailing_bytes");
    let mut b = CRL.to_vec();
    b.extend_from_slice(&[0x05, 0x00]);
    assert_eq!(code(parse_crl(&b)), "x509.format.trailing_bytes");
}

#[test]
fn oversize_input_is_refused_before_decoding() {
    let big = vec![0x30; MAX_CERT_LEN + 1];
    assert_eq!(code(parse_certificate(&big)), "x509.format.too_large");
    let big = vec![0x30; MAX_CRL_LEN + 1];
    assert_eq!(code(parse_crl(&big)), "x509.format.too_large");
    // Too many extensions (each distinct, so the count is what is refused).
    let many = edited(|c| {
        let exts = c.tbs_certificate.extensions.get_or_insert_with(Vec::new);
        for i in 0..MAX_EXTENSIONS as u32 {
            exts.push(x509_cert::ext::Extension {
                extn_id: ObjectIdentifier::new_unwrap(&format!("1.3.6.1.4.1.99999.{i}")),
                critical: false,
                extn_value: OctetString::new(vec![0x05, 0x00]).expect("octets"),
            });
        }
    });
    assert_eq!(code(parse_certificate(&many)), "x509.format.too_large");
}

#[test]
fn only_v3_is_accepted() {
    let v1 = edited(|c| {
        c.tbs_certificate.version = Version::V1;
        c.tbs_certificate.extensions = None;
    });
    let e = parse_certificate(&v1).expect_err("v1");
    assert_eq!(e.code(), "x509.format.invalid");
    assert!(e.detail.contains("version"), "{}", e.detail);
    let v2 = edited(|c| {
        c.tbs_certificate.version = Version::V2;
        c.tbs_certificate.extensions = None;
    });
    assert_eq!(code(parse_certificate(&v2)), "x509.format.invalid");
    // The re-encoding itself is faithful: unedited, it is the vector.
    assert_eq!(edited(|_| {}), VCEK);
}

#[test]
fn crl_version_other_than_v1_or_v2_is_refused() {
    let mut c = x509_cert::crl::CertificateList::from_der(CRL).expect("vector decodes");
    assert!(parse_crl(&c.to_der().expect("re-encodes")).is_ok());
    c.tbs_cert_list.version = x509_cert::certificate::Version::V3;
    let e = parse_crl(&c.to_der().expect("re-encodes")).expect_err("v3 CRL refused");
    assert_eq!(
        (e.code().as_str(), e.field),
        ("x509.format.invalid", "tbsCertList.version")
    );
}

#[test]
fn non_minimal_oids_are_refused() {
    assert!(oid_minimal(&[0x2a, 0x86, 0x48, 0x01]));
    assert!(!oid_minimal(&[0x2a, 0x80, 0x01]));
    assert!(!oid_minimal(&[0x2a, 0x86, 0x48, 0x80, 0x01]));
    assert!(!oid_minimal(&[0x80, 0x01]));
    // 1.2.840 with its 840 padded: const-oid decodes it to the same arc, the parser refuses it.
    let padded =
        ObjectIdentifier::from_bytes(&[0x2a, 0x80, 0x86, 0x48]).expect("const-oid takes it");
    assert_eq!(padded.to_string(), "1.2.840");
    let bad = edited(|c| {
        c.tbs_certificate
            .extensions
            .get_or_insert_with(Vec::new)
            .push(x509_cert::ext::Extension {
                extn_id: padded,
                critical: false,
                extn_value: OctetString::new(vec![]).expect("octets"),
            })
    });
    let e = parse_certificate(&bad).expect_err("padded OID refused");
    assert_eq!(e.code(), "x509.format.invalid");
    assert!(e.detail.contains("not minimally encoded"), "{}", e.detail);
}

#[test]
fn duplicate_extension_is_refused() {
    let dup = edited(|c| {
        let exts = c.tbs_certificate.extensions.as_mut().expect("extensions");
        let first = exts[0].clone();
        exts.push(first);
    });
    let e = parse_certificate(&dup).expect_err("duplicate");
    assert_eq!(e.code(), "x509.format.invalid");
    assert!(e.detail.contains("more than once"), "{}", e.detail);
}

#[test]
fn signature_bit_string_with_unused_bits_is_refused() {
    let bad = edited(|c| {
        let raw = c.signature.raw_bytes().to_vec();
        c.signature = BitString::new(3, raw).expect("bit string");
    });
    let e = parse_certificate(&bad).expect_err("unused bits");
    assert_eq!(e.code(), "x509.format.invalid");
    assert_eq!(e.field, "Certificate.signatureValue");
    // signatureAlgorithm differing from tbsCertificate.signature (RFC 5280 §4.1.1.2).
    let other = edited(|c| {
        c.signature_algorithm.oid = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
        c.signature_algorithm.parameters = None;
    });
    assert_eq!(code(parse_certificate(&other)), "x509.format.invalid");
}

#[test]
fn malformed_standard_extension_is_refused_at_parse_time() {
    // basicConstraints whose value is not a SEQUENCE.
    let bad = edited(|c| {
        c.tbs_certificate
            .extensions
            .get_or_insert_with(Vec::new)
            .push(x509_cert::ext::Extension {
                extn_id: ObjectIdentifier::new_unwrap("2.5.29.19"),
                critical: true,
                extn_value: OctetString::new(vec![0x01, 0x01, 0xff]).expect("octets"),
            })
    });
    assert_eq!(code(parse_certificate(&bad)), "x509.format.invalid");
}

#[test]
fn dice_tcb_info_fields() {
    let digest = [0xabu8; 48];
    let body = [
        tlv(0x80, b"NVIDIA"),
        tlv(0x81, b"GH100"),
        tlv(0x82, b"96.00.5E"),
        tlv(0x83, &[0x05]),
        tlv(0x84, &[0x01]),
        tlv(0x85, &[0x00]),
        tlv(0xa6, &fwid(&digest)),
        tlv(0x87, &[0x07, 0x80]),
        tlv(0x88, &[0xde, 0xad]),
        tlv(0x89, &[0x01]),
    ]
    .concat();
    let raw = tlv(0x30, &body);
    let cert = parse_certificate(&with_extension(vendor::OID_DICE_TCB_INFO, raw.clone()))
        .expect("certificate with DiceTcbInfo");
    let value = &cert
        .extension(vendor::OID_DICE_TCB_INFO)
        .expect("present")
        .value;
    assert_eq!(value, &raw);
    let t = dice_tcb_info(value).expect("DiceTcbInfo");
    assert_eq!(t.vendor.as_deref(), Some("NVIDIA"));
    assert_eq!(t.model.as_deref(), Some("GH100"));
    assert_eq!(t.version.as_deref(), Some("96.00.5E"));
    assert_eq!((t.svn, t.layer, t.index), (Some(5), Some(1), Some(0)));
    assert_eq!(t.fwids.len(), 1);
    assert_eq!(t.fwids[0].hash_alg, "2.16.840.1.101.3.4.2.2");
    assert_eq!(t.fwids[0].digest, digest);
    assert_eq!(t.flags.as_deref(), Some(&[0x07, 0x80][..]));
    assert_eq!(t.vendor_info.as_deref(), Some(&[0xde, 0xad][..]));
    assert_eq!(t.tcb_type.as_deref(), Some(&[0x01][..]));
    assert_eq!((t.composite_version, t.device_public_key), (None, None));
    // Out of order, repeated, and untagged fields are refused.
    let swapped = tlv(0x30, &[tlv(0x81, b"m"), tlv(0x80, b"v")].concat());
    assert_eq!(code(dice_tcb_info(&swapped)), "x509.format.invalid");
    let repeated = tlv(0x30, &[tlv(0x80, b"v"), tlv(0x80, b"v")].concat());
    assert_eq!(code(dice_tcb_info(&repeated)), "x509.format.invalid");
    let untagged = tlv(0x30, &tlv(0x0c, b"v"));
    assert_eq!(code(dice_tcb_info(&untagged)), "x509.format.invalid");
    let bad_fwid = tlv(0x30, &tlv(0xa6, &tlv(0x30, &tlv(0x04, &digest))));
    assert_eq!(code(dice_tcb_info(&bad_fwid)), "x509.format.invalid");
}

#[test]
fn dice_composite_device_id() {
    let vcek = parse_certificate(VCEK).expect("VCEK");
    let digest = [0x11u8; 48];
    let raw = tlv(
        0x30,
        &[tlv(0x02, &[0x01]), vcek.spki.clone(), fwid(&digest)].concat(),
    );
    let cert = parse_certificate(&with_extension(vendor::OID_DICE_TCB_INFO, raw))
        .expect("certificate with CompositeDeviceID");
    let t = dice_tcb_info(
        &cert
            .extension(vendor::OID_DICE_TCB_INFO)
            .expect("ext")
            .value,
    )
    .expect("CompositeDeviceID");
    assert_eq!(t.composite_version, Some(1));
    assert_eq!(t.device_public_key.as_deref(), Some(vcek.spki.as_slice()));
    assert_eq!(t.fwids.len(), 1);
    assert_eq!(t.fwids[0].digest, digest);
    assert_eq!(t.vendor, None);
    // deviceID that is not a SubjectPublicKeyInfo; a missing fwid.
    let not_spki = tlv(
        0x30,
        &[tlv(0x02, &[0x01]), tlv(0x30, &[0x05, 0x00]), fwid(&digest)].concat(),
    );
    assert_eq!(code(dice_tcb_info(&not_spki)), "x509.format.invalid");
    let short = tlv(0x30, &[tlv(0x02, &[0x01]), vcek.spki.clone()].concat());
    assert_eq!(code(dice_tcb_info(&short)), "x509.format.invalid");
}

fn vectors() -> Vec<Vec<u8>> {
    vec![
        VCEK.to_vec(),
        VLEK.to_vec(),
        pem_der(ARK_PEM),
        pem_der(ASK_PEM),
        CRL.to_vec(),
    ]
}

/// Every parser entry point on `b`: none may panic.
fn parse_all(b: &[u8]) {
    if let Ok(c) = parse_certificate(b) {
        let _ = public_key(&c);
        let _ = pss_params(c.signature_alg.params.as_deref());
        let _ = amd_extensions(&c);
        if let Some(e) = c.extension(vendor::OID_DICE_TCB_INFO) {
            let _ = dice_tcb_info(&e.value);
        }
        if let Some(e) = c.extension(vendor::OID_SGX_EXTENSIONS) {
            let _ = vendor::sgx_extension(&e.value);
        }
        assert_eq!(c.der, b);
    }
    if let Ok(crl) = parse_crl(b) {
        assert_eq!(crl.der, b);
        assert!(crl.revoked.windows(2).all(|w| w[0] < w[1]));
    }
    let _ = dice_tcb_info(b);
    let _ = vendor::sgx_extension(b);
    let _ = ecdsa_sig_value(b);
    let _ = pss_params(Some(b));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&data);
    }

    #[test]
    fn mutated_vectors_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut b = vectors().swap_remove(which);
        for (pos, byte, op) in edits {
            if b.is_empty() {
                break;
            }
            let i = pos % b.len();
            match op {
                0 => b[i] ^= byte | 1,
                1 => b[i] = byte,
                2 => { b.insert(i, byte); }
                _ => b.truncate(i),
            }
        }
        parse_all(&b);
    }
}
