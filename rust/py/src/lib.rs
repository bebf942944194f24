//! `sealgate._core`: the thin PyO3 layer over sealgate-formats and sealgate-verify.
//!
//! Only this crate imports pyo3 (docs/architecture.md, "Layers"). Functions take `&[u8]` borrowed from Python
//! bytes (no copy) and release the GIL for per-quote work so gRPC worker threads scale.

mod audit;
mod azure;
mod errors;
mod layout;
mod modelhash;
mod nvgpu;
mod snp;
mod tdx;
mod tpm;
mod x509;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    tpm::register(m)?;
    snp::register(m)?;
    tdx::register(m)?;
    audit::register(m)?;
    azure::register(m)?;
    x509::register(m)?;
    layout::register(m)?;
    modelhash::register(m)?;
    nvgpu::register(m)?;
    Ok(())
}
