//! Bindings for the PKI layer: certificates and CRLs (sealgate-formats `x509`), vendor
//! extensions, and the chain builder and CRL check (sealgate-verify `pki`).
//!
//! Conversion only: parsed values become Python values, failures become
//! `sealgate.errors.ChainError` with `x509.chain.*` / `x509.crl.*` codes, which the
//! platform packages map to their own (`sealgate.pki`).

use crate::errors::{BindError, BindResult};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sealgate_formats::x509::vendor::{amd_extensions, dice_tcb_info, sgx_extension};
use sealgate_formats::x509::{self as fx, parse_certificate, parse_crl, PublicKey};
use sealgate_verify::crypto::{hash, Hash};
use sealgate_verify::failure::hex;
use sealgate_verify::pki::{self, Origin, Profile, SigAlg, SignatureMemo};
use std::sync::Arc;

fn bytes<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, b)
}

/// SHA-256 of a DER encoding, lowercase hex: the identity certificates and CRLs are cached,
/// pinned and named by.
fn fingerprint(der: &[u8]) -> String {
    hex(&hash(Hash::Sha256, &[der]))
}

/// An X.509 certificate, parsed once.
#[pyclass(frozen, module = "sealgate._core", name = "X509Certificate")]
pub struct X509Certificate {
    pub(crate) inner: Arc<fx::Certificate>,
    fingerprint: String,
}

#[pymethods]
impl X509Certificate {
    /// Exactly one DER certificate (`x509.format.*` on anything else).
    #[staticmethod]
    fn parse(data: &[u8]) -> BindResult<Self> {
        let c = parse_certificate(data)?;
        Ok(X509Certificate {
            fingerprint: fingerprint(&c.der),
            inner: Arc::new(c),
        })
    }

    #[getter]
    fn der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.der)
    }
    #[getter]
    fn tbs<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.tbs)
    }
    /// SHA-256 of the DER, lowercase hex.
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    #[getter]
    fn version(&self) -> u8 {
        self.inner.version
    }
    /// The serial number's INTEGER content (signed big-endian).
    #[getter]
    fn serial_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.serial)
    }
    #[getter]
    fn signature_algorithm(&self) -> (String, Option<Vec<u8>>) {
        (
            self.inner.signature_alg.oid.clone(),
            self.inner.signature_alg.params.clone(),
        )
    }
    /// The signature algorithm's profile name (`rsa-pss-sha384`, `ecdsa-sha256`, ...), or
    /// None when sealgate does not verify it.
    #[getter]
    fn signature_algorithm_name(&self) -> Option<String> {
        pki::sig_alg(&self.inner.signature_alg)
            .ok()
            .map(SigAlg::name)
    }
    #[getter]
    fn signature<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.signature)
    }
    #[getter]
    fn issuer<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.issuer)
    }
    #[getter]
    fn subject<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.subject)
    }
    #[getter]
    fn issuer_cn(&self) -> &str {
        &self.inner.issuer_cn
    }
    #[getter]
    fn subject_cn(&self) -> &str {
        &self.inner.subject_cn
    }
    /// Validity bounds as Unix seconds.
    #[getter]
    fn not_before(&self) -> i64 {
        self.inner.not_before
    }
    #[getter]
    fn not_after(&self) -> i64 {
        self.inner.not_after
    }
    #[getter]
    fn spki<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.spki)
    }
    #[getter]
    fn spki_algorithm(&self) -> (String, Option<Vec<u8>>) {
        (
            self.inner.spki_alg.oid.clone(),
            self.inner.spki_alg.params.clone(),
        )
    }
    #[getter]
    fn public_key_bits<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.public_key_bits)
    }
    /// ("rsa", modulus bits, None) or ("ec", field bits, curve OID) or ("other", 0, OID).
    #[getter]
    fn key_type(&self) -> (String, usize, Option<String>) {
        match fx::public_key(&self.inner) {
            Ok(PublicKey::Rsa { modulus, .. }) => ("rsa".into(), fx::modulus_bits(&modulus), None),
            Ok(PublicKey::Ec { curve, point }) => {
                ("ec".into(), point.len().saturating_sub(1) * 4, Some(curve))
            }
            Ok(PublicKey::Other(oid)) => ("other".into(), 0, Some(oid)),
            Err(_) => ("other".into(), 0, None),
        }
    }
    #[getter]
    fn is_ca(&self) -> bool {
        self.inner.is_ca()
    }
    /// basicConstraints as (cA, pathLenConstraint), None when absent.
    #[getter]
    fn basic_constraints(&self) -> Option<(bool, Option<u8>)> {
        self.inner.basic_constraints.map(|b| (b.ca, b.path_len))
    }
    /// keyUsage as (digitalSignature, keyCertSign, cRLSign), None when absent.
    #[getter]
    fn key_usage(&self) -> Option<(bool, bool, bool)> {
        self.inner
            .key_usage
            .map(|k| (k.digital_signature, k.key_cert_sign, k.crl_sign))
    }
    #[getter]
    fn extended_key_usage(&self) -> Option<Vec<String>> {
        self.inner.extended_key_usage.clone()
    }
    #[getter]
    fn subject_key_id(&self) -> Option<Vec<u8>> {
        self.inner.key_ids.subject.clone()
    }
    #[getter]
    fn authority_key_id(&self) -> Option<Vec<u8>> {
        self.inner.key_ids.authority.clone()
    }
    #[getter]
    fn san_directory_attributes(&self) -> Vec<(String, String)> {
        self.inner.san_directory_attributes.clone()
    }
    /// Every extension as (OID, critical, extnValue content).
    #[getter]
    fn extensions<'py>(&self, py: Python<'py>) -> Vec<(String, bool, Bound<'py, PyBytes>)> {
        self.inner
            .extensions
            .iter()
            .map(|e| (e.oid.clone(), e.critical, bytes(py, &e.value)))
            .collect()
    }
    /// The extnValue content of the extension with `oid`, or None.
    fn extension<'py>(&self, py: Python<'py>, oid: &str) -> Option<Bound<'py, PyBytes>> {
        self.inner.extension(oid).map(|e| bytes(py, &e.value))
    }
    /// The AMD VCEK/VLEK extensions (AMD pub. 57230 §3.1) as a dict; `snp.format.invalid`
    /// when one is malformed.
    fn amd_extensions<'py>(&self, py: Python<'py>) -> BindResult<Bound<'py, PyDict>> {
        let a = amd_extensions(&self.inner)?;
        let d = PyDict::new(py);
        d.set_item("struct_version", a.struct_version)?;
        d.set_item("product_name", a.product_name)?;
        d.set_item("bl_spl", a.bl_spl)?;
        d.set_item("tee_spl", a.tee_spl)?;
        d.set_item("snp_spl", a.snp_spl)?;
        d.set_item("ucode_spl", a.ucode_spl)?;
        d.set_item("fmc_spl", a.fmc_spl)?;
        d.set_item("hwid", a.hwid.as_deref().map(|h| bytes(py, h)))?;
        d.set_item("csp_id", a.csp_id)?;
        Ok(d)
    }
    /// The TCG DICE TcbInfo extensions (2.23.133.5.4.1) this certificate carries.
    fn dice_tcb_info<'py>(&self, py: Python<'py>) -> BindResult<Option<Bound<'py, PyDict>>> {
        let Some(e) = self.inner.extension(fx::vendor::OID_DICE_TCB_INFO) else {
            return Ok(None);
        };
        let t = dice_tcb_info(&e.value)?;
        let d = PyDict::new(py);
        d.set_item("vendor", t.vendor)?;
        d.set_item("model", t.model)?;
        d.set_item("version", t.version)?;
        d.set_item("svn", t.svn)?;
        d.set_item("layer", t.layer)?;
        d.set_item("index", t.index)?;
        let fwids: Vec<(String, Bound<'py, PyBytes>)> = t
            .fwids
            .iter()
            .map(|f| (f.hash_alg.clone(), bytes(py, &f.digest)))
            .collect();
        d.set_item("fwids", fwids)?;
        d.set_item("flags", t.flags.as_deref().map(|b| bytes(py, b)))?;
        d.set_item(
            "vendor_info",
            t.vendor_info.as_deref().map(|b| bytes(py, b)),
        )?;
        d.set_item("type", t.tcb_type.as_deref().map(|b| bytes(py, b)))?;
        d.set_item("composite_version", t.composite_version)?;
        d.set_item(
            "device_public_key",
            t.device_public_key.as_deref().map(|b| bytes(py, b)),
        )?;
        Ok(Some(d))
    }
}

/// The Intel SGX extension of a PCK certificate as a dict; `tdx.format.*` when malformed.
#[pyfunction]
fn sgx_extension_fields<'py>(py: Python<'py>, raw: &[u8]) -> BindResult<Bound<'py, PyDict>> {
    let s = sgx_extension(raw)?;
    let d = PyDict::new(py);
    d.set_item("ppid", bytes(py, &s.ppid))?;
    d.set_item("cpusvn_components", s.cpusvn_components.to_vec())?;
    d.set_item("pcesvn", s.pcesvn)?;
    d.set_item("cpusvn", bytes(py, &s.cpusvn))?;
    d.set_item("pceid", bytes(py, &s.pceid))?;
    d.set_item("fmspc", bytes(py, &s.fmspc))?;
    d.set_item("sgx_type", s.sgx_type)?;
    d.set_item(
        "platform_instance_id",
        s.platform_instance_id.as_deref().map(|b| bytes(py, b)),
    )?;
    Ok(d)
}

/// An X.509 CRL, parsed once.
#[pyclass(frozen, module = "sealgate._core", name = "X509Crl")]
pub struct X509Crl {
    inner: Arc<fx::Crl>,
    fingerprint: String,
}

#[pymethods]
impl X509Crl {
    #[staticmethod]
    fn parse(data: &[u8]) -> BindResult<Self> {
        let c = parse_crl(data)?;
        Ok(X509Crl {
            fingerprint: fingerprint(&c.der),
            inner: Arc::new(c),
        })
    }
    #[getter]
    fn der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.der)
    }
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    #[getter]
    fn issuer<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.inner.issuer)
    }
    #[getter]
    fn issuer_cn(&self) -> &str {
        &self.inner.issuer_cn
    }
    #[getter]
    fn this_update(&self) -> i64 {
        self.inner.this_update
    }
    #[getter]
    fn next_update(&self) -> Option<i64> {
        self.inner.next_update
    }
    #[getter]
    fn signature_algorithm(&self) -> (String, Option<Vec<u8>>) {
        (
            self.inner.signature_alg.oid.clone(),
            self.inner.signature_alg.params.clone(),
        )
    }
    #[getter]
    fn signature_algorithm_name(&self) -> Option<String> {
        pki::sig_alg(&self.inner.signature_alg)
            .ok()
            .map(SigAlg::name)
    }
    /// The revoked serials' INTEGER contents, sorted.
    #[getter]
    fn revoked_serials<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.inner.revoked.iter().map(|s| bytes(py, s)).collect()
    }
    fn __len__(&self) -> usize {
        self.inner.revoked.len()
    }
    /// Whether the CRL revokes the certificate with this serial (INTEGER content).
    fn revokes(&self, serial: &[u8]) -> bool {
        self.inner.revokes(serial)
    }
}

/// A vendor profile and the memo of signatures it verified: one per verifier object.
#[pyclass(frozen, module = "sealgate._core", name = "X509ChainVerifier")]
pub struct X509ChainVerifier {
    profile: Profile,
    memo: SignatureMemo,
}

fn certs(list: &[Bound<'_, X509Certificate>]) -> Vec<Arc<fx::Certificate>> {
    list.iter().map(|c| c.get().inner.clone()).collect()
}

#[pymethods]
impl X509ChainVerifier {
    /// `algorithms`: profile names (`rsa-pss-sha384`, `rsa-pkcs1-sha256`, `ecdsa-sha384`,
    /// ...); `issuer_rsa_bits`: exact RSA size every issuer must have; `memo_entries`:
    /// verified signatures remembered (64 bytes each).
    #[new]
    #[pyo3(signature = (algorithms, *, max_depth=6, issuer_rsa_bits=None, check_anchor_signature=false, memo_entries=65536))]
    fn new(
        algorithms: Vec<String>,
        max_depth: usize,
        issuer_rsa_bits: Option<usize>,
        check_anchor_signature: bool,
        memo_entries: usize,
    ) -> BindResult<Self> {
        let algs = algorithms
            .iter()
            .map(|a| {
                SigAlg::from_name(a)
                    .ok_or_else(|| BindError::Value(format!("unknown signature algorithm {a:?}")))
            })
            .collect::<BindResult<Vec<_>>>()?;
        if algs.is_empty() || max_depth < 2 {
            return Err(BindError::Value(
                "a profile needs at least one algorithm and a depth of at least 2".into(),
            ));
        }
        Ok(X509ChainVerifier {
            profile: Profile {
                algorithms: algs,
                max_depth,
                issuer_rsa_bits,
                check_anchor_signature,
            },
            memo: SignatureMemo::new(memo_entries),
        })
    }

    /// Build and verify leaf → … → anchor. Returns the path as ("leaf"|"pool"|"anchor",
    /// index) pairs and the intersection of the validity windows. `at`: Unix seconds, or
    /// None to leave validity to the caller. Raises ChainError (`x509.chain.*`).
    #[pyo3(signature = (leaf, pool, anchors, at=None))]
    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        py: Python<'_>,
        leaf: &Bound<'_, X509Certificate>,
        pool: Vec<Bound<'_, X509Certificate>>,
        anchors: Vec<Bound<'_, X509Certificate>>,
        at: Option<i64>,
    ) -> BindResult<(Vec<(&'static str, usize)>, i64, i64)> {
        let leaf = leaf.get().inner.clone();
        let pool = certs(&pool);
        let anchors = certs(&anchors);
        let path = py.detach(|| {
            let p: Vec<&fx::Certificate> = pool.iter().map(|c| c.as_ref()).collect();
            let a: Vec<&fx::Certificate> = anchors.iter().map(|c| c.as_ref()).collect();
            pki::build_path(&leaf, &p, &a, at, &self.profile, Some(&self.memo))
        });
        let path = path.map_err(BindError::Chain)?;
        let out = path
            .certs
            .iter()
            .map(|o| match o {
                Origin::Leaf => ("leaf", 0),
                Origin::Pool(i) => ("pool", *i),
                Origin::Anchor(i) => ("anchor", *i),
            })
            .collect();
        Ok((out, path.not_before, path.not_after))
    }

    /// Check that `issuer` signed `cert` under this profile (memoised). Raises ChainError.
    fn check_signed(
        &self,
        cert: &Bound<'_, X509Certificate>,
        issuer: &Bound<'_, X509Certificate>,
    ) -> BindResult<()> {
        pki::check_signed(
            cert.get().inner.as_ref().into(),
            &issuer.get().inner,
            &self.profile,
            Some(&self.memo),
        )
        .map_err(BindError::Chain)
    }

    /// Check a CRL against its issuer (name, cRLSign, signature, and currency at `at` when
    /// given). Raises ChainError (`x509.crl.*`).
    #[pyo3(signature = (crl, issuer, at=None))]
    fn check_crl(
        &self,
        crl: &Bound<'_, X509Crl>,
        issuer: &Bound<'_, X509Certificate>,
        at: Option<i64>,
    ) -> BindResult<()> {
        pki::check_crl(
            &crl.get().inner,
            &issuer.get().inner,
            at,
            &self.profile,
            Some(&self.memo),
        )
        .map_err(BindError::Chain)
    }

    /// Signatures remembered.
    #[getter]
    fn memo_len(&self) -> usize {
        self.memo.len()
    }

    fn clear(&self) {
        self.memo.clear();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<X509Certificate>()?;
    m.add_class::<X509Crl>()?;
    m.add_class::<X509ChainVerifier>()?;
    m.add_function(wrap_pyfunction!(sgx_extension_fields, m)?)?;
    Ok(())
}
