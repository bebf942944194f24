"""Hostile certificates and CRLs in SNP evidence are refused with a code, fast, never raised.

Each case once escaped the verifier as a foreign exception (``cli.internal.error`` on the
command line, INTERNAL from the service) or took seconds of CPU before any signature check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sealgate.cli import main
from sealgate.pki import pem_blocks, to_pem
from sealgate.snp import verify_report
from sealgate.testing import hostile
from sealgate.testing.snp import VALID_AT, SyntheticNode

from tests.vectors import project

VCEK = project("sev-snp", "vcek-milan.der").read_bytes()
ASK = pem_blocks(project("sev-snp", "ask-milan.pem").read_bytes())[0]
ARK = project("sev-snp", "ark-milan.pem").read_bytes()
CRL = project("sev-snp", "crl-milan.der").read_bytes()
NO_TRUST = Path("/nonexistent/sealgate-trust")
#: CPU seconds one refusal may take (the quadratic OID decoder needed ~5 s for these inputs).
BOUND = 0.5
ASK_CHAIN = to_pem(ASK) + ARK

#: name → (vcek, cert_chain, crl) as a hostile node would send them.
CASES: dict[str, Callable[[], tuple[bytes, bytes, bytes | None]]] = {
    "vcek integer of 4,800 digits": lambda: (hostile.vcek_huge_spl(VCEK), ASK_CHAIN, None),
    "vcek oid arc of 6,300 digits": lambda: (
        hostile.vcek_long_oid_extension(VCEK),
        ASK_CHAIN,
        None,
    ),
    "ask serial of 4,800 digits": lambda: (VCEK, to_pem(hostile.huge_serial(ASK)) + ARK, None),
    "ask key of an unknown algorithm": lambda: (
        VCEK,
        to_pem(hostile.unknown_key_algorithm(ASK)) + ARK,
        None,
    ),
    "crl oid of 200 KB": lambda: (VCEK, ASK_CHAIN, hostile.crl_long_oid(CRL, 200_000)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_certificate_is_refused(case: str) -> None:
    vcek, chain, crl = CASES[case]()
    report = SyntheticNode.load().report(b"hostile")
    t0 = time.process_time()
    res = verify_report(
        report, vcek=vcek, cert_chain=chain, roots=[ARK], crl=crl, at=VALID_AT, trust_dir=NO_TRUST
    )
    assert time.process_time() - t0 < BOUND
    assert not res.verified
    assert [e.code for e in res.errors] == ["x509.format.invalid"], res.errors


def test_genuine_inputs_still_verify() -> None:
    """The same report with the unedited certificates verifies: the edits are what fail."""
    res = verify_report(
        SyntheticNode.load().report(b"hostile"),
        vcek=VCEK,
        cert_chain=ASK_CHAIN,
        roots=[ARK],
        crl=CRL,
        at=VALID_AT,
        trust_dir=NO_TRUST,
    )
    assert res.verified, res.errors


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_prints_one_json_refusal(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vcek, chain, crl = CASES[case]()
    files = {"report": SyntheticNode.load().report(b"x"), "vcek": vcek, "chain": chain}
    files["ark"] = ARK
    if crl is not None:
        files["crl"] = crl
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    argv = [
        "verify", "snp", "--report", str(tmp_path / "report"), "--vcek", str(tmp_path / "vcek"),
        "--cert-chain", str(tmp_path / "chain"), "--roots", str(tmp_path / "ark"),
        "--at", VALID_AT.isoformat(), "--trust-dir", str(NO_TRUST),
        *(["--crl", str(tmp_path / "crl")] if crl is not None else []),
    ]  # fmt: skip
    rc = main(argv)
    out = capsys.readouterr()
    doc = json.loads(out.out)  # exactly one JSON document
    assert rc == 1, out.err
    assert doc["verified"] is False
    assert [e["code"] for e in doc["errors"]] == ["x509.format.invalid"]
    assert "internal" not in out.err


def test_amd_extension_values() -> None:
    """A well-formed AMD extension value AMD does not allow is ``snp.vcek.bad_extension``;
    malformed DER inside one is a format error like any other in the certificate."""
    from sealgate.errors import ParseError
    from sealgate.pki import load_certificate
    from sealgate.snp.certs import parse_endorsement_key
    from sealgate.testing.snp import AMD, integer, octets, oid

    def with_value(ext_oid: str, value: bytes) -> bytes:
        path = hostile.extension_path(VCEK, oid(ext_oid))
        return hostile.edit(VCEK, (*path, 1), lambda _: octets(value))

    cases = {
        "snp.vcek.bad_extension": [
            with_value(f"{AMD}.3.1", integer(300)),  # blSPL is one byte
            with_value(f"{AMD}.2", octets(b"Milan-B0")),  # productName is a string
        ],
        "x509.format.invalid": [
            with_value(f"{AMD}.3.1", hostile.huge_integer()),
            with_value(f"{AMD}.3.1", octets(b"\x04")),  # not an INTEGER
            with_value(f"{AMD}.3.1", integer(4) + b"\x00"),  # not one DER value
        ],
    }
    assert parse_endorsement_key(load_certificate(VCEK)).bl_spl == 4
    for code, certs in cases.items():
        for der in certs:
            with pytest.raises(ParseError) as e:
                parse_endorsement_key(load_certificate(der))
            assert e.value.code == code, e.value
