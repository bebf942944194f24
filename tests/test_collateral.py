from __future__ import annotations

from pathlib import Path

import pytest
from sealgate.collateral import CollateralCache, atomic_write, fetch
from sealgate.errors import CollateralError, UsageError

from tests.httpserver import serve_dir


def test_atomic_write_and_cache_roundtrip(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path / "c")
    assert cache.get("snp", "Milan", "crl.der") is None
    p = cache.put("snp", "Milan", "crl.der", data=b"one")
    assert p == tmp_path / "c" / "snp" / "Milan" / "crl.der"
    assert cache.get("snp", "Milan", "crl.der") == b"one"
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert [f.name for f in p.parent.iterdir()] == ["crl.der"]  # no temp files left


@pytest.mark.parametrize("bad", ["..", "a/b", "", ".hidden", "x" * 300])
def test_cache_rejects_bad_components(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError):
        CollateralCache(tmp_path).path("snp", bad)


def test_fetch_ok_404_limit_and_unreachable(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 100)
    with serve_dir(tmp_path) as s:
        assert fetch(f"{s.base_url}/f.bin") == b"x" * 100
        with pytest.raises(CollateralError) as e:
            fetch(f"{s.base_url}/missing")
        assert e.value.code == "collateral.fetch.not_found"
        with pytest.raises(CollateralError) as e:
            fetch(f"{s.base_url}/f.bin", max_bytes=10)
        assert e.value.code == "collateral.fetch.too_large"
        port = s.base_url.rsplit(":", 1)[1]
    with pytest.raises(CollateralError) as e:
        fetch(f"http://127.0.0.1:{port}/f.bin", timeout=2)
    assert e.value.code == "collateral.fetch.unreachable"
    with pytest.raises(UsageError):
        fetch("file:///etc/passwd")


def test_fetch_refuses_redirect_off_http() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/etc/passwd")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(CollateralError) as e:
            fetch(f"http://127.0.0.1:{server.server_address[1]}/x", timeout=5)
        assert e.value.code == "collateral.fetch.bad_redirect"
    finally:
        server.shutdown()
        server.server_close()
