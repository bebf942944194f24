"""Coverage-guided (atheris / libFuzzer) long run of the Python X.509 paths.

The same entry points as ``tests/fuzz/test_der_fuzz.py`` (which CI runs briefly with
Hypothesis): the PKI layer's parser, the SNP certificate table / VCEK / chain / CRL, the TDX PCK
chain and collateral CRLs. Any exception other than ``sealgate.errors.SealgateError`` is a
finding; libFuzzer's ``-timeout`` catches slow inputs. See README.md in this directory.

    python fuzz/python/fuzz_x509.py TARGET --seed DIR    # write the seed corpus
    python fuzz/python/fuzz_x509.py TARGET DIR [libFuzzer flags]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["sealgate"]):
    from sealgate import snp, tdx
    from sealgate.errors import SealgateError
    from sealgate.pki import load_certificate, load_crl, pem_blocks, to_pem
    from sealgate.snp.certtable import build_cert_table, parse_cert_table
    from sealgate.tdx.collateral import load_collateral_json
    from sealgate.testing.hostile import HostileIntel
    from sealgate.testing.snp import VALID_AT, SyntheticNode
    from sealgate.testing.tdx import Platform

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "sev-snp"
NO_TRUST = Path("/nonexistent/sealgate-trust")
ASK, ARK = pem_blocks((VECTORS / "cert_chain-milan.pem").read_bytes())
ARK_PEM = (VECTORS / "ark-milan.pem").read_bytes()
REPORT = SyntheticNode.load().report(b"fuzz")
INTEL = HostileIntel(seed=b"fuzz")
_, PCK_CHAIN = INTEL.pck_chain(Platform())
PCK_DERS = pem_blocks(PCK_CHAIN.rstrip(b"\x00"))
ROOTS = [load_certificate(INTEL.root_der)]
ROOTS_KEY = (ROOTS[0].fingerprint,)


def der(data: bytes) -> None:
    try:
        cert = load_certificate(data)
        _ = (cert.subject_cn, cert.is_ca(), cert.key_type, cert.extensions)
        cert.amd_extensions()
        cert.public_key()
    except SealgateError:
        pass
    try:
        load_crl(data)
    except SealgateError:
        pass


def snp_vcek(data: bytes) -> None:
    snp.verify_report(  # a fresh verifier per call: no chain cached from an earlier input
        REPORT,
        vcek=data,
        cert_chain=to_pem(ASK) + to_pem(ARK),
        roots=[ARK_PEM],
        at=VALID_AT,
        trust_dir=NO_TRUST,
    )


def snp_crl(data: bytes) -> None:
    vcek = (VECTORS / "vcek-milan.der").read_bytes()
    snp.verify_report(
        REPORT,
        vcek=vcek,
        cert_chain=to_pem(ASK) + to_pem(ARK),
        crl=data,
        roots=[ARK_PEM],
        at=VALID_AT,
        trust_dir=NO_TRUST,
    )


def cert_table(data: bytes) -> None:
    try:
        parse_cert_table(data)
    except SealgateError:
        pass
    snp.verify_tsm_evidence(REPORT, data, roots=[ARK_PEM], at=VALID_AT, trust_dir=NO_TRUST)


def tdx_chain(data: bytes) -> None:
    """First byte 0-2: the rest replaces that certificate's DER (re-encoded as PEM, so the
    mutations reach the PKI layer's DER parser); otherwise the rest is the chain's PEM."""
    if not data:
        return
    chain = data[1:]
    if data[0] < len(PCK_DERS):
        ders = list(PCK_DERS)
        ders[data[0]] = data[1:]
        chain = b"".join(to_pem(d) for d in ders) + b"\x00"
    try:
        tdx.TdxVerifier().pck_info(chain, ROOTS, ROOTS_KEY)
    except SealgateError:
        pass


def tdx_crl(data: bytes) -> None:
    try:
        coll = load_collateral_json(INTEL.collateral_with(pck_crl=data.hex()))
        verifier = tdx.TdxVerifier()
        verifier.verified(coll, ROOTS, ROOTS_KEY)
        verifier.pck_crl(coll, verifier.pck_info(PCK_CHAIN, ROOTS, ROOTS_KEY))
    except SealgateError:
        pass


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "der": (der, lambda: [(VECTORS / n).read_bytes() for n in ("vcek-milan.der", "crl-milan.der")]),
    "snp_vcek": (snp_vcek, lambda: [(VECTORS / "vcek-milan.der").read_bytes()]),
    "snp_crl": (snp_crl, lambda: [(VECTORS / "crl-milan.der").read_bytes()]),
    "cert_table": (
        cert_table,
        lambda: [build_cert_table({"vcek": (VECTORS / "vcek-milan.der").read_bytes(), "ask": ASK})],
    ),
    "tdx_chain": (
        tdx_chain,
        lambda: [bytes([i]) + d for i, d in enumerate(PCK_DERS)] + [b"\xff" + PCK_CHAIN],
    ),
    "tdx_crl": (tdx_crl, lambda: [INTEL.pck_crl(), INTEL.root_crl()]),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [--seed DIR | DIR flags...]")
    fn, seeds = TARGETS[sys.argv.pop(1)]
    if sys.argv[1:2] == ["--seed"]:
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(seeds()):
            (out / f"seed-{i}").write_bytes(s)
        return
    atheris.Setup(sys.argv, fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
