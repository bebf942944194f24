//! TPM 2.0 structures (TCG TPM 2.0 Library, Part 2: Structures, rev 1.59). All integers are
//! big-endian ("canonical form", Part 1 §18).

pub mod alg;
pub mod attest;
pub mod pcr;
pub mod public;
pub mod signature;

pub use alg::{EccCurve, TpmAlg};
pub use attest::{parse_attest, parse_attest_any, Attest, ClockInfo, QuoteInfo};
pub use pcr::{PcrSelection, PcrSelectionList};
pub use public::{
    parse_public, parse_public_any, EccParms, ObjectAttributes, Public, PublicParms, RsaParms,
};
pub use signature::{parse_signature, Signature};
