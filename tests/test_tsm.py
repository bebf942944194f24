"""configfs-tsm collector against a fake report tree (a provider that answers on read)."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import pytest
from sealgate.node.agent import AgentError
from sealgate.node.tsm import GUID_VCEK, ConfigfsTsmCollector, parse_cert_table


def _fake_provider(root: Path, stop: threading.Event) -> None:
    """Play the kernel: when an entry gets an inblob, write outblob = 'REPORT' + inblob."""
    while not stop.is_set():
        for d in root.iterdir():
            inblob = d / "inblob"
            if inblob.exists() and not (d / "outblob").exists():
                (d / "outblob").write_bytes(b"REPORT" + inblob.read_bytes())
                aux = GUID_VCEK + struct.pack("<II", 48, 4) + bytes(24) + b"VCEK"
                (d / "auxblob").write_bytes(aux)
        time.sleep(0.001)


def test_tdx_and_snp_reports_through_fake_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "report"
    root.mkdir()
    # The kernel creates outblob when it is read; a plain directory cannot, so the fake
    # provider thread fills it in and reads wait for it.
    orig = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        deadline = time.monotonic() + 5
        while self.name in ("outblob", "auxblob") and not self.exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        return orig(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(Path, "rmdir", lambda self: None)
    stop = threading.Event()
    t = threading.Thread(target=_fake_provider, args=(root, stop), daemon=True)
    t.start()
    try:
        ev = ConfigfsTsmCollector("tdx", root, collateral=b"{}").collect(b"n", b"\x01" * 64)
        assert ev.tdx.quote == b"REPORT" + b"\x01" * 64 and ev.tdx.collateral == b"{}"
        ev = ConfigfsTsmCollector("snp", root).collect(b"n", b"\x02" * 64)
        assert ev.snp.report == b"REPORT" + b"\x02" * 64 and ev.snp.vcek == b"VCEK"
    finally:
        stop.set()
        t.join()


def test_cert_table_bounds() -> None:
    with pytest.raises(AgentError):
        parse_cert_table(GUID_VCEK + struct.pack("<II", 1000, 10) + bytes(24))
    with pytest.raises(AgentError):
        parse_cert_table(b"\x01" * 30)
    assert parse_cert_table(bytes(24)) == {}


def test_missing_tsm_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as e:
        ConfigfsTsmCollector("snp", tmp_path / "absent").collect(b"n", b"\x00" * 64)
    assert e.value.code == "node.tsm.unavailable"
