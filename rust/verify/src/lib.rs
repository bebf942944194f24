//! sealgate-verify: signatures and hash chains over parsed evidence.
//!
//! Knows nothing of policy or storage (docs/architecture.md). Each check returns every failure
//! it finds as a `Failure` with a stable `component.sub.event` code; the caller (appraisal)
//! decides what a failure means for a key.

pub mod audit;
pub mod azure;
pub mod crypto;
pub mod eventlog;
pub mod failure;
mod legacy;
pub mod modelhash;
pub mod nvgpu;
pub mod pki;
pub mod snp;
pub mod tdx;
pub mod tpm;

pub use failure::{Error, Failure};
