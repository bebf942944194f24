//! `model_hash`: the digests of a model's files or shards (`sealgate_verify::modelhash`),
//! computed with the GIL released for the whole job.

use crate::errors::{failure, BindError, BindResult};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sealgate_verify::modelhash::{self, Algorithm, Job};
use std::path::PathBuf;

/// One `(path, start, length, file_size)` job per resource.
type PyJob = (PathBuf, u64, u64, u64);
/// The digests in job order, or the first failing job's index and its `Failure`.
type Outcome<'py> = (Vec<Bound<'py, PyBytes>>, Option<(usize, Bound<'py, PyAny>)>);

/// Digest each `(path, start, length, file_size)` range with `algorithm` ("sha256" or
/// "blake3") on `workers` threads. Returns `(digests, None)`, or `([], (index, Failure))` for
/// the lowest-numbered job that failed (unreadable, not regular, a link, changed size).
#[pyfunction]
#[pyo3(signature = (jobs, algorithm, workers, follow_symlinks=false))]
fn model_hash<'py>(
    py: Python<'py>,
    jobs: Vec<PyJob>,
    algorithm: &str,
    workers: usize,
    follow_symlinks: bool,
) -> BindResult<Outcome<'py>> {
    let algorithm = Algorithm::from_name(algorithm)
        .ok_or_else(|| BindError::Value(format!("unknown hash algorithm {algorithm:?}")))?;
    if jobs.len() > modelhash::MAX_JOBS {
        return Err(BindError::Value(format!(
            "{} jobs exceed {}",
            jobs.len(),
            modelhash::MAX_JOBS
        )));
    }
    let jobs: Vec<Job> = jobs
        .into_iter()
        .map(|(path, start, len, file_size)| Job {
            path,
            start,
            len,
            file_size,
        })
        .collect();
    match py.detach(|| modelhash::hash_jobs(&jobs, algorithm, workers, follow_symlinks)) {
        Ok(digests) => Ok((digests.iter().map(|d| PyBytes::new(py, d)).collect(), None)),
        Err(e) => Ok((Vec::new(), Some((e.index, failure(py, e.failure)?)))),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(model_hash, m)?)
}
