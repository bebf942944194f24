//! Bindings for SEV-SNP attestation reports.
//!
//! `SnpKey` holds a VCEK/VLEK public key parsed once (the Python layer caches it with the
//! verified chain), so a steady-state verification is one parse plus one P-384 verify with
//! the GIL released, and the claim dictionary is built here rather than field by field in
//! Python.

use crate::errors::{BindError, BindResult, Failures, MaybeFailure};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sealgate_formats::snp::{
    AttestationReport, FirmwareVersion, Product, SigningKey, TcbLayout, TcbVersion, REPORT_SIZE,
};
use sealgate_verify::crypto::VerifyingKey;
use sealgate_verify::failure::hex;
use sealgate_verify::snp::{
    self as verify, check_unendorsed, endorsement_key, resolve_product, verify_report,
    verify_report_signature, Endorsement, Expectations, REPORT_DATA_LEN,
};
use std::sync::Arc;

fn product(name: &str) -> BindResult<Product> {
    Product::from_name(name)
        .ok_or_else(|| BindError::Value(format!("unknown product {name:?} (Milan, Genoa, Turin)")))
}

fn product_opt(name: Option<&str>) -> BindResult<Option<Product>> {
    name.map(product).transpose()
}

fn report_data_arg(d: Option<&[u8]>) -> BindResult<Option<&[u8]>> {
    match d {
        Some(d) if d.len() > REPORT_DATA_LEN => Err(BindError::Value(format!(
            "report_data is at most {REPORT_DATA_LEN} bytes"
        ))),
        _ => Ok(d),
    }
}

/// A VCEK or VLEK public key (P-384), parsed once and reused.
///
/// Optionally carries what the certificate endorses (kind, product, hwID, SPLs, from the
/// verified chain) so `verify_snp` checks it against each report without Python work, and
/// the product line the chain was verified for.
#[pyclass(frozen, module = "sealgate._core")]
pub struct SnpKey {
    pub(crate) key: Arc<VerifyingKey>,
    pub(crate) endorsement: Option<Endorsement>,
    pub(crate) chain_product: Option<Product>,
}

#[pymethods]
impl SnpKey {
    /// From an uncompressed SEC1 point (0x04 ‖ X ‖ Y, 97 bytes), as in the certificate's
    /// subjectPublicKey. `kind` ("vcek"/"vlek") enables the endorsement checks.
    #[staticmethod]
    #[pyo3(signature = (point, kind=None, product=None, chain_product=None, hwid=None, bootloader=None, tee=None, snp=None, microcode=None, fmc=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_sec1(
        point: &[u8],
        kind: Option<&str>,
        product: Option<&str>,
        chain_product: Option<&str>,
        hwid: Option<Vec<u8>>,
        bootloader: Option<u8>,
        tee: Option<u8>,
        snp: Option<u8>,
        microcode: Option<u8>,
        fmc: Option<u8>,
    ) -> BindResult<Self> {
        let endorsement = match kind {
            None => None,
            Some(k) => Some(Endorsement {
                kind: match k {
                    "vcek" => SigningKey::Vcek,
                    "vlek" => SigningKey::Vlek,
                    other => return Err(BindError::Value(format!("kind {other:?}: vcek or vlek"))),
                },
                product: product_opt(product)?,
                hwid,
                bootloader,
                tee,
                snp,
                microcode,
                fmc,
            }),
        };
        let chain_product = product_opt(chain_product)?;
        Ok(SnpKey {
            key: Arc::new(endorsement_key(point)?),
            endorsement,
            chain_product,
        })
    }
}

/// A parsed ATTESTATION_REPORT (versions 2, 3, 5).
#[pyclass(frozen, module = "sealgate._core")]
pub struct SnpReport {
    report: AttestationReport,
    raw: Box<[u8]>,
}

fn tcb_dict<'py>(py: Python<'py>, t: TcbVersion, l: TcbLayout) -> PyResult<Bound<'py, PyDict>> {
    let t = t.decode(l);
    let d = PyDict::new(py);
    d.set_item(intern!(py, "bootloader"), t.bootloader)?;
    d.set_item(intern!(py, "tee"), t.tee)?;
    d.set_item(intern!(py, "snp"), t.snp)?;
    d.set_item(intern!(py, "microcode"), t.microcode)?;
    if let Some(f) = t.fmc {
        d.set_item(intern!(py, "fmc"), f)?;
    }
    Ok(d)
}

fn fw_dict<'py>(py: Python<'py>, v: FirmwareVersion) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "major"), v.major)?;
    d.set_item(intern!(py, "minor"), v.minor)?;
    d.set_item(intern!(py, "build"), v.build)?;
    Ok(d)
}

/// Every report field as the CLI/JSON claim set (hex lowercase), TCBs decoded with the
/// layout of `product`. Keys are interned: this runs once per verified report.
pub(crate) fn claims_dict<'py>(
    py: Python<'py>,
    r: &AttestationReport,
    product: Product,
) -> PyResult<Bound<'py, PyDict>> {
    let l = product.tcb_layout();
    let d = PyDict::new(py);
    d.set_item(intern!(py, "version"), r.version)?;
    d.set_item(intern!(py, "product"), product.as_str())?;
    d.set_item(intern!(py, "measurement"), hex(&r.measurement))?;
    d.set_item(intern!(py, "report_data"), hex(&r.report_data))?;
    d.set_item(intern!(py, "host_data"), hex(&r.host_data))?;
    d.set_item(intern!(py, "chip_id"), hex(&r.chip_id))?;
    d.set_item(intern!(py, "vmpl"), r.vmpl)?;
    d.set_item(intern!(py, "guest_svn"), r.guest_svn)?;
    let p = r.policy;
    let pd = PyDict::new(py);
    pd.set_item(intern!(py, "value"), p.0)?;
    pd.set_item(intern!(py, "abi_major"), p.abi_major())?;
    pd.set_item(intern!(py, "abi_minor"), p.abi_minor())?;
    pd.set_item(intern!(py, "smt"), p.smt())?;
    pd.set_item(intern!(py, "migrate_ma"), p.migrate_ma())?;
    pd.set_item(intern!(py, "debug"), p.debug())?;
    pd.set_item(intern!(py, "single_socket"), p.single_socket())?;
    pd.set_item(intern!(py, "cxl_allow"), p.cxl_allow())?;
    pd.set_item(intern!(py, "mem_aes_256_xts"), p.mem_aes_256_xts())?;
    pd.set_item(intern!(py, "rapl_dis"), p.rapl_dis())?;
    pd.set_item(intern!(py, "ciphertext_hiding"), p.ciphertext_hiding())?;
    pd.set_item(intern!(py, "page_swap_disable"), p.page_swap_disable())?;
    pd.set_item(intern!(py, "reserved_bit17"), p.reserved_one())?;
    pd.set_item(intern!(py, "unknown_bits"), p.unknown_bits())?;
    d.set_item(intern!(py, "policy"), pd)?;
    let pi = r.platform_info;
    let pid = PyDict::new(py);
    pid.set_item(intern!(py, "value"), pi.0)?;
    pid.set_item(intern!(py, "smt_enabled"), pi.smt_enabled())?;
    pid.set_item(intern!(py, "tsme_enabled"), pi.tsme_enabled())?;
    pid.set_item(intern!(py, "ecc_enabled"), pi.ecc_enabled())?;
    pid.set_item(intern!(py, "rapl_disabled"), pi.rapl_disabled())?;
    pid.set_item(
        intern!(py, "ciphertext_hiding_enabled"),
        pi.ciphertext_hiding_enabled(),
    )?;
    pid.set_item(
        intern!(py, "alias_check_complete"),
        pi.alias_check_complete(),
    )?;
    pid.set_item(intern!(py, "tio_enabled"), pi.tio_enabled())?;
    pid.set_item(intern!(py, "unknown_bits"), pi.unknown_bits())?;
    d.set_item(intern!(py, "platform_info"), pid)?;
    d.set_item(
        intern!(py, "reported_tcb"),
        tcb_dict(py, r.reported_tcb, l)?,
    )?;
    d.set_item(intern!(py, "current_tcb"), tcb_dict(py, r.current_tcb, l)?)?;
    d.set_item(
        intern!(py, "committed_tcb"),
        tcb_dict(py, r.committed_tcb, l)?,
    )?;
    d.set_item(intern!(py, "launch_tcb"), tcb_dict(py, r.launch_tcb, l)?)?;
    d.set_item(intern!(py, "signing_key"), r.signing_key.as_str())?;
    d.set_item(intern!(py, "family_id"), hex(&r.family_id))?;
    d.set_item(intern!(py, "image_id"), hex(&r.image_id))?;
    d.set_item(intern!(py, "id_key_digest"), hex(&r.id_key_digest))?;
    d.set_item(intern!(py, "author_key_digest"), hex(&r.author_key_digest))?;
    d.set_item(intern!(py, "author_key_en"), r.author_key_en)?;
    d.set_item(intern!(py, "mask_chip_key"), r.mask_chip_key)?;
    d.set_item(intern!(py, "report_id"), hex(&r.report_id))?;
    d.set_item(intern!(py, "report_id_ma"), hex(&r.report_id_ma))?;
    d.set_item(intern!(py, "signature_algo"), r.signature_algo)?;
    match r.cpuid {
        Some(c) => {
            let cd = PyDict::new(py);
            cd.set_item(intern!(py, "family"), c.family)?;
            cd.set_item(intern!(py, "model"), c.model)?;
            cd.set_item(intern!(py, "stepping"), c.stepping)?;
            d.set_item(intern!(py, "cpuid"), cd)?;
        }
        None => d.set_item(intern!(py, "cpuid"), py.None())?,
    }
    d.set_item(
        intern!(py, "current_firmware"),
        fw_dict(py, r.current_version)?,
    )?;
    d.set_item(
        intern!(py, "committed_firmware"),
        fw_dict(py, r.committed_version)?,
    )?;
    d.set_item(intern!(py, "launch_mit_vector"), r.launch_mit_vector)?;
    d.set_item(intern!(py, "current_mit_vector"), r.current_mit_vector)?;
    Ok(d)
}

#[pymethods]
impl SnpReport {
    #[staticmethod]
    fn parse(data: &[u8]) -> BindResult<Self> {
        Ok(SnpReport {
            report: verify::parse(data)?,
            raw: data.into(),
        })
    }
    #[getter]
    fn version(&self) -> u32 {
        self.report.version
    }
    #[getter]
    fn vmpl(&self) -> u32 {
        self.report.vmpl
    }
    /// "vcek", "vlek" or "none".
    #[getter]
    fn signing_key(&self) -> &'static str {
        self.report.signing_key.as_str()
    }
    #[getter]
    fn mask_chip_key(&self) -> bool {
        self.report.mask_chip_key
    }
    /// Product line from CPUID (version 3+), or None.
    #[getter]
    fn cpuid_product(&self) -> Option<&'static str> {
        self.report.product_from_cpuid().map(Product::as_str)
    }
    /// The product line to read the report as: `explicit` > CPUID, or None.
    #[pyo3(signature = (explicit=None))]
    fn product(&self, explicit: Option<&str>) -> BindResult<Option<&'static str>> {
        let choice = resolve_product(
            product_opt(explicit)?,
            self.report.product_from_cpuid(),
            None,
            None,
        );
        Ok(choice.product.map(Product::as_str))
    }
    #[getter]
    fn chip_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.report.chip_id)
    }
    #[getter]
    fn report_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.report.report_data)
    }
    #[getter]
    fn measurement<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.report.measurement)
    }
    /// REPORTED_TCB as the raw little-endian u64.
    #[getter]
    fn reported_tcb_raw(&self) -> u64 {
        self.report.reported_tcb.0
    }
    /// REPORTED_TCB decoded for `product`: (bootloader, tee, snp, microcode, fmc|None).
    fn reported_tcb(&self, product: &str) -> BindResult<(u8, u8, u8, u8, Option<u8>)> {
        let t = self
            .report
            .reported_tcb
            .decode(self::product(product)?.tcb_layout());
        Ok((t.bootloader, t.tee, t.snp, t.microcode, t.fmc))
    }
    /// The exact bytes parsed.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.raw)
    }

    /// Every report field as the CLI/JSON claim set (hex lowercase), TCBs decoded with the
    /// layout of `product`.
    fn claims<'py>(&self, py: Python<'py>, product: &str) -> BindResult<Bound<'py, PyDict>> {
        Ok(claims_dict(py, &self.report, self::product(product)?)?)
    }

    /// For a report whose endorsement key is not established (its chain failed): the
    /// claims, read as the settled product line, and the checks that need no key
    /// (`sealgate_verify::snp::check_unendorsed`). `certificate`: the line the leaf
    /// certificate names, if it could be read.
    #[pyo3(signature = (product=None, certificate=None, report_data=None))]
    fn check_unendorsed<'py>(
        &self,
        py: Python<'py>,
        product: Option<&str>,
        certificate: Option<&str>,
        report_data: Option<&[u8]>,
    ) -> BindResult<(Bound<'py, PyDict>, Failures)> {
        let (p, failures) = check_unendorsed(
            &self.report,
            product_opt(product)?,
            product_opt(certificate)?,
            report_data_arg(report_data)?,
        );
        Ok((claims_dict(py, &self.report, p)?, Failures(failures)))
    }

    /// Verify the report signature with `key`; returns None or the failure. GIL released.
    fn verify_signature(&self, py: Python<'_>, key: &SnpKey) -> MaybeFailure {
        let k = key.key.clone();
        MaybeFailure(
            py.detach(|| verify_report_signature(&self.raw, &self.report, &k))
                .err(),
        )
    }
}

/// The steady-state call: `sealgate_verify::snp::verify_report` (parse, signature, product
/// line, the key's endorsement, REPORT_DATA) with the GIL released, then the claims — one
/// crossing into Rust per report. Returns (claims, [Failure]); parse errors raise.
#[pyfunction]
#[pyo3(signature = (key, data, product=None, report_data=None))]
fn verify_snp<'py>(
    py: Python<'py>,
    key: &SnpKey,
    data: &[u8],
    product: Option<&str>,
    report_data: Option<&[u8]>,
) -> BindResult<(Bound<'py, PyDict>, Failures)> {
    let exp = Expectations {
        product: product_opt(product)?,
        chain_product: key.chain_product,
        report_data: report_data_arg(report_data)?,
    };
    if data.len() != REPORT_SIZE {
        // The obvious rejection without releasing the GIL; the parser gives the precise error.
        verify::parse(data)?;
    }
    let k = key.key.clone();
    let v = py.detach(|| verify_report(data, &k, key.endorsement.as_ref(), &exp))?;
    Ok((claims_dict(py, &v.report, v.product)?, Failures(v.failures)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SnpKey>()?;
    m.add_class::<SnpReport>()?;
    m.add_function(wrap_pyfunction!(verify_snp, m)?)?;
    Ok(())
}
