//! Bindings for SEV-SNP attestation reports.
//!
//! `SnpKey` holds a VCEK/VLEK public key parsed once (the Python layer caches it with the
//! verified chain), so a steady-state verification is one parse plus one P-384 verify with
//! the GIL released, and the claim dictionary is built here rather than field by field in
//! Python.

use crate::errors::{failure_error, parse_error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sealgate_formats::snp::{
    parse_report, AttestationReport, FirmwareVersion, Product, TcbLayout, TcbVersion, REPORT_SIZE,
};
use sealgate_formats::ParseError;
use sealgate_verify::crypto::{Curve, VerifyingKey};
use sealgate_verify::failure::hex;
use sealgate_verify::snp::{parse_failure, verify_report_signature};
use sealgate_verify::Failure;
use std::sync::Arc;

fn snp_parse_error(py: Python<'_>, e: &ParseError) -> PyErr {
    match parse_failure(e) {
        Some(f) => failure_error(py, &f),
        None => parse_error(py, e),
    }
}

fn layout(product: &str) -> PyResult<TcbLayout> {
    Product::from_name(product)
        .map(Product::tcb_layout)
        .ok_or_else(|| {
            PyValueError::new_err(format!("unknown product {product:?} (Milan, Genoa, Turin)"))
        })
}

/// A VCEK or VLEK public key (P-384), parsed once and reused.
#[pyclass(frozen, module = "sealgate._core")]
pub struct SnpKey {
    key: Arc<VerifyingKey>,
}

#[pymethods]
impl SnpKey {
    /// From an uncompressed SEC1 point (0x04 ‖ X ‖ Y, 97 bytes), as in the certificate's
    /// subjectPublicKey.
    #[staticmethod]
    fn from_sec1(py: Python<'_>, point: &[u8]) -> PyResult<Self> {
        if point.len() != 97 || point[0] != 0x04 {
            return Err(failure_error(
                py,
                &Failure::new(
                    "snp.vcek.unsupported_key",
                    "public key is not an uncompressed P-384 point",
                ),
            ));
        }
        let key = VerifyingKey::ec(Curve::P384, &point[1..49], &point[49..97]).map_err(|e| {
            failure_error(
                py,
                &Failure::new("snp.vcek.unsupported_key", format!("{e:?}")),
            )
        })?;
        Ok(SnpKey { key: Arc::new(key) })
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
    d.set_item("bootloader", t.bootloader)?;
    d.set_item("tee", t.tee)?;
    d.set_item("snp", t.snp)?;
    d.set_item("microcode", t.microcode)?;
    if let Some(f) = t.fmc {
        d.set_item("fmc", f)?;
    }
    Ok(d)
}

fn fw_dict<'py>(py: Python<'py>, v: FirmwareVersion) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("major", v.major)?;
    d.set_item("minor", v.minor)?;
    d.set_item("build", v.build)?;
    Ok(d)
}

#[pymethods]
impl SnpReport {
    #[staticmethod]
    fn parse(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let report = parse_report(data).map_err(|e| snp_parse_error(py, &e))?;
        Ok(SnpReport {
            report,
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
    fn reported_tcb(&self, product: &str) -> PyResult<(u8, u8, u8, u8, Option<u8>)> {
        let t = self.report.reported_tcb.decode(layout(product)?);
        Ok((t.bootloader, t.tee, t.snp, t.microcode, t.fmc))
    }
    /// The exact bytes parsed.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.raw)
    }

    /// Every report field as the CLI/JSON claim set (hex lowercase), TCBs decoded with the
    /// layout of `product`.
    fn claims<'py>(&self, py: Python<'py>, product: &str) -> PyResult<Bound<'py, PyDict>> {
        let l = layout(product)?;
        let r = &self.report;
        let d = PyDict::new(py);
        d.set_item("version", r.version)?;
        d.set_item("product", product)?;
        d.set_item("measurement", hex(&r.measurement))?;
        d.set_item("report_data", hex(&r.report_data))?;
        d.set_item("host_data", hex(&r.host_data))?;
        d.set_item("chip_id", hex(&r.chip_id))?;
        d.set_item("vmpl", r.vmpl)?;
        d.set_item("guest_svn", r.guest_svn)?;
        let p = r.policy;
        let pd = PyDict::new(py);
        pd.set_item("value", p.0)?;
        pd.set_item("abi_major", p.abi_major())?;
        pd.set_item("abi_minor", p.abi_minor())?;
        pd.set_item("smt", p.smt())?;
        pd.set_item("migrate_ma", p.migrate_ma())?;
        pd.set_item("debug", p.debug())?;
        pd.set_item("single_socket", p.single_socket())?;
        pd.set_item("cxl_allow", p.cxl_allow())?;
        pd.set_item("mem_aes_256_xts", p.mem_aes_256_xts())?;
        pd.set_item("rapl_dis", p.rapl_dis())?;
        pd.set_item("ciphertext_hiding", p.ciphertext_hiding())?;
        pd.set_item("page_swap_disable", p.page_swap_disable())?;
        pd.set_item("reserved_bit17", p.reserved_one())?;
        pd.set_item("unknown_bits", p.unknown_bits())?;
        d.set_item("policy", pd)?;
        let pi = r.platform_info;
        let pid = PyDict::new(py);
        pid.set_item("value", pi.0)?;
        pid.set_item("smt_enabled", pi.smt_enabled())?;
        pid.set_item("tsme_enabled", pi.tsme_enabled())?;
        pid.set_item("ecc_enabled", pi.ecc_enabled())?;
        pid.set_item("rapl_disabled", pi.rapl_disabled())?;
        pid.set_item("ciphertext_hiding_enabled", pi.ciphertext_hiding_enabled())?;
        pid.set_item("alias_check_complete", pi.alias_check_complete())?;
        pid.set_item("tio_enabled", pi.tio_enabled())?;
        pid.set_item("unknown_bits", pi.unknown_bits())?;
        d.set_item("platform_info", pid)?;
        d.set_item("reported_tcb", tcb_dict(py, r.reported_tcb, l)?)?;
        d.set_item("current_tcb", tcb_dict(py, r.current_tcb, l)?)?;
        d.set_item("committed_tcb", tcb_dict(py, r.committed_tcb, l)?)?;
        d.set_item("launch_tcb", tcb_dict(py, r.launch_tcb, l)?)?;
        d.set_item("signing_key", r.signing_key.as_str())?;
        d.set_item("family_id", hex(&r.family_id))?;
        d.set_item("image_id", hex(&r.image_id))?;
        d.set_item("id_key_digest", hex(&r.id_key_digest))?;
        d.set_item("author_key_digest", hex(&r.author_key_digest))?;
        d.set_item("author_key_en", r.author_key_en)?;
        d.set_item("mask_chip_key", r.mask_chip_key)?;
        d.set_item("report_id", hex(&r.report_id))?;
        d.set_item("report_id_ma", hex(&r.report_id_ma))?;
        d.set_item("signature_algo", r.signature_algo)?;
        match r.cpuid {
            Some(c) => {
                let cd = PyDict::new(py);
                cd.set_item("family", c.family)?;
                cd.set_item("model", c.model)?;
                cd.set_item("stepping", c.stepping)?;
                d.set_item("cpuid", cd)?;
            }
            None => d.set_item("cpuid", py.None())?,
        }
        d.set_item("current_firmware", fw_dict(py, r.current_version)?)?;
        d.set_item("committed_firmware", fw_dict(py, r.committed_version)?)?;
        d.set_item("launch_mit_vector", r.launch_mit_vector)?;
        d.set_item("current_mit_vector", r.current_mit_vector)?;
        Ok(d)
    }

    /// Verify the report signature with `key`; returns None or (code, message). GIL released.
    fn verify_signature(&self, py: Python<'_>, key: &SnpKey) -> Option<(String, String)> {
        let k = key.key.clone();
        py.detach(|| verify_report_signature(&self.raw, &self.report, &k))
            .err()
            .map(|f| (f.code, f.message))
    }
}

/// Parse and verify in one call, GIL released for both: (report, None | (code, message)).
/// Parse errors raise `ParseError` (`VerificationError` `snp.report.unsupported_version`
/// for unknown versions).
#[pyfunction]
fn verify_snp_report(
    py: Python<'_>,
    key: &SnpKey,
    data: &[u8],
) -> PyResult<(SnpReport, Option<(String, String)>)> {
    if data.len() != REPORT_SIZE {
        // Fast, GIL-held rejection of the obvious case; the parser gives the precise error.
        let e = parse_report(data).err();
        if let Some(e) = e {
            return Err(snp_parse_error(py, &e));
        }
    }
    let k = key.key.clone();
    let out = py.detach(|| {
        let report = parse_report(data)?;
        let res = verify_report_signature(data, &report, &k);
        Ok::<_, ParseError>((report, res))
    });
    let (report, res) = out.map_err(|e| snp_parse_error(py, &e))?;
    Ok((
        SnpReport {
            report,
            raw: data.into(),
        },
        res.err().map(|f| (f.code, f.message)),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SnpKey>()?;
    m.add_class::<SnpReport>()?;
    m.add_function(wrap_pyfunction!(verify_snp_report, m)?)?;
    Ok(())
}
