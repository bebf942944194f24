"""Typed TDX claims: read from a verified quote's claims dict, never raising."""

from __future__ import annotations

from sealgate import tdx
from sealgate.tdx.claims import REGISTERS, TdxClaims

from tests.tdx.test_synthetic import EXPECTED, QUOTES, collateral, roots
from tests.vectors import project


def test_from_verified_quote() -> None:
    name = next(n for n in QUOTES if EXPECTED[n].get("verified") is True)
    r = tdx.verify_quote(project("tdx", name).read_bytes(), collateral=collateral(), roots=roots())
    assert r.verified, r.errors
    c = TdxClaims.from_claims(r.claims)
    for reg in ("mr_td", "mr_config_id", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_seam"):
        assert c.registers[reg] == r.claims[reg], reg
    assert set(c.registers) <= set(REGISTERS)
    assert c.debug is r.claims["td_attributes"]["debug"]
    assert c.tcb_status == r.claims["tcb_status"]
    assert c.ppid == r.claims["ppid"]
    assert c.identities()[0] == f"ppid:{r.claims['ppid']}"


def test_absent_or_mistyped_claims_read_as_absent() -> None:
    for raw in ({}, {"td_attributes": ["debug"], "mr_td": 5, "tcb_status": 1, "tcb_date": "x"}):
        c = TdxClaims.from_claims(raw)
        assert c.debug is True and dict(c.registers) == {} and c.tcb_status is None
        assert c.identities() == []
    # Only the report body's registers are registers: other claims are not measurements.
    c = TdxClaims.from_claims({"tcb_status": "UpToDate", "td_attributes": {"debug": False}})
    assert dict(c.registers) == {} and c.debug is False
