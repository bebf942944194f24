//! One PKI layer for every platform: certificate and CRL signatures, and one chain builder.
//!
//! The builder follows RFC 5280 §6.1 in the parts attestation hierarchies use: from the
//! leaf it looks for issuers by name (and key identifier, §4.2.1.1), among the trust
//! anchors first and then the untrusted pool, and accepts a candidate only when
//! - it is a CA (basicConstraints cA, §4.2.1.9) whose pathLenConstraint allows the
//!   intermediates below it,
//! - its keyUsage, when present, allows keyCertSign (§4.2.1.3),
//! - the signature algorithm is one the vendor profile allows, and the issuer key meets the
//!   profile (AMD: RSA-4096 only),
//! - the signature verifies, and
//! - it is valid at the verification time (when one is given: callers that cache chains
//!   check the windows per call instead).
//!
//! A path ends at a trust anchor (a certificate the caller trusts byte for byte); a
//! self-issued certificate that is not an anchor ends nothing. Several candidates with the
//! same name (a planted look-alike next to the genuine one) are each tried; the failure
//! reported is that of the candidate that got furthest.
//!
//! Failures carry codes `x509.chain.*` / `x509.crl.*`; each platform maps them to its own
//! stable codes (its vendor profile).

use crate::crypto::{hash, CryptoError, Curve, Hash, KeyKind, Scheme, VerifyingKey};
use crate::failure::{hex, Failure};
use sealgate_formats::x509::{
    ecdsa_sig_value, modulus_bits, pss_params, public_key, AlgorithmId, Certificate, Crl,
    PublicKey, OID_P256, OID_P384,
};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

pub const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
pub const OID_SHA384_RSA: &str = "1.2.840.113549.1.1.12";
pub const OID_SHA512_RSA: &str = "1.2.840.113549.1.1.13";
pub const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
pub const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
pub const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
pub const OID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
pub const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
pub const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
pub const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";

/// A signature algorithm sealgate verifies X.509 signatures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigAlg {
    RsaPkcs1(Hash),
    /// RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash (RFC 8017
    /// §9.1; what every attestation vendor using PSS signs with, AMD's SHA-384/48).
    RsaPss(Hash),
    Ecdsa(Hash),
}

impl SigAlg {
    /// Names used in vendor profiles: `rsa-pkcs1-sha256`, `rsa-pss-sha384`, `ecdsa-sha256`, ...
    pub fn name(self) -> String {
        match self {
            SigAlg::RsaPkcs1(h) => format!("rsa-pkcs1-{}", h.name()),
            SigAlg::RsaPss(h) => format!("rsa-pss-{}", h.name()),
            SigAlg::Ecdsa(h) => format!("ecdsa-{}", h.name()),
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        let (kind, h) = s.rsplit_once('-')?;
        let h = match h {
            "sha256" => Hash::Sha256,
            "sha384" => Hash::Sha384,
            "sha512" => Hash::Sha512,
            _ => return None,
        };
        match kind {
            "rsa-pkcs1" => Some(SigAlg::RsaPkcs1(h)),
            "rsa-pss" => Some(SigAlg::RsaPss(h)),
            "ecdsa" => Some(SigAlg::Ecdsa(h)),
            _ => None,
        }
    }
}

fn hash_of(oid: &str) -> Option<Hash> {
    match oid {
        OID_SHA256 => Some(Hash::Sha256),
        OID_SHA384 => Some(Hash::Sha384),
        OID_SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}

/// The algorithm an AlgorithmIdentifier names, or a failure saying why it is not one
/// sealgate verifies.
pub fn sig_alg(alg: &AlgorithmId) -> Result<SigAlg, Failure> {
    let unsupported = |d: String| Failure::new("x509.chain.unsupported_algorithm", d);
    match alg.oid.as_str() {
        OID_SHA256_RSA => Ok(SigAlg::RsaPkcs1(Hash::Sha256)),
        OID_SHA384_RSA => Ok(SigAlg::RsaPkcs1(Hash::Sha384)),
        OID_SHA512_RSA => Ok(SigAlg::RsaPkcs1(Hash::Sha512)),
        OID_ECDSA_SHA256 => Ok(SigAlg::Ecdsa(Hash::Sha256)),
        OID_ECDSA_SHA384 => Ok(SigAlg::Ecdsa(Hash::Sha384)),
        OID_ECDSA_SHA512 => Ok(SigAlg::Ecdsa(Hash::Sha512)),
        OID_RSASSA_PSS => {
            let p = pss_params(alg.params.as_deref())
                .map_err(|e| unsupported(format!("RSASSA-PSS parameters: {}", e.detail)))?;
            let h = hash_of(&p.hash);
            match h {
                Some(h) if p.mgf_hash == p.hash && p.salt_length == h.size() as u64 => {
                    Ok(SigAlg::RsaPss(h))
                }
                _ => Err(unsupported(format!(
                    "RSASSA-PSS with hash {}, MGF1 hash {}, salt {}",
                    p.hash, p.mgf_hash, p.salt_length
                ))),
            }
        }
        other => Err(unsupported(format!("signature algorithm {other}"))),
    }
}

/// The certificate's key, ready to verify with.
pub fn verifying_key(cert: &Certificate) -> Result<VerifyingKey, Failure> {
    let bad = |d: String| Failure::new("x509.chain.bad_key", d);
    match public_key(cert).map_err(|e| bad(e.detail))? {
        PublicKey::Rsa { modulus, exponent } => {
            VerifyingKey::rsa(&modulus, &exponent).map_err(|e| bad(crypto_detail(&e)))
        }
        PublicKey::Ec { curve, point } => {
            let c = match curve.as_str() {
                OID_P256 => Curve::P256,
                OID_P384 => Curve::P384,
                other => return Err(bad(format!("EC curve {other}"))),
            };
            let n = c.coordinate_size();
            if point.len() != 1 + 2 * n || point[0] != 4 {
                return Err(bad(format!("{} point is not uncompressed", c.name())));
            }
            VerifyingKey::ec(c, &point[1..1 + n], &point[1 + n..])
                .map_err(|e| bad(crypto_detail(&e)))
        }
        PublicKey::Other(oid) => Err(bad(format!("public key algorithm {oid}"))),
    }
}

fn crypto_detail(e: &CryptoError) -> String {
    match e {
        CryptoError::BadSignature => "signature does not verify".into(),
        CryptoError::Unsupported(s) | CryptoError::BadKey(s) => s.clone(),
    }
}

/// Check `signature` over `tbs` with `key` under `alg`.
///
/// A signature of one key type under an issuer key of another (an RSA signature and an EC
/// issuer, say) is a signature that issuer did not make: `x509.chain.signature_invalid`,
/// the same answer as any other key that did not sign (a same-name look-alike issuer
/// must not get a different code for choosing another key type).
pub fn verify_signature(
    alg: SigAlg,
    tbs: &[u8],
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<(), Failure> {
    let matches = matches!(
        (alg, key.kind()),
        (SigAlg::RsaPkcs1(_) | SigAlg::RsaPss(_), KeyKind::Rsa { .. })
            | (SigAlg::Ecdsa(_), KeyKind::Ec(_))
    );
    if !matches {
        return Err(Failure::new(
            "x509.chain.signature_invalid",
            format!(
                "signature does not verify: {} signature, issuer key {}",
                alg.name(),
                match key.kind() {
                    KeyKind::Rsa { bits } => format!("RSA-{bits}"),
                    KeyKind::Ec(c) => c.name().to_string(),
                }
            ),
        ));
    }
    let res = match alg {
        SigAlg::RsaPkcs1(h) => key.verify_rsa(Scheme::RsaPkcs1v15, h, tbs, signature),
        SigAlg::RsaPss(h) => key.verify_rsa(Scheme::RsaPss, h, tbs, signature),
        SigAlg::Ecdsa(h) => match ecdsa_sig_value(signature) {
            Ok((r, s)) => key.verify_ecdsa(h, tbs, &r, &s),
            Err(_) => Err(CryptoError::BadSignature),
        },
    };
    res.map_err(|e| match e {
        CryptoError::BadSignature => {
            Failure::new("x509.chain.signature_invalid", "signature does not verify")
        }
        other => Failure::new("x509.chain.unsupported_algorithm", crypto_detail(&other)),
    })
}

/// What a vendor's hierarchy allows.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Signature algorithms allowed on every certificate and CRL (never empty: an empty
    /// list allows nothing).
    pub algorithms: Vec<SigAlg>,
    /// Most certificates in a path, leaf and anchor included.
    pub max_depth: usize,
    /// When set, every issuer's key must be RSA with exactly this many bits.
    pub issuer_rsa_bits: Option<usize>,
    /// Verify the anchor's own (self-)signature too, under the same algorithms.
    pub check_anchor_signature: bool,
}

/// Verified signatures, so a bundle holding certificates already checked costs no public-key
/// work: a bounded set of (SHA-256 of the signed object, SHA-256 of the issuer certificate).
/// Entries are 64 bytes, so the count bounds the memory; the oldest go first.
type MemoKey = [u8; 64];

pub struct SignatureMemo {
    /// The set, and the insertion order for eviction.
    inner: Mutex<(HashSet<MemoKey>, VecDeque<MemoKey>)>,
    capacity: usize,
}

impl SignatureMemo {
    pub fn new(capacity: usize) -> Self {
        SignatureMemo {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
        }
    }

    fn key(signed_der: &[u8], issuer: &Certificate) -> [u8; 64] {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&hash(Hash::Sha256, &[signed_der]));
        k[32..].copy_from_slice(&hash(Hash::Sha256, &[&issuer.der]));
        k
    }

    fn contains(&self, k: &[u8; 64]) -> bool {
        self.inner.lock().map(|g| g.0.contains(k)).unwrap_or(false)
    }

    fn insert(&self, k: [u8; 64]) {
        if let Ok(mut g) = self.inner.lock() {
            if g.0.insert(k) {
                g.1.push_back(k);
                while g.1.len() > self.capacity {
                    if let Some(old) = g.1.pop_front() {
                        g.0.remove(&old);
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.1.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.0.clear();
            g.1.clear();
        }
    }
}

/// A signed object (certificate or CRL) viewed for signature checking.
pub struct Signed<'a> {
    pub der: &'a [u8],
    pub tbs: &'a [u8],
    pub alg: &'a AlgorithmId,
    pub signature: &'a [u8],
}

impl<'a> From<&'a Certificate> for Signed<'a> {
    fn from(c: &'a Certificate) -> Self {
        Signed {
            der: &c.der,
            tbs: &c.tbs,
            alg: &c.signature_alg,
            signature: &c.signature,
        }
    }
}

impl<'a> From<&'a Crl> for Signed<'a> {
    fn from(c: &'a Crl) -> Self {
        Signed {
            der: &c.der,
            tbs: &c.tbs,
            alg: &c.signature_alg,
            signature: &c.signature,
        }
    }
}

/// Check that `issuer` signed `obj` with an algorithm the profile allows (memoised).
pub fn check_signed(
    obj: Signed<'_>,
    issuer: &Certificate,
    profile: &Profile,
    memo: Option<&SignatureMemo>,
) -> Result<(), Failure> {
    let alg = sig_alg(obj.alg)?;
    if !profile.algorithms.contains(&alg) {
        return Err(Failure::new(
            "x509.chain.algorithm_not_allowed",
            format!(
                "signed with {}, which this hierarchy does not use",
                alg.name()
            ),
        ));
    }
    let key = memo.map(|_| SignatureMemo::key(obj.der, issuer));
    if let (Some(m), Some(k)) = (memo, key.as_ref()) {
        if m.contains(k) {
            return Ok(());
        }
    }
    let vk = verifying_key(issuer)?;
    verify_signature(alg, obj.tbs, obj.signature, &vk)?;
    if let (Some(m), Some(k)) = (memo, key) {
        m.insert(k);
    }
    Ok(())
}

fn rsa_bits(cert: &Certificate) -> Option<usize> {
    match public_key(cert).ok()? {
        PublicKey::Rsa { modulus, .. } => Some(modulus_bits(&modulus)),
        _ => None,
    }
}

/// A certificate's validity at `at` (Unix seconds), RFC 5280 §4.1.2.5 (inclusive bounds).
pub fn check_validity(cert: &Certificate, at: i64, what: &str) -> Result<(), Failure> {
    if at < cert.not_before {
        return Err(Failure::new(
            "x509.chain.not_yet_valid",
            format!(
                "{what} is valid from {}, verification time {}",
                rfc3339(cert.not_before),
                rfc3339(at)
            ),
        ));
    }
    if at > cert.not_after {
        return Err(Failure::new(
            "x509.chain.expired",
            format!(
                "{what} expired {}, verification time {}",
                rfc3339(cert.not_after),
                rfc3339(at)
            ),
        ));
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` for a Unix time (civil-from-days, proleptic Gregorian).
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Most issuer candidates the builder checks for one path (each costs at most one signature
/// verification). Names and key identifiers are attacker-chosen in a supplied pool: n
/// certificates that all name one subject and all verify as each other's issuer (one key,
/// self-issued) make n!/(n-d)! paths of depth d, so the search is bounded by work, not only
/// by depth (RFC 5280 §6 leaves path discovery to the implementation; real hierarchies need
/// a handful of checks: one or two candidates per level, six levels at most).
pub const MAX_LINK_CHECKS: usize = 256;

/// Where a path's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Leaf,
    Pool(usize),
    Anchor(usize),
}

/// A verified path, leaf first, anchor last.
#[derive(Debug, Clone)]
pub struct Path {
    pub certs: Vec<Origin>,
    /// The intersection of the validity windows.
    pub not_before: i64,
    pub not_after: i64,
}

fn describe(c: &Certificate) -> String {
    if c.subject_cn.is_empty() {
        format!("certificate sha256 {}", hex(&hash(Hash::Sha256, &[&c.der])))
    } else {
        format!("{:?}", c.subject_cn)
    }
}

/// Whether `candidate` may have issued `cert`: names link and, when both state key
/// identifiers, those agree (RFC 5280 §4.2.1.1).
pub fn may_have_issued(cert: &Certificate, candidate: &Certificate) -> bool {
    if candidate.subject != cert.issuer {
        return false;
    }
    match (&cert.key_ids.authority, &candidate.key_ids.subject) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

struct Builder<'a> {
    pool: &'a [&'a Certificate],
    anchors: &'a [&'a Certificate],
    at: Option<i64>,
    profile: &'a Profile,
    memo: Option<&'a SignatureMemo>,
    /// The failure of the candidate that got furthest: (depth, signature verified, failure).
    best: Option<(usize, bool, Failure)>,
    /// Candidate checks done so far (bounded by `MAX_LINK_CHECKS`).
    checks: usize,
}

impl<'a> Builder<'a> {
    fn get(&self, o: Origin, leaf: &'a Certificate) -> &'a Certificate {
        match o {
            Origin::Leaf => leaf,
            Origin::Pool(i) => self.pool[i],
            Origin::Anchor(i) => self.anchors[i],
        }
    }

    fn note(&mut self, depth: usize, sig_ok: bool, f: Failure) {
        let better = match &self.best {
            None => true,
            Some((d, s, _)) => (depth, sig_ok) > (*d, *s),
        };
        if better {
            self.best = Some((depth, sig_ok, f));
        }
    }

    /// Check `issuer` as the issuer of `cert` (the `below`-th CA above the leaf).
    fn check_link(
        &mut self,
        cert: &Certificate,
        issuer: &Certificate,
        intermediates_below: usize,
    ) -> Result<(), (bool, Failure)> {
        let what = describe(issuer);
        let Some(bc) = issuer.basic_constraints.filter(|b| b.ca) else {
            return Err((
                false,
                Failure::new(
                    "x509.chain.not_ca",
                    format!("{what} is not a CA certificate"),
                ),
            ));
        };
        if let Some(n) = bc.path_len {
            if intermediates_below > usize::from(n) {
                return Err((false, Failure::new(
                    "x509.chain.path_len_exceeded",
                    format!("{what} allows {n} intermediate CA(s) below it, the path has {intermediates_below}"),
                )));
            }
        }
        if let Some(ku) = issuer.key_usage {
            if !ku.key_cert_sign {
                return Err((
                    false,
                    Failure::new(
                        "x509.chain.key_usage",
                        format!("{what} may not sign certificates (keyUsage lacks keyCertSign)"),
                    ),
                ));
            }
        }
        if let Some(bits) = self.profile.issuer_rsa_bits {
            if rsa_bits(issuer) != Some(bits) {
                return Err((
                    false,
                    Failure::new(
                        "x509.chain.bad_key",
                        format!("{what} key is not RSA-{bits}"),
                    ),
                ));
            }
        }
        check_signed(cert.into(), issuer, self.profile, self.memo).map_err(|mut f| {
            f.message = format!("{} (signed by {what}): {}", describe(cert), f.message);
            (false, f)
        })?;
        if let Some(at) = self.at {
            check_validity(issuer, at, &what).map_err(|f| (true, f))?;
        }
        Ok(())
    }

    fn extend(&mut self, leaf: &'a Certificate, path: &mut Vec<Origin>) -> bool {
        let cur = self.get(*path.last().unwrap_or(&Origin::Leaf), leaf);
        let depth = path.len();
        if depth >= self.profile.max_depth {
            self.note(
                depth,
                true,
                Failure::new(
                    "x509.chain.too_long",
                    format!(
                        "no trust anchor within {} certificates",
                        self.profile.max_depth
                    ),
                ),
            );
            return false;
        }
        // Intermediates between the leaf and the next issuer (RFC 5280 §6.1.4 (l): the
        // self-issued ones do not count).
        let below = path[1..]
            .iter()
            .filter(|o| !self.get(**o, leaf).is_self_issued())
            .count();
        let mut candidates: Vec<Origin> = Vec::new();
        for (i, a) in self.anchors.iter().enumerate() {
            if may_have_issued(cur, a) {
                candidates.push(Origin::Anchor(i));
            }
        }
        for (i, c) in self.pool.iter().enumerate() {
            // A pool copy of an anchor is the anchor; the same certificate twice in a path
            // is a loop.
            if may_have_issued(cur, c)
                && !self.anchors.iter().any(|a| a.der == c.der)
                && !path.iter().any(|o| self.get(*o, leaf).der == c.der)
            {
                candidates.push(Origin::Pool(i));
            }
        }
        if candidates.is_empty() {
            let f = if cur.is_self_issued() && depth > 1 {
                Failure::new(
                    "x509.chain.untrusted_root",
                    format!(
                        "{} (sha256 {}) is not a trusted root",
                        describe(cur),
                        hex(&hash(Hash::Sha256, &[&cur.der]))
                    ),
                )
            } else {
                Failure::new(
                    "x509.chain.no_issuer",
                    format!(
                        "no trusted or supplied certificate issued {}",
                        describe(cur)
                    ),
                )
            };
            self.note(depth, true, f);
            return false;
        }
        for o in candidates {
            if self.checks >= MAX_LINK_CHECKS {
                // The reported failure replaces whatever partial one was noted: the search
                // stopped, so no candidate's failure is the answer.
                self.best = Some((
                    usize::MAX,
                    true,
                    Failure::new(
                        "x509.chain.too_long",
                        format!(
                            "no trust anchor found within {MAX_LINK_CHECKS} issuer candidate checks"
                        ),
                    ),
                ));
                return false;
            }
            self.checks += 1;
            let issuer = self.get(o, leaf);
            if let Err((sig_ok, f)) = self.check_link(cur, issuer, below) {
                self.note(depth, sig_ok, f);
                continue;
            }
            path.push(o);
            if let Origin::Anchor(_) = o {
                if !self.profile.check_anchor_signature {
                    return true;
                }
                match check_signed(issuer.into(), issuer, self.profile, self.memo) {
                    Ok(()) => return true,
                    Err(mut f) => {
                        f.message = format!("{} (self-signed): {}", describe(issuer), f.message);
                        self.note(depth + 1, false, f);
                        path.pop();
                        continue;
                    }
                }
            }
            if self.extend(leaf, path) {
                return true;
            }
            path.pop();
        }
        false
    }
}

/// Build and verify a path from `leaf` to one of `anchors` through `pool`.
///
/// `at`: the verification time (Unix seconds); None leaves the validity windows to the
/// caller (the returned path states their intersection).
pub fn build_path(
    leaf: &Certificate,
    pool: &[&Certificate],
    anchors: &[&Certificate],
    at: Option<i64>,
    profile: &Profile,
    memo: Option<&SignatureMemo>,
) -> Result<Path, Failure> {
    if anchors.is_empty() {
        return Err(Failure::new(
            "x509.chain.no_anchors",
            "no trust anchor is configured",
        ));
    }
    if profile.algorithms.is_empty() {
        return Err(Failure::new(
            "x509.chain.algorithm_not_allowed",
            "the profile allows no signature algorithm",
        ));
    }
    if let Some(t) = at {
        check_validity(leaf, t, &describe(leaf))?;
    }
    if let Some(i) = anchors.iter().position(|a| a.der == leaf.der) {
        return Ok(Path {
            certs: vec![Origin::Anchor(i)],
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        });
    }
    let mut b = Builder {
        pool,
        anchors,
        at,
        profile,
        memo,
        best: None,
        checks: 0,
    };
    let mut path = vec![Origin::Leaf];
    if b.extend(leaf, &mut path) {
        let certs: Vec<&Certificate> = path.iter().map(|o| b.get(*o, leaf)).collect();
        return Ok(Path {
            not_before: certs.iter().map(|c| c.not_before).max().unwrap_or(i64::MIN),
            not_after: certs.iter().map(|c| c.not_after).min().unwrap_or(i64::MAX),
            certs: path,
        });
    }
    Err(b
        .best
        .map(|(_, _, f)| f)
        .unwrap_or_else(|| Failure::new("x509.chain.no_issuer", "no path to a trust anchor")))
}

/// Check a CRL against its issuer (RFC 5280 §6.3.3): issuer name, cRLSign when keyUsage is
/// present, signature under the profile, and currency at `at` (thisUpdate ≤ at ≤
/// nextUpdate) when a time is given.
pub fn check_crl(
    crl: &Crl,
    issuer: &Certificate,
    at: Option<i64>,
    profile: &Profile,
    memo: Option<&SignatureMemo>,
) -> Result<(), Failure> {
    if crl.issuer != issuer.subject {
        return Err(Failure::new(
            "x509.crl.wrong_issuer",
            format!(
                "CRL is issued by {:?}, not by {}",
                crl.issuer_cn,
                describe(issuer)
            ),
        ));
    }
    if let Some(ku) = issuer.key_usage {
        if !ku.crl_sign {
            return Err(Failure::new(
                "x509.crl.key_usage",
                format!(
                    "{} may not sign CRLs (keyUsage lacks cRLSign)",
                    describe(issuer)
                ),
            ));
        }
    }
    check_signed(crl.into(), issuer, profile, memo).map_err(|f| {
        let code = match f.code.as_str() {
            "x509.chain.signature_invalid" => "x509.crl.signature_invalid",
            "x509.chain.algorithm_not_allowed" => "x509.crl.algorithm_not_allowed",
            "x509.chain.bad_key" => "x509.crl.signature_invalid",
            _ => "x509.crl.unsupported_algorithm",
        };
        Failure::new(code, format!("CRL of {}: {}", describe(issuer), f.message))
    })?;
    if let Some(t) = at {
        if !crl_current(crl, t) {
            let nu = crl.next_update.map(rfc3339).unwrap_or_else(|| "-".into());
            return Err(Failure::new(
                "x509.crl.expired",
                format!(
                    "CRL of {} valid {}..{nu}, verification time {}",
                    describe(issuer),
                    rfc3339(crl.this_update),
                    rfc3339(t)
                ),
            ));
        }
    }
    Ok(())
}

/// Whether the CRL is current at `at` (RFC 5280 §5.1.2.4-5).
pub fn crl_current(crl: &Crl, at: i64) -> bool {
    crl.this_update <= at
        && match crl.next_update {
            Some(n) => at <= n,
            None => true,
        }
}

#[cfg(test)]
mod tests {
    //! The chain builder and CRL checks on the repository's AMD-shaped vectors
    //! (`vectors/sev-snp`: ARK-Milan → ASK SEV-Milan → VCEK, RSA-PSS SHA-384, RSA-4096
    //! issuers; every file valid at 2026-06-01 except the "expired" ones).

    use super::*;
    use sealgate_formats::x509::{parse_certificate, parse_crl};

    const VCEK: &[u8] = include_bytes!("../../../vectors/sev-snp/vcek-milan.der");
    const VCEK_EXPIRED: &[u8] = include_bytes!("../../../vectors/sev-snp/vcek-milan-expired.der");
    const VCEK_REVOKED: &[u8] = include_bytes!("../../../vectors/sev-snp/vcek-milan-revoked.der");
    const ARK_PEM: &[u8] = include_bytes!("../../../vectors/sev-snp/ark-milan.pem");
    const ASK_PEM: &[u8] = include_bytes!("../../../vectors/sev-snp/ask-milan.pem");
    const ARK_GENOA_PEM: &[u8] = include_bytes!("../../../vectors/sev-snp/ark-genoa.pem");
    const CHAIN_GENOA_PEM: &[u8] = include_bytes!("../../../vectors/sev-snp/cert_chain-genoa.pem");
    const CRL: &[u8] = include_bytes!("../../../vectors/sev-snp/crl-milan.der");
    const CRL_EXPIRED: &[u8] = include_bytes!("../../../vectors/sev-snp/crl-milan-expired.der");

    /// 2026-06-01T00:00:00Z, when every non-expired vector is valid.
    const AT: i64 = 1_780_272_000;

    /// The DER of the first block of a PEM file (RFC 7468).
    fn pem_der(pem: &[u8]) -> Vec<u8> {
        const END: &[u8] = b"-----END CERTIFICATE-----";
        let end = pem.windows(END.len()).position(|w| w == END).expect("END") + END.len();
        der::pem::decode_vec(&pem[..end]).expect("PEM vector").1
    }

    fn cert(der: &[u8]) -> Certificate {
        parse_certificate(der).expect("vector parses")
    }

    struct Milan {
        vcek: Certificate,
        ask: Certificate,
        ark: Certificate,
    }

    fn milan() -> Milan {
        Milan {
            vcek: cert(VCEK),
            ask: cert(&pem_der(ASK_PEM)),
            ark: cert(&pem_der(ARK_PEM)),
        }
    }

    /// AMD's hierarchy (pub. 57230 §2.1): RSA-PSS SHA-384 throughout, RSA-4096 issuers, the
    /// ARK's self-signature checked.
    fn amd() -> Profile {
        Profile {
            algorithms: vec![SigAlg::RsaPss(Hash::Sha384)],
            max_depth: 3,
            issuer_rsa_bits: Some(4096),
            check_anchor_signature: true,
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, Failure>) -> String {
        r.expect_err("refused").code
    }

    #[test]
    fn milan_chain_verifies_under_the_amd_profile() {
        let m = milan();
        let memo = SignatureMemo::new(16);
        let p = build_path(&m.vcek, &[&m.ask], &[&m.ark], Some(AT), &amd(), Some(&memo))
            .expect("verifies");
        assert_eq!(
            p.certs,
            vec![Origin::Leaf, Origin::Pool(0), Origin::Anchor(0)]
        );
        assert_eq!(
            p.not_before,
            [&m.vcek, &m.ask, &m.ark]
                .iter()
                .map(|c| c.not_before)
                .max()
                .unwrap()
        );
        assert_eq!(
            p.not_after,
            [&m.vcek, &m.ask, &m.ark]
                .iter()
                .map(|c| c.not_after)
                .min()
                .unwrap()
        );
        // VCEK by ASK, ASK by ARK, ARK by itself.
        assert_eq!(memo.len(), 3);
        // A memo hit: the same build adds nothing.
        build_path(&m.vcek, &[&m.ask], &[&m.ark], Some(AT), &amd(), Some(&memo))
            .expect("verifies again");
        assert_eq!(memo.len(), 3);
        // Without a time the windows are left to the caller.
        build_path(&m.vcek, &[&m.ask], &[&m.ark], None, &amd(), None).expect("no time");
        // The anchor itself as the leaf is a path of one.
        let p = build_path(&m.ark, &[], &[&m.ark], Some(AT), &amd(), None).expect("anchor");
        assert_eq!(p.certs, vec![Origin::Anchor(0)]);
    }

    #[test]
    fn algorithm_outside_the_profile_is_refused() {
        let m = milan();
        let ecdsa_only = Profile {
            algorithms: vec![SigAlg::Ecdsa(Hash::Sha384), SigAlg::Ecdsa(Hash::Sha256)],
            max_depth: 6,
            issuer_rsa_bits: None,
            check_anchor_signature: false,
        };
        let memo = SignatureMemo::new(16);
        let f = build_path(
            &m.vcek,
            &[&m.ask],
            &[&m.ark],
            Some(AT),
            &ecdsa_only,
            Some(&memo),
        )
        .expect_err("refused");
        assert_eq!(f.code, "x509.chain.algorithm_not_allowed");
        assert!(f.message.contains("rsa-pss-sha384"), "{}", f.message);
        assert!(memo.is_empty(), "refused before any public-key work");
        // PSS with SHA-256 is another algorithm.
        let pss256 = Profile {
            algorithms: vec![SigAlg::RsaPss(Hash::Sha256)],
            ..amd()
        };
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&m.ark],
                Some(AT),
                &pss256,
                None
            )),
            "x509.chain.algorithm_not_allowed"
        );
        let none = Profile {
            algorithms: vec![],
            ..amd()
        };
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&m.ark],
                Some(AT),
                &none,
                None
            )),
            "x509.chain.algorithm_not_allowed"
        );
        // The issuer key size rule.
        let rsa3072 = Profile {
            issuer_rsa_bits: Some(3072),
            ..amd()
        };
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&m.ark],
                Some(AT),
                &rsa3072,
                None
            )),
            "x509.chain.bad_key"
        );
    }

    #[test]
    fn wrong_anchor_or_missing_intermediate() {
        let m = milan();
        let genoa = cert(&pem_der(ARK_GENOA_PEM));
        let genoa_ask = cert(&pem_der(CHAIN_GENOA_PEM));
        assert_eq!(genoa_ask.subject_cn, "SEV-Genoa");
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&genoa],
                Some(AT),
                &amd(),
                None
            )),
            "x509.chain.no_issuer"
        );
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&genoa_ask],
                &[&m.ark],
                Some(AT),
                &amd(),
                None
            )),
            "x509.chain.no_issuer"
        );
        assert_eq!(
            code(build_path(&m.vcek, &[], &[&m.ark], Some(AT), &amd(), None)),
            "x509.chain.no_issuer"
        );
        assert_eq!(
            code(build_path(&m.vcek, &[&m.ask], &[], Some(AT), &amd(), None)),
            "x509.chain.no_anchors"
        );
        // The ASK as anchor is fine (the path ends at whatever the caller trusts).
        let p = build_path(&m.vcek, &[], &[&m.ask], Some(AT), &amd(), None);
        assert!(
            p.is_err(),
            "the ASK is not self-signed: its anchor signature fails"
        );
        let mut lax = amd();
        lax.check_anchor_signature = false;
        let p = build_path(&m.vcek, &[], &[&m.ask], Some(AT), &lax, None).expect("ASK anchor");
        assert_eq!(p.certs, vec![Origin::Leaf, Origin::Anchor(0)]);
        // Depth: three certificates do not fit in two.
        let short = Profile {
            max_depth: 2,
            ..amd()
        };
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&m.ark],
                Some(AT),
                &short,
                None
            )),
            "x509.chain.too_long"
        );
    }

    #[test]
    fn expired_at_a_time() {
        let m = milan();
        let old = cert(VCEK_EXPIRED);
        let f = build_path(&old, &[&m.ask], &[&m.ark], Some(AT), &amd(), None).expect_err("old");
        assert_eq!(f.code, "x509.chain.expired");
        assert!(
            f.message.contains("2026-06-01T00:00:00+00:00"),
            "{}",
            f.message
        );
        // Valid when it was valid; the chain builds with no time at all.
        build_path(
            &old,
            &[&m.ask],
            &[&m.ark],
            Some(old.not_after),
            &amd(),
            None,
        )
        .expect("valid at its notAfter (inclusive)");
        assert_eq!(
            code(build_path(
                &old,
                &[&m.ask],
                &[&m.ark],
                Some(old.not_after + 1),
                &amd(),
                None
            )),
            "x509.chain.expired"
        );
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&m.ark],
                Some(m.vcek.not_before - 1),
                &amd(),
                None
            )),
            "x509.chain.not_yet_valid"
        );
        // An issuer outside its window: far in the future every certificate has expired,
        // the leaf is reported first.
        assert_eq!(
            code(build_path(
                &m.vcek,
                &[&m.ask],
                &[&m.ark],
                Some(m.ask.not_after + 1),
                &amd(),
                None
            )),
            "x509.chain.expired"
        );
    }

    #[test]
    fn crl_checks() {
        let m = milan();
        let crl = parse_crl(CRL).expect("CRL");
        let memo = SignatureMemo::new(16);
        check_crl(&crl, &m.ark, Some(AT), &amd(), Some(&memo)).expect("ARK's current CRL");
        assert_eq!(memo.len(), 1);
        assert!(crl.revokes(&cert(VCEK_REVOKED).serial));
        assert!(!crl.revokes(&m.vcek.serial));
        assert_eq!(
            code(check_crl(&crl, &m.ask, Some(AT), &amd(), None)),
            "x509.crl.wrong_issuer"
        );
        let expired = parse_crl(CRL_EXPIRED).expect("CRL");
        let f = check_crl(&expired, &m.ark, Some(AT), &amd(), None).expect_err("expired");
        assert_eq!(f.code, "x509.crl.expired");
        check_crl(&expired, &m.ark, None, &amd(), None).expect("signature alone is fine");
        let ecdsa_only = Profile {
            algorithms: vec![SigAlg::Ecdsa(Hash::Sha384)],
            ..amd()
        };
        assert_eq!(
            code(check_crl(&crl, &m.ark, Some(AT), &ecdsa_only, None)),
            "x509.crl.algorithm_not_allowed"
        );
        // Issuer name right, key wrong: Genoa's ARK renamed is not at hand, so flip a bit
        // of the signature instead.
        let mut forged = crl.clone();
        forged.signature[10] ^= 1;
        forged.der.push(0); // a different object for the memo
        assert_eq!(
            code(check_crl(&forged, &m.ark, Some(AT), &amd(), Some(&memo))),
            "x509.crl.signature_invalid"
        );
    }

    #[test]
    fn tampered_certificate_signature_is_refused() {
        let m = milan();
        let mut vcek = m.vcek.clone();
        vcek.signature[0] ^= 0x80;
        vcek.der.push(0);
        assert_eq!(
            code(build_path(
                &vcek,
                &[&m.ask],
                &[&m.ark],
                Some(AT),
                &amd(),
                None
            )),
            "x509.chain.signature_invalid"
        );
        // An RSA signature under an EC "issuer" key (the VCEK's) is one that key did not
        // make: the same code as any other non-signer.
        assert_eq!(
            code(check_signed((&m.ask).into(), &m.vcek, &amd(), None)),
            "x509.chain.signature_invalid"
        );
    }

    #[test]
    fn memo_is_bounded_and_clears() {
        let m = milan();
        let memo = SignatureMemo::new(1);
        build_path(&m.vcek, &[&m.ask], &[&m.ark], Some(AT), &amd(), Some(&memo)).expect("ok");
        assert_eq!(memo.len(), 1);
        memo.clear();
        assert!(memo.is_empty());
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59+00:00");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(rfc3339(AT), "2026-06-01T00:00:00+00:00");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59+00:00");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59+00:00");
        assert_eq!(rfc3339(-62_135_596_800), "0001-01-01T00:00:00+00:00");
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in [
            SigAlg::RsaPkcs1(Hash::Sha256),
            SigAlg::RsaPkcs1(Hash::Sha512),
            SigAlg::RsaPss(Hash::Sha384),
            SigAlg::Ecdsa(Hash::Sha256),
        ] {
            assert_eq!(SigAlg::from_name(&a.name()), Some(a));
        }
        assert_eq!(SigAlg::from_name("rsa-pkcs1-sha1"), None);
        assert_eq!(SigAlg::from_name("ed25519"), None);
    }
}
