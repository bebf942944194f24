"""``sealgate verify snp`` and ``sealgate collateral fetch snp``: JSON and exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sealgate.cli import main
from sealgate.node.tsm import FakeTsm
from sealgate.snp import verify_report
from sealgate.snp.certtable import parse_cert_table
from sealgate.testing.snp import CHIP_A, VALID_AT, SyntheticNode

from tests.httpserver import serve_dir
from tests.vectors import project, shared

AT = VALID_AT.isoformat().replace("+00:00", "Z")
NO_TRUST = "/nonexistent/sealgate-trust"


def p(name: str) -> str:
    return str(project("sev-snp", name))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None]:
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else None)


def base(report: str = "report-v5.bin") -> list[str]:
    return [
        "verify", "snp", "--report", p(report), "--vcek", p("vcek-milan.der"),
        "--cert-chain", p("cert_chain-milan.pem"), "--roots", p("ark-milan.pem"),
        "--at", AT, "--trust-dir", NO_TRUST,
    ]  # fmt: skip


def test_verified_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = cli(capsys, *base(), "--crl", p("crl-milan.der"), "--product", "Milan")
    assert rc == 0 and doc is not None
    assert doc["verified"] is True and doc["platform"] == "snp" and doc["errors"] == []
    for k in ("version", "product", "measurement", "report_data", "host_data", "chip_id", "vmpl",
              "guest_svn", "policy", "platform_info", "reported_tcb", "current_tcb",
              "committed_tcb", "launch_tcb", "signing_key", "family_id", "image_id",
              "id_key_digest", "author_key_digest"):  # fmt: skip
        assert k in doc["claims"], k
    assert doc["claims"]["chip_id"] == CHIP_A.hex()


def test_rejected_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = cli(capsys, *base("report-v5-tcb-mismatch.bin"))
    assert rc == 1 and doc is not None
    assert [e["code"] for e in doc["errors"]] == ["snp.vcek.tcb_mismatch"]
    rc, doc = cli(capsys, *base("malformed-truncated.bin"))
    assert rc == 1 and doc is not None
    assert doc["errors"][0]["code"] == "snp.format.truncated"


def test_roots_directory_and_report_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d = tmp_path / "roots"
    d.mkdir()
    (d / "ark.pem").write_bytes(project("sev-snp", "ark-milan.pem").read_bytes())
    argv = base()
    argv[argv.index("--roots") + 1] = str(d)
    want = json.loads(project("sev-snp", "expected.json").read_text())["report-v5.bin"]
    rc, _ = cli(capsys, *argv, "--report-data", want["report_data"])
    assert rc == 0
    rc, doc = cli(capsys, *argv, "--report-data", "00")
    assert rc == 1 and doc is not None
    assert doc["errors"][0]["code"] == "snp.report.report_data_mismatch"


@pytest.mark.parametrize(
    "extra",
    [
        ["--at", "yesterday"],
        ["--at", "2026-01-01T00:00:00"],  # no offset
        ["--report-data", "zz"],
        ["--product", "Rome"],
        ["--crl", "/nonexistent/crl"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    try:
        rc = main([*base(), *extra])
    except SystemExit as e:  # argparse rejects before the handler runs
        rc = int(str(e.code))
    assert rc == 2


def test_unreadable_report_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = base()
    argv[argv.index("--report") + 1] = "/nonexistent/report"
    assert main(argv) == 2


def _kds_tree(root: Path, node: SyntheticNode) -> None:
    """Files where AMD KDS serves them, for the synthetic Milan chip A."""
    d = root / "vcek" / "v1" / "Milan"
    d.mkdir(parents=True)
    t = node.tcb
    q = f"blSPL={t.bootloader}&teeSPL={t.tee}&snpSPL={t.snp}&ucodeSPL={t.microcode}"
    (d / f"{CHIP_A.hex()}?{q}").write_bytes(node.vcek_der)
    (d / "cert_chain").write_bytes(node.cert_chain)
    (d / "crl").write_bytes(project("sev-snp", "crl-milan.der").read_bytes())


def test_collateral_fetch_then_offline_verify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    node = SyntheticNode.load()
    _kds_tree(tmp_path / "kds", node)
    cache = tmp_path / "cache"
    with serve_dir(tmp_path / "kds") as s:
        rc, doc = cli(
            capsys, "collateral", "fetch", "snp", "--report", p("report-v5.bin"),
            "--base-url", s.base_url, "--cache-dir", str(cache),
        )  # fmt: skip
    assert rc == 0 and doc is not None
    assert set(doc["files"]) == {"vcek", "cert_chain", "crl"}
    assert s.requests[0] == (
        f"/vcek/v1/Milan/{CHIP_A.hex()}?blSPL=4&teeSPL=0&snpSPL=22&ucodeSPL=213"
    )
    # Offline: report only, VCEK + chain + CRL from the cache, root given explicitly.
    rc, doc = cli(
        capsys, "verify", "snp", "--report", p("report-v5.bin"), "--cache-dir", str(cache),
        "--roots", p("ark-milan.pem"), "--at", AT, "--trust-dir", NO_TRUST,
    )  # fmt: skip
    assert rc == 0, doc
    assert doc is not None and doc["claims"]["endorsement_key"]["crl_checked"] is True


def test_collateral_fetch_turin_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = shared("sev-snp", "openanolis-turin-v5", "turin-report.bin")
    d = tmp_path / "kds" / "vcek" / "v1" / "Turin"
    d.mkdir(parents=True)
    vcek = shared("sev-snp", "openanolis-turin-v5", "turin-vcek.der").read_bytes()
    (d / "0910b4f884ff4ba9?fmcSPL=1&blSPL=3&teeSPL=2&snpSPL=5&ucodeSPL=97").write_bytes(vcek)
    chain = shared("sev-snp", "roots", "go-sev-guest-kds-bundles", "ask_ark_turin_vcek.pem")
    (d / "cert_chain").write_bytes(chain.read_bytes())
    with serve_dir(tmp_path / "kds") as s:
        rc, doc = cli(
            capsys, "collateral", "fetch", "snp", "--report", str(report), "--no-crl",
            "--base-url", s.base_url, "--cache-dir", str(tmp_path / "cache"),
        )  # fmt: skip
    assert rc == 0, doc
    res = verify_report(
        report.read_bytes(),
        cache_dir=tmp_path / "cache",
        at=VALID_AT.replace(year=2026, month=7),
        trust_dir=Path(NO_TRUST),
    )
    assert res.verified, res.errors


def test_collateral_fetch_404_is_rejected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "kds").mkdir()
    with serve_dir(tmp_path / "kds") as s:
        rc = main(["collateral", "fetch", "snp", "--report", p("report-v5.bin"),
                   "--base-url", s.base_url, "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    assert rc == 1
    assert "collateral.fetch.not_found" in capsys.readouterr().err


def test_offline_without_cached_vcek(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, doc = cli(
        capsys, "verify", "snp", "--report", p("report-v5.bin"), "--cache-dir", str(tmp_path),
        "--trust-dir", NO_TRUST,
    )  # fmt: skip
    assert rc == 1 and doc is not None
    assert doc["errors"][0]["code"] == "snp.collateral.vcek_missing"


def test_configfs_tsm_node_to_verifier(tmp_path: Path) -> None:
    """A node collects through (fake) configfs-tsm; the verifier accepts the evidence."""
    node = SyntheticNode.load()
    tsm = FakeTsm(tmp_path / "tsm", node.tsm_responder(), platform="snp")
    rd = bytes.fromhex("ab" * 64)
    ev = tsm.collect(rd)
    assert ev.auxblob is not None
    res = verify_report(
        ev.outblob,
        vcek=parse_cert_table(ev.auxblob)["vcek"],
        cert_chain=node.cert_chain,
        roots=[node.ark_pem],
        report_data=rd,
        trust_dir=Path(NO_TRUST),
    )
    assert res.verified, res.errors


def test_tsm_evidence_with_full_cert_table(tmp_path: Path) -> None:
    from sealgate.pki import load_certificates
    from sealgate.snp import verify_tsm_evidence
    from sealgate.snp.certtable import build_cert_table

    node = SyntheticNode.load()
    ask, ark = load_certificates(node.cert_chain)
    aux = build_cert_table({"vcek": node.vcek_der, "ask": ask.der, "ark": ark.der})
    rd = bytes(64)
    res = verify_tsm_evidence(
        node.report(rd), aux, roots=[node.ark_pem], report_data=rd, trust_dir=Path(NO_TRUST)
    )
    assert res.verified, res.errors
    bad = verify_tsm_evidence(node.report(rd), b"\x01" * 10, trust_dir=Path(NO_TRUST))
    assert [e.code for e in bad.errors] == ["snp.format.truncated"]


def test_verification_from_threads_releases_the_gil() -> None:
    from concurrent.futures import ThreadPoolExecutor

    node = SyntheticNode.load()
    reports = [node.report(bytes([i]) * 64) for i in range(32)]

    def one(r: bytes) -> bool:
        return verify_report(
            r, vcek=node.vcek_der, cert_chain=node.cert_chain, roots=[node.ark_pem],
            trust_dir=Path(NO_TRUST),
        ).verified  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, reports))
