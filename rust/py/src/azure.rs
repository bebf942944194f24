//! Bindings for the Azure CVM containers: the HCL report and `quote.bin`.

use crate::errors::{BindError, BindResult, Failures};
use crate::snp::{claims_dict, SnpKey};
use crate::tpm::{pcr_map, unverified_claims, verified_claims, PreparedQuote};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};
use sealgate_formats::azure::{
    parse_hcl_report as rs_parse_hcl, parse_quote_bin as rs_parse_quote_bin, HardwareKind,
    HclReport, TdReport,
};
use sealgate_formats::azure_runtime::{
    parse_runtime_data as rs_parse_runtime, Jwk, RuntimeData, Scalar,
};
use sealgate_formats::tpm::parse_attest_any;
use sealgate_verify::azure::{self as az, check_keys};
use sealgate_verify::crypto::{hash, Hash};
use sealgate_verify::eventlog::{check_replay, PcrMap};
use sealgate_verify::failure::hex;
use sealgate_verify::snp::{verify_report as verify_snp_report, Expectations};
use sealgate_verify::tpm::{AkKey, QuoteExpectations};
use sealgate_verify::{Error, Failure};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

    /// SHA-256 of the runtime data (what report_data[0:32] must be).
    #[getter]
    fn runtime_data_sha256<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let d = hash(Hash::Sha256, &[&self.data[self.r.runtime_data.clone()]]);
        PyBytes::new(py, &d)
    }

    #[getter]
    fn report_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.r.report_data)
    }

    /// TDX: the TDREPORT fields a TD quote body repeats, hex, keyed as `TdxQuote.claims()`
    /// keys them (`td_attributes` as its hex); None for SNP.
    fn td_report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.r
            .td_report
            .as_ref()
            .map(|t| td_report_dict(py, t))
            .transpose()
    }
}

fn td_report_dict<'py>(py: Python<'py>, t: &TdReport) -> PyResult<Bound<'py, PyDict>> {
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
    Ok(d)
}

/// (signature, TPMS_ATTEST, [PCR values], legacy layout).
type QuoteBinParts<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Vec<Bound<'py, PyBytes>>,
    bool,
);

/// `quote.bin` (either bincode layout) → (signature, TPMS_ATTEST, [PCR values], legacy).
#[pyfunction]
fn parse_quote_bin<'py>(py: Python<'py>, data: &[u8]) -> BindResult<QuoteBinParts<'py>> {
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

fn vm_configuration<'py>(py: Python<'py>, r: &RuntimeData) -> PyResult<Bound<'py, PyDict>> {
    let vmc = PyDict::new(py);
    for (k, v) in &r.vm_configuration {
        match v {
            Scalar::Bool(b) => vmc.set_item(k, *b)?,
            Scalar::Int(i) => vmc.set_item(k, *i)?,
            Scalar::Str(s) => vmc.set_item(k, s)?,
        }
    }
    Ok(vmc)
}

/// The runtime data JSON, its keys checked (`sealgate_verify::azure::check_keys`) →
/// (HCLAkPub, HCLEkPub | None, vm-configuration dict, user-data bytes | None, the AK's
/// modulus bits); `ParseError` `azure.runtime_data.*` for malformed JSON or keys.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn parse_runtime_data<'py>(
    py: Python<'py>,
    data: &[u8],
) -> BindResult<(
    JwkTuple<'py>,
    Option<JwkTuple<'py>>,
    Bound<'py, PyDict>,
    Option<Bound<'py, PyBytes>>,
    usize,
)> {
    let r = rs_parse_runtime(data)?;
    let k = check_keys(&r).map_err(|f| BindError::Refused(f, "runtime_data"))?;
    let bits = k.ak_bits;
    let vmc = vm_configuration(py, &r)?;
    let user_data = r.user_data.as_ref().map(|u| PyBytes::new(py, u));
    let ek = r.ek.clone().map(|k| jwk_tuple(py, k));
    Ok((
        jwk_tuple(py, r.ak.clone().expect("check_keys found it")),
        ek,
        vmc,
        user_data,
        bits,
    ))
}

/// RFC 7638 thumbprint of an RSA JWK (`sealgate_verify::azure::jwk_thumbprint`).
#[pyfunction]
fn jwk_thumbprint(n: &[u8], e: &[u8]) -> String {
    key_entry(n, e, false).thumbprint.clone()
}

/// A vTPM quote signature as TPMT_SIGNATURE (`sealgate_verify::azure::tpmt_signature`).
#[pyfunction]
fn tpmt_signature<'py>(
    py: Python<'py>,
    signature: &[u8],
    modulus_len: usize,
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &az::tpmt_signature(signature, modulus_len))
}

/// A runtime-data key as the verifier uses it: its RFC 7638 thumbprint and, for the AK,
/// the verifying key (whose backend key object is parsed on first use and kept). A VM's
/// AK and EK appear in every one of its attestations; parsing an RSA key costs ~4 us and
/// the thumbprint ~1 us, so both are kept by the key bytes themselves.
struct KeyEntry {
    thumbprint: String,
    ak: Option<Result<Arc<AkKey>, Failure>>,
}

/// Entries kept (a verifier sees a few keys per VM it serves); the whole map is dropped
/// when full, which bounds it whatever the attesters send (each entry < 1.2 KiB).
const KEY_CACHE_SIZE: usize = 1024;
static KEY_CACHE: Mutex<Option<HashMap<Vec<u8>, Arc<KeyEntry>>>> = Mutex::new(None);

fn key_entry(n: &[u8], e: &[u8], want_ak: bool) -> Arc<KeyEntry> {
    let mut id = Vec::with_capacity(n.len() + e.len() + 4);
    id.extend_from_slice(&(n.len() as u32).to_be_bytes());
    id.extend_from_slice(n);
    id.extend_from_slice(e);
    let lookup = |id: &[u8]| {
        let g = KEY_CACHE.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().and_then(|m| m.get(id).cloned())
    };
    let hit = lookup(&id);
    if let Some(h) = &hit {
        if !want_ak || h.ak.is_some() {
            return h.clone();
        }
    }
    let thumbprint = match &hit {
        Some(h) => h.thumbprint.clone(),
        None => az::jwk_thumbprint(n, e),
    };
    let ak = want_ak.then(|| AkKey::from_rsa(n, e).map(Arc::new));
    let entry = Arc::new(KeyEntry { thumbprint, ak });
    let mut g = KEY_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let m = g.get_or_insert_with(HashMap::new);
    if m.len() >= KEY_CACHE_SIZE {
        m.clear();
    }
    m.insert(id, entry.clone());
    entry
}

fn hcl_claims<'py>(
    py: Python<'py>,
    h: &HclReport,
    sha: &[u8],
    runtime_len: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "version"), h.version)?;
    d.set_item(intern!(py, "report_type"), h.kind.as_str())?;
    d.set_item(intern!(py, "length"), h.len)?;
    d.set_item(intern!(py, "runtime_data_sha256"), hex(sha))?;
    d.set_item(intern!(py, "runtime_data_size"), runtime_len)?;
    Ok(d)
}

fn quote_unchecked(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "quote_checked"), false)?;
    Ok(d)
}

/// (platform, hcl claims, runtime_data claims | None, snp claims | None (None when the
/// hardware report is left to the caller), tpm claims, failures, hw_at, tpm_at,
/// (hardware report, TDREPORT fields | None) | None).
type AzureOut<'py> = (
    &'static str,
    Bound<'py, PyDict>,
    Option<Bound<'py, PyDict>>,
    Option<Bound<'py, PyDict>>,
    Bound<'py, PyDict>,
    Failures,
    usize,
    usize,
    Option<(Bound<'py, PyBytes>, Option<Bound<'py, PyDict>>)>,
);

/// Azure CVM evidence in one call: the HCL report parsed, its runtime data parsed and its
/// keys checked, the binding report_data = SHA-256(runtime data) ‖ zeros, the SNP report
/// verified with `snp_key` (a VCEK/VLEK whose chain the caller verified;
/// `sealgate_verify::snp::verify_report`, as `verify_snp`), the vTPM quote verified with
/// the runtime data's HCLAkPub (`sealgate_verify::tpm::verify_quote`, as
/// `verify_tpm_quote`; `replayed` an event log's replay to compare with the quoted PCRs),
/// the AK's scheme pinned, `user_data` compared. Both signatures are checked in one
/// stretch with the GIL released.
///
/// Failures are returned in the order of the chain of checks: the runtime data's, the
/// hardware report's, the binding's, the quote's, the user data's. Without `snp_key` (or
/// for TDX) the hardware report is returned for the caller to verify, its failures to be
/// inserted at `hw_at`; an event log's failures belong at `tpm_at`. Only an HCL report
/// that does not parse raises (`ParseError` `azure.hcl.*`).
#[pyfunction]
#[pyo3(signature = (hcl_report, snp_key=None, quote=None, signature=None, pcrs=None, nonce=None, user_data=None, replayed=None, eventlog=false))]
#[allow(clippy::too_many_arguments)]
fn verify_azure<'py>(
    py: Python<'py>,
    hcl_report: &[u8],
    snp_key: Option<&SnpKey>,
    quote: Option<PyBackedBytes>,
    signature: Option<&[u8]>,
    pcrs: Option<&Bound<'py, PyDict>>,
    nonce: Option<&[u8]>,
    user_data: Option<&[u8]>,
    replayed: Option<&Bound<'py, PyDict>>,
    eventlog: bool,
) -> BindResult<AzureOut<'py>> {
    if user_data.is_some_and(|u| u.len() > az::USER_DATA_LEN) {
        return Err(BindError::Value(format!(
            "user data is at most {} bytes",
            az::USER_DATA_LEN
        )));
    }
    let hcl = rs_parse_hcl(hcl_report)?;
    let runtime = &hcl_report[hcl.runtime_data.clone()];
    let sha = hash(Hash::Sha256, &[runtime]);
    let hcl_c = hcl_claims(py, &hcl, &sha, runtime.len())?;

    // The runtime data and its keys.
    let mut rt_f = Vec::new();
    let rt = rs_parse_runtime(runtime)
        .map_err(|e| rt_f.push(Failure::from(&e)))
        .ok();
    let keys = rt
        .as_ref()
        .and_then(|r| check_keys(r).map_err(|f| rt_f.push(f)).ok());
    let mut rt_c = None;
    let mut ak_entry = None;
    if let (Some(r), Some(k)) = (&rt, &keys) {
        let ak = key_entry(&k.ak.n, &k.ak.e, true);
        let d = PyDict::new(py);
        d.set_item(intern!(py, "vm_configuration"), vm_configuration(py, r)?)?;
        d.set_item(intern!(py, "user_data"), r.user_data.as_deref().map(hex))?;
        d.set_item(intern!(py, "ak_jwk_thumbprint"), &ak.thumbprint)?;
        d.set_item(intern!(py, "ak_bits"), k.ak_bits)?;
        let ek = k.ek.map(|e| key_entry(&e.n, &e.e, false));
        d.set_item(
            intern!(py, "ek_jwk_thumbprint"),
            ek.as_ref().map(|e| e.thumbprint.as_str()),
        )?;
        rt_c = Some(d);
        ak_entry = Some((ak, k.ak.n.len()));
    }

    // (2) The binding.
    let bind_f: Vec<Failure> = az::check_binding(&hcl.report_data, &sha)
        .into_iter()
        .collect();

    // (3) The vTPM quote, made ready with the GIL held.
    let mut tpm_f = Vec::new();
    let mut tpm_c = None;
    let mut prepared = None;
    // Whether the quote was looked at (its claims then say so, with the AK's thumbprint).
    let mut checked = false;
    match (&quote, &ak_entry, signature) {
        (None, _, _) => {
            tpm_c = Some(quote_unchecked(py)?);
            if nonce.is_some() || eventlog {
                tpm_f.push(Failure::new(
                    "azure.vtpm.quote_missing",
                    "a nonce or event log was given but no vTPM quote to check it against",
                ));
            }
        }
        // No AK: the runtime data failure is recorded.
        (Some(_), None, _) => tpm_c = Some(quote_unchecked(py)?),
        (Some(_), Some(_), None) => {
            tpm_c = Some(quote_unchecked(py)?);
            tpm_f.push(Failure::new(
                "azure.vtpm.signature_missing",
                "the vTPM quote has no signature",
            ));
        }
        (Some(q), Some((entry, n_len)), Some(sig)) => match entry.ak.as_ref() {
            Some(Ok(ak)) => {
                let sig = az::tpmt_signature(sig, *n_len);
                match PreparedQuote::new(q, &sig, pcrs) {
                    Ok(p) => prepared = Some((p, ak.clone())),
                    Err(BindError::Parse(e)) => {
                        // The quote, or only its signature, did not parse: the claims come
                        // from the quote when it parses.
                        let d = match parse_attest_any(q) {
                            Ok((a, _)) => unverified_claims(py, &a, None)?,
                            Err(_) => {
                                let d = PyDict::new(py);
                                d.set_item(intern!(py, "ak_name"), py.None())?;
                                d
                            }
                        };
                        tpm_f.push(Failure::from(&e));
                        tpm_c = Some(d);
                        checked = true;
                    }
                    Err(other) => return Err(other),
                }
            }
            Some(Err(f)) => {
                tpm_c = Some(quote_unchecked(py)?);
                tpm_f.push(f.clone());
            }
            None => unreachable!("key_entry(.., true) builds the AK"),
        },
    }

    // (1) and (3): both signatures, GIL released.
    let snp_key = snp_key.filter(|_| hcl.kind == HardwareKind::Snp);
    let hw = &hcl_report[hcl.hardware.clone()];
    let (snp_v, outcome) = py.detach(|| {
        let s = snp_key.map(|k| {
            let exp = Expectations {
                product: None,
                chain_product: k.chain_product,
                // REPORT_DATA is checked as the HCL binding (azure.hcl.report_data_mismatch)
                // so the failure names what is wrong.
                report_data: None,
            };
            verify_snp_report(hw, &k.key, k.endorsement.as_ref(), &exp)
        });
        let exp = QuoteExpectations {
            nonce,
            min_selection: None,
        };
        let q = match (&prepared, &quote) {
            (Some((p, ak)), Some(q)) => Some(p.verify(q, ak, &exp)),
            _ => None,
        };
        (s, q)
    });

    let mut snp_f = Vec::new();
    let snp_c = match snp_v {
        None => None,
        Some(Ok(v)) => {
            snp_f = v.failures;
            Some(claims_dict(py, &v.report, v.product)?)
        }
        Some(Err(e)) => {
            snp_f.push(match e {
                Error::Parse(p) => Failure::from(&p),
                Error::Failed(f) => f,
            });
            Some(PyDict::new(py))
        }
    };

    if let (Some((p, _)), Some(mut o)) = (&prepared, outcome) {
        let (scheme, h) = p.scheme_names();
        let d = verified_claims(py, &p.attest, None, &p.pcrs.0, &o, scheme, h)?;
        tpm_f.append(&mut o.failures);
        if let Some(r) = replayed {
            let mut quoted = PcrMap::new();
            for (alg, i, v) in &p.pcrs.0 {
                quoted.entry(*alg).or_default().insert(*i, v.to_vec());
            }
            if let Some(m) = check_replay(&pcr_map(r)?, &quoted) {
                tpm_f.push(m.failure);
                d.set_item(intern!(py, "replay_mismatch_pcrs"), m.pcrs)?;
            }
        }
        tpm_f.extend(az::check_ak_scheme(&p.sig));
        tpm_c = Some(d);
    }
    let tpm_c = tpm_c.expect("every branch sets the quote's claims");
    if prepared.is_some() || checked {
        tpm_c.set_item(intern!(py, "quote_checked"), true)?;
        let thumb = ak_entry.as_ref().map(|(e, _)| e.thumbprint.as_str());
        tpm_c.set_item(intern!(py, "ak_jwk_thumbprint"), thumb)?;
    }

    // (4) The caller's user data.
    let mut user_f = Vec::new();
    if let (Some(want), Some(r), Some(_)) = (user_data, &rt, &keys) {
        user_f.extend(az::check_user_data(r.user_data.as_deref(), want));
    }

    let hardware = match snp_c {
        Some(_) => None,
        None => Some((
            PyBytes::new(py, hw),
            hcl.td_report
                .as_ref()
                .map(|t| td_report_dict(py, t))
                .transpose()?,
        )),
    };
    let hw_at = rt_f.len() + snp_f.len();
    let tpm_at = hw_at + bind_f.len();
    let mut failures = rt_f;
    failures.append(&mut snp_f);
    failures.extend(bind_f);
    failures.append(&mut tpm_f);
    failures.append(&mut user_f);
    let platform = match hcl.kind {
        HardwareKind::Snp => "azure-snp",
        HardwareKind::Tdx => "azure-tdx",
    };
    Ok((
        platform,
        hcl_c,
        rt_c,
        snp_c,
        tpm_c,
        Failures(failures),
        hw_at,
        tpm_at,
        hardware,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HclReportRaw>()?;
    m.add_function(wrap_pyfunction!(parse_runtime_data, m)?)?;
    m.add_function(wrap_pyfunction!(verify_azure, m)?)?;
    m.add_function(wrap_pyfunction!(jwk_thumbprint, m)?)?;
    m.add_function(wrap_pyfunction!(tpmt_signature, m)?)?;
    m.add_function(wrap_pyfunction!(parse_quote_bin, m)?)
}
