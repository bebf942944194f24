"""Python-side parsers of TDX inputs fail with typed errors on any input (no tracebacks)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate import tdx
from sealgate.errors import SealgateError
from sealgate.pki import parse_sgx_extension
from sealgate.tdx.collateral import extract_json_member
from sealgate.testing.tdx import FakeIntel, sgx_extension
from sealgate.testing.tdx import Platform as FakePlatform

EXT = sgx_extension(components=tuple(range(16)), pcesvn=13, fmspc=b"\x00\xa0\x6f\x00\x00\x00")


def test_sgx_extension_roundtrip() -> None:
    e = parse_sgx_extension(EXT)
    assert e.cpusvn_components == tuple(range(16))
    assert e.pcesvn == 13
    assert e.fmspc.hex() == "00a06f000000"
    assert e.pceid == b"\x00\x00"
    assert e.cpusvn == bytes(range(16))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_sgx_extension_mutations(data: st.DataObject) -> None:
    b = bytearray(EXT)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(b)))
    try:
        parse_sgx_extension(bytes(b[:cut]))
    except SealgateError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_json_member_random(text: str) -> None:
    try:
        extract_json_member(text, "tcbInfo")
    except SealgateError:
        pass


def test_json_member_exact_text_and_nesting() -> None:
    body = '{ "tcbInfo" : {"a": [1, 2,  3]} ,"signature":"00"}'
    raw, value = extract_json_member(body, "tcbInfo")
    assert raw == '{"a": [1, 2,  3]}' and value == {"a": [1, 2, 3]}
    for bad in [
        '{"tcbInfo":1,"tcbInfo":2}',
        '{"tcbInfo":1} x',
        '{"tcbInfo":' + "[" * 100000,
        '{"x":1}',
    ]:
        try:
            extract_json_member(bad, "tcbInfo")
        except SealgateError as e:
            assert e.code == "tdx.collateral.invalid"
        else:
            raise AssertionError(bad)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_collateral_json_random(data: bytes) -> None:
    try:
        tdx.load_collateral_json(data)
    except SealgateError:
        pass


def test_signed_but_odd_tcb_info_fails_closed() -> None:
    """Even correctly signed collateral with a strange shape yields a code, not a crash."""
    intel = FakeIntel(seed=b"odd-shape")
    info = intel.tcb_info()
    info["tdxModuleIdentities"] = 5
    info["tcbLevels"][0]["tcb"]["sgxtcbcomponents"] = "x"
    text = json.dumps(info, separators=(",", ":"))
    from sealgate.testing.tdx import _sign_raw

    doc = json.loads(intel.collateral_json())
    doc["tcb_info"] = text
    doc["tcb_info_signature"] = _sign_raw(intel.tcb_key, text.encode()).hex()
    r = tdx.verify_quote(
        intel.quote(b"q", platform=FakePlatform()),
        collateral=tdx.load_collateral_json(json.dumps(doc).encode()),
        roots=[intel.root_pem],
    )
    assert [e.code for e in r.errors] == ["tdx.collateral.invalid"]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_pck_chain_never_crashes(data: st.DataObject) -> None:
    """Bytes changed inside the quote's PEM chain give codes, never exceptions."""
    intel = FakeIntel()
    q = bytearray(intel.quote(b"m"))
    start = q.index(b"-----BEGIN CERTIFICATE-----")
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(start, len(q) - 1))
        q[i] = data.draw(st.sampled_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=\n-"))
    r = tdx.verify_quote(bytes(q), collateral=intel.collateral(), roots=[intel.root_pem])
    for e in r.errors:
        assert e.code.startswith("tdx."), e


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_mutation_of_a_quote_gives_codes(data: st.DataObject) -> None:
    """Flips and truncations anywhere in a quote: a verdict with tdx.* codes, never a crash;
    a changed byte inside the quote's structures is never accepted."""
    intel = FakeIntel()
    good = intel.quote(b"z", version=data.draw(st.sampled_from([4, 5])))
    q = bytearray(good)
    flips = data.draw(st.lists(st.integers(0, len(q) - 1), min_size=1, max_size=3))
    for i in flips:
        q[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(q)))
    r = tdx.verify_quote(bytes(q[:cut]), collateral=intel.collateral(), roots=[intel.root_pem])
    assert all(e.code.startswith("tdx.") for e in r.errors), r.errors
    if bytes(q[:cut]) != good:
        # Only a change confined to a PEM line break or the trailing NUL may keep it valid.
        if r.verified:
            chain = good.index(b"-----BEGIN CERTIFICATE-----")
            assert cut == len(good) and all(i >= chain for i in flips), (cut, flips)
