"""Property fuzzing of the Python-side document parsers (Hypothesis).

Every target asserts the one contract the CLI and the service rely on: any input either
parses or raises a sealgate error with one of the target's stable codes, never another
exception. Examples are bounded (``max_examples``, ``deadline``) and the example database is
off, so the run is quick and the same in CI; raise ``SEALGATE_FUZZ_EXAMPLES`` for a longer
local run.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate import tpm
from sealgate.appraise.policy import canonical_json, parse_policy
from sealgate.documents import load_document
from sealgate.errors import SealgateError
from sealgate.node.session import _FIELDS, FORMAT, parse_session
from sealgate.protocol.hpke import SUITES
from sealgate.service.config import load_config
from sealgate.service.server import parse_bulk_reference_values
from sealgate.tdx.collateral import load_collateral_json

T = TypeVar("T")

FUZZ = settings(
    max_examples=int(os.environ.get("SEALGATE_FUZZ_EXAMPLES", "200")),
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Names the parsers look for, so generated documents get past the first checks.
NAMES = [
    "platforms", "tpm", "snp", "tdx", "sgx", "reference_sets", "pcrs", "sha256", "sha1",
    "required_selection", "allow_weak_hashes", "ek_ca_fingerprints", "allow_any_measurement",
    "measurement", "host_data", "min_reported_tcb", "bootloader", "tee", "microcode",
    "allow_debug", "vmpl", "products", "mr_td", "rtmr0", "rtmr3", "mr_config_id",
    "tcb_statuses", "0", "7", "23", "24", "-1", "4294967296", "listen", "http_listen",
    "data_dir", "tls_cert", "tls_key", "tls_client_ca", "allow_insecure_remote", "operators",
    "name", "public_key", "roles", "limits", "max_keys_per_request", "rate_limit",
    "per_node_rps", "burst", "workers", "token_ttl", "bootstrap_operator", "ek_ca_roots",
    "platform", "set_name", "values", "value", "description", "format", "node_id", "suite",
    "token", "expires_at", "runtime_private_key", "tcb_info", "tcb_info_signature",
    "qe_identity", "qe_identity_signature", "tcb_info_issuer_chain", "pck_crl", "root_ca_crl",
]  # fmt: skip
keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=8))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["aa" * 32, "11" * 48, "zz", "", "UpToDate", "Milan", "sha256:0,7", "x25519"]),
    st.text(max_size=16),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)
documents = st.dictionaries(keys, values, max_size=6)
# Text close to YAML's grammar (flow and block collections, anchors, tags, escapes).
yaml_text = st.text(
    alphabet=st.sampled_from(list("[]{}:,-?&*!|>'\"#%@`\\ \n\t0123456789abcdefxyz.~")),
    max_size=120,
)


def _dump(doc: Any, as_yaml: bool) -> str:
    if as_yaml:
        return yaml.safe_dump(doc, allow_unicode=True)
    return json.dumps(doc)


def _stable(fn: Callable[[], T], codes: set[str]) -> T | None:
    """Run ``fn``; a sealgate error must carry one of ``codes``; anything else propagates."""
    try:
        return fn()
    except SealgateError as e:
        assert e.code in codes, (e.code, e.message)
        return None


POLICY_CODES = {"policy.document.invalid", "policy.document.no_measurement"}


@FUZZ
@given(doc=documents, as_yaml=st.booleans())
def test_policy_documents(doc: dict[str, Any], as_yaml: bool) -> None:
    text = _dump({"platforms": doc} if "platforms" not in doc else doc, as_yaml)
    _stable(lambda: parse_policy(text), POLICY_CODES)
    canon = _stable(lambda: canonical_json(text), POLICY_CODES)
    if canon is not None:  # the stored form parses again to the same policy
        assert parse_policy(canon) == parse_policy(text)


@FUZZ
@given(plat=st.sampled_from(["tpm", "snp", "tdx"]), req=documents, as_yaml=st.booleans())
def test_policy_platform_entries(plat: str, req: dict[str, Any], as_yaml: bool) -> None:
    text = _dump({"platforms": {plat: req}}, as_yaml)
    _stable(lambda: canonical_json(text), POLICY_CODES)


@FUZZ
@given(text=st.one_of(yaml_text, st.text(max_size=200)))
def test_policy_raw_text(text: str) -> None:
    _stable(lambda: canonical_json(text), POLICY_CODES)


@FUZZ
@given(data=st.one_of(yaml_text, st.binary(max_size=200), documents.map(json.dumps)))
def test_loader(data: str | bytes) -> None:
    doc = _stable(
        lambda: load_document(data, code="fuzz.doc.invalid", what="doc"), {"fuzz.doc.invalid"}
    )
    if doc is not None:  # JSON-shaped, so it always re-serializes
        json.dumps(doc, allow_nan=False).encode()


CONFIG_CODES = {"config.invalid", "config.insecure_listen"}


@FUZZ
@given(doc=st.one_of(documents, values), as_yaml=st.booleans(), raw=st.binary(max_size=64))
def test_config_files(doc: Any, as_yaml: bool, raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config"
        for data in (_dump(doc, as_yaml).encode(), raw):
            p.write_bytes(data)
            _stable(lambda: load_config(p), CONFIG_CODES)


@FUZZ
@given(doc=st.one_of(documents, values), as_yaml=st.booleans())
def test_bulk_reference_values(doc: Any, as_yaml: bool) -> None:
    text = _dump(doc, as_yaml)
    _stable(lambda: parse_bulk_reference_values(text, 0), {"admin.refval.bad_document"})


session_docs = (
    st.fixed_dictionaries(
        {
            "format": st.one_of(st.just(FORMAT), values),
            "suite": st.one_of(st.sampled_from(SUITES), values),
            "node_id": st.one_of(st.just("n"), values),
            "token": st.one_of(st.just("t"), values),
            "expires_at": st.one_of(st.integers(), values),
            "runtime_private_key": st.one_of(
                st.binary(min_size=30, max_size=34).map(lambda b: base64.b64encode(b).decode()),
                st.text(max_size=50),
                values,
            ),
        }
    )
    | st.fixed_dictionaries({k: values for k in sorted(_FIELDS)})
    | documents
)


@FUZZ
@given(doc=session_docs, raw=st.binary(max_size=200))
def test_session_files(doc: dict[str, Any], raw: bytes) -> None:
    for data in (json.dumps(doc).encode(), raw):
        _stable(partial(parse_session, Path("s.json"), data), {"cli.node.session_malformed"})


collateral_docs = st.fixed_dictionaries(
    {
        k: st.one_of(values, st.just("00" * 64))
        for k in ("tcb_info_issuer_chain", "tcb_info", "tcb_info_signature", "qe_identity",
                  "qe_identity_signature")
    },
    optional={"pck_crl": values, "root_ca_crl": values, "qe_identity_issuer_chain": values},
)  # fmt: skip


@FUZZ
@given(doc=st.one_of(collateral_docs, documents), raw=st.binary(max_size=200))
def test_collateral_json(doc: dict[str, Any], raw: bytes) -> None:
    for data in (json.dumps(doc).encode(), raw):
        _stable(partial(load_collateral_json, data), {"tdx.collateral.invalid"})


PCR_CODES = {
    "cli.input.bad_json",
    "tpm.format.truncated",
    "tpm.format.too_large",
    "tpm.format.invalid",
}


@FUZZ
@given(
    doc=st.dictionaries(
        st.sampled_from(["sha1", "sha256", "sha384", "sm3", "x"]),
        st.one_of(st.dictionaries(keys, st.one_of(scalars, values), max_size=4), values),
        max_size=3,
    ),
    raw=st.binary(max_size=800),
)
def test_pcr_files(doc: dict[str, Any], raw: bytes) -> None:
    for data in (json.dumps(doc).encode(), raw):
        _stable(partial(tpm.load_pcrs, data), PCR_CODES)
