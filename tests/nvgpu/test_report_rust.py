"""The Rust GPU report parser and one-call verification through the Python API.

Synthetic GPUs (``sealgate.testing.nvgpu``) so these run without the shared vectors: the
parsed fields, the claim set of the one-call path (``_core.verify_nvgpu``), the field and
offset of each ``gpu.format.*`` refusal, and hostile bytes (never anything but a
``ParseError``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate import _core, nvgpu
from sealgate.errors import ChainError, ParseError
from sealgate.nvgpu.report import (
    OPAQUE_CHIP_SKU,
    OPAQUE_DRIVER_VERSION,
    OPAQUE_FWID,
    OPAQUE_PROJECT,
    OPAQUE_VBIOS_VERSION,
)
from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticGpu

NONCE = hashlib.sha256(b"gpurs nonce").digest()
AT = datetime(2026, 12, 1, tzinfo=UTC)

#: Every claim a verified report carries, in the order the API has always produced them.
CLAIM_KEYS = [
    "nonce",
    "responder_nonce",
    "slot",
    "driver_version",
    "vbios_version",
    "fwid",
    "chip_sku",
    "project",
    "project_sku",
    "switch_pdis",
    "ppcie",
    "measurements",
    "nonce_checked",
    "certificate",
    "signature_verified",
    "certificate_fwid",
    "fwid_checked",
    "mismatched_indices",
    "rim",
    "measurements_compared",
    "revocation",
]


@pytest.fixture(scope="module")
def hier() -> NvidiaHierarchy:
    return NvidiaHierarchy()


@pytest.fixture(scope="module")
def gpu(hier: NvidiaHierarchy) -> SyntheticGpu:
    return SyntheticGpu(hier, 7)


@pytest.fixture(scope="module")
def verifier(hier: NvidiaHierarchy) -> nvgpu.GpuVerifier:
    return nvgpu.GpuVerifier(roots=[hier.root_pem()])


def _tlvs(raw: bytes) -> list[tuple[int, int, int]]:
    """(type, header offset, length) of each opaque TLV: an independent walk of DSP0274
    Table 45 (request 37, header 8, record, nonce 32, opaque length u16)."""
    rec = int.from_bytes(raw[42:45], "little")
    off = 37 + 8 + rec + 32
    end = off + 2 + int.from_bytes(raw[off : off + 2], "little")
    off += 2
    out = []
    while off < end:
        t = int.from_bytes(raw[off : off + 2], "little")
        n = int.from_bytes(raw[off + 2 : off + 4], "little")
        out.append((t, off, n))
        off += 4 + n
    return out


def _tlv(raw: bytes, t: int) -> tuple[int, int]:
    for ty, off, n in _tlvs(raw):
        if ty == t:
            return off, n
    raise AssertionError(f"no TLV {t}")


def test_fields_of_a_synthetic_report(gpu: SyntheticGpu) -> None:
    raw = gpu.report(NONCE)
    rep = nvgpu.parse_report(raw)
    assert rep.request_nonce == NONCE and rep.slot == 0
    assert (rep.request_param1, rep.request_param2) == (1, 0xFF)
    assert rep.measurements == gpu.measurements
    assert [b.index for b in rep.blocks] == sorted(gpu.measurements)
    assert all(b.spec == 1 and b.value_type == 1 for b in rep.blocks)
    assert rep.driver_version == "550.54.15"
    assert rep.vbios_version == "96.00.5E.00.01"
    assert (rep.chip_sku, rep.project, rep.project_sku) == ("885", "G520", "0200")
    assert rep.fwid == gpu.fwid
    assert rep.switch_pdis == ()
    assert rep.signed == raw[:-96] and rep.signature == raw[-96:]
    assert [t for t, _ in rep.opaque] == [t for t, _, _ in _tlvs(raw)]
    assert rep.opaque_value(OPAQUE_FWID) == gpu.fwid
    assert rep.opaque_value(999) is None


def test_one_call_claims(gpu: SyntheticGpu, verifier: nvgpu.GpuVerifier) -> None:
    ev = nvgpu.GpuEvidence(gpu.report(NONCE), gpu.cert_chain())
    res = verifier.verify(ev, nonce=NONCE, at=AT)
    assert res.verified, res.errors
    c = res.claims
    assert list(c) == CLAIM_KEYS
    assert c["nonce"] == NONCE.hex() and c["nonce_checked"] is True
    assert c["measurements"] == {str(i): v.hex() for i, v in gpu.measurements.items()}
    assert c["fwid"] == c["certificate_fwid"] == gpu.fwid.hex() and c["fwid_checked"]
    assert c["signature_verified"] is True and c["ppcie"] is None
    assert c["certificate"]["leaf_subject"] == "Synthetic GH100 FMC LF 7"
    # Two verifications of one chain share its parsed key (cached with the chain).
    a = verifier.chains.verify(ev.cert_chain, AT)
    assert verifier.chains.verify(ev.cert_chain, AT).nvkey is a.nvkey
    assert a.nvkey.fwid == gpu.fwid
    assert a.verify_signature(ev.report[:-96], ev.report[-96:])
    assert not a.verify_signature(ev.report[:-97], ev.report[-96:])
    assert not a.verify_signature(ev.report[:-96], ev.report[-95:])


def test_failures_in_order(gpu: SyntheticGpu, verifier: nvgpu.GpuVerifier) -> None:
    raw = bytearray(gpu.report(NONCE))
    raw[4] ^= 1  # request nonce: not the expected one, and no longer what was signed
    ev = nvgpu.GpuEvidence(bytes(raw), gpu.cert_chain())
    res = verifier.verify(ev, nonce=NONCE, at=AT)
    assert [f.code for f in res.errors] == [
        "gpu.report.nonce_mismatch",
        "gpu.report.signature_invalid",
    ]
    assert res.claims["signature_verified"] is False
    # Another GPU's chain: its key and its FWID are not this report's.
    other = SyntheticGpu(gpu.hierarchy, 8)
    res = verifier.verify(
        nvgpu.GpuEvidence(gpu.report(NONCE), other.cert_chain()), nonce=NONCE, at=AT
    )
    assert [f.code for f in res.errors] == [
        "gpu.report.signature_invalid",
        "gpu.report.fwid_mismatch",
    ]


def test_chain_failure_keeps_report_claims(gpu: SyntheticGpu) -> None:
    v = nvgpu.GpuVerifier(roots=[NvidiaHierarchy().root_pem()])  # not this GPU's root
    res = v.verify(nvgpu.GpuEvidence(gpu.report(NONCE), gpu.cert_chain()), nonce=b"x", at=AT)
    # The synthetic roots share a name: the genuine chain's root is refused by signature.
    assert [f.code for f in res.errors] == [
        "gpu.report.nonce_mismatch",
        "gpu.chain.signature_invalid",
    ]
    assert list(res.claims) == [*CLAIM_KEYS[:13], "signature_verified"]
    assert res.claims["signature_verified"] is False
    assert res.claims["driver_version"] == "550.54.15"
    # A report that does not parse is only that error, whatever the chain.
    res = v.verify(nvgpu.GpuEvidence(gpu.report(NONCE)[:-1], b"junk"), nonce=NONCE, at=AT)
    assert [f.code for f in res.errors] == ["gpu.format.truncated"] and res.claims == {}


def test_key_must_be_p384() -> None:
    with pytest.raises(ChainError) as e:
        _core.NvGpuKey.from_sec1(b"\x04" + bytes(96))
    assert e.value.code == "gpu.chain.bad_key"


def _refused(raw: bytes | bytearray) -> tuple[str, str, int]:
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(bytes(raw))
    return e.value.code, str(e.value.field), int(e.value.offset or 0)


def test_text_rules_name_field_and_offset(gpu: SyntheticGpu) -> None:
    raw = gpu.report(NONCE)
    off, n = _tlv(raw, OPAQUE_CHIP_SKU)  # "885\0"
    for bad in (b"88\x005", b"8\x075\x00", b"8\xc35\x00", b"885\x7f"):
        x = bytearray(raw)
        x[off + 4 : off + 4 + n] = bad
        assert _refused(x) == ("gpu.format.invalid", "chip_sku", off + 4), bad
    x = bytearray(raw)
    x[off + 4 : off + 4 + n] = b"\0\0\0\0"
    assert nvgpu.parse_report(bytes(x)).chip_sku == ""


def test_typed_tlvs_once_and_sized(gpu: SyntheticGpu) -> None:
    raw = gpu.report(NONCE)
    off, _ = _tlv(raw, OPAQUE_PROJECT)
    x = bytearray(raw)
    x[off : off + 2] = OPAQUE_DRIVER_VERSION.to_bytes(2, "little")  # a second driver version
    assert _refused(x) == ("gpu.format.invalid", "driver_version", off)
    vb, _ = _tlv(raw, OPAQUE_VBIOS_VERSION)
    x = bytearray(raw)
    x[vb : vb + 2] = (150).to_bytes(2, "little")  # the real one becomes an unknown TLV
    x[off : off + 2] = OPAQUE_VBIOS_VERSION.to_bytes(2, "little")  # "G520\0": 5 bytes
    assert _refused(x) == ("gpu.format.invalid", "vbios_version", off + 4)
    # An unknown TLV may repeat, and is kept in order.
    x = bytearray(raw)
    x[vb : vb + 2] = (150).to_bytes(2, "little")
    x[off : off + 2] = (150).to_bytes(2, "little")
    rep = nvgpu.parse_report(bytes(x))
    assert rep.vbios_version is None and rep.project is None
    assert [v for t, v in rep.opaque if t == 150] == [gpu.vbios, b"G520\0"]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_vbios_text_agrees(v: bytes) -> None:
    # The Python helper and the Rust formatting of a parsed report print the same.
    assert len(nvgpu.format_vbios_version(v)) == 14
    raw = _with_vbios(v)
    assert nvgpu.parse_report(raw).vbios_version == nvgpu.format_vbios_version(v)


_BASE: dict[str, bytes] = {}


def _with_vbios(v: bytes) -> bytes:
    if "raw" not in _BASE:
        _BASE["raw"] = SyntheticGpu(NvidiaHierarchy(), 1).report(NONCE)
    raw = bytearray(_BASE["raw"])
    off, _ = _tlv(bytes(raw), OPAQUE_VBIOS_VERSION)
    raw[off + 4 : off + 12] = v
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6000))
def test_hostile_bytes_only_parse_errors(data: bytes) -> None:
    try:
        nvgpu.parse_report(data)
    except ParseError as e:
        assert e.code.startswith("gpu.format.")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_mutated_reports_only_parse_errors(pos: int, val: int) -> None:
    if "raw" not in _BASE:
        _BASE["raw"] = SyntheticGpu(NvidiaHierarchy(), 1).report(NONCE)
    raw = bytearray(_BASE["raw"])
    raw[pos % len(raw)] = val
    try:
        rep = nvgpu.parse_report(bytes(raw))
    except ParseError as e:
        assert e.code.startswith("gpu.format.")
        return
    assert rep.signed == bytes(raw[:-96])


def test_hex_text_forms_decode_alike() -> None:
    # One hex line (the fast path), the same text wrapped over lines or upper-case, and the
    # binary report all give the same bytes; text that is not hex is a stable code.
    from sealgate.nvgpu import decode_report

    raw = SyntheticGpu(NvidiaHierarchy(), 0).report(b"\x05" * 32)
    line = raw.hex().encode()
    wrapped = b"\n".join(line[i : i + 64] for i in range(0, len(line), 64)) + b"\n"
    for text in (line, line + b"\r\n", wrapped, line.upper()):
        assert decode_report(text) == raw
    assert decode_report(raw) == raw
    for bad in (line[:-1], line[:-2] + b"zz", b"11" + "é".encode() * 4):
        with pytest.raises(ParseError) as e:
            decode_report(bad)
        assert e.value.code == "gpu.format.invalid"
