"""A minimal strict DER reader for the Intel SGX PCK certificate extension.

``cryptography`` hands unknown extensions over as raw bytes; the SGX extension
(OID 1.2.840.113741.1.13.1, "Intel SGX PCK Certificate and Certificate Revocation List
Profile Specification" §3.5) is a SEQUENCE of (OID, value) pairs, some nested. This reads
only definite-length DER (X.690 §10.1) and refuses anything else.
"""

from __future__ import annotations

from sealgate import x509der
from sealgate.errors import ParseError

#: The SGX extension is ~500 bytes; nothing legitimate nests deeper than 4 levels.
MAX_EXTENSION_LEN = 4096
MAX_ITEMS = 64
#: Octets of an SVN / type INTEGER. The profile's values are 0..255 (TCB components) and
#: 0..65535 (PCESVN), three octets with the sign octet; eight leaves room and keeps every
#: value a machine integer in claims and JSON (not a 10,000-digit number).
MAX_UINT_LEN = 8

T_BOOLEAN, T_INTEGER, T_OCTET_STRING, T_OID, T_ENUMERATED, T_SEQUENCE = 1, 2, 4, 6, 10, 0x30


def _err(msg: str, offset: int) -> ParseError:
    return ParseError("tdx.format.invalid", f"SGX extension: {msg}", "SGX extension", offset)


def read_tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the TLV at ``pos``; checks every bound."""
    if pos + 2 > end:
        raise _err("truncated TLV header", pos)
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _err("high tag numbers are not used by this extension", pos)
    first = buf[pos + 1]
    p = pos + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 2:
            raise _err("indefinite or oversized length", pos)
        if p + n > end:
            raise _err("truncated length", pos)
        length = int.from_bytes(buf[p : p + n], "big")
        if length < 0x80 or (n == 2 and length < 0x100):
            raise _err("non-minimal length encoding", pos)
        p += n
    if p + length > end:
        raise _err("value runs past its container", pos)
    return tag, p, p + length


def children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        if len(out) >= MAX_ITEMS:
            raise _err("too many elements", pos)
        tag, vs, ve = read_tlv(buf, pos, end)
        out.append((tag, vs, ve))
        pos = ve
    return out


def decode_oid(raw: bytes) -> str:
    """Dotted OID; the DER reader's decoder, which bounds the length (``MAX_OID_LEN``)."""
    try:
        return x509der.decode_oid(raw, "SGX extension")
    except ParseError as e:
        raise _err(e.message.removeprefix("SGX extension: "), e.offset) from None


def decode_uint(raw: bytes, offset: int) -> int:
    if not raw:
        raise _err("empty INTEGER", offset)
    if raw[0] & 0x80:
        raise _err("negative INTEGER where an SVN is expected", offset)
    if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
        raise _err("non-minimal INTEGER", offset)
    if len(raw) > MAX_UINT_LEN:
        raise _err(f"INTEGER of {len(raw)} octets where an SVN is expected", offset)
    return int.from_bytes(raw, "big")
