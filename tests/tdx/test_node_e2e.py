"""A fake TDX node: configfs-tsm (FakeTsm) → quote → sealgate.tdx.verify_quote."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sealgate import tdx
from sealgate.node.tsm import FakeTsm
from sealgate.testing.tdx import FakeIntel, tsm_responder


def test_tdx_node_binding_roundtrip(tmp_path: Path) -> None:
    intel = FakeIntel()
    tsm = FakeTsm(tmp_path / "report", tsm_responder(intel), provider="tdx_guest", platform="tdx")
    nonce, runtime_key = b"\x01" * 32, b"\x02" * 32
    binding = hashlib.sha512(nonce + runtime_key).digest()  # report_data binding (broker)
    ev = tsm.collect(binding)
    assert ev.provider == "tdx_guest"
    res = tdx.verify_quote(
        ev.outblob, collateral=intel.collateral(), roots=[intel.root_pem], report_data=binding
    )
    assert res.verified, res.errors
    assert res.claims["report_data"] == binding.hex()
    other = tdx.verify_quote(
        ev.outblob,
        collateral=intel.collateral(),
        roots=[intel.root_pem],
        report_data=hashlib.sha512(b"replayed").digest(),
    )
    assert [e.code for e in other.errors] == ["tdx.quote.report_data_mismatch"]
