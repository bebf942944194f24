//! A verification failure: stable code plus a human message with actual vs expected values.

use sealgate_formats::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable machine code, `component.sub.event` (e.g. `tpm.quote.nonce_mismatch`).
    pub code: String,
    /// Human explanation. Evidence values only; never key material or tokens.
    pub message: String,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<&ParseError> for Failure {
    fn from(e: &ParseError) -> Self {
        Failure::new(e.code(), e.to_string())
    }
}

/// Lowercase hex, for messages and claims.
pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// Why a piece of evidence could not be checked at all: its bytes do not parse, or a
/// structural check the rest depends on failed (a log that cannot be replayed, a key that
/// is not a key). Checks that can go on report `Failure`s in their outcome instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Parse(ParseError),
    Failed(Failure),
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Parse(e)
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Failed(f)
    }
}
