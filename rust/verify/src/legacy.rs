//! The two SHA-1 signature combinations aws-lc-rs's safe API does not offer — ECDSA P-384
//! over SHA-1 and RSASSA-PSS with SHA-1 — done through AWS-LC's C API (the same library,
//! one layer down). TPM 2.0 allows any scheme hash with any key (Part 1, §B.7/§C.6); such
//! quotes verify and are reported weak like every SHA-1 quote.
//!
//! Every pointer allocated here is freed on every path; no input can make these functions
//! panic (lengths are passed explicitly, never trusted from data).

use aws_lc_rs::digest;
use aws_lc_sys as sys;
use std::ptr;

fn sha1(msg: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, msg)
        .as_ref()
        .to_vec()
}

/// ECDSA P-384 over SHA-1(msg). `point` is the uncompressed SEC1 point (0x04 ‖ x ‖ y).
pub fn ecdsa_p384_sha1(point: &[u8], msg: &[u8], r: &[u8], s: &[u8]) -> bool {
    let d = sha1(msg);
    // SAFETY: AWS-LC C API; each object is checked for NULL and freed below.
    unsafe {
        let key = sys::EC_KEY_new_by_curve_name(sys::NID_secp384r1);
        if key.is_null() {
            return false;
        }
        let group = sys::EC_KEY_get0_group(key);
        let pt = sys::EC_POINT_new(group);
        let mut ok = !pt.is_null()
            && sys::EC_POINT_oct2point(group, pt, point.as_ptr(), point.len(), ptr::null_mut())
                == 1
            && sys::EC_KEY_set_public_key(key, pt) == 1;
        if !pt.is_null() {
            sys::EC_POINT_free(pt);
        }
        let sig = sys::ECDSA_SIG_new();
        let br = sys::BN_bin2bn(r.as_ptr(), r.len(), ptr::null_mut());
        let bs = sys::BN_bin2bn(s.as_ptr(), s.len(), ptr::null_mut());
        if sig.is_null() || br.is_null() || bs.is_null() || sys::ECDSA_SIG_set0(sig, br, bs) != 1 {
            // set0 did not take ownership: free what exists.
            if !br.is_null() {
                sys::BN_free(br);
            }
            if !bs.is_null() {
                sys::BN_free(bs);
            }
            ok = false;
        }
        ok = ok && sys::ECDSA_do_verify(d.as_ptr(), d.len(), sig, key) == 1;
        if !sig.is_null() {
            sys::ECDSA_SIG_free(sig);
        }
        sys::EC_KEY_free(key);
        ok
    }
}

/// RSASSA-PSS with SHA-1 and MGF1-SHA-1, salt length = digest length (TPM 2.0 Part 1,
/// §B.7). `pkcs1_der` is the RSAPublicKey DER.
pub fn rsa_pss_sha1(pkcs1_der: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let d = sha1(msg);
    // SAFETY: AWS-LC C API; the RSA object is checked for NULL and freed.
    unsafe {
        let rsa = sys::RSA_public_key_from_bytes(pkcs1_der.as_ptr(), pkcs1_der.len());
        if rsa.is_null() {
            return false;
        }
        let md = sys::EVP_sha1();
        // salt_len -1: "salt length equals digest length" (RSA_PSS_SALTLEN_DIGEST).
        let ok = sys::RSA_verify_pss_mgf1(
            rsa,
            d.as_ptr(),
            d.len(),
            md,
            md,
            -1,
            sig.as_ptr(),
            sig.len(),
        ) == 1;
        sys::RSA_free(rsa);
        ok
    }
}
