//! Bindings for TDX quotes and the CCEL.

use crate::errors::{BindResult, Failures, MaybeFailure};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sealgate_formats::eventlog::parse_event_log;
use sealgate_formats::tdx::{parse_quote, Quote};
use sealgate_formats::Platform;
use sealgate_verify::crypto::{Hash, VerifyingKey};
use sealgate_verify::failure::hex;
use sealgate_verify::tdx::{
    check_ccel, pck_key, replay_ccel as rs_replay_ccel, verify_quote, TdAttributes, RTMR_SIZE,
};
use sealgate_verify::Error;
use std::sync::Arc;

/// A PCK public key (P-256), parsed once and reused for every quote of that platform.
#[pyclass(frozen, module = "sealgate._core")]
pub struct TdxPckKey {
    key: Arc<VerifyingKey>,
}

#[pymethods]
impl TdxPckKey {
    /// From the affine coordinates (32-byte big-endian each).
    #[new]
    fn new(x: &[u8], y: &[u8]) -> BindResult<Self> {
        Ok(TdxPckKey {
            key: Arc::new(pck_key(x, y)?),
        })
    }

    /// One bare ECDSA P-256/SHA-256 verification (r ‖ s, 64 bytes). Used by the benchmark
    /// floor and by tests; quote verification does not go through here.
    fn verify(&self, py: Python<'_>, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 64 {
            return false;
        }
        py.detach(|| {
            self.key
                .verify_ecdsa(Hash::Sha256, msg, &sig[..32], &sig[32..])
                .is_ok()
        })
    }
}

/// A parsed TDX quote (v4 or v5).
#[pyclass(frozen, module = "sealgate._core")]
pub struct TdxQuote {
    q: Quote,
    /// The signed region (header ‖ [descriptor ‖] body), kept so `verify` needs no buffer.
    signed: Vec<u8>,
}

impl TdxQuote {
    fn new(q: Quote, data: &[u8]) -> Self {
        let signed = q.signed_region(data).to_vec();
        TdxQuote { q, signed }
    }
}

fn td_attributes<'py>(py: Python<'py>, raw: &[u8; 8]) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let a = TdAttributes::from_le(raw);
    let d = PyDict::new(py);
    d.set_item(intern!(py, "hex"), hex(raw))?;
    d.set_item(intern!(py, "debug"), a.debug())?;
    d.set_item(intern!(py, "sept_ve_disable"), a.sept_ve_disable())?;
    d.set_item(intern!(py, "pks"), a.pks())?;
    d.set_item(intern!(py, "kl"), a.kl())?;
    d.set_item(intern!(py, "perfmon"), a.perfmon())?;
    Ok(d)
}

fn rtmr_list<'py>(py: Python<'py>, r: &[[u8; RTMR_SIZE]]) -> Vec<Bound<'py, PyBytes>> {
    r.iter().map(|v| PyBytes::new(py, v)).collect()
}

#[pymethods]
impl TdxQuote {
    #[staticmethod]
    fn parse(py: Python<'_>, data: &[u8]) -> BindResult<Self> {
        let q = py.detach(|| parse_quote(data))?;
        Ok(TdxQuote::new(q, data))
    }
    /// Quote signature, QE binding and (with `pck`) QE report signature, GIL released:
    /// every failure.
    #[pyo3(signature = (pck=None))]
    fn verify(&self, py: Python<'_>, pck: Option<&TdxPckKey>) -> Failures {
        let key = pck.map(|k| k.key.clone());
        Failures(py.detach(|| verify_quote(&self.signed, &self.q, key.as_deref())))
    }
    /// Replay a CCEL and compare it with this quote's RTMRs, GIL released:
    /// ([RTMR0..3 replayed], None | the `tdx.ccel.replay_mismatch` failure). A log that does
    /// not parse or cannot be replayed raises.
    fn check_ccel<'py>(
        &self,
        py: Python<'py>,
        ccel: &[u8],
    ) -> BindResult<(Vec<Bound<'py, PyBytes>>, MaybeFailure)> {
        let c = py.detach(|| check_ccel(ccel, &self.q))?;
        Ok((rtmr_list(py, &c.replayed), MaybeFailure(c.mismatch)))
    }
    #[getter]
    fn version(&self) -> u16 {
        self.q.header.version
    }
    #[getter]
    fn body_type(&self) -> Option<u16> {
        self.q.body_type
    }
    #[getter]
    fn tee_tcb_svn<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.body.tee_tcb_svn)
    }
    #[getter]
    fn tee_tcb_svn2<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.q.body.tee_tcb_svn2.map(|v| PyBytes::new(py, &v))
    }
    #[getter]
    fn mr_seam<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.body.mr_seam)
    }
    #[getter]
    fn mr_td<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.body.mr_td)
    }
    #[getter]
    fn report_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.body.report_data)
    }
    #[getter]
    fn rtmrs<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        rtmr_list(py, &self.q.body.rtmr)
    }
    #[getter]
    fn debug(&self) -> bool {
        self.q.is_debug()
    }
    #[getter]
    fn trailing_bytes(&self) -> usize {
        self.q.trailing_bytes
    }
    #[getter]
    fn signed_len(&self) -> usize {
        self.q.signed_len
    }
    #[getter]
    fn pck_chain<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.signature_data.pck_chain)
    }
    #[getter]
    fn attestation_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.signature_data.attestation_key)
    }
    #[getter]
    fn qe_auth_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.signature_data.qe_auth_data)
    }
    /// QE report fields QE-identity matching needs:
    /// (mr_signer, isv_prod_id, isv_svn, misc_select, attributes).
    #[getter]
    fn qe_report<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyBytes>, u16, u16, u32, Bound<'py, PyBytes>) {
        let r = &self.q.signature_data.qe_report;
        (
            PyBytes::new(py, &r.mr_signer),
            r.isv_prod_id,
            r.isv_svn,
            r.misc_select,
            PyBytes::new(py, &r.attributes),
        )
    }
    /// Everything of the quote that TCB evaluation reads, as one bytes key (for caching):
    /// TEE_TCB_SVN ‖ MRSIGNERSEAM ‖ SEAMATTRIBUTES ‖ QE MRSIGNER ‖ ISVPRODID ‖ ISVSVN ‖
    /// MISCSELECT ‖ QE ATTRIBUTES.
    #[getter]
    fn tcb_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = &self.q.body;
        let r = &self.q.signature_data.qe_report;
        let mut k = Vec::with_capacity(16 + 48 + 8 + 32 + 8 + 16);
        k.extend_from_slice(&b.tee_tcb_svn);
        k.extend_from_slice(&b.mr_signer_seam);
        k.extend_from_slice(&b.seam_attributes);
        k.extend_from_slice(&r.mr_signer);
        k.extend_from_slice(&r.isv_prod_id.to_le_bytes());
        k.extend_from_slice(&r.isv_svn.to_le_bytes());
        k.extend_from_slice(&r.misc_select.to_le_bytes());
        k.extend_from_slice(&r.attributes);
        PyBytes::new(py, &k)
    }
    #[getter]
    fn mr_signer_seam<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.body.mr_signer_seam)
    }
    #[getter]
    fn seam_attributes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.q.body.seam_attributes)
    }
    /// The quote's claims in the CLI contract's spelling (hex lowercase).
    fn claims<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use pyo3::intern;
        let b = &self.q.body;
        let d = PyDict::new(py);
        d.set_item(intern!(py, "version"), self.q.header.version)?;
        d.set_item(intern!(py, "tee_type"), self.q.header.tee_type)?;
        d.set_item(intern!(py, "mr_seam"), hex(&b.mr_seam))?;
        d.set_item(intern!(py, "mr_signer_seam"), hex(&b.mr_signer_seam))?;
        d.set_item(intern!(py, "mr_td"), hex(&b.mr_td))?;
        d.set_item(intern!(py, "mr_config_id"), hex(&b.mr_config_id))?;
        d.set_item(intern!(py, "mr_owner"), hex(&b.mr_owner))?;
        d.set_item(intern!(py, "mr_owner_config"), hex(&b.mr_owner_config))?;
        d.set_item(intern!(py, "rtmr0"), hex(&b.rtmr[0]))?;
        d.set_item(intern!(py, "rtmr1"), hex(&b.rtmr[1]))?;
        d.set_item(intern!(py, "rtmr2"), hex(&b.rtmr[2]))?;
        d.set_item(intern!(py, "rtmr3"), hex(&b.rtmr[3]))?;
        d.set_item(intern!(py, "report_data"), hex(&b.report_data))?;
        d.set_item(
            intern!(py, "td_attributes"),
            td_attributes(py, &b.td_attributes)?,
        )?;
        d.set_item(intern!(py, "seam_attributes"), hex(&b.seam_attributes))?;
        d.set_item(intern!(py, "xfam"), hex(&b.xfam))?;
        d.set_item(intern!(py, "tee_tcb_svn"), hex(&b.tee_tcb_svn))?;
        if let Some(v) = &b.tee_tcb_svn2 {
            d.set_item(intern!(py, "tee_tcb_svn2"), hex(v))?;
        }
        if let Some(v) = &b.mr_service_td {
            d.set_item(intern!(py, "mr_service_td"), hex(v))?;
        }
        d.set_item(intern!(py, "trailing_bytes"), self.q.trailing_bytes)?;
        Ok(d)
    }
}

/// Parse and check a quote's signatures and QE binding with the GIL released. Parse errors
/// raise `ParseError`; verification failures come back as [Failure], all of them.
/// Without `pck` the QE report signature is not checked (the caller reports why).
#[pyfunction]
#[pyo3(signature = (data, pck=None))]
fn verify_tdx_quote(
    py: Python<'_>,
    data: &[u8],
    pck: Option<&TdxPckKey>,
) -> BindResult<(TdxQuote, Failures)> {
    let key = pck.map(|k| k.key.clone());
    let (q, failures) = py.detach(|| {
        let q = parse_quote(data)?;
        let f = verify_quote(data, &q, key.as_deref());
        Ok::<_, Error>((q, f))
    })?;
    Ok((TdxQuote::new(q, data), Failures(failures)))
}

/// Parse a CCEL area and replay it into [RTMR0, RTMR1, RTMR2, RTMR3].
#[pyfunction]
fn replay_ccel<'py>(py: Python<'py>, data: &[u8]) -> BindResult<Vec<Bound<'py, PyBytes>>> {
    let r = py.detach(|| {
        let log = parse_event_log(data, Platform::Tdx)?;
        Ok::<_, Error>(rs_replay_ccel(&log)?)
    })?;
    Ok(rtmr_list(py, &r))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TdxPckKey>()?;
    m.add_class::<TdxQuote>()?;
    m.add_function(wrap_pyfunction!(verify_tdx_quote, m)?)?;
    m.add_function(wrap_pyfunction!(replay_ccel, m)?)?;
    Ok(())
}
