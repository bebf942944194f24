//! HPKE receiver, base mode, single-shot open (RFC 9180), for the suite sealgate seals model
//! keys with: DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM. The AEAD is a
//! parameter so the RFC's Appendix A.1 vector (same KEM and KDF, AES-128-GCM) can test the
//! KEM and the key schedule.
//!
//! Only what a node needs: a fresh X25519 runtime key per flow, `Decap` (§4.1), the key
//! schedule (§5.1) and `Open` with sequence number 0 (§5.2, §6.1). No PSK or auth modes, no
//! exporter. Primitives come from aws-lc-rs.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::hmac;

/// KEM identifier of DHKEM(X25519, HKDF-SHA256) (§7.1, Table 2).
const KEM_X25519_HKDF_SHA256: u16 = 0x0020;
/// KDF identifier of HKDF-SHA256 (§7.2, Table 3).
const KDF_HKDF_SHA256: u16 = 0x0001;
/// Nsecret, Nenc, Npk of DHKEM(X25519, HKDF-SHA256) (§7.1, Table 2).
const N_SECRET: usize = 32;
pub const N_ENC: usize = 32;
/// Nh of HKDF-SHA256 (§7.2, Table 3).
const N_H: usize = 32;
/// Nn of both AES-GCM AEADs (§7.3, Table 5).
const N_N: usize = 12;
/// mode_base (§5, Table 1).
const MODE_BASE: u8 = 0x00;

/// The AEADs this receiver supports (§7.3, Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    /// Only the RFC 9180 A.1 vector uses it; sealgate seals with AES-256-GCM.
    #[cfg_attr(not(test), allow(dead_code))]
    Aes128Gcm,
    Aes256Gcm,
}

impl Aead {
    fn id(self) -> u16 {
        match self {
            Aead::Aes128Gcm => 0x0001,
            Aead::Aes256Gcm => 0x0002,
        }
    }

    /// Nk.
    fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::Aes256Gcm => 32,
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Aead::Aes128Gcm => &aead::AES_128_GCM,
            Aead::Aes256Gcm => &aead::AES_256_GCM,
        }
    }
}

/// Why a sealed key did not open. One variant per step, so a failing flow says where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// `sealed` is shorter than Nenc.
    Truncated,
    /// DH failed (e.g. the all-zero output RFC 9180 §7.1.4 says to reject).
    Decap,
    /// AEAD authentication failed: wrong recipient, wrong `info`, or altered bytes.
    Aead,
}

/// HKDF-Extract (RFC 5869 §2.2): HMAC-SHA256 keyed with the salt.
fn extract(salt: &[u8], ikm: &[&[u8]]) -> [u8; N_H] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, salt));
    for part in ikm {
        ctx.update(part);
    }
    let mut out = [0u8; N_H];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// HKDF-Expand (RFC 5869 §2.3): T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i), L ≤ 255·Nh.
fn expand(prk: &[u8], info: &[&[u8]], len: usize) -> Vec<u8> {
    assert!(len <= 255 * N_H, "HKDF-Expand length limit");
    let key = hmac::Key::new(hmac::HMAC_SHA256, prk);
    let mut out = Vec::with_capacity(len);
    let mut prev: Vec<u8> = Vec::new();
    let mut counter = 1u8;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&prev);
        for part in info {
            ctx.update(part);
        }
        ctx.update(&[counter]);
        prev = ctx.sign().as_ref().to_vec();
        let take = (len - out.len()).min(N_H);
        out.extend_from_slice(&prev[..take]);
        counter = counter.wrapping_add(1);
    }
    out
}

/// LabeledExtract (§4): Extract(salt, "HPKE-v1" ‖ suite_id ‖ label ‖ ikm).
fn labeled_extract(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> [u8; N_H] {
    extract(salt, &[b"HPKE-v1", suite_id, label, ikm])
}

/// LabeledExpand (§4): Expand(prk, I2OSP(L, 2) ‖ "HPKE-v1" ‖ suite_id ‖ label ‖ info, L).
fn labeled_expand(suite_id: &[u8], prk: &[u8], label: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let l = u16::try_from(len)
        .expect("L fits I2OSP(L, 2)")
        .to_be_bytes();
    expand(prk, &[&l, b"HPKE-v1", suite_id, label, info], len)
}

/// A node's runtime key: the X25519 recipient key pair (skR, pkR) of one flow.
pub struct RuntimeKey {
    private: PrivateKey,
    public: [u8; N_ENC],
}

impl RuntimeKey {
    /// A fresh key pair (GenerateKeyPair, §7.1.3 via aws-lc-rs).
    pub fn generate() -> Self {
        let private = PrivateKey::generate(&X25519).expect("X25519 key generation");
        Self::from_private(private)
    }

    /// From a raw 32-byte X25519 private key (test vectors).
    pub fn from_private_bytes(sk: &[u8]) -> Option<Self> {
        PrivateKey::from_private_key(&X25519, sk)
            .ok()
            .map(Self::from_private)
    }

    fn from_private(private: PrivateKey) -> Self {
        let pk = private.compute_public_key().expect("X25519 public key");
        let mut public = [0u8; N_ENC];
        public.copy_from_slice(pk.as_ref());
        Self { private, public }
    }

    /// pkR as SerializePublicKey gives it (§7.1.1: the raw 32 bytes), what goes into
    /// `runtime_public_key`.
    pub fn public_bytes(&self) -> &[u8; N_ENC] {
        &self.public
    }

    /// Decap (§4.1): shared_secret from enc = pkE. DH output is checked non-zero by
    /// aws-lc-rs (§7.1.4).
    fn decap(&self, enc: &[u8]) -> Result<Vec<u8>, OpenError> {
        let dh = agreement::agree(
            &self.private,
            UnparsedPublicKey::new(&X25519, enc),
            OpenError::Decap,
            |dh| Ok(dh.to_vec()),
        )?;
        let mut suite_id = *b"KEM\0\0";
        suite_id[3..].copy_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
        // ExtractAndExpand(dh, kem_context), kem_context = enc ‖ pkRm.
        let eae_prk = labeled_extract(&suite_id, b"", b"eae_prk", &dh);
        let kem_context = [enc, &self.public[..]].concat();
        Ok(labeled_expand(
            &suite_id,
            &eae_prk,
            b"shared_secret",
            &kem_context,
            N_SECRET,
        ))
    }

    /// Single-shot Open in base mode (§6.1 `OpenBase`): `sealed` = enc ‖ ciphertext, as
    /// sealgate's `SealedKey.sealed` carries it; `aad` is what the sender used (sealgate: empty).
    pub fn open(
        &self,
        aead_alg: Aead,
        sealed: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < N_ENC {
            return Err(OpenError::Truncated);
        }
        let (enc, ct) = sealed.split_at(N_ENC);
        let shared_secret = self.decap(enc)?;
        let (key, base_nonce) = key_schedule_base(aead_alg, &shared_secret, info);
        let key = LessSafeKey::new(
            UnboundKey::new(aead_alg.algorithm(), &key).map_err(|_| OpenError::Aead)?,
        );
        // Sequence number 0: the nonce is base_nonce XOR I2OSP(0, Nn) = base_nonce (§5.2).
        let nonce = Nonce::try_assume_unique_for_key(&base_nonce).map_err(|_| OpenError::Aead)?;
        let mut buf = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| OpenError::Aead)?;
        let n = plain.len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// KeySchedule for mode_base (§5.1), default psk and psk_id (empty): (key, base_nonce).
fn key_schedule_base(aead_alg: Aead, shared_secret: &[u8], info: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut suite_id = *b"HPKE\0\0\0\0\0\0";
    suite_id[4..6].copy_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
    suite_id[6..8].copy_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
    suite_id[8..10].copy_from_slice(&aead_alg.id().to_be_bytes());
    let psk_id_hash = labeled_extract(&suite_id, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(&suite_id, b"", b"info_hash", info);
    let context = [&[MODE_BASE][..], &psk_id_hash, &info_hash].concat();
    let secret = labeled_extract(&suite_id, shared_secret, b"secret", b"");
    let key = labeled_expand(&suite_id, &secret, b"key", &context, aead_alg.key_len());
    let base_nonce = labeled_expand(&suite_id, &secret, b"base_nonce", &context, N_N);
    (key, base_nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        crate::setup::unhex(s).unwrap()
    }

    // RFC 9180 Appendix A.1.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base
    // mode): recipient key, enc, info, and the first encryption (sequence number 0).
    const SK_RM: &str = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8";
    const PK_RM: &str = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d";
    const ENC: &str = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";
    const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
    const AAD0: &str = "436f756e742d30";
    const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    const CT0: &str = "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9\
                       6d8770ac83d07bea87e13c512a";
    // The key schedule's intermediate values from the same vector.
    const SHARED_SECRET: &str = "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc";
    const KEY: &str = "4531685d41d65f03dc48f6b8302c05b0";
    const BASE_NONCE: &str = "56d890e5accaaf011cff4b7d";

    #[test]
    fn rfc9180_a1_decap_and_key_schedule() {
        let rk = RuntimeKey::from_private_bytes(&unhex(SK_RM)).unwrap();
        assert_eq!(rk.public_bytes().to_vec(), unhex(PK_RM));
        let ss = rk.decap(&unhex(ENC)).unwrap();
        assert_eq!(ss, unhex(SHARED_SECRET));
        let (key, nonce) = key_schedule_base(Aead::Aes128Gcm, &ss, &unhex(INFO));
        assert_eq!(key, unhex(KEY));
        assert_eq!(nonce, unhex(BASE_NONCE));
    }

    #[test]
    fn rfc9180_a1_open_sequence_zero() {
        let rk = RuntimeKey::from_private_bytes(&unhex(SK_RM)).unwrap();
        let sealed = [unhex(ENC), unhex(CT0)].concat();
        let pt = rk
            .open(Aead::Aes128Gcm, &sealed, &unhex(INFO), &unhex(AAD0))
            .unwrap();
        assert_eq!(pt, unhex(PT));
    }

    #[test]
    fn open_failures_are_typed() {
        let rk = RuntimeKey::from_private_bytes(&unhex(SK_RM)).unwrap();
        let sealed = [unhex(ENC), unhex(CT0)].concat();
        let info = unhex(INFO);
        let aad = unhex(AAD0);
        // (sealed, info, aad, AEAD, expected error)
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], Aead, OpenError);
        let cases: [Case; 5] = [
            (
                &sealed[..31],
                &info,
                &aad,
                Aead::Aes128Gcm,
                OpenError::Truncated,
            ),
            (
                &sealed,
                b"other info",
                &aad,
                Aead::Aes128Gcm,
                OpenError::Aead,
            ),
            (&sealed, &info, b"", Aead::Aes128Gcm, OpenError::Aead),
            (&sealed, &info, &aad, Aead::Aes256Gcm, OpenError::Aead),
            // enc = the all-zero point: DH output zero, rejected (§7.1.4).
            (&[0u8; 60], &info, &aad, Aead::Aes128Gcm, OpenError::Decap),
        ];
        for (sealed, info, aad, alg, want) in cases {
            assert_eq!(rk.open(alg, sealed, info, aad), Err(want));
        }
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            rk.open(Aead::Aes128Gcm, &flipped, &info, &aad),
            Err(OpenError::Aead)
        );
    }

    #[test]
    fn fresh_keys_differ() {
        assert_ne!(
            RuntimeKey::generate().public_bytes(),
            RuntimeKey::generate().public_bytes()
        );
    }
}
