//! Bindings for the audit hash chain (`sealgate_verify::audit`).

use crate::errors::failure;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sealgate_verify::audit;

/// `SHA-256(prev ‖ entry)`: the next link.
#[pyfunction]
fn audit_link<'py>(py: Python<'py>, prev: &[u8], entry: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &audit::link(prev, entry))
}

/// Every link over `entries`, starting from `prev` (None = genesis).
#[pyfunction]
#[pyo3(signature = (entries, prev=None))]
fn audit_chain<'py>(
    py: Python<'py>,
    entries: Vec<Vec<u8>>,
    prev: Option<Vec<u8>>,
) -> Vec<Bound<'py, PyBytes>> {
    let prev = prev.unwrap_or_else(|| audit::GENESIS.to_vec());
    let links = py.detach(|| audit::chain(&prev, &entries));
    links.iter().map(|h| PyBytes::new(py, h)).collect()
}

/// None when the chain holds, else `(first_bad_index, Failure)`.
#[pyfunction]
#[pyo3(signature = (entries, hashes, prev=None))]
fn audit_verify(
    py: Python<'_>,
    entries: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
    prev: Option<Vec<u8>>,
) -> PyResult<Option<(usize, Bound<'_, PyAny>)>> {
    let prev = prev.unwrap_or_else(|| audit::GENESIS.to_vec());
    match py.detach(|| audit::verify(&prev, &entries, &hashes)) {
        Ok(()) => Ok(None),
        Err(b) => Ok(Some((b.index, failure(py, b.failure)?))),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(audit_link, m)?)?;
    m.add_function(wrap_pyfunction!(audit_chain, m)?)?;
    m.add_function(wrap_pyfunction!(audit_verify, m)?)?;
    Ok(())
}
