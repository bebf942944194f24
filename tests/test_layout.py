"""The declared layouts as the Python builders see them (``sealgate.testing.layout``)."""

from __future__ import annotations

import pytest
from sealgate import _core
from sealgate.testing.layout import SNP_REPORT, TDX_QE_REPORT, Layout
from sealgate.testing.snp import SyntheticNode


def test_fields_by_name_and_sizes_enforced() -> None:
    b = TDX_QE_REPORT.new()
    TDX_QE_REPORT.put(b, "isv_svn", 0x0304)
    assert b[258:260] == b"\x04\x03"  # little-endian, SGX REPORTBODY.ISVSVN at 258
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        TDX_QE_REPORT.put(b, "mr_signer", bytes(31))
    with pytest.raises(OverflowError):
        TDX_QE_REPORT.put(b, "isv_svn", 1 << 16)
    with pytest.raises(KeyError):
        TDX_QE_REPORT.put(b, "reserved1", bytes(28))  # reserved fields are not writable
    with pytest.raises(ValueError, match="no declared layout"):
        Layout("snp.nope")


def test_a_built_report_reads_back_field_by_field() -> None:
    node = SyntheticNode.load()
    data = node.report(bytes(range(64)))
    parsed = _core.SnpReport.parse(data)
    off, size = SNP_REPORT.fields["report_data"]
    assert data[off : off + size] == parsed.report_data == bytes(range(64))
    assert len(data) == SNP_REPORT.size
