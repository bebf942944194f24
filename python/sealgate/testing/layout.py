"""Writing synthetic evidence through the declared layouts of the Rust core.

The SNP report and the TDX header, TD report bodies and QE report are declared once, in
``rust/formats`` (zerocopy structs); ``sealgate._core.layout`` gives their field maps, so the
test builders here write every field by name and no offset is written twice.
"""

from __future__ import annotations

from sealgate import _core


class Layout:
    """A declared structure: its size and named fields (reserved fields stay zero)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.size, self.fields = _core.layout(name)

    def offset(self, field: str) -> int:
        return self.fields[field][0]

    def new(self) -> bytearray:
        return bytearray(self.size)

    def put(self, buf: bytearray, field: str, value: bytes | int) -> None:
        """Write ``value`` into ``field``: bytes of exactly the field's size, or an integer
        encoded little-endian (every integer in these structures is) in the field's size."""
        off, size = self.fields[field]
        data = value.to_bytes(size, "little") if isinstance(value, int) else value
        if len(data) != size:
            raise ValueError(f"{self.name}.{field} is {size} bytes, not {len(data)}")
        buf[off : off + size] = data


SNP_REPORT = Layout("snp.report")
TDX_HEADER = Layout("tdx.header")
TDX_BODY10 = Layout("tdx.td_body10")
TDX_BODY15 = Layout("tdx.td_body15")
TDX_QE_REPORT = Layout("tdx.qe_report")
