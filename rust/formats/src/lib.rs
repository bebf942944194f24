//! sealgate-formats: bytes → typed structures for attestation evidence.
//!
//! Pure parsing (the bottom layer, docs/architecture.md): no signatures, no hashing, no
//! policy, no pyo3.
//! Every variable length is capped by a named constant and every read is bounds-checked;
//! errors carry the field and offset.

pub mod azure;
pub mod azure_runtime;
pub mod error;
pub mod eventlog;
pub mod layout;
pub mod nvgpu;
pub mod reader;
pub mod snp;
pub mod tdx;
pub mod tpm;
pub mod x509;

pub use error::{ParseError, ParseErrorKind, Platform};
