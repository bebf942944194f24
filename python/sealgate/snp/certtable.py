"""The SEV-SNP certificate table (configfs-tsm ``auxblob``, SNP extended guest request).

Layout (GHCB specification rev 2.03, §4.1.8.1 "SNP Extended Guest Request", certificate
table): entries of {GUID (16 bytes, EFI little-endian form), offset (u32 LE), length (u32 LE)}
terminated by an all-zero entry; offsets are from the start of the table. The host fills it
with the VCEK (or VLEK) and, optionally, ASK/ARK, so a node can send its collateral with the
report. Nothing here is trusted: the certificates are verified like any other input.
"""

from __future__ import annotations

import struct
import uuid

from sealgate.errors import ParseError

#: Entry GUIDs (GHCB spec Table 9; AMD pub. 57230).
GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
}
#: A table holds a handful of certificates; more entries than this is not a certificate table.
MAX_ENTRIES = 64
#: The kernel caps the extended-request certificate buffer at a few pages; 64 KiB is ample.
MAX_TABLE = 64 << 10
_ENTRY = struct.Struct("<16sII")


def _err(msg: str, offset: int) -> ParseError:
    return ParseError("snp.format.invalid", f"certificate table: {msg}", "cert_table", offset)


def parse_cert_table(blob: bytes) -> dict[str, bytes]:
    """{"vcek"|"vlek"|"ask"|"ark"|<guid>: DER} from a certificate table."""
    if len(blob) > MAX_TABLE:
        raise ParseError("snp.format.too_large", f"{len(blob)} bytes", "cert_table", 0)
    out: dict[str, bytes] = {}
    used = 0  # end of the last byte an entry (or the table itself) covers
    for i in range(MAX_ENTRIES + 1):
        pos = i * _ENTRY.size
        if pos + _ENTRY.size > len(blob):
            raise ParseError("snp.format.truncated", "no terminating entry", "cert_table", pos)
        raw_guid, off, length = _ENTRY.unpack_from(blob, pos)
        if raw_guid == bytes(16) and off == 0 and length == 0:
            used = max(used, pos + _ENTRY.size)
            # The kernel trims the table to its last certificate; a host buffer may be
            # zero-filled to its end. Anything else after the certificates is not part of
            # the table and is refused rather than carried along.
            if blob[used:].strip(b"\x00"):
                raise ParseError(
                    "snp.format.trailing_bytes",
                    f"certificate table: {len(blob) - used} bytes after the last certificate",
                    "cert_table",
                    used,
                )
            return out
        if i == MAX_ENTRIES:
            break
        if off + length > len(blob) or off < (i + 1) * _ENTRY.size:
            raise _err(f"entry {i} points outside the table", pos)
        name = GUIDS.get(uuid.UUID(bytes_le=raw_guid), str(uuid.UUID(bytes_le=raw_guid)))
        if name in out:
            raise _err(f"duplicate entry {name}", pos)
        out[name] = blob[off : off + length]
        used = max(used, off + length)
    raise ParseError("snp.format.too_large", f"more than {MAX_ENTRIES} entries", "cert_table", 0)


def build_cert_table(entries: dict[str, bytes]) -> bytes:
    """The inverse (tests, fake nodes)."""
    by_name = {v: k for k, v in GUIDS.items()}
    header = (len(entries) + 1) * _ENTRY.size
    table, data = b"", b""
    for name, der in entries.items():
        table += _ENTRY.pack(by_name[name].bytes_le, header + len(data), len(der))
        data += der
    return table + bytes(_ENTRY.size) + data
