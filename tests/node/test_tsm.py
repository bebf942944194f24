from __future__ import annotations

from pathlib import Path

import pytest
from sealgate.node.tsm import ConfigfsTsm, FakeTsm, TsmError


def _echo(data: bytes) -> tuple[bytes, bytes | None]:
    return b"REPORT" + data, b"AUX"


def test_fake_collects_and_cleans_up(tmp_path: Path) -> None:
    tsm = FakeTsm(tmp_path / "report", _echo, platform="snp")
    ev = tsm.collect(bytes(range(64)))
    assert ev.provider == "sev_guest"
    assert ev.outblob == b"REPORT" + bytes(range(64))
    assert ev.auxblob == b"AUX"
    assert ev.generation == 1
    assert list((tmp_path / "report").iterdir()) == []


def test_report_data_must_be_64_bytes(tmp_path: Path) -> None:
    with pytest.raises(TsmError) as e:
        FakeTsm(tmp_path, _echo).collect(b"short")
    assert e.value.code == "node.tsm.bad_report_data"


def test_wrong_provider(tmp_path: Path) -> None:
    tsm = FakeTsm(tmp_path, _echo, provider="tdx_guest", platform="snp")
    with pytest.raises(TsmError) as e:
        tsm.collect(bytes(64))
    assert e.value.code == "node.tsm.wrong_provider"


def test_concurrent_writer_detected(tmp_path: Path) -> None:
    def bump(entry: Path) -> None:
        (entry / "generation").write_text("7\n")

    tsm = FakeTsm(tmp_path, _echo, interfere=bump)
    with pytest.raises(TsmError) as e:
        tsm.collect(bytes(64))
    assert e.value.code == "node.tsm.generation_changed"


def test_missing_configfs(tmp_path: Path) -> None:
    with pytest.raises(TsmError) as e:
        ConfigfsTsm(tmp_path / "absent").collect(bytes(64))
    assert e.value.code == "node.tsm.unavailable"
