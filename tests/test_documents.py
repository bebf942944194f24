"""Operator documents and local files: one safe loader, a stable code for every bad input.

Each regression row is an input that crashed (TypeError, OverflowError, RecursionError,
UnicodeEncodeError, ...) or expanded without bound before the shared loader existed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sealgate import tpm
from sealgate.appraise.policy import canonical_json, parse_policy
from sealgate.documents import MAX_DEPTH, load_document
from sealgate.errors import CollateralError, UsageError
from sealgate.node.session import parse_session
from sealgate.service.config import load_config
from sealgate.service.server import parse_bulk_reference_values
from sealgate.tdx.collateral import load_collateral_json

DEEP_JSON = "[" * 100_000 + "]" * 100_000
# 9 x 9^8 strings once expanded (hundreds of MB) from a few hundred bytes of YAML.
ALIAS_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def _load(text: str | bytes, **kw: object) -> object:
    return load_document(text, code="test.doc.invalid", what="doc", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ("a:\n  ~: 1\n", "key None is not a string"),
        ("a:\n  .inf: 1\n", "key inf is not a string"),
        ("a:\n  7: 1\n", "key 7 is not a string"),
        ("yes: 1\n", "key True is not a string"),
        ("a: " + "[" * 5000 + "]" * 5000, "nested deeper than"),
        (DEEP_JSON, "nested too deeply"),
        ("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), "nested deeper than"),
        (ALIAS_BOMB, "YAML anchors are not allowed"),
        ("a: *x\n", "YAML aliases are not allowed"),
        ("a: {<<: {b: 1}, c: 2}\n", "merge keys are not allowed"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": 1e999}', "inf is not a finite number"),
        ('{"a": NaN}', "not a JSON number"),
        ('{"a": "\\ud800"}', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),
        ("a: " + "1" * 5000, "ValueError"),
        ('{"a": ' + "1" * 5000 + "}", "4300"),
        ("a: !!binary aGVsbG8=\n", "bytes is not a JSON value"),
        ("a: !!set {x, y}\n", "set is not a JSON value"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", "single document"),
        (b"a: \xff\n", "not UTF-8"),
        ("x" * ((1 << 20) + 1), "exceeds"),
    ],
)
def test_loader_refuses_with_the_callers_code(doc: str | bytes, why: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(UsageError) as e:
        _load(doc)
    assert e.value.code == "test.doc.invalid"
    assert why in e.value.message, e.value.message
    assert time.monotonic() - t0 < 5


def test_loader_keeps_json_shapes_and_dates_as_strings() -> None:
    assert _load("a: 2026-01-01\nb: [1, 2.5, true, null]\n") == {
        "a": "2026-01-01",
        "b": [1, 2.5, True, None],
    }
    assert _load('{"a": {"b": ["c"]}}') == {"a": {"b": ["c"]}}
    assert _load("{}", yaml_ok=False) == {}
    with pytest.raises(UsageError, match="not valid JSON"):
        _load("a: 1", yaml_ok=False)


def test_loader_names_the_place() -> None:
    with pytest.raises(UsageError) as e:
        _load("platforms:\n  tpm:\n    pcrs:\n      sha256: [{7: x}]\n")
    assert "platforms.tpm.pcrs.sha256[0]: key 7" in e.value.message


# -- policies -------------------------------------------------------------------------------

POLICY_REGRESSIONS = [
    "platforms:\n  tpm:\n    pcrs:\n      sha256:\n        ~: [aa]\n",  # TypeError
    "platforms:\n  tpm:\n    pcrs:\n      sha256:\n        .inf: [aa]\n",  # OverflowError
    "platforms:\n  tpm:\n    pcrs:\n      sha256:\n        7: [aa]\n        '8': [aa]\n",
    "platforms: " + "[" * 5000 + "]" * 5000,  # RecursionError
    '{"platforms": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError (JSON)
    ALIAS_BOMB,  # memory blow-up
]


@pytest.mark.parametrize("doc", POLICY_REGRESSIONS)
def test_policy_regressions_refused(doc: str) -> None:
    for fn in (parse_policy, canonical_json):
        with pytest.raises(UsageError) as e:
            fn(doc)
        assert e.value.code == "policy.document.invalid"


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("limits: 5\n", "limits must be a mapping"),
        ("limits: {foo: 1}\n", "unknown limits key(s) foo"),
        ("limits: {max_keys_per_request: 0}\n", "limits.max_keys_per_request must be positive"),
        ("limits: {max_keys_per_request: true}\n", "must be a int"),
        ("limits: {max_keys_per_request: 1.5}\n", "must be a int"),
        ("rate_limit: [1]\n", "rate_limit must be a mapping"),
        ("rate_limit: {per_node_rps: x}\n", "rate_limit.per_node_rps must be a float"),
        ("data_dir: 5\n", "data_dir must be a non-empty path string"),
        ("data_dir: ''\n", "data_dir must be a non-empty path string"),
        ("tls_cert: [a]\n", "tls_cert must be a non-empty path string"),
        ("operators: [{name: 5, public_key: k.pem}]\n", "operators entries"),
        ("operators: [{public_key: k.pem, roles: [[admin]]}]\n", "operators entries"),
        ("operators: [{public_key: k.pem, rolse: [admin]}]\n", "operators entries"),
        ("bootstrap_operator: no-thanks\n", "bootstrap_operator must be a bool"),
        ("bootstrap_operator: false\n", "no operators are configured"),
        ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ("listen: " + "[" * 5000 + "]" * 5000, "nested deeper than"),
        (ALIAS_BOMB, "anchors are not allowed"),
        ("~: 1\n", "key None is not a string"),
    ],
)
def test_bad_config_refused(tmp_path: Path, text: str, why: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(UsageError) as e:
        load_config(p)
    assert e.value.code == "config.invalid"
    assert why in e.value.message, e.value.message


def test_non_utf8_config_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"listen: \xff\n")
    with pytest.raises(UsageError) as e:
        load_config(p)
    assert e.value.code == "config.invalid" and "not UTF-8" in e.value.message


def test_good_config_sections(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "limits: {max_keys_per_request: 8}\nrate_limit: {per_node_rps: 5, burst: 9}\n"
        "data_dir: d\nbootstrap_operator: false\nallow_insecure_remote: false\n"
        "operators: [{name: alice, public_key: a.pem, roles: [admin]}]\n"
    )
    cfg = load_config(p)
    assert cfg.limits.max_keys_per_request == 8
    assert cfg.rate_limit.per_node_rps == 5.0 and isinstance(cfg.rate_limit.per_node_rps, float)
    assert cfg.rate_limit.burst == 9 and cfg.data_dir == Path("d")
    assert cfg.bootstrap_operator is False


# -- bulk reference values, session files ---------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        DEEP_JSON,
        "platform: tpm\nset_name: g\nvalues:\n  ~: aa\n",
        "platform: tpm\nset_name: g\nvalues:\n  .inf: aa\n",
        ALIAS_BOMB,
        "- " * 5000 + "x",
    ],
)
def test_bad_bulk_reference_values_refused(doc: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_bulk_reference_values(doc, 0)
    assert e.value.code == "admin.refval.bad_document"


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"format": "sealgate.node.session/1", "suite": [], "node_id": "n", "token": "t", '
        b'"expires_at": 1, "runtime_private_key": "AA=="}',
        b'{"format": {"a": 1}, "suite": "x", "node_id": "n", "token": "t", '
        b'"expires_at": 1, "runtime_private_key": "AA=="}',
        b'{"a": "\\ud800"}',
        b"\xff\xfe",
        # Non-ASCII base64 is a plain ValueError from b64decode, not binascii.Error.
        b'{"format": "sealgate.node.session/1", "suite": "x25519", "node_id": "n", '
        b'"token": "t", "expires_at": 1, "runtime_private_key": "\xc3\xa9"}',
    ],
)
def test_bad_session_files_refused(data: bytes) -> None:
    with pytest.raises(UsageError) as e:
        parse_session(Path("session.json"), data)
    assert e.value.code == "cli.node.session_malformed"


# -- local files: PCR JSON and collateral JSON ------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"sha256": {"-1": "00"}}',  # OverflowError in the verifier before
        b'{"sha256": {"4294967296": "00"}}',  # OverflowError
        b'{"sha256": {"32": "00"}}',
        b'{"sha256": {"\xd9\xa3": "00"}}',  # int("٣") == 3
        b'{"sha256": {"0": 5}}',
        b'{"sha256": {"0": "zz"}}',
        b'{"sha256": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError
        b'{"sha256": {"0": "00", "0": "11"}}',
    ],
)
def test_bad_pcr_json_refused(data: bytes) -> None:
    with pytest.raises(UsageError) as e:
        tpm.load_pcrs(data)
    assert e.value.code == "cli.input.bad_json"


def test_pcr_json_ok() -> None:
    assert tpm.load_pcrs(b'{"sha256": {"31": "00ff"}, "sm3": {}}') == {"sha256": {31: b"\x00\xff"}}


def _collateral(**over: object) -> bytes:
    doc: dict[str, object] = {
        "tcb_info_issuer_chain": "chain",
        "tcb_info": "{}",
        "tcb_info_signature": "00" * 64,
        "qe_identity": "{}",
        "qe_identity_signature": "00" * 64,
    }
    doc.update(over)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "data",
    [
        _collateral(tcb_info_issuer_chain="\ud800"),  # UnicodeEncodeError before
        _collateral(qe_identity_issuer_chain="\udc00"),
        _collateral(tcb_info={"not": "a string"}),
        _collateral(tcb_info_issuer_chain=None),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": 1, "a": 2}',
    ],
)
def test_bad_collateral_json_refused(data: bytes) -> None:
    with pytest.raises(CollateralError) as e:
        load_collateral_json(data)
    assert e.value.code == "tdx.collateral.invalid"


# -- schemas: every field error names the field, with the document's code ---------------------

_SESSION = {
    "format": "sealgate.node.session/1",
    "node_id": "n",
    "suite": "x25519",
    "token": "SECRET-TOKEN",
    "expires_at": 1,
    "runtime_private_key": "AA==",
}
_REFVAL = {"platform": "tpm", "set_name": "g", "name": "sha256:7", "value": "aa"}


def _config(tmp: Path, text: str) -> object:
    (tmp / "c.yaml").write_text(text)
    return load_config(tmp / "c.yaml")


def _session(doc: object) -> object:
    return parse_session(Path("s.json"), json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("kind", "doc", "code", "wants"),
    [
        ("policy", '{"platforms": {"snp": {"measurement": ["aa"], "vmpl": [0, 9]}}}',
         "policy.document.invalid", ["platforms.snp.vmpl[1]"]),
        # Every error at once, not only the first.
        ("policy", '{"platforms": {"tpm": {"pcr": {}, "allow_weak_hashes": 1}}}',
         "policy.document.invalid",
         ["unknown platforms.tpm key(s) pcr", "platforms.tpm.allow_weak_hashes must be a bool"]),
        # A bool is not a TCB SVN or a VMPL (isinstance(True, int) let them through).
        ("policy", '{"platforms": {"snp": {"measurement": ["aa"], '
                   '"min_reported_tcb": {"tee": true}}}}',
         "policy.document.invalid", ["platforms.snp.min_reported_tcb.tee must be a int"]),
        ("policy", '{"platforms": {"snp": {"measurement": ["aa"], "vmpl": [true]}}}',
         "policy.document.invalid", ["platforms.snp.vmpl[0] must be a int"]),
        # PCR indices are ASCII digits (int() also takes " 7" and "٣").
        ("policy", '{"platforms": {"tpm": {"pcrs": {"sha256": {"\\u0663": ["aa"]}}}}}',
         "policy.document.invalid", ["platforms.tpm.pcrs.sha256.\u0663: bad PCR index"]),
        ("policy", '{"platforms": {"tpm": {"pcrs": {"sha256": {" 7": ["aa"]}}}}}',
         "policy.document.invalid", ["platforms.tpm.pcrs.sha256. 7: bad PCR index"]),
        ("config", "operators: [{name: a, public_key: a.pem, roles: [root]}]\n",
         "config.invalid", ["operators[0].roles[0]", "operators entries need"]),
        ("config", "snp_roots: [a.pem, 5]\n", "config.invalid",
         ["snp_roots[1] must be a non-empty path string"]),
        ("config", "limits: {max_message_bytes: 4M, request_timeout: true}\n", "config.invalid",
         ["limits.max_message_bytes must be a int", "limits.request_timeout must be a float"]),
        ("session", {**_SESSION, "expires_at": 0}, "cli.node.session_malformed",
         ["expires_at must be positive"]),
        ("session", {**_SESSION, "node_id": ["SECRET-TOKEN"], "extra": "SECRET-TOKEN"},
         "cli.node.session_malformed", ["node_id must be a str", "unknown top-level key(s) extra"]),
        # A misspelt optional key was dropped silently.
        ("bulk", [{**_REFVAL, "descripton": "x"}], "admin.refval.bad_document",
         ["unknown [0] key(s) descripton"]),
        ("bulk", {"platform": "tpm", "set_name": "g", "values": {"sha256:7": 5}, "set": "h"},
         "admin.refval.bad_document",
         ["unknown top-level key(s) set", "values.sha256:7 must be a str"]),
    ],
)  # fmt: skip
def test_schema_errors_name_the_field(
    tmp_path: Path, kind: str, doc: object, code: str, wants: list[str]
) -> None:
    from sealgate.errors import SealgateError

    runs: dict[str, Callable[[], object]] = {
        "policy": lambda: canonical_json(str(doc)),
        "config": lambda: _config(tmp_path, str(doc)),
        "session": lambda: _session(doc),
        "bulk": lambda: parse_bulk_reference_values(json.dumps(doc), 0),
    }
    with pytest.raises(SealgateError) as e:
        runs[kind]()
    assert e.value.code == code
    for want in wants:
        assert want in e.value.message, e.value.message
    # The model's own report (pydantic's ValidationError text) never reaches the caller,
    # nor a value from the document.
    assert "validation error" not in e.value.message and "SECRET" not in e.value.message


def test_schema_helper_maps_every_validator_failure() -> None:
    """pydantic passes a validator's TypeError through; the helper still gives the code."""
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, TypeAdapter
    from sealgate.documents import STRICT, validate

    def boom(v: int) -> int:
        raise TypeError("bug")

    class Doc(BaseModel):
        model_config = STRICT
        n: Annotated[int, AfterValidator(boom)]

    with pytest.raises(UsageError) as e:
        validate(TypeAdapter(Doc), {"n": 1}, code="test.doc.invalid", what="doc")
    assert e.value.code == "test.doc.invalid"


def test_good_documents_still_load(tmp_path: Path) -> None:
    p = parse_policy('{"platforms": {"tpm": {"pcrs": {"sha256": {"07": "AB"}}}}}')
    assert p.tpm is not None and p.tpm.pcrs == {"sha256": {7: ["ab"]}}
    [rv] = parse_bulk_reference_values(json.dumps([{**_REFVAL, "value": "AA"}]), 5)
    assert (rv.platform, rv.name, rv.value, rv.description, rv.created_at) == (
        "tpm", "sha256:7", "aa", "", 5,
    )  # fmt: skip
    (tmp_path / "c.yaml").write_text("snp_roots: a.pem\nlimits: {request_timeout: 3}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.snp_roots == [Path("a.pem")] and cfg.limits.request_timeout == 3.0
