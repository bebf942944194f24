//! Bindings for NVIDIA GPU attestation reports (SPDM 1.1 MEASUREMENTS).
//!
//! `NvGpuKey` holds the device leaf's P-384 public key, parsed once, and its TCG DICE FWID
//! (the Python layer caches it with the verified chain), so a steady-state verification is
//! one parse plus one P-384 verify with the GIL released, and the claim dictionary is built
//! here rather than field by field in Python.

use crate::errors::{BindError, BindResult, Failures};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use sealgate_formats::nvgpu::{opaque, parse_device_report, parse_report, Device, GpuReport};
use sealgate_verify::crypto::VerifyingKey;
use sealgate_verify::failure::hex;
use sealgate_verify::nvgpu::{
    check_nonce, device_key, verify_report, verify_signature, Expectations,
};
use std::sync::Arc;

/// A GPU device leaf's public key (P-384) and the FWID of its DICE extension.
#[pyclass(frozen, module = "sealgate._core")]
pub struct NvGpuKey {
    key: Arc<VerifyingKey>,
    fwid: Option<Vec<u8>>,
}

#[pymethods]
impl NvGpuKey {
    /// From an uncompressed SEC1 point (0x04 ‖ X ‖ Y, 97 bytes), as in the certificate's
    /// subjectPublicKey; `fwid`: the leaf's SHA-384 DICE FWID, if it has one. A point that
    /// is not a P-384 point raises `ChainError("gpu.chain.bad_key")`.
    #[staticmethod]
    #[pyo3(signature = (point, fwid=None))]
    fn from_sec1(point: &[u8], fwid: Option<Vec<u8>>) -> BindResult<Self> {
        Ok(NvGpuKey {
            key: Arc::new(device_key(point).map_err(BindError::Chain)?),
            fwid,
        })
    }

    #[getter]
    fn fwid<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.fwid.as_deref().map(|f| PyBytes::new(py, f))
    }

    /// ECDSA P-384 / SHA-384 of `signed` with raw r‖s `signature` (DSP0274 §15). GIL
    /// released.
    fn verify_signature(&self, py: Python<'_>, signed: &[u8], signature: &[u8]) -> bool {
        let k = self.key.clone();
        py.detach(|| verify_signature(&k, signed, signature))
    }
}

/// The report's fields for `sealgate.nvgpu.report.GpuReport`: (request_nonce, slot,
/// request_param1, request_param2, blocks [(index, spec, value_type, value)],
/// responder_nonce, opaque [(type, value)], signed_len, signature, driver_version,
/// vbios_version, fwid, chip_sku, project, project_sku, switch_pdis [bytes]).
fn fields<'py>(py: Python<'py>, r: &GpuReport<'_>) -> PyResult<Bound<'py, PyTuple>> {
    let blocks = PyList::empty(py);
    for b in &r.blocks {
        blocks.append((b.index, b.spec, b.value_type, PyBytes::new(py, b.value)))?;
    }
    let tlvs = PyList::empty(py);
    for o in &r.opaque {
        tlvs.append((o.tlv_type, PyBytes::new(py, o.value)))?;
    }
    let pdis = PyList::empty(py);
    for p in r.switch_pdis() {
        pdis.append(PyBytes::new(py, p))?;
    }
    let b = |v: &[u8]| PyBytes::new(py, v).into_any();
    let items: Vec<Bound<'py, PyAny>> = vec![
        b(r.request_nonce),
        r.slot.into_pyobject(py)?.into_any(),
        r.request_param1.into_pyobject(py)?.into_any(),
        r.request_param2.into_pyobject(py)?.into_any(),
        blocks.into_any(),
        b(r.responder_nonce),
        tlvs.into_any(),
        r.signed.len().into_pyobject(py)?.into_any(),
        b(r.signature),
        r.driver_version.into_pyobject(py)?.into_any(),
        r.vbios_version_text().into_pyobject(py)?.into_any(),
        r.fwid.map(|f| b(f)).into_pyobject(py)?.into_any(),
        r.chip_sku.into_pyobject(py)?.into_any(),
        r.project.into_pyobject(py)?.into_any(),
        r.project_sku.into_pyobject(py)?.into_any(),
        pdis.into_any(),
    ];
    PyTuple::new(py, items)
}

/// `"0"` ..= `"255"`, made once: the measurement claim keys of every report are the same
/// few strings, and a reused Python string keeps its hash (the dictionary inserts of 64
/// fresh keys were a measurable part of a verification).
fn index_key(py: Python<'_>, i: u8) -> Bound<'_, PyString> {
    static KEYS: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
    KEYS.get_or_init(py, || {
        (0..=255u8)
            .map(|n| PyString::new(py, &n.to_string()).unbind())
            .collect()
    })[i as usize]
        .bind(py)
        .clone()
}

/// Lowercase hex as a Python string, through a stack buffer for values up to a SHA-512
/// digest (every measurement, nonce and FWID), avoiding a heap String per value.
fn hex_py<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 128];
    if b.len() * 2 > buf.len() {
        return PyString::new(py, &hex(b));
    }
    for (i, &x) in b.iter().enumerate() {
        buf[2 * i] = H[(x >> 4) as usize];
        buf[2 * i + 1] = H[(x & 15) as usize];
    }
    // Only ASCII hex digits were written.
    PyString::new(
        py,
        core::str::from_utf8(&buf[..2 * b.len()]).unwrap_or_default(),
    )
}

/// The report claims every verification states (lowercase hex), up to `nonce_checked`.
fn report_claims<'py>(
    py: Python<'py>,
    r: &GpuReport<'_>,
    nonce_checked: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "nonce"), hex(r.request_nonce))?;
    d.set_item(intern!(py, "responder_nonce"), hex(r.responder_nonce))?;
    d.set_item(intern!(py, "slot"), r.slot)?;
    d.set_item(intern!(py, "driver_version"), r.driver_version)?;
    d.set_item(intern!(py, "vbios_version"), r.vbios_version_text())?;
    d.set_item(intern!(py, "fwid"), r.fwid.map(|f| hex(f)))?;
    d.set_item(intern!(py, "chip_sku"), r.chip_sku)?;
    d.set_item(intern!(py, "project"), r.project)?;
    d.set_item(intern!(py, "project_sku"), r.project_sku)?;
    let pdis = PyList::empty(py);
    for p in r.switch_pdis() {
        pdis.append(hex(p))?;
    }
    d.set_item(intern!(py, "switch_pdis"), pdis)?;
    // NVIDIA's opaque PROTECTED_PCIE_STATUS: 0xAA in protected-PCIe (multi-GPU CC) mode,
    // 0x55 otherwise (the published single-GPU and HGX PPCIe reports); anything else, or
    // no TLV: None.
    let ppcie = match r.opaque_value(opaque::PROTECTED_PCIE_STATUS) {
        Some([0xAA]) => Some(true),
        Some([0x55]) => Some(false),
        _ => None,
    };
    d.set_item(intern!(py, "ppcie"), ppcie)?;
    let m = PyDict::new(py);
    for b in &r.blocks {
        m.set_item(index_key(py, b.index), hex_py(py, b.value))?;
    }
    d.set_item(intern!(py, "measurements"), m)?;
    d.set_item(intern!(py, "nonce_checked"), nonce_checked)?;
    Ok(d)
}

/// Parse only: the report's fields (see `GpuReport` in `sealgate.nvgpu.report`); a
/// malformed report raises `ParseError` (`gpu.format.*`, field and offset). `switch`: an
/// NVSwitch report, whose text VBIOS TLV is left to the caller (`vbios_version` None).
#[pyfunction]
#[pyo3(signature = (data, switch=false))]
fn parse_nvgpu<'py>(py: Python<'py>, data: &[u8], switch: bool) -> BindResult<Bound<'py, PyTuple>> {
    let device = if switch { Device::Switch } else { Device::Gpu };
    let r = parse_device_report(data, device)?;
    Ok(fields(py, &r)?)
}

/// The steady-state call: parse, nonce (if given), signature and FWID with `key` (the
/// verified chain's leaf) with the GIL released, then the claims — one crossing into Rust
/// per report. `key` None (the chain did not verify): parse, nonce and the report claims
/// only. `certificate`: the chain's claims, stored under "certificate". `report`: also
/// return the report's fields (as `parse_nvgpu`). Returns (claims, [Failure], fields or
/// None); parse errors raise.
#[pyfunction]
#[pyo3(signature = (key, data, nonce=None, certificate=None, report=false))]
fn verify_nvgpu<'py>(
    py: Python<'py>,
    key: Option<&NvGpuKey>,
    data: &[u8],
    nonce: Option<&[u8]>,
    certificate: Option<Bound<'py, PyAny>>,
    report: bool,
) -> BindResult<(Bound<'py, PyDict>, Failures, Option<Bound<'py, PyTuple>>)> {
    let Some(key) = key else {
        let r = parse_report(data)?;
        let failures: Vec<_> = nonce
            .and_then(|n| check_nonce(&r, n).err())
            .into_iter()
            .collect();
        let d = report_claims(py, &r, nonce.is_some())?;
        let f = if report { Some(fields(py, &r)?) } else { None };
        return Ok((d, Failures(failures), f));
    };
    let exp = Expectations {
        nonce,
        leaf_fwid: key.fwid.as_deref(),
    };
    let k = key.key.clone();
    let v = py.detach(|| verify_report(data, &k, &exp))?;
    let d = report_claims(py, &v.report, nonce.is_some())?;
    if let Some(c) = certificate {
        d.set_item(intern!(py, "certificate"), c)?;
    }
    d.set_item(intern!(py, "signature_verified"), v.signature_verified)?;
    d.set_item(
        intern!(py, "certificate_fwid"),
        key.fwid.as_deref().map(hex),
    )?;
    d.set_item(intern!(py, "fwid_checked"), v.fwid_checked)?;
    let f = if report {
        Some(fields(py, &v.report)?)
    } else {
        None
    };
    Ok((d, Failures(v.failures), f))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NvGpuKey>()?;
    m.add_function(wrap_pyfunction!(parse_nvgpu, m)?)?;
    m.add_function(wrap_pyfunction!(verify_nvgpu, m)?)?;
    Ok(())
}
