"""``sealgate collateral fetch nvidia`` against a loopback RIM service and OCSP responder;
fetched collateral then verifies through RimSource and check_chain (network: loopback)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sealgate.cli import main
from sealgate.collateral import CollateralCache
from sealgate.errors import SealgateError
from sealgate.nvgpu import fetch
from sealgate.nvgpu.ocsp import check_chain
from sealgate.nvgpu.rim import RimSource
from sealgate.testing.nvgpu_rim import RimHierarchy, make_hierarchy, make_rim

AT = datetime(2024, 6, 1, tzinfo=UTC)


@contextmanager
def _service(h: RimHierarchy, rims: dict[str, bytes], bad_sha: bool = False) -> Iterator[str]:
    by_serial = {c.serial_number: (c, i) for c, i in zip(h.chain, h.chain[1:], strict=False)}
    keys = {h.ca.subject: h.ca_key, h.root.subject: h.root_key}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            rid = self.path.removeprefix("/v1/rim/")
            if rid not in rims:
                self.send_error(404)
                return
            xml = rims[rid]
            digest = hashlib.sha256(xml + (b"x" if bad_sha else b"")).hexdigest()
            self._send(
                json.dumps(
                    {"id": rid, "rim": base64.b64encode(xml).decode(), "sha256": digest}
                ).encode()
            )

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            req = ocsp.load_der_ocsp_request(self.rfile.read(min(n, 65536)))
            cert, issuer = by_serial[req.serial_number]
            resp = (
                ocsp.OCSPResponseBuilder()
                .add_response(
                    cert=cert,
                    issuer=issuer,
                    algorithm=hashes.SHA384(),
                    cert_status=ocsp.OCSPCertStatus.GOOD,
                    this_update=AT - timedelta(hours=1),
                    next_update=AT + timedelta(days=1),
                    revocation_time=None,
                    revocation_reason=None,
                )
                .responder_id(ocsp.OCSPResponderEncoding.NAME, issuer)
                .sign(keys[issuer.subject], hashes.SHA384())
            )
            self._send(resp.public_bytes(serialization.Encoding.DER))

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_ids() -> None:
    assert fetch.driver_rim_id("550.90.07") == "NV_GPU_DRIVER_GH100_550.90.07"
    assert (
        fetch.vbios_rim_id("96.00.9f.00.01", "1010", "0200", "882")
        == "NV_GPU_VBIOS_1010_0200_882_96009F0001"
    )
    for bad in ("../x", "550", "5 5.1"):
        with pytest.raises(SealgateError) as e:
            fetch.driver_rim_id(bad)
        assert e.value.code == "cli.usage.bad_version"


def test_fetch_nvidia_rims_and_ocsp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = make_hierarchy("fetch")
    drv = make_rim(h, kind="driver", version="550.90.07", measurements={7: (True, [bytes(48)])})
    vb = make_rim(h, kind="vbios", version="96.00.9F.00.01", measurements={0: (True, [bytes(48)])})
    rims = {"NV_GPU_DRIVER_GH100_550.90.07": drv, "NV_GPU_VBIOS_1010_0200_882_96009F0001": vb}
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in h.chain))
    cache = tmp_path / "cache"
    with _service(h, rims) as url:
        rc = main(
            [
                "collateral",
                "fetch",
                "nvidia",
                "--driver-version",
                "550.90.07",
                "--vbios-version",
                "96.00.9F.00.01",
                "--project",
                "1010",
                "--project-sku",
                "0200",
                "--chip-sku",
                "882",
                "--cert-chain",
                str(chain),
                "--rim-url",
                url,
                "--ocsp-url",
                url + "/",
                "--cache-dir",
                str(cache),
            ]
        )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["files"]["ocsp"]) == 2
    src = RimSource.from_places(roots=[h.root_cert], cache_root=cache)
    assert src.require("driver", "550.90.07", at=AT).version == "550.90.07"
    assert (
        src.require(
            "vbios", "96.00.9F.00.01", at=AT, project="1010", project_sku="0200", chip_sku="882"
        ).kind
        == "vbios"
    )
    responses = [Path(p).read_bytes() for p in out["files"]["ocsp"]]
    assert check_chain(h.pki_chain(), responses, at=AT).checked
    cached = fetch.cached_responses(CollateralCache(cache), h.pki_chain())
    assert sorted(cached) == sorted(responses)
    assert check_chain(h.pki_chain(), cached, at=AT).checked
    assert fetch.cached_responses(CollateralCache(tmp_path / "empty"), h.pki_chain()) == []
    # The RIM signer chain's responses were fetched with the RIMs (one request per
    # certificate below the root, shared by the two RIMs signed under one chain).
    assert sorted(out["files"]["rim_ocsp"]) == sorted(out["files"]["ocsp"])


def _fetch_rims(url: str, cache: Path, *extra: str) -> int:
    return main(
        [
            "collateral",
            "fetch",
            "nvidia",
            "--driver-version",
            "550.90.07",
            "--vbios-version",
            "96.00.9F.00.01",
            "--project",
            "1010",
            "--project-sku",
            "0200",
            "--chip-sku",
            "882",
            "--rim-url",
            url,
            "--ocsp-url",
            url + "/",
            "--cache-dir",
            str(cache),
            *extra,
        ]
    )


def test_fetched_rim_chain_ocsp_reaches_the_verifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``collateral fetch nvidia`` with RIMs only: the RIM signer chain's OCSP responses are
    cached, and ``RimSource.cached_ocsp`` hands them over for the chain the RIM verifies to."""
    h = make_hierarchy("rimocsp")
    drv = make_rim(h, kind="driver", version="550.90.07", measurements={7: (True, [bytes(48)])})
    vb = make_rim(h, kind="vbios", version="96.00.9F.00.01", measurements={0: (True, [bytes(48)])})
    rims = {"NV_GPU_DRIVER_GH100_550.90.07": drv, "NV_GPU_VBIOS_1010_0200_882_96009F0001": vb}
    cache = tmp_path / "cache"
    with _service(h, rims) as url:
        assert _fetch_rims(url, cache) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["files"]["rim_ocsp"]) == 2 and "ocsp" not in out["files"]
        src = RimSource.from_places(roots=[h.root_cert], cache_root=cache)
        r = src.require("driver", "550.90.07", at=AT)
        got = src.cached_ocsp(r.signer)
        assert len(got) == 2
        res = check_chain(r.signer, got, at=AT)
        assert res.checked and [s.subject for s in res.statuses] == [
            c.subject_cn for c in r.signer[:-1]
        ]
        # --no-rim-ocsp: RIMs only.
        assert _fetch_rims(url, tmp_path / "bare", "--no-rim-ocsp") == 0
        out = json.loads(capsys.readouterr().out)
        assert "rim_ocsp" not in out["files"]
        bare = RimSource.from_places(roots=[h.root_cert], cache_root=tmp_path / "bare")
        assert bare.cached_ocsp(bare.require("driver", "550.90.07", at=AT).signer) == []


def test_rim_signer_chain_completed_with_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyInfo order is not relied on, and a KeyInfo that stops below the root is completed
    with the root that issued its top CA, so that CA's OCSP response is fetched too."""
    h = make_hierarchy("partial")
    xml = make_rim(h, kind="driver", version="550.90.07", measurements={7: (True, [bytes(48)])})
    want = [c.fingerprint for c in h.pki_chain()]
    assert [c.fingerprint for c in fetch.rim_signer_chain(xml)] == want
    below_root = h.pki_chain()[:2]
    monkeypatch.setattr(fetch, "keyinfo_chain", lambda _xml: list(below_root))
    assert [c.fingerprint for c in fetch.rim_signer_chain(xml)] == want[:2]
    other = make_hierarchy("not-the-issuer").root_cert
    got = fetch.rim_signer_chain(xml, [other, h.root_cert])
    assert [c.fingerprint for c in got] == want
    monkeypatch.undo()
    with pytest.raises(SealgateError) as e:
        fetch.fetch_rim_ocsp(CollateralCache(Path("/nonexistent")), "http://127.0.0.1:1/", b"<x/>")
    assert e.value.code == "collateral.fetch.bad_response"
