"""`sealgate collateral fetch tdx`, `trust fetch tdx` and `verify tdx` against a loopback PCS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from urllib.parse import quote as urlquote

import pytest
from sealgate import tdx
from sealgate.cli import main
from sealgate.testing.tdx import DEFAULT_FMSPC, FakeIntel

from tests.vectors import project, shared


@contextmanager
def fake_pcs(
    intel: FakeIntel, ca_chain_pem: bytes | None = None
) -> Iterator[tuple[str, list[str]]]:
    """A loopback Intel PCS v4: bodies plus URL-encoded issuer-chain headers."""
    seen: list[str] = []
    tcb_chain = urlquote(intel.tcb_signing_chain.decode())
    from cryptography.hazmat.primitives import serialization

    default_chain = intel.pck_ca.public_bytes(serialization.Encoding.PEM) + intel.root_pem
    ca_chain = urlquote((ca_chain_pem or default_chain).decode())
    routes = {
        f"/tdx/certification/v4/tcb?fmspc={DEFAULT_FMSPC.hex().upper()}": (
            intel.pcs_tcb_info(),
            {"TCB-Info-Issuer-Chain": tcb_chain},
        ),
        "/tdx/certification/v4/qe/identity": (
            intel.pcs_qe_identity(),
            {"SGX-Enclave-Identity-Issuer-Chain": tcb_chain},
        ),
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": (
            intel.pck_crl(),
            {"SGX-PCK-CRL-Issuer-Chain": ca_chain},
        ),
        "/sgx/certification/v4/rootcacrl": (intel.root_crl().hex().encode(), {}),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, headers = routes[self.path]
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_collateral_fetch_then_verify_from_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intel = FakeIntel()
    qf = tmp_path / "q.bin"
    qf.write_bytes(intel.quote(b"n"))
    rf = tmp_path / "root.pem"
    rf.write_bytes(intel.root_pem)
    cache = tmp_path / "cache"
    with fake_pcs(intel) as (base, seen):
        rc = main(
            [
                "collateral",
                "fetch",
                "tdx",
                "--quote",
                str(qf),
                "--base-url",
                base,
                "--cache-dir",
                str(cache),
            ]
        )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["fmspc"] == DEFAULT_FMSPC.hex()
    assert len(seen) == 4
    assert (cache / "tdx" / DEFAULT_FMSPC.hex().upper() / "collateral.json").is_file()
    rc = main(["verify", "tdx", "--quote", str(qf), "--roots", str(rf), "--cache-dir", str(cache)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0, doc
    assert doc["platform"] == "tdx" and doc["claims"]["tcb_status"] == "UpToDate"


def test_collateral_fetch_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qf = tmp_path / "q.bin"
    qf.write_bytes(FakeIntel().quote(b"n"))
    rc = main(
        [
            "collateral",
            "fetch",
            "tdx",
            "--quote",
            str(qf),
            "--base-url",
            "http://127.0.0.1:9",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert rc == 1
    assert "collateral.fetch.unreachable" in capsys.readouterr().err


def test_trust_fetch_tdx_pins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fake root is refused (not pinned); Intel's real root is accepted."""
    intel = FakeIntel()
    with fake_pcs(intel) as (base, _):
        rc = main(["trust", "fetch", "tdx", "--base-url", base, "--trust-dir", str(tmp_path)])
    assert rc == 1
    assert "trust.import.unpinned" in capsys.readouterr().err
    real = shared("tdx", "roots", "Intel_SGX_Root_CA.pem").read_bytes()
    # A chain header carrying Intel's real root is accepted by the pin.
    with fake_pcs(intel, ca_chain_pem=real) as (base, seen):
        rc = main(["trust", "fetch", "tdx", "--base-url", base, "--trust-dir", str(tmp_path / "t")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    assert seen == ["/sgx/certification/v4/pckcrl?ca=platform&encoding=der"]
    assert [i["name"] for i in out["imported"]] == ["intel-sgx-root-ca"]
    # Verification from the trust dir (no --roots) then reaches the real root pin.
    q = shared("tdx", "dcapqvl-emr-v4", "tdx_quote").read_bytes()
    c = tdx.load_collateral_json(
        shared("tdx", "dcapqvl-emr-v4", "tdx_quote_collateral.json").read_bytes()
    )
    from datetime import UTC, datetime

    r = tdx.verify_quote(
        q, collateral=c, trust_dir=tmp_path / "t", at=datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)
    )
    assert r.verified, r.errors


def p(*parts: str) -> str:
    return str(project("tdx", *parts))


@pytest.mark.parametrize(
    ("args", "rc", "code"),
    [
        (["--quote", "malformed/truncated_header.bin"], 1, "tdx.format.truncated"),
        (["--quote", "quotes/v4_bad_binding.bin"], 1, "tdx.qe.binding_mismatch"),
        (["--quote", "quotes/v4.bin", "--at", "2047-01-01T00:00:00Z"], 1, "tdx.collateral.expired"),
        (["--quote", "quotes/v4.bin", "--at", "nope"], 2, "cli.usage.bad_time"),
        (
            ["--quote", "quotes/v4.bin", "--tcb-info", "collateral/tcb_info.json"],
            2,
            "cli.usage.missing",
        ),
        (["--quote", "quotes/v4.bin"], 0, None),
    ],
)
def test_verify_cli(
    args: list[str], rc: int, code: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", "tdx", "--roots", p("roots", "fake_intel_root.pem")]
    it = iter(args)
    for a in it:
        if a in ("--quote", "--tcb-info"):
            argv += [a, p(*next(it).split("/"))]
        elif a == "--at":
            argv += [a, next(it)]
    if "--tcb-info" not in args:
        argv += ["--collateral", p("collateral", "collateral.json")]
    assert main(argv) == rc
    out = capsys.readouterr().out
    if code:
        assert code in out
    if rc == 0:
        assert json.loads(out)["verified"] is True


def test_verify_cli_pcs_files(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "verify",
            "tdx",
            "--quote",
            p("quotes", "v5_tdx15.bin"),
            "--roots",
            p("roots", "fake_intel_root.pem"),
            "--tcb-info",
            p("collateral", "tcb_info.json"),
            "--qe-identity",
            p("collateral", "qe_identity.json"),
            "--tcb-signing-chain",
            p("collateral", "tcb_signing_chain.pem"),
            "--pck-crl",
            p("collateral", "pck_crl.der"),
            "--root-crl",
            p("collateral", "root_crl.der"),
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["claims"]["version"] == 5 and "mr_service_td" in doc["claims"]


def test_eventlog_replay_ccel(capsys: pytest.CaptureFixture[str]) -> None:
    f = shared("tdx", "gce-cos113-ccel", "ccel_data.dat")
    assert main(["eventlog", "replay", "--format", "ccel", str(f)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["rtmr0", "rtmr1", "rtmr2", "rtmr3"]
    assert doc["rtmr0"].startswith("3fa2f61f")


def test_verify_cli_bad_collateral_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    rc = main(
        [
            "verify",
            "tdx",
            "--quote",
            p("quotes", "v4.bin"),
            "--roots",
            p("roots", "fake_intel_root.pem"),
            "--collateral",
            str(bad),
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["errors"][0]["code"] == "tdx.collateral.invalid"
    assert doc["platform"] == "tdx"


def test_verify_cli_ccel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--ccel`: the GCE log replays to the quote's RTMRs; a changed digest is named."""
    g = ("tdx", "gce-cos113-ccel")
    quote, ccel = shared(*g, "cos-113-tdx-quote.dat"), shared(*g, "ccel_data.dat")
    roots = str(shared("tdx", "roots", "Intel_SGX_Root_CA.pem"))
    argv = ["verify", "tdx", "--quote", str(quote), "--roots", roots, "--ccel"]
    assert main([*argv, str(ccel)]) == 1  # no collateral ships with this vector
    doc = json.loads(capsys.readouterr().out)
    assert [e["code"] for e in doc["errors"]] == ["tdx.collateral.missing"]
    assert doc["claims"]["ccel"]["rtmr2"] == doc["claims"]["rtmr2"]
    bad = bytearray(ccel.read_bytes())
    from sealgate import _core

    events = _core.parse_event_log(bytes(bad), "tdx").events
    off = next(e[1] for e in events if e[0] > 0 and e[2] == 1 and e[3] != 3)
    bad[off + 14] ^= 0xFF
    f = tmp_path / "ccel.bin"
    f.write_bytes(bytes(bad))
    assert main([*argv, str(f)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["errors"][0]["code"] == "tdx.ccel.replay_mismatch"
    assert "RTMR0" in doc["errors"][0]["message"]


@pytest.mark.parametrize("evidence", [["tdx", "--quote"], ["snp", "--report"]])
def test_report_data_not_hex_is_one_code(
    evidence: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # One condition, one code across platforms: verify tdx used to say cli.usage.bad_hex.
    rc = main(["verify", *evidence, "/nonexistent", "--report-data", "zz"])
    out = capsys.readouterr().out
    assert rc == 2
    assert [e["code"] for e in json.loads(out)["errors"]] == ["cli.usage.bad_report_data"]
