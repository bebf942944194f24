//! `layout(name)`: the declared fixed layouts' field maps (sealgate-formats `layout`), for
//! the Python builders of synthetic evidence.

use crate::errors::{BindError, BindResult};
use pyo3::prelude::*;
use sealgate_formats::layout::layout as declared;
use std::collections::HashMap;

/// A structure's size and its fields as {name: (offset, size)}.
type FieldMap = (usize, HashMap<&'static str, (usize, usize)>);

/// (size, {field: (offset, size)}) of a declared structure; ValueError for an unknown name.
#[pyfunction]
fn layout(name: &str) -> BindResult<FieldMap> {
    let l =
        declared(name).ok_or_else(|| BindError::Value(format!("no declared layout {name:?}")))?;
    Ok((
        l.size,
        l.fields
            .iter()
            .map(|f| (f.name, (f.offset, f.size)))
            .collect(),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(layout, m)?)
}
