"""Typed SEV-SNP claims: read from a verified report's claims dict, never raising."""

from __future__ import annotations

from sealgate.snp.claims import SnpClaims

from tests.snp.test_synthetic import run


def test_from_verified_report() -> None:
    res = run("report-v5-debug.bin")
    assert res.verified, res.errors
    c = SnpClaims.from_claims(res.claims)
    assert c.measurement == res.claims["measurement"]
    assert c.host_data == "11" * 32 and c.debug is True and c.product == "Milan"
    assert c.vmpl == res.claims["vmpl"]
    assert dict(c.reported_tcb) == {"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213}
    assert c.endorsement_key == ("vcek", res.claims["endorsement_key"]["sha256"])
    assert c.identities() == [
        f"chip_id:{res.claims['chip_id']}",
        f"vcek:{res.claims['endorsement_key']['sha256']}",
    ]


def test_absent_or_mistyped_claims_read_as_absent() -> None:
    """Every check on an absent claim fails closed: no policy bit means debug allowed."""
    for raw in ({}, {"policy": "debug=false", "vmpl": "0", "reported_tcb": [], "chip_id": 1}):
        c = SnpClaims.from_claims(raw)
        assert c.debug is True and c.vmpl is None and c.measurement is None
        assert dict(c.reported_tcb) == {} and c.identities() == []
    c = SnpClaims.from_claims({"policy": {"debug": False}, "reported_tcb": {"snp": "8"}})
    assert c.debug is False and dict(c.reported_tcb) == {}
