//! A bounds-checked cursor over untrusted bytes.
//!
//! Every read names the spec field it reads so a failure can say where it happened. Nothing
//! here panics on any input: all slicing goes through `take`, which checks first.

use crate::error::{ParseError, ParseErrorKind, Platform, Result};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    platform: Platform,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], platform: Platform) -> Self {
        Reader {
            buf,
            pos: 0,
            platform,
        }
    }

    /// Current offset from the start of the buffer.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// Build an error located at the current offset.
    pub fn err(
        &self,
        kind: ParseErrorKind,
        field: &'static str,
        detail: impl Into<String>,
    ) -> ParseError {
        ParseError::new(self.platform, kind, field, self.pos, detail)
    }

    /// Build an error located at `offset`.
    pub fn err_at(
        &self,
        offset: usize,
        kind: ParseErrorKind,
        field: &'static str,
        detail: impl Into<String>,
    ) -> ParseError {
        ParseError::new(self.platform, kind, field, offset, detail)
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(
                ParseErrorKind::Truncated,
                field,
                format!("need {} bytes, {} left", n, self.remaining()),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// A fixed structure declared with zerocopy (alignment 1, every bit pattern valid), read
    /// in place. Truncation is reported at the structure's start, named `field`.
    pub fn read<T: FromBytes + KnownLayout + Immutable + Unaligned>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a T> {
        let at = self.pos;
        let s = self.take(core::mem::size_of::<T>(), field)?;
        // Cannot fail: the slice has T's size and T has alignment 1.
        T::ref_from_bytes(s).map_err(|_| {
            self.err_at(
                at,
                ParseErrorKind::Invalid,
                field,
                "does not match the layout",
            )
        })
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16_be(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u32_be(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub fn u64_be(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub fn u16_le(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub fn u32_le(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64_le(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A TPM2B: big-endian u16 size then that many bytes, size capped at `max`
    /// (TPM 2.0 Library Part 2, 10.4 "Sized Buffers").
    pub fn tpm2b(&mut self, field: &'static str, max: usize) -> Result<&'a [u8]> {
        let at = self.pos;
        let size = self.u16_be(field)? as usize;
        if size > max {
            return Err(self.err_at(
                at,
                ParseErrorKind::TooLarge,
                field,
                format!("size {} exceeds maximum {}", size, max),
            ));
        }
        self.take(size, field)
    }

    /// Fail unless the whole input has been consumed.
    pub fn expect_end(&self, field: &'static str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err(
                ParseErrorKind::TrailingBytes,
                field,
                format!("{} unexpected bytes after the structure", self.remaining()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let data = [0x00, 0x02, 0xAA, 0xBB, 0x01];
        let mut r = Reader::new(&data, Platform::Tpm);
        assert_eq!(r.tpm2b("x", 4).unwrap(), &[0xAA, 0xBB]);
        assert_eq!(r.u8("y").unwrap(), 1);
        let e = r.u8("z").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Truncated);
        assert_eq!(e.offset, 5);
        assert_eq!(e.code(), "tpm.format.truncated");
    }

    #[test]
    fn tpm2b_cap() {
        let data = [0x00, 0x05, 0, 0, 0, 0, 0];
        let mut r = Reader::new(&data, Platform::Tpm);
        let e = r.tpm2b("x", 4).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::TooLarge);
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn trailing() {
        let data = [1u8, 2];
        let mut r = Reader::new(&data, Platform::Snp);
        r.u8("a").unwrap();
        assert_eq!(
            r.expect_end("s").unwrap_err().code(),
            "snp.format.trailing_bytes"
        );
    }
}
