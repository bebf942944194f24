from __future__ import annotations

import pytest
from sealgate.errors import ParseError
from sealgate.snp.certtable import build_cert_table, parse_cert_table


def test_roundtrip() -> None:
    t = build_cert_table({"vcek": b"V" * 10, "ask": b"A" * 3, "ark": b"R"})
    assert parse_cert_table(t) == {"vcek": b"V" * 10, "ask": b"A" * 3, "ark": b"R"}
    assert parse_cert_table(bytes(24)) == {}


@pytest.mark.parametrize("cut", [0, 10, 23, 47])
def test_truncated(cut: int) -> None:
    t = build_cert_table({"vcek": b"V" * 10})
    with pytest.raises(ParseError):
        parse_cert_table(t[:cut])


def test_entry_outside_the_table() -> None:
    t = bytearray(build_cert_table({"vcek": b"V" * 10}))
    t[16:20] = (1000).to_bytes(4, "little")
    with pytest.raises(ParseError):
        parse_cert_table(bytes(t))
