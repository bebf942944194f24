//! Bindings for TPM quotes, public areas and event logs.

use crate::errors::{failure, BindError, BindResult, Failures};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use sealgate_formats::eventlog::{parse_event_log as parse_log, EventLog as RsEventLog, LogFormat};
use sealgate_formats::tpm::{
    parse_attest_any, parse_public_any, parse_signature, Attest, PcrSelection, PcrSelectionList,
    PublicParms, Signature, TpmAlg,
};
use sealgate_formats::Platform;
use sealgate_verify::crypto::{Curve, KeyKind};
use sealgate_verify::eventlog::{check_replay, replay, PcrMap};
use sealgate_verify::failure::hex;
use sealgate_verify::tpm::PcrSource;
use sealgate_verify::tpm::{
    selection_string, verify_quote, AkKey, QuoteExpectations, QuoteOutcome,
};
use sealgate_verify::{Error, Failure};
use std::collections::BTreeMap;
use std::sync::Arc;

/// ("rsa", n, e) or (curve, x ‖ y, coordinate size) — see `TpmPublic::components`.
type Components<'py> = (String, Bound<'py, PyBytes>, Bound<'py, PyBytes>);
const BANK_SHAPE: &str = "PCR bank values must be dicts of index -> bytes";

fn bank(name: &str) -> BindResult<TpmAlg> {
    TpmAlg::hash_from_name(name)
        .ok_or_else(|| BindError::Value(format!("unknown PCR bank {name:?}")))
}

/// Python `{"sha256": {0: b"..."}}` → PcrMap. Only shapes are checked here; lengths are
/// checked by verification against the bank's digest size.
pub(crate) fn pcr_map(d: &Bound<'_, PyDict>) -> BindResult<PcrMap> {
    let mut out = PcrMap::new();
    for (k, v) in d.iter() {
        let alg = bank(&k.extract::<String>()?)?;
        let inner = v
            .cast::<PyDict>()
            .map_err(|_| BindError::Type(BANK_SHAPE.into()))?;
        let mut m = BTreeMap::new();
        for (i, val) in inner.iter() {
            m.insert(i.extract::<u32>()?, val.extract::<Vec<u8>>()?);
        }
        out.insert(alg, m);
    }
    Ok(out)
}

fn pcr_map_to_py<'py>(py: Python<'py>, m: &PcrMap) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (alg, values) in m {
        let inner = PyDict::new(py);
        for (i, v) in values {
            inner.set_item(i, PyBytes::new(py, v))?;
        }
        out.set_item(alg.name(), inner)?;
    }
    Ok(out)
}

fn selection_to_py(s: &PcrSelectionList) -> Vec<(String, Vec<u32>)> {
    s.selections
        .iter()
        .map(|b| (b.hash.name(), b.pcrs.clone()))
        .collect()
}

/// The claims a quote's own fields give (`sealgate.tpm.verify_quote` puts them in its
/// result): one dict built here rather than one getter call per field.
fn attest_claims<'py>(py: Python<'py>, a: &Attest) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let d = PyDict::new(py);
    d.set_item(intern!(py, "nonce"), hex(&a.extra_data))?;
    let sel = PyDict::new(py);
    for (bank, idx) in selection_to_py(&a.quote.pcr_select) {
        sel.set_item(bank, idx)?;
    }
    d.set_item(intern!(py, "pcr_selection"), sel)?;
    d.set_item(intern!(py, "pcr_digest"), hex(&a.quote.pcr_digest))?;
    d.set_item(intern!(py, "firmware_version"), a.firmware_version)?;
    d.set_item(intern!(py, "clock"), a.clock_info.clock)?;
    d.set_item(intern!(py, "reset_count"), a.clock_info.reset_count)?;
    d.set_item(intern!(py, "restart_count"), a.clock_info.restart_count)?;
    d.set_item(intern!(py, "safe"), a.clock_info.safe)?;
    d.set_item(intern!(py, "qualified_signer"), hex(&a.qualified_signer))?;
    Ok(d)
}

/// A TPM public key: an AK or EK, from TPMT_PUBLIC / TPM2B_PUBLIC or bare key components.
#[pyclass(frozen, module = "sealgate._core")]
pub struct TpmPublic {
    pub(crate) inner: Arc<AkKey>,
}

#[pymethods]
impl TpmPublic {
    /// Parse TPMT_PUBLIC or TPM2B_PUBLIC (detected).
    #[staticmethod]
    fn parse(data: &[u8]) -> BindResult<Self> {
        let ak = AkKey::from_public(parse_public_any(data)?)?;
        Ok(TpmPublic {
            inner: Arc::new(ak),
        })
    }

    /// RSA key without TPM attributes (from an SPKI): restricted-signing is then unknown.
    #[staticmethod]
    fn from_rsa(modulus: &[u8], exponent: &[u8]) -> BindResult<Self> {
        Ok(TpmPublic {
            inner: Arc::new(AkKey::from_rsa(modulus, exponent)?),
        })
    }

    /// EC key (curve "P-256" or "P-384") without TPM attributes.
    #[staticmethod]
    fn from_ecc(curve: &str, x: &[u8], y: &[u8]) -> BindResult<Self> {
        let c = match curve {
            "P-256" => Curve::P256,
            "P-384" => Curve::P384,
            other => return Err(BindError::Value(format!("unsupported curve {other:?}"))),
        };
        Ok(TpmPublic {
            inner: Arc::new(AkKey::from_ecc(c, x, y)?),
        })
    }

    /// nameAlg ‖ H(TPMT_PUBLIC), or None without a public area.
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.name().map(|n| PyBytes::new(py, &n))
    }

    #[getter]
    fn name_alg(&self) -> Option<String> {
        self.inner.public.as_ref().map(|p| p.name_alg.name())
    }

    #[getter]
    fn attributes(&self) -> Option<u32> {
        self.inner.public.as_ref().map(|p| p.attributes.0)
    }

    #[getter]
    fn restricted_signing(&self) -> Option<bool> {
        self.inner
            .public
            .as_ref()
            .map(|p| p.attributes.is_restricted_signing())
    }

    /// "rsa" or "ecc".
    #[getter]
    fn key_type(&self) -> &'static str {
        match self.inner.key.kind() {
            KeyKind::Rsa { .. } => "rsa",
            KeyKind::Ec(_) => "ecc",
        }
    }

    /// RSA modulus bits or the curve name.
    #[getter]
    fn key_size(&self) -> String {
        match self.inner.key.kind() {
            KeyKind::Rsa { bits } => bits.to_string(),
            KeyKind::Ec(c) => c.name().to_string(),
        }
    }

    /// The TPMT_PUBLIC bytes, or None.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.public.as_ref().map(|p| PyBytes::new(py, &p.raw))
    }

    /// (scheme, hash) of the key's signing scheme, e.g. ("rsassa", "sha256"); None if NULL.
    #[getter]
    fn scheme(&self) -> Option<(String, Option<String>)> {
        let p = self.inner.public.as_ref()?;
        let (s, h) = match &p.parms {
            PublicParms::Rsa(r) => (r.scheme, r.scheme_hash),
            PublicParms::Ecc(e) => (e.scheme, e.scheme_hash),
        };
        (s != TpmAlg::Null).then(|| (s.name(), h.map(|h| h.name())))
    }

    /// Bare check of a TPMT_SIGNATURE over `message` (no quote semantics), GIL released.
    fn verify_signature(
        &self,
        py: Python<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> BindResult<bool> {
        let sig = parse_signature(signature)?;
        let inner = self.inner.clone();
        Ok(py.detach(|| sealgate_verify::tpm::verify_signature(&inner.key, message, &sig).is_ok()))
    }

    /// Key components for building an SPKI: ("rsa", n, e) or ("ecc", curve, x ‖ y).
    fn components<'py>(&self, py: Python<'py>) -> PyResult<Option<Components<'py>>> {
        let Some(p) = self.inner.public.as_ref() else {
            return Ok(None);
        };
        Ok(Some(match &p.parms {
            PublicParms::Rsa(r) => (
                "rsa".into(),
                PyBytes::new(py, &r.modulus),
                PyBytes::new(py, &r.exponent.to_be_bytes()),
            ),
            PublicParms::Ecc(e) => {
                let mut xy = e.x.clone();
                xy.extend_from_slice(&e.y);
                (
                    e.curve.name(),
                    PyBytes::new(py, &xy),
                    PyBytes::new(py, &(e.x.len() as u32).to_be_bytes()),
                )
            }
        }))
    }
}

/// A parsed TPMS_ATTEST quote.
#[pyclass(frozen, module = "sealgate._core")]
pub struct TpmQuote {
    attest: Attest,
    signed: Vec<u8>,
}

#[pymethods]
impl TpmQuote {
    /// Parse TPMS_ATTEST or TPM2B_ATTEST (detected). Only quotes are accepted.
    #[staticmethod]
    fn parse(data: &[u8]) -> BindResult<Self> {
        let (attest, signed) = parse_attest_any(data)?;
        Ok(TpmQuote {
            signed: signed.to_vec(),
            attest,
        })
    }
    #[getter]
    fn extra_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.attest.extra_data)
    }
    #[getter]
    fn qualified_signer<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.attest.qualified_signer)
    }
    #[getter]
    fn pcr_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.attest.quote.pcr_digest)
    }
    #[getter]
    fn pcr_selection(&self) -> Vec<(String, Vec<u32>)> {
        selection_to_py(&self.attest.quote.pcr_select)
    }
    #[getter]
    fn clock(&self) -> u64 {
        self.attest.clock_info.clock
    }
    #[getter]
    fn reset_count(&self) -> u32 {
        self.attest.clock_info.reset_count
    }
    #[getter]
    fn restart_count(&self) -> u32 {
        self.attest.clock_info.restart_count
    }
    #[getter]
    fn safe(&self) -> bool {
        self.attest.clock_info.safe
    }
    #[getter]
    fn firmware_version(&self) -> u64 {
        self.attest.firmware_version
    }
    /// nonce, pcr_selection, pcr_digest, firmware_version, clock, reset_count,
    /// restart_count, safe, qualified_signer (hex for byte strings).
    fn claims<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        attest_claims(py, &self.attest)
    }
    /// The exact signed bytes (TPMS_ATTEST without a TPM2B prefix).
    #[getter]
    fn signed_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.signed)
    }
}

/// The outcome of `verify_tpm_quote`: never raised, always returned, with every failure.
#[pyclass(frozen, module = "sealgate._core")]
pub struct TpmQuoteResult {
    failures: Vec<Failure>,
    #[pyo3(get)]
    weak_hash: bool,
    #[pyo3(get)]
    ak_restricted: Option<bool>,
    #[pyo3(get)]
    signature_scheme: &'static str,
    #[pyo3(get)]
    hash_alg: &'static str,
    /// The supplied values of the quoted PCRs, in selection order.
    quoted: Vec<(TpmAlg, u32, PyBackedBytes)>,
    /// The parsed quote and the caller's bytes (kept, not copied; `quote` is built on demand).
    attest: Attest,
    raw: PyBackedBytes,
    signed_at: (usize, usize),
    ak_name: Option<Vec<u8>>,
}

#[pymethods]
impl TpmQuoteResult {
    #[getter]
    fn verified(&self) -> bool {
        self.failures.is_empty()
    }
    /// Every failure of the quote checks.
    #[getter]
    fn failures(&self) -> Failures {
        Failures(self.failures.clone())
    }
    #[getter]
    fn quote(&self, py: Python<'_>) -> PyResult<Py<TpmQuote>> {
        let (a, b) = self.signed_at;
        Py::new(
            py,
            TpmQuote {
                attest: self.attest.clone(),
                signed: self.raw[a..b].to_vec(),
            },
        )
    }
    /// `TpmQuote.claims()` of the verified quote, without building the `TpmQuote`.
    fn quote_claims<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        attest_claims(py, &self.attest)
    }
    /// The PCR values the digest was recomputed from, for exactly the quoted selection.
    #[getter]
    fn pcrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (alg, i, v) in &self.quoted {
            let name = alg.name();
            let inner = match out.get_item(&name)? {
                Some(d) => d.cast_into::<PyDict>()?,
                None => {
                    let d = PyDict::new(py);
                    out.set_item(&name, &d)?;
                    d
                }
            };
            inner.set_item(i, PyBytes::new(py, v))?;
        }
        Ok(out)
    }
    /// `pcrs` as the claims carry them: {bank: {decimal index: lowercase hex}}, indices in
    /// ascending order (what `sealgate.tpm.pcrs_to_json(result.pcrs)` gives, built here
    /// because it runs on every verification).
    #[getter]
    fn pcrs_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        pcrs_json(py, &self.quoted)
    }
    /// The claims `sealgate.tpm.verify_quote` gives for a verified quote: the quote's own
    /// fields (`quote_claims`), `ak_name`, `pcrs`, `signature_scheme`, `hash_alg`,
    /// `weak_hash`, `ak_restricted`.
    fn claims<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        verified_claims(
            py,
            &self.attest,
            self.ak_name.as_deref(),
            &self.quoted,
            &QuoteOutcome {
                failures: Vec::new(),
                weak_hash: self.weak_hash,
                ak_restricted: self.ak_restricted,
            },
            self.signature_scheme,
            self.hash_alg,
        )
    }
}

/// The decimal strings "0".."63" (the claims' PCR keys), made once: building 24 of them
/// per verified quote was a measurable part of its claims.
static INDEX_KEYS: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();

/// {bank: {decimal index: lowercase hex}} of the quoted values, indices ascending.
fn pcrs_json<'py>(
    py: Python<'py>,
    quoted: &[(TpmAlg, u32, PyBackedBytes)],
) -> PyResult<Bound<'py, PyDict>> {
    let keys = INDEX_KEYS.get_or_init(py, || {
        (0..64u32)
            .map(|i| PyString::new(py, &i.to_string()).unbind())
            .collect()
    });
    let mut order: Vec<&(TpmAlg, u32, PyBackedBytes)> = quoted.iter().collect();
    // Banks in first-seen order (as quoted), indices ascending within each.
    let mut banks: Vec<TpmAlg> = Vec::new();
    for (alg, _, _) in quoted {
        if !banks.contains(alg) {
            banks.push(*alg);
        }
    }
    order.sort_by_key(|(alg, i, _)| (banks.iter().position(|b| b == alg), *i));
    let out = PyDict::new(py);
    let mut current: Option<(TpmAlg, Bound<'py, PyDict>)> = None;
    for (alg, i, v) in order {
        let inner = match &current {
            Some((a, d)) if a == alg => d.clone(),
            _ => {
                let d = PyDict::new(py);
                out.set_item(alg.name(), &d)?;
                current = Some((*alg, d.clone()));
                d
            }
        };
        let h = hex(v);
        match keys.get(*i as usize) {
            Some(k) => inner.set_item(k.bind(py), h)?,
            None => inner.set_item(i.to_string(), h)?,
        }
    }
    Ok(out)
}

/// The one builder of a verified quote's claims (`verify tpm` and `verify azure`).
pub(crate) fn verified_claims<'py>(
    py: Python<'py>,
    attest: &Attest,
    ak_name: Option<&[u8]>,
    quoted: &[(TpmAlg, u32, PyBackedBytes)],
    outcome: &QuoteOutcome,
    scheme: &'static str,
    hash_alg: &'static str,
) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let d = attest_claims(py, attest)?;
    d.set_item(intern!(py, "ak_name"), ak_name.map(hex))?;
    d.set_item(intern!(py, "pcrs"), pcrs_json(py, quoted)?)?;
    d.set_item(intern!(py, "signature_scheme"), scheme)?;
    d.set_item(intern!(py, "hash_alg"), hash_alg)?;
    d.set_item(intern!(py, "weak_hash"), outcome.weak_hash)?;
    d.set_item(intern!(py, "ak_restricted"), outcome.ak_restricted)?;
    Ok(d)
}

/// The claims of a quote that parsed but whose signature did not: its own fields and
/// `ak_name` (as `sealgate.tpm.verify_quote` gives them).
pub(crate) fn unverified_claims<'py>(
    py: Python<'py>,
    attest: &Attest,
    ak_name: Option<&[u8]>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = attest_claims(py, attest)?;
    d.set_item(pyo3::intern!(py, "ak_name"), ak_name.map(hex))?;
    Ok(d)
}

/// Static names for the schemes and hashes a parsed signature can carry.
fn scheme_name(a: TpmAlg) -> &'static str {
    match a {
        TpmAlg::RsaSsa => "rsassa",
        TpmAlg::RsaPss => "rsapss",
        TpmAlg::Ecdsa => "ecdsa",
        TpmAlg::Sha1 => "sha1",
        TpmAlg::Sha256 => "sha256",
        TpmAlg::Sha384 => "sha384",
        TpmAlg::Sha512 => "sha512",
        _ => "unknown",
    }
}

/// The quoted selection's PCR values, borrowed from the caller's bytes objects (no copy;
/// `PyBackedBytes` keeps them alive while the GIL is released).
pub(crate) struct BorrowedPcrs(pub Vec<(TpmAlg, u32, PyBackedBytes)>);

impl PcrSource for BorrowedPcrs {
    fn pcr(&self, bank: TpmAlg, index: u32) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(b, i, _)| *b == bank && *i == index)
            .map(|(_, _, v)| &**v)
    }
}

fn borrowed_pcrs(sel: &PcrSelectionList, d: &Bound<'_, PyDict>) -> BindResult<BorrowedPcrs> {
    let mut out = Vec::with_capacity(sel.total());
    for s in &sel.selections {
        let Some(bank) = d.get_item(s.hash.name())? else {
            continue;
        };
        let bank = bank
            .cast::<PyDict>()
            .map_err(|_| BindError::Type(BANK_SHAPE.into()))?;
        // One pass over the caller's dict (no per-index hashing); keep only quoted PCRs.
        let mut wanted = 0u64;
        for idx in &s.pcrs {
            wanted |= 1u64 << idx;
        }
        for (k, v) in bank.iter() {
            let idx = k.extract::<u32>()?;
            if idx < 64 && wanted & (1u64 << idx) != 0 {
                out.push((s.hash, idx, v.extract::<PyBackedBytes>()?));
            }
        }
    }
    Ok(BorrowedPcrs(out))
}

fn min_selection(sel: Vec<(String, Vec<u32>)>) -> BindResult<PcrSelectionList> {
    let mut out = PcrSelectionList::default();
    for (b, pcrs) in sel {
        let mut pcrs = pcrs;
        pcrs.sort_unstable();
        pcrs.dedup();
        out.selections.push(PcrSelection {
            hash: bank(&b)?,
            size_of_select: 3,
            pcrs,
        });
    }
    Ok(out)
}

/// A quote made ready for verification while the GIL is held: parsed, its signature
/// parsed, the quoted PCR values borrowed from the caller's dict.
pub(crate) struct PreparedQuote {
    pub attest: Attest,
    /// Where the signed TPMS_ATTEST bytes are inside the caller's quote bytes.
    pub signed_at: (usize, usize),
    pub sig: Signature,
    pub pcrs: BorrowedPcrs,
}

impl PreparedQuote {
    /// Parse errors (quote, then signature) raise as `ParseError`; a PCR dict of the wrong
    /// shape as `TypeError`.
    pub fn new(
        quote: &[u8],
        signature: &[u8],
        pcrs: Option<&Bound<'_, PyDict>>,
    ) -> BindResult<Self> {
        let (attest, signed) = parse_attest_any(quote)?;
        // `signed` is a sub-slice of `quote`: remember where, to rebuild it without copying.
        let start = signed.as_ptr() as usize - quote.as_ptr() as usize;
        let signed_at = (start, start + signed.len());
        let sig = parse_signature(signature)?;
        let pcrs = match pcrs {
            Some(d) => borrowed_pcrs(&attest.quote.pcr_select, d)?,
            None => BorrowedPcrs(Vec::new()),
        };
        Ok(PreparedQuote {
            attest,
            signed_at,
            sig,
            pcrs,
        })
    }

    /// `sealgate_verify::tpm::verify_quote`; no Python objects touched (run it detached).
    pub fn verify(&self, quote: &[u8], ak: &AkKey, exp: &QuoteExpectations<'_>) -> QuoteOutcome {
        let (a, b) = self.signed_at;
        verify_quote(&quote[a..b], &self.attest, &self.sig, ak, &self.pcrs, exp)
    }

    pub fn scheme_names(&self) -> (&'static str, &'static str) {
        (scheme_name(self.sig.scheme()), scheme_name(self.sig.hash()))
    }
}

/// Verify a TPM quote. Parse errors raise `sealgate.errors.ParseError`; verification
/// failures are returned in the result, all of them.
#[pyfunction]
#[pyo3(signature = (ak, quote, signature, pcrs, nonce=None, min_selection=None))]
fn verify_tpm_quote(
    py: Python<'_>,
    ak: &TpmPublic,
    quote: PyBackedBytes,
    signature: &[u8],
    pcrs: &Bound<'_, PyDict>,
    nonce: Option<&[u8]>,
    min_selection: Option<Vec<(String, Vec<u32>)>>,
) -> BindResult<TpmQuoteResult> {
    let prepared = PreparedQuote::new(&quote, signature, Some(pcrs))?;
    let min = min_selection.map(self::min_selection).transpose()?;
    let ak_inner = ak.inner.clone();
    let outcome = py.detach(|| {
        let exp = QuoteExpectations {
            nonce,
            min_selection: min.as_ref(),
        };
        prepared.verify(&quote, &ak_inner, &exp)
    });
    let (signature_scheme, hash_alg) = prepared.scheme_names();
    Ok(TpmQuoteResult {
        failures: outcome.failures,
        weak_hash: outcome.weak_hash,
        ak_restricted: outcome.ak_restricted,
        signature_scheme,
        hash_alg,
        quoted: prepared.pcrs.0,
        attest: prepared.attest,
        raw: quote,
        signed_at: prepared.signed_at,
        ak_name: ak_inner.name(),
    })
}

/// A parsed TCG event log.
#[pyclass(frozen, module = "sealgate._core")]
pub struct EventLog {
    log: RsEventLog,
}

#[pymethods]
impl EventLog {
    /// "sha1_legacy" or "crypto_agile".
    #[getter]
    fn format(&self) -> &'static str {
        match self.log.format {
            LogFormat::Sha1Legacy => "sha1_legacy",
            LogFormat::CryptoAgile => "crypto_agile",
        }
    }
    #[getter]
    fn banks(&self) -> Vec<String> {
        self.log.banks().iter().map(|b| b.name()).collect()
    }
    #[getter]
    fn startup_locality(&self) -> Option<u8> {
        self.log.startup_locality()
    }
    #[getter]
    fn padding(&self) -> usize {
        self.log.padding
    }
    fn __len__(&self) -> usize {
        self.log.events.len()
    }
    /// Every event as (number, offset, pcr_index, event_type, {bank: digest}, data).
    #[getter]
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for e in &self.log.events {
            let d = PyDict::new(py);
            for (alg, dig) in &e.digests {
                d.set_item(alg.name(), PyBytes::new(py, dig))?;
            }
            out.append((
                e.number,
                e.offset,
                e.pcr_index,
                e.event_type,
                d,
                PyBytes::new(py, &e.data),
            ))?;
        }
        Ok(out)
    }
    /// Replay into {bank: {pcr: value}} for every PCR the log extends.
    fn replay<'py>(&self, py: Python<'py>) -> BindResult<Bound<'py, PyDict>> {
        let r = py.detach(|| replay(&self.log))?;
        Ok(pcr_map_to_py(py, &r.pcrs)?)
    }
}

#[pyfunction]
#[pyo3(signature = (data, platform="tpm"))]
fn parse_event_log(py: Python<'_>, data: &[u8], platform: &str) -> BindResult<EventLog> {
    let p = match platform {
        "tpm" => Platform::Tpm,
        "tdx" => Platform::Tdx,
        other => return Err(BindError::Value(format!("unknown platform {other:?}"))),
    };
    let log = py.detach(|| parse_log(data, p))?;
    Ok(EventLog { log })
}

/// Parse and replay in one call (the hot path: no per-event Python objects).
#[pyfunction]
fn replay_event_log<'py>(py: Python<'py>, data: &[u8]) -> BindResult<Bound<'py, PyDict>> {
    let r = py.detach(|| {
        let log = parse_log(data, Platform::Tpm)?;
        Ok::<_, Error>(replay(&log)?)
    })?;
    Ok(pcr_map_to_py(py, &r.pcrs)?)
}

/// Compare a replay with quoted PCRs (`sealgate_verify::eventlog::check_replay`): None
/// when they agree, else (the `tpm.eventlog.replay_mismatch` failure, ["bank:index"]).
#[pyfunction]
fn check_pcr_replay<'py>(
    py: Python<'py>,
    replayed: &Bound<'py, PyDict>,
    quoted: &Bound<'py, PyDict>,
) -> BindResult<Option<(Bound<'py, PyAny>, Vec<String>)>> {
    let (r, q) = (pcr_map(replayed)?, pcr_map(quoted)?);
    match check_replay(&r, &q) {
        None => Ok(None),
        Some(m) => Ok(Some((failure(py, m.failure)?, m.pcrs))),
    }
}

/// tpm2-tools selection syntax for a [(bank, [pcr])] list.
#[pyfunction]
fn format_pcr_selection(sel: Vec<(String, Vec<u32>)>) -> BindResult<String> {
    Ok(selection_string(&min_selection(sel)?))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TpmPublic>()?;
    m.add_class::<TpmQuote>()?;
    m.add_class::<TpmQuoteResult>()?;
    m.add_class::<EventLog>()?;
    m.add_function(wrap_pyfunction!(verify_tpm_quote, m)?)?;
    m.add_function(wrap_pyfunction!(parse_event_log, m)?)?;
    m.add_function(wrap_pyfunction!(replay_event_log, m)?)?;
    m.add_function(wrap_pyfunction!(check_pcr_replay, m)?)?;
    m.add_function(wrap_pyfunction!(format_pcr_selection, m)?)?;
    Ok(())
}
