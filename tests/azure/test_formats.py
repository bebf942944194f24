"""Hostile input to the Azure parsers: every refusal a stable code, bounded, no traceback."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest
from sealgate import azure
from sealgate.errors import ParseError

from tests.azure.common import (
    AT,
    CHALLENGE,
    codes,
    read,
    runtime_of,
    snp_v3,
    verifier,
    with_runtime,
)


def hcl() -> bytes:
    return read("snp-milan-v3-vm26f8", "derived", "hcl-report.bin")


def parse_code(data: bytes) -> tuple[str, str, int]:
    with pytest.raises(ParseError) as e:
        azure.parse_hcl_report(data)
    return e.value.code, e.value.field, e.value.offset


@pytest.mark.parametrize("cut", [0, 3, 31, 32, 700, 1215, 1235])
def test_truncated_hcl_report(cut: int) -> None:
    assert parse_code(hcl()[:cut])[0] == "azure.hcl.truncated"


def test_truncated_inside_the_runtime_data() -> None:
    data = hcl()
    n = len(runtime_of(data))
    code, field, offset = parse_code(data[: 1236 + n - 1])
    assert (code, field, offset) == ("azure.hcl.too_large", "request_data.variable_data_size", 1232)


def test_oversized_hcl_report() -> None:
    assert parse_code(hcl() + bytes(8192))[0] == "azure.hcl.too_large"


def test_huge_variable_data_size() -> None:
    b = bytearray(hcl())
    struct.pack_into("<I", b, 1232, 0xFFFF_FFFF)
    assert parse_code(bytes(b)) == ("azure.hcl.too_large", "request_data.variable_data_size", 1232)


@pytest.mark.parametrize(
    ("offset", "value", "code", "field"),
    [
        (0, 0x41414141, "azure.hcl.invalid", "header.signature"),
        (4, 3, "azure.hcl.unsupported", "header.version"),
        (12, 1, "azure.hcl.unsupported", "header.request_type"),
        (16, 1, "azure.hcl.invalid", "header.status"),
        (24, 1, "azure.hcl.reserved_nonzero", "header.reserved"),
        (1216, 5, "azure.hcl.invalid", "request_data.data_size"),
        (1220, 2, "azure.hcl.unsupported", "request_data.version"),
        (1224, 3, "azure.hcl.unsupported", "request_data.report_type"),
        (1228, 2, "azure.hcl.unsupported", "request_data.report_data_hash_type"),
        (8, 2600, "azure.hcl.invalid", "header.report_size"),
    ],
)
def test_header_fields(offset: int, value: int, code: str, field: str) -> None:
    b = bytearray(hcl())
    struct.pack_into("<I", b, offset, value)
    got = parse_code(bytes(b))
    assert got[:2] == (code, field)


def test_padding_must_be_zero() -> None:
    b = bytearray(hcl())
    b[2599] = 1
    assert parse_code(bytes(b)) == ("azure.hcl.trailing_bytes", "padding", 2599)


def test_tdx_report_padding_and_type() -> None:
    b = bytearray(read("tdx-vmbc4f", "hcl-report.bin"))
    b[32 + 1024 + 3] = 1
    assert parse_code(bytes(b))[:2] == ("azure.hcl.reserved_nonzero", "hardware_report.padding")
    b = bytearray(read("tdx-vmbc4f", "hcl-report.bin"))
    b[32] = 0x00  # REPORTTYPE.Type: not TDX
    assert parse_code(bytes(b))[:2] == ("azure.hcl.invalid", "REPORTMACSTRUCT.REPORTTYPE.Type")


def test_the_2048_byte_form() -> None:
    """The first published form: 2048 bytes, only HCLAkPub with key_ops ["encrypt"]."""
    doc = json.loads(runtime_of(hcl()))
    ak = doc["keys"][0]
    ak["key_ops"] = ["encrypt"]
    doc["keys"] = [ak]
    runtime = json.dumps(doc, separators=(",", ":")).encode()
    small = with_runtime(hcl(), runtime, 2048)
    h = azure.parse_hcl_report(small)
    assert h.length == 2048 and h.runtime_data == runtime
    rt = azure.RuntimeData.parse(h.runtime_data)
    assert rt.ek is None and rt.ak.key_ops == ("encrypt",)


def test_every_truncation_and_flip_is_a_parse_error_or_parses() -> None:
    data = hcl()
    for cut in range(0, len(data), 37):
        try:
            azure.parse_hcl_report(data[:cut])
        except ParseError as e:
            assert e.code.startswith("azure.hcl."), e.code


# --- runtime data ------------------------------------------------------------------------


def runtime() -> dict[str, object]:
    out: dict[str, object] = json.loads(runtime_of(hcl()))
    return out


def rt_code(doc: object) -> str:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(ParseError) as e:
        azure.RuntimeData.parse(data)
    return e.value.code


def test_runtime_data_bad_json() -> None:
    assert rt_code(b"{not json") == "azure.runtime_data.invalid"
    assert rt_code(b"\xff\xfe") == "azure.runtime_data.invalid"
    assert rt_code(b'{"keys": [], "keys": []}') == "azure.runtime_data.invalid"
    assert rt_code(b"[" * 3000 + b"]" * 3000) == "azure.runtime_data.invalid"
    assert rt_code(b'{"a": NaN}') == "azure.runtime_data.invalid"
    assert rt_code([1, 2]) == "azure.runtime_data.invalid"
    assert rt_code(b" " * 9000) == "azure.runtime_data.too_large"


def test_runtime_data_keys() -> None:
    d = runtime()
    d["keys"] = [k for k in d["keys"] if k["kid"] != "HCLAkPub"]  # type: ignore[attr-defined]
    assert rt_code(d) == "azure.runtime_data.ak_missing"
    d = runtime()
    d["keys"] = d["keys"] * 2  # type: ignore[operator]
    assert rt_code(d) == "azure.runtime_data.invalid"  # HCLAkPub twice
    d = runtime()
    d["keys"] = "nope"
    assert rt_code(d) == "azure.runtime_data.invalid"


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        ({"kty": "EC"}, "azure.runtime_data.ak_unsupported"),
        ({"key_ops": ["decrypt"]}, "azure.runtime_data.ak_unsupported"),
        ({"e": "Aw"}, "azure.runtime_data.ak_unsupported"),  # e = 3
        ({"n": "AQAB"}, "azure.runtime_data.ak_unsupported"),  # a 17-bit modulus
        ({"n": "not base64url!"}, "azure.runtime_data.invalid"),
        ({"e": "AQAB=="}, "azure.runtime_data.invalid"),  # padding is not base64url (JWK)
        ({"e": "AQAC"}, "azure.runtime_data.ak_unsupported"),
        ({"e": "AR"}, "azure.runtime_data.invalid"),  # unused bits set: not canonical
        ({"e": "AAEAAQ"}, "azure.runtime_data.invalid"),  # leading zero
        ({"kid": 7}, "azure.runtime_data.invalid"),
        ({"key_ops": "sign"}, "azure.runtime_data.invalid"),
    ],
)
def test_runtime_data_ak_shape(edit: dict[str, object], code: str) -> None:
    d = runtime()
    keys: list[dict[str, object]] = d["keys"]  # type: ignore[assignment]
    keys[0] = {**keys[0], **edit}
    if edit.get("kid") == 7:
        # A non-string kid is not HCLAkPub: the report then has no AK and another key.
        keys.append({"kid": 7})
        assert rt_code(d) in {code, "azure.runtime_data.ak_missing"}
        return
    assert rt_code(d) == code


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user-data", "zz"),
        ("user-data", "00" * 65),
        ("user-data", 5),
        ("vm-configuration", []),
        ("vm-configuration", {"secure-boot": {"nested": True}}),
    ],
)
def test_runtime_data_other_fields(field: str, value: object) -> None:
    d = runtime()
    d[field] = value
    assert rt_code(d) == "azure.runtime_data.invalid"


def test_jwk_thumbprint_is_rfc7638() -> None:
    # RFC 7638 §3.1's example key and thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v"
        "-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08"
        "qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8"
        "awapJzKnqDKgw"
    )
    rt = runtime()
    keys: list[dict[str, object]] = rt["keys"]  # type: ignore[assignment]
    keys[0] = {**keys[0], "n": n}
    parsed = azure.RuntimeData.parse(json.dumps(rt).encode())
    assert parsed.ak.thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


# --- trustee JSON and quote.bin ------------------------------------------------------------


def ev_code(data: bytes) -> str:
    with pytest.raises(ParseError) as e:
        azure.load_trustee_json(data)
    return e.value.code


def v1() -> dict[str, object]:
    out: dict[str, object] = json.loads(read("snp-milan-v3-vm26f8", "evidence-v1.json"))
    return out


def test_trustee_json_hostile() -> None:
    assert ev_code(b"not json") == "azure.evidence.invalid"
    assert ev_code(b"[]") == "azure.evidence.invalid"
    assert ev_code(b" " * (2 << 20)) == "azure.evidence.invalid"
    assert ev_code(json.dumps({**v1(), "version": 7}).encode()) == "azure.evidence.invalid"
    assert ev_code(json.dumps({**v1(), "version": True}).encode()) == "azure.evidence.invalid"
    assert ev_code(json.dumps({**v1(), "hcl_report": "!!"}).encode()) == "azure.evidence.invalid"
    d = v1()
    q: dict[str, object] = dict(d["tpm_quote"])  # type: ignore[call-overload]
    q["pcrs"] = q["pcrs"][:-1]  # type: ignore[index]
    assert ev_code(json.dumps({**d, "tpm_quote": q}).encode()) == (
        "azure.evidence.pcr_count_mismatch"
    )
    q = dict(d["tpm_quote"])  # type: ignore[call-overload]
    q["signature"] = "xyz"
    assert ev_code(json.dumps({**d, "tpm_quote": q}).encode()) == "azure.evidence.invalid"
    del q["signature"]
    assert ev_code(json.dumps({**d, "tpm_quote": q}).encode()) == "azure.evidence.invalid"
    # v0: numbers that are not bytes.
    v0 = json.loads(read("snp-milan-v3-vm26f8", "evidence-v0.json"))
    v0["report"][5] = 256
    assert ev_code(json.dumps(v0).encode()) == "azure.evidence.invalid"
    v0["report"][5] = True
    assert ev_code(json.dumps(v0).encode()) == "azure.evidence.invalid"


def test_a_quote_message_that_does_not_parse() -> None:
    d = v1()
    q: dict[str, object] = dict(d["tpm_quote"])  # type: ignore[call-overload]
    q["message"] = "ff544347"
    code = ev_code(json.dumps({**d, "tpm_quote": q}).encode())
    assert code.startswith("tpm.format."), code


def test_quote_bin_hostile() -> None:
    good = read("kinvolk-vtpm-quote", "quote.bin")
    for cut in range(0, len(good), 23):
        with pytest.raises(ParseError) as e:
            azure.parse_quote_bin(good[:cut])
        assert e.value.code.startswith(("azure.quote_bin.", "tpm.format.")), e.value.code
    huge = struct.pack("<Q", 1 << 62) + good[8:]
    with pytest.raises(ParseError) as e:
        azure.parse_quote_bin(huge)
    assert (e.value.code, e.value.field, e.value.offset) == (
        "azure.quote_bin.too_large",
        "signature.len",
        0,
    )
    with pytest.raises(ParseError) as e:
        azure.parse_quote_bin(good + b"\x00")
    assert e.value.code == "azure.quote_bin.trailing_bytes"


def test_raw_and_tpmt_signatures_verify_alike(tmp_path: Path) -> None:
    ev = snp_v3()
    assert ev.signature is not None and len(ev.signature) == 256
    wrapped = azure.tpmt_signature(ev.signature, 256)
    assert len(wrapped) == 262 and azure.tpmt_signature(wrapped, 256) == wrapped
    ev.signature = wrapped
    assert verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT).verified


def test_hostile_hcl_in_verify_is_a_result(tmp_path: Path) -> None:
    ev = snp_v3()
    ev.hcl_report = ev.hcl_report[:100]
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert res.platform == "azure" and codes(res) == ["azure.hcl.truncated"]
    # Runtime data that is not JSON: its code, and the binding fails too.
    ev = snp_v3()
    ev.hcl_report = with_runtime(ev.hcl_report, b"{bad")
    res = verifier(tmp_path).verify(ev, nonce=CHALLENGE, at=AT)
    assert codes(res) == ["azure.runtime_data.invalid", "azure.hcl.report_data_mismatch"]
    assert res.claims["tpm"] == {"quote_checked": False}


def test_base64_helpers_accept_both_alphabets() -> None:
    d = v1()
    raw = base64.urlsafe_b64decode(str(d["hcl_report"]) + "==")
    d["hcl_report"] = base64.b64encode(raw).decode()  # standard alphabet, padded
    assert azure.load_trustee_json(json.dumps(d).encode()).hcl_report == raw
