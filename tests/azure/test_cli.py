"""``sealgate verify azure`` and ``verify snp --vcek`` with Azure's VCEK bundle: JSON and
exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sealgate.cli import main

from tests.azure.common import az, milan_chain, read
from tests.vectors import shared

AT = "2025-06-01T00:00:00Z"
NONCE = b"challenge".hex()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, json.loads(out)


def s(*parts: str) -> str:
    return str(az(*parts))


def snp_roots() -> list[str]:
    chain = shared("sev-snp", "roots", "go-sev-guest-kds-bundles", "ask_ark_milan.pem")
    ark = shared("sev-snp", "roots", "virtee-builtin", "milan_ark.pem")
    return ["--cert-chain", str(chain), "--roots", str(ark)]


def common(tmp_path: Path) -> list[str]:
    return ["--at", AT, "--trust-dir", str(tmp_path / "trust"), "--cache-dir", str(tmp_path)]


def test_evidence_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ev = s("snp-milan-v3-vm26f8", "evidence-v1.json")
    args = ["verify", "azure", "--evidence", ev, *snp_roots(), *common(tmp_path)]
    rc, doc = cli(capsys, *args, "--nonce", NONCE)
    assert rc == 0 and doc["verified"] and doc["platform"] == "azure-snp"
    assert set(doc["claims"]) == {"hcl", "runtime_data", "snp", "tpm"}
    assert doc["claims"]["runtime_data"]["ak_jwk_thumbprint"]
    rc, doc = cli(capsys, *args, "--nonce", "00")
    assert rc == 1 and [e["code"] for e in doc["errors"]] == ["tpm.quote.nonce_mismatch"]


def test_parts_with_quote_bin(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = "snp-milan-v2-vmee96"
    rc, doc = cli(
        capsys, "verify", "azure", "--hcl-report", s(d, "hcl-report.bin"),
        "--quote", s(d, "quote.bin"), "--vcek", s(d, "vcek.pem"), *snp_roots(),
        "--nonce", NONCE, *common(tmp_path),
    )  # fmt: skip
    assert rc == 0, doc["errors"]


def test_parts_with_tpms_attest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = "snp-milan-v3-vm26f8"
    base = [
        "verify", "azure", "--hcl-report", s(d, "derived", "hcl-report.bin"),
        "--vcek", s(d, "derived", "vcek.der"), *snp_roots(), *common(tmp_path),
    ]  # fmt: skip
    quote = ["--quote", s(d, "derived", "tpm-quote.tpms_attest")]
    sig = ["--signature", s(d, "derived", "tpm-quote.sig")]
    pcrs = ["--pcrs", s(d, "derived", "pcrs-sha256.json")]
    rc, doc = cli(capsys, *base, *quote, *sig, *pcrs, "--nonce", NONCE)
    assert rc == 0, doc["errors"]
    assert doc["claims"]["tpm"]["pcrs"]["sha256"]["0"].startswith("e15c4479")
    # Without PCR values: as `verify tpm`.
    rc, doc = cli(capsys, *base, *quote, *sig, "--nonce", NONCE)
    assert rc == 1 and [e["code"] for e in doc["errors"]] == ["tpm.quote.pcr_missing"]
    # Without the quote: the hardware part verifies, the claims say the quote was not.
    rc, doc = cli(capsys, *base)
    assert rc == 0 and doc["claims"]["tpm"] == {"quote_checked": False}
    # With a user data expectation.
    rc, doc = cli(capsys, *base, "--user-data", "01")
    assert rc == 1
    assert [e["code"] for e in doc["errors"]] == ["azure.runtime_data.user_data_mismatch"]


def test_tdx(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = "tdx-vmbc4f"
    root = str(shared("tdx", "roots", "Intel_SGX_Root_CA.pem"))
    base = [
        "verify", "azure", "--hcl-report", s(d, "hcl-report.bin"), "--roots", root,
        *common(tmp_path),
    ]  # fmt: skip
    rc, doc = cli(
        capsys, *base, "--quote", s(d, "quote.bin"), "--td-quote", s(d, "td-quote.bin"),
        "--nonce", NONCE,
    )  # fmt: skip
    assert rc == 0, doc["errors"]
    assert doc["platform"] == "azure-tdx" and doc["claims"]["tdx"]["tcb_evaluated"] is False
    rc, doc = cli(capsys, *base)
    assert rc == 1 and [e["code"] for e in doc["errors"]] == ["azure.hcl.td_quote_missing"]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--nonce", "zz"], "cli.usage.bad_nonce"),
        (["--user-data", "zz"], "cli.usage.bad_user_data"),
        (["--user-data", "00" * 65], "cli.usage.bad_user_data"),
        (["--at", "yesterday"], "cli.usage.bad_time"),
        (["--signature", "/dev/null"], "cli.usage.missing"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], code: str
) -> None:
    hcl = s("snp-milan-v3-vm26f8", "derived", "hcl-report.bin")
    rc, doc = cli(capsys, "verify", "azure", "--hcl-report", hcl, *extra)
    assert rc == 2 and doc["errors"][0]["code"] == code


def test_conflicts(capsys: pytest.CaptureFixture[str]) -> None:
    ev = s("snp-milan-v3-vm26f8", "evidence-v1.json")
    d = "snp-milan-v2-vmee96"
    rc, doc = cli(capsys, "verify", "azure", "--evidence", ev, "--quote", s(d, "quote.bin"))
    assert rc == 2 and doc["errors"][0]["code"] == "cli.usage.conflict"
    rc, doc = cli(
        capsys, "verify", "azure", "--hcl-report", s(d, "hcl-report.bin"),
        "--quote", s(d, "quote.bin"), "--signature", s(d, "derived", "tpm-quote.sig"),
    )  # fmt: skip
    assert rc == 2 and doc["errors"][0]["code"] == "cli.usage.conflict"


def test_malformed_inputs_are_rejections(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"version": 1, "hcl_report": 5}')
    rc, doc = cli(capsys, "verify", "azure", "--evidence", str(bad))
    assert rc == 1 and doc["errors"][0]["code"] == "azure.evidence.invalid"
    short = tmp_path / "short.bin"
    short.write_bytes(b"HCLA")
    rc, doc = cli(capsys, "verify", "azure", "--hcl-report", str(short))
    assert rc == 1 and doc["platform"] == "azure"
    assert doc["errors"][0]["code"] == "azure.hcl.truncated"


# --- verify snp --vcek with Azure's bundle ---------------------------------------------------


def snp_args(tmp_path: Path, vcek: Path) -> list[str]:
    ark = shared("sev-snp", "roots", "virtee-builtin", "milan_ark.pem")
    return [
        "verify", "snp", "--report", s("snp-milan-v3-vm26f8", "derived", "snp-report.bin"),
        "--vcek", str(vcek), "--roots", str(ark), "--at", AT,
        "--trust-dir", str(tmp_path / "trust"),
    ]  # fmt: skip


def vcek_pem() -> bytes:
    from sealgate.pki import to_pem

    return to_pem(read("snp-milan-v3-vm26f8", "derived", "vcek.der"))


def test_verify_snp_takes_the_vcek_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle = tmp_path / "vcek-bundle.pem"
    bundle.write_bytes(vcek_pem() + milan_chain())  # VCEK, ASK, ARK as Azure serves them
    rc, doc = cli(capsys, *snp_args(tmp_path, bundle))
    assert rc == 0, doc["errors"]
    assert doc["claims"]["endorsement_key"]["intermediate"] == "SEV-Milan"


def test_verify_snp_bundle_bounds(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bundle = tmp_path / "vcek-bundle.pem"
    bundle.write_bytes(vcek_pem() + milan_chain() * 3)  # 7 certificates
    rc, doc = cli(capsys, *snp_args(tmp_path, bundle))
    assert rc == 1 and doc["errors"][0]["code"] == "snp.chain.too_many_certificates"
    bundle.write_bytes(vcek_pem() + b"padding\n" + milan_chain())
    rc, doc = cli(capsys, *snp_args(tmp_path, bundle))
    assert rc == 1 and doc["errors"][0]["code"] == "x509.format.trailing_bytes"
    # A bundle whose first certificate is not the VCEK: the ASK as leaf fails as such.
    bundle.write_bytes(milan_chain() + vcek_pem())
    rc, doc = cli(capsys, *snp_args(tmp_path, bundle))
    assert rc == 1 and doc["errors"]
