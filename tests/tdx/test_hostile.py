"""Hostile certificates, CRLs and PEM in TDX evidence are refused with a code, never raised.

Each case is correctly signed by the fake Intel hierarchy where a signature is checked, so
only the defect itself can be what refuses it. Before, they escaped as foreign exceptions
(``DuplicateExtension``, ``InvalidVersion``) or verified (a duplicated extension in the TCB
signing certificate; a quote whose chain lost its root block to a garbled PEM header).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sealgate import tdx
from sealgate.cli import main
from sealgate.errors import ParseError
from sealgate.pki import parse_sgx_extension
from sealgate.testing.hostile import HostileIntel
from sealgate.testing.tdx import sgx_extension

AT = datetime(2026, 6, 1, tzinfo=UTC)


def _case(name: str) -> tuple[HostileIntel, bytes, str]:
    """(hierarchy, collateral JSON, expected code) of one hostile case; distinct seeds keep
    the verifier's caches from serving one case's verdict to another."""
    intel = HostileIntel(seed=f"hostile-{name}".encode())
    if name == "pck ca with a duplicated extension":
        intel.chain_edit = intel.pck_ca_duplicate_extension()
        return intel, intel.collateral_json(), "tdx.pck.chain_invalid"
    if name == "garbled root block in the quote's chain":
        # The garbled block reads as text outside the certificates: refused as such.
        intel.chain_edit = intel.garbled_root_block()
        return intel, intel.collateral_json(), "tdx.format.trailing_bytes"
    if name == "tcb signing certificate with a duplicated extension":
        return intel, intel.tcb_signer_duplicate_extension(), "tdx.collateral.chain_invalid"
    assert name == "pck crl claiming version 3"
    return intel, intel.pck_crl_v3(), "tdx.collateral.invalid"


CASES = [
    "pck ca with a duplicated extension",
    "garbled root block in the quote's chain",
    "tcb signing certificate with a duplicated extension",
    "pck crl claiming version 3",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_is_refused(case: str) -> None:
    intel, collateral, code = _case(case)
    res = tdx.verify_quote(
        intel.quote(b"hostile"),
        collateral=tdx.load_collateral_json(collateral),
        roots=[intel.root_pem],
        at=AT,
    )
    assert not res.verified
    assert [e.code for e in res.errors] == [code], res.errors


def test_unedited_hierarchy_verifies() -> None:
    intel = HostileIntel(seed=b"hostile-control")
    res = tdx.verify_quote(
        intel.quote(b"hostile"), collateral=intel.collateral(), roots=[intel.root_pem], at=AT
    )
    assert res.verified, res.errors


@pytest.mark.parametrize("case", CASES)
def test_cli_prints_one_json_refusal(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intel, collateral, code = _case(case)
    (tmp_path / "quote").write_bytes(intel.quote(b"x"))
    (tmp_path / "collateral.json").write_bytes(collateral)
    (tmp_path / "root.pem").write_bytes(intel.root_pem)
    argv = [
        "verify", "tdx", "--quote", str(tmp_path / "quote"),
        "--collateral", str(tmp_path / "collateral.json"),
        "--roots", str(tmp_path / "root.pem"), "--at", AT.isoformat(),
    ]  # fmt: skip
    rc = main(argv)
    out = capsys.readouterr()
    doc = json.loads(out.out)  # exactly one JSON document
    assert rc == 1, out.err
    assert doc["verified"] is False
    assert [e["code"] for e in doc["errors"]] == [code]
    assert "internal" not in out.err


def test_sgx_extension_svn_is_bounded() -> None:
    """A PCESVN of 2,000 octets (about 4,800 digits) is refused, not carried into claims."""
    huge = (1 << 15999) + 1
    with pytest.raises(ParseError) as e:
        parse_sgx_extension(sgx_extension(components=(1,) * 16, pcesvn=huge, fmspc=bytes(6)))
    assert e.value.code == "tdx.format.invalid"
    ok = parse_sgx_extension(sgx_extension(components=(1,) * 16, pcesvn=65535, fmspc=bytes(6)))
    assert ok.pcesvn == 65535
