//! Bindings for the Azure CVM containers: the HCL report and `quote.bin`.

use crate::errors::BindResult;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sealgate_formats::azure::{
    parse_hcl_report as rs_parse_hcl, parse_quote_bin as rs_parse_quote_bin, HclReport,
};
use sealgate_formats::azure_runtime::{parse_runtime_data as rs_parse_runtime, Jwk, Scalar};
use sealgate_verify::failure::hex;

/// A parsed HCL report; the byte fields are copies of the input's ranges.
#[pyclass(frozen, module = "sealgate._core")]
pub struct HclReportRaw {
    r: HclReport,
    data: Vec<u8>,
}

#[pymethods]
impl HclReportRaw {
    #[staticmethod]
    fn parse(py: Python<'_>, data: &[u8]) -> BindResult<Self> {
        let r = py.detach(|| rs_parse_hcl(data))?;
        Ok(HclReportRaw {
            r,
            data: data.to_vec(),
        })
    }

    #[getter]
    fn version(&self) -> u32 {
        self.r.version
    }

    #[getter]
    fn report_size(&self) -> u32 {
        self.r.report_size
    }

    #[getter]
    fn request_type(&self) -> u32 {
        self.r.request_type
    }

    /// "snp" or "tdx".
    #[getter]
    fn kind(&self) -> &'static str {
        self.r.kind.as_str()
    }

    /// The IGVM request data's report_type as stored (2 SNP, 4 TDX).
    #[getter]
    fn report_type(&self) -> u32 {
        self.r.report_type
    }

    #[getter]
    fn hash_type(&self) -> u32 {
        self.r.hash_type
    }

    #[getter]
    fn length(&self) -> usize {
        self.r.len
    }

    /// SNP: the 1184-byte ATTESTATION_REPORT; TDX: the 1024-byte TDREPORT_STRUCT.
    #[getter]
    fn hardware_report<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data[self.r.hardware.clone()])
    }

    /// The runtime data exactly as stored (variable_data_size bytes).
    #[getter]
    fn runtime_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data[self.r.runtime_data.clone()])
    }

    #[getter]
    fn report_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.r.report_data)
    }

    /// TDX: the TDREPORT fields a TD quote body repeats, hex, keyed as `TdxQuote.claims()`
    /// keys them (`td_attributes` as its hex); None for SNP.
    fn td_report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(t) = &self.r.td_report else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item(intern!(py, "report_type"), hex(&t.report_type))?;
        d.set_item(intern!(py, "cpu_svn"), hex(&t.cpu_svn))?;
        d.set_item(intern!(py, "report_data"), hex(&t.report_data))?;
        d.set_item(intern!(py, "tee_tcb_svn"), hex(&t.tee_tcb_svn))?;
        d.set_item(intern!(py, "mr_seam"), hex(&t.mr_seam))?;
        d.set_item(intern!(py, "mr_signer_seam"), hex(&t.mr_signer_seam))?;
        d.set_item(intern!(py, "seam_attributes"), hex(&t.seam_attributes))?;
        d.set_item(intern!(py, "td_attributes"), hex(&t.td_attributes))?;
        d.set_item(intern!(py, "xfam"), hex(&t.xfam))?;
        d.set_item(intern!(py, "mr_td"), hex(&t.mr_td))?;
        d.set_item(intern!(py, "mr_config_id"), hex(&t.mr_config_id))?;
        d.set_item(intern!(py, "mr_owner"), hex(&t.mr_owner))?;
        d.set_item(intern!(py, "mr_owner_config"), hex(&t.mr_owner_config))?;
        for (i, name) in ["rtmr0", "rtmr1", "rtmr2", "rtmr3"].iter().enumerate() {
            d.set_item(*name, hex(&t.rtmr[i]))?;
        }
        Ok(Some(d))
    }
}

/// `quote.bin` (either bincode layout) → (signature, TPMS_ATTEST, [PCR values], legacy).
#[pyfunction]
fn parse_quote_bin<'py>(
    py: Python<'py>,
    data: &[u8],
) -> BindResult<(
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Vec<Bound<'py, PyBytes>>,
    bool,
)> {
    let q = rs_parse_quote_bin(data)?;
    Ok((
        PyBytes::new(py, &q.signature),
        PyBytes::new(py, &q.message),
        q.pcrs.iter().map(|p| PyBytes::new(py, p)).collect(),
        q.legacy,
    ))
}

/// (kid, kty, n, e, key_ops) of a runtime-data JWK.
type JwkTuple<'py> = (
    String,
    String,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Vec<String>,
);

fn jwk_tuple<'py>(py: Python<'py>, k: Jwk) -> JwkTuple<'py> {
    (
        k.kid,
        k.kty,
        PyBytes::new(py, &k.n),
        PyBytes::new(py, &k.e),
        k.key_ops,
    )
}

/// The runtime data JSON → (HCLAkPub | None, HCLEkPub | None, vm-configuration dict,
/// user-data bytes | None); `ParseError` `azure.runtime_data.*` for malformed JSON.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn parse_runtime_data<'py>(
    py: Python<'py>,
    data: &[u8],
) -> BindResult<(
    Option<JwkTuple<'py>>,
    Option<JwkTuple<'py>>,
    Bound<'py, PyDict>,
    Option<Bound<'py, PyBytes>>,
)> {
    let r = rs_parse_runtime(data)?;
    let vmc = PyDict::new(py);
    for (k, v) in r.vm_configuration {
        match v {
            Scalar::Bool(b) => vmc.set_item(k, b)?,
            Scalar::Int(i) => vmc.set_item(k, i)?,
            Scalar::Str(s) => vmc.set_item(k, s)?,
        }
    }
    Ok((
        r.ak.map(|k| jwk_tuple(py, k)),
        r.ek.map(|k| jwk_tuple(py, k)),
        vmc,
        r.user_data.map(|u| PyBytes::new(py, &u)),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HclReportRaw>()?;
    m.add_function(wrap_pyfunction!(parse_runtime_data, m)?)?;
    m.add_function(wrap_pyfunction!(parse_quote_bin, m)?)
}
