"""SNP/TDX node evidence through configfs-tsm (a fake kernel tree when the platform landed)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
from sealgate.node.agent import AgentError
from sealgate.node.cvm import ConfidentialVmCollector


@dataclass(frozen=True)
class _Ev:
    provider: str
    outblob: bytes
    auxblob: bytes | None
    generation: int


class _Source:
    """Stands in for sealgate.node.tsm.ConfigfsTsm: echoes report_data into the blob."""

    def collect(self, report_data: bytes) -> _Ev:
        return _Ev("tdx_guest", b"QUOTE" + report_data, None, 1)


def test_tdx_evidence_binds_report_data_and_carries_collateral() -> None:
    col = ConfidentialVmCollector("tdx", collateral=b'{"tcb_info": {}}', source=_Source())
    ev = col.collect(b"n", b"\x05" * 64)
    assert ev.tdx.quote == b"QUOTE" + b"\x05" * 64 and ev.tdx.collateral == b'{"tcb_info": {}}'


def test_platform_checked() -> None:
    with pytest.raises(AgentError):
        ConfidentialVmCollector("tpm")


@pytest.mark.skipif(
    importlib.util.find_spec("sealgate.node.tsm") is not None, reason="configfs-tsm is built in"
)
def test_without_tsm_module_collect_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as e:
        ConfidentialVmCollector("snp", tmp_path).collect(b"n", b"\x00" * 64)
    assert e.value.code == "node.tsm.unavailable"


@pytest.mark.skipif(
    importlib.util.find_spec("sealgate.node.tsm") is None, reason="configfs-tsm not built in yet"
)
def test_snp_through_fake_kernel_tree(tmp_path: Path) -> None:
    tsm = importlib.import_module("sealgate.node.tsm")
    fake = tsm.FakeTsm(tmp_path / "report", lambda rd: (b"REPORT" + rd, None), platform="snp")
    ev = ConfidentialVmCollector("snp", source=fake).collect(b"n", b"\x07" * 64)
    assert ev.snp.report == b"REPORT" + b"\x07" * 64
