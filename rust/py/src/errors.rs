//! The one place where Rust errors and failures become Python objects (docs/architecture.md, "Layers").
//!
//! Binding code returns `Result<T, BindError>` and uses `?` on the formats and verify
//! crates' errors; pyo3 turns a `BindError` into the Python exception through the single
//! `From<BindError> for PyErr` below. Failures that do not stop verification cross as
//! `sealgate.errors.Failure` (a named tuple: `code, message`) through `Failures`.
//!
//! Exception classes and `Failure` are defined in Python (`sealgate.errors`) and imported
//! here, so Python code catches them by their real names and the hierarchy lives in one
//! file.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyType};
use pyo3::CastError;
use sealgate_formats::ParseError;
use sealgate_verify::{Error, Failure};

static PARSE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static VERIFY_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FAILURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CHAIN_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Everything a binding function can fail with.
#[derive(Debug)]
pub enum BindError {
    /// Evidence bytes do not parse → `sealgate.errors.ParseError(code, message, field, offset)`.
    Parse(ParseError),
    /// A structural check failed → `sealgate.errors.VerificationError(code, message)`.
    Failed(Failure),
    /// Evidence that parses but whose content a format check refuses, with a code of its
    /// own (e.g. `azure.runtime_data.ak_missing`) →
    /// `sealgate.errors.ParseError(code, message, field, 0)`.
    Refused(Failure, &'static str),
    /// A certificate chain, signature or CRL check failed →
    /// `sealgate.errors.ChainError(code, message)` (`x509.chain.*` / `x509.crl.*`).
    Chain(Failure),
    /// The caller passed an argument outside the API (a bug in the caller, not evidence)
    /// → `ValueError`.
    Value(String),
    /// A Python object of the wrong shape → `TypeError`.
    Type(String),
    /// Already a Python exception (raised by an extraction or a Python call).
    Py(PyErr),
}

pub type BindResult<T> = Result<T, BindError>;

impl From<ParseError> for BindError {
    fn from(e: ParseError) -> Self {
        BindError::Parse(e)
    }
}

impl From<Failure> for BindError {
    fn from(f: Failure) -> Self {
        BindError::Failed(f)
    }
}

impl From<Error> for BindError {
    fn from(e: Error) -> Self {
        match e {
            Error::Parse(p) => BindError::Parse(p),
            Error::Failed(f) => BindError::Failed(f),
        }
    }
}

impl From<PyErr> for BindError {
    fn from(e: PyErr) -> Self {
        BindError::Py(e)
    }
}

/// A Python object that is not of the extracted type (e.g. a PCR value that is not bytes).
impl<'a, 'py> From<CastError<'a, 'py>> for BindError {
    fn from(e: CastError<'a, 'py>) -> Self {
        BindError::Py(e.into())
    }
}

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    let t = cell.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let m = PyModule::import(py, "sealgate.errors")?;
        Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
    })?;
    Ok(t.bind(py).clone())
}

fn instance<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    class(py, cell, name)?.call1(args)
}

impl From<BindError> for PyErr {
    fn from(e: BindError) -> PyErr {
        Python::attach(|py| {
            let made = match e {
                BindError::Parse(p) => instance(
                    py,
                    &PARSE_ERROR,
                    "ParseError",
                    (p.code(), p.to_string(), p.field, p.offset),
                ),
                BindError::Failed(f) => {
                    instance(py, &VERIFY_ERROR, "VerificationError", (f.code, f.message))
                }
                BindError::Refused(f, field) => instance(
                    py,
                    &PARSE_ERROR,
                    "ParseError",
                    (f.code, f.message, field, 0usize),
                ),
                BindError::Chain(f) => {
                    instance(py, &CHAIN_ERROR, "ChainError", (f.code, f.message))
                }
                BindError::Value(m) => return PyValueError::new_err(m),
                BindError::Type(m) => return PyTypeError::new_err(m),
                BindError::Py(err) => return err,
            };
            match made {
                Ok(obj) => PyErr::from_value(obj),
                Err(err) => err,
            }
        })
    }
}

/// A failure as `sealgate.errors.Failure`.
pub fn failure<'py>(py: Python<'py>, f: Failure) -> PyResult<Bound<'py, PyAny>> {
    instance(py, &FAILURE, "Failure", (f.code, f.message))
}

/// Failures crossing into Python: a list of `sealgate.errors.Failure`.
pub struct Failures(pub Vec<Failure>);

impl<'py> IntoPyObject<'py> for Failures {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for f in self.0 {
            out.append(failure(py, f)?)?;
        }
        Ok(out)
    }
}

/// One optional failure as `sealgate.errors.Failure | None`.
pub struct MaybeFailure(pub Option<Failure>);

impl<'py> IntoPyObject<'py> for MaybeFailure {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            Some(f) => failure(py, f),
            None => Ok(py.None().into_bound(py)),
        }
    }
}
