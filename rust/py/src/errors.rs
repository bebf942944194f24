//! The one place where Rust errors become Python exceptions (STYLE.md §5).
//!
//! Exception classes are defined in Python (`sealgate.errors`) and imported here, so Python
//! code catches them by their real names and the hierarchy lives in one file.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use sealgate_formats::ParseError;
use sealgate_verify::Failure;

static PARSE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static VERIFY_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

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

/// `sealgate.errors.ParseError(code, message, field=..., offset=...)`.
pub fn parse_error(py: Python<'_>, e: &ParseError) -> PyErr {
    match class(py, &PARSE_ERROR, "ParseError") {
        Ok(cls) => match cls.call1((e.code(), e.to_string(), e.field, e.offset)) {
            Ok(obj) => PyErr::from_value(obj),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

/// `sealgate.errors.VerificationError(code, message)` for a single structural failure.
pub fn failure_error(py: Python<'_>, f: &Failure) -> PyErr {
    match class(py, &VERIFY_ERROR, "VerificationError") {
        Ok(cls) => match cls.call1((f.code.clone(), f.message.clone())) {
            Ok(obj) => PyErr::from_value(obj),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

/// For invariant violations in the binding itself (should never reach a client).
#[allow(dead_code)]
pub fn internal(msg: &str) -> PyErr {
    PyRuntimeError::new_err(format!("sealgate internal error: {msg}"))
}
