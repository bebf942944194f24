"""Property fuzzing of the Python X.509 paths: the PKI layer's parser and signature checks
(``sealgate.pki``), the SNP certificate table / VCEK / chain / CRL entry points, and the TDX
PCK chain and collateral parsing (``sealgate.pki`` underneath).

Every target gets random bytes and mutated valid inputs (flips, inserts, deletions,
truncations, duplicated ranges) and must either succeed or raise the project's error type,
never another exception, within a CPU-time bound per call. Example counts are small so CI
stays quick; ``SEALGATE_FUZZ_EXAMPLES=20000`` runs each target longer (the coverage-guided
long run is described in ``fuzz/python/README.md``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate import pki, snp, tdx
from sealgate.errors import ParseError, SealgateError
from sealgate.pki import (
    ChainVerifier,
    load_certificate,
    load_certificates,
    load_crl,
    pem_blocks,
    to_pem,
)
from sealgate.snp.certs import AmdChainVerifier, parse_endorsement_key
from sealgate.snp.certtable import build_cert_table, parse_cert_table
from sealgate.tdx.collateral import load_collateral_json
from sealgate.tdx.pck import chain_verifier, load_pem_chain, verify_chain
from sealgate.testing import hostile
from sealgate.testing.hostile import HostileIntel, long_oid
from sealgate.testing.snp import VALID_AT, SyntheticNode, tlv
from sealgate.testing.tdx import Platform

from tests.vectors import project

EXAMPLES = int(os.environ.get("SEALGATE_FUZZ_EXAMPLES", "120"))
#: CPU seconds a single call may take. Honest work on these inputs is milliseconds; the
#: quadratic OID decoder this guards against needed seconds for a few hundred KB.
BOUND = 1.0
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NO_TRUST = Path("/nonexistent/sealgate-trust")

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> T:
    """``fn()``, failing the test when it takes more than ``BOUND`` CPU seconds."""
    t0 = time.process_time()
    try:
        return fn()
    finally:
        spent = time.process_time() - t0
        assert spent < BOUND, f"{spent:.2f} s of CPU"


def bounded(fn: Callable[[], T], allowed: type[Exception] = SealgateError) -> T | None:
    """``timed(fn)``: the project's error is a verdict (None); any other exception fails
    the test."""
    try:
        return timed(fn)
    except allowed:
        return None


# --- seeds -------------------------------------------------------------------------------


def _vector(name: str) -> bytes:
    return project("sev-snp", name).read_bytes()


VCEK = _vector("vcek-milan.der")
ASK, ARK = pem_blocks(_vector("cert_chain-milan.pem"))
ARK_PEM = _vector("ark-milan.pem")
CRL = _vector("crl-milan.der")
SNP_CERTS = [VCEK, _vector("vlek-milan.der"), _vector("vcek-turin.der"), ASK, ARK]
REPORT = SyntheticNode.load().report(b"fuzz")

INTEL = HostileIntel(seed=b"fuzz")
_, PCK_CHAIN = INTEL.pck_chain(Platform())
PCK_DERS = pki.pem_blocks(PCK_CHAIN.rstrip(b"\x00"))
TCB_DERS = pki.pem_blocks(INTEL.tcb_signing_chain)
ROOTS = [pki.load_certificate(INTEL.root_der)]
ROOTS_KEY = (ROOTS[0].fingerprint,)
PCK_CRL = INTEL.pck_crl()
ROOT_CRL = INTEL.root_crl()
QUOTE = INTEL.quote(b"fuzz")
#: The same hierarchy, carrying whatever chain a test puts into its quotes.
CARRIER = HostileIntel(seed=b"fuzz")


# --- mutations ---------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed after 1-4 edits: flip, set, insert, delete, duplicate a range, truncate."""
    b = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "cut"]))
        if op == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            b[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x84, 0xFF, 0x30, 0x06]))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[i : i + draw(st.integers(1, 16))]
        elif op == "dup":
            j = draw(st.integers(i, min(len(b), i + 64)))
            b[j:j] = b[i:j]
        else:
            del b[i:]
    return bytes(b)


def der_tree(max_leaves: int = 12) -> st.SearchStrategy[bytes]:
    """Well-formed DER of random shape: the tags X.509 uses, long OIDs, big INTEGERs and
    deep nesting, so the reader's bounds (not only its framing checks) are exercised."""
    leaf = st.one_of(
        st.builds(lambda b: tlv(0x02, b), st.binary(min_size=1, max_size=80)),
        st.builds(lambda n: long_oid(n), st.integers(2, 400)),
        st.builds(lambda b: tlv(0x06, b), st.binary(min_size=1, max_size=16)),
        st.builds(lambda b: tlv(0x03, b"\x00" + b), st.binary(max_size=40)),
        st.builds(lambda b: tlv(0x04, b), st.binary(max_size=40)),
        st.just(b"\x05\x00"),
        st.just(tlv(0x17, b"250101000000Z")),
    )
    return st.recursive(
        leaf,
        lambda kids: st.builds(
            lambda tag, xs: tlv(tag, b"".join(xs)),
            st.sampled_from([0x30, 0x31, 0xA0, 0xA3]),
            st.lists(kids, max_size=4),
        ),
        max_leaves=max_leaves,
    )


ANY_DER = st.one_of(st.binary(max_size=600), der_tree(), mutated(SNP_CERTS))


# --- the PKI layer's parser --------------------------------------------------------------

#: Every signature algorithm the PKI layer verifies, so the fuzzed signatures get checked
#: whatever they claim.
ANY_ALGORITHM = ChainVerifier(
    [f"{k}-{h}" for k in ("rsa-pkcs1", "rsa-pss", "ecdsa") for h in ("sha256", "sha384", "sha512")]
)


@FUZZ
@given(ANY_DER)
def test_der_parser(data: bytes) -> None:
    """Well-formed DER of any shape, random and mutated bytes: parsed or refused fast."""
    bounded(lambda: load_certificate(data), ParseError)
    bounded(lambda: load_crl(data), ParseError)


@FUZZ
@given(st.integers(1, 4 << 20))
def test_long_oids_are_bounded(arc_octets: int) -> None:
    """A CRL whose OIDs have one arc of any length up to the CRL cap is refused fast."""
    bounded(lambda: load_crl(hostile.crl_long_oid(CRL, arc_octets)), ParseError)


def _use_certificate(data: bytes) -> None:
    """Parse, then touch everything verification reads from a certificate."""
    cert = load_certificate(data)
    _ = (cert.fingerprint, cert.subject_cn, cert.issuer_cn, cert.is_ca(), cert.key_type)
    _ = (cert.extensions, cert.basic_constraints, cert.key_usage, cert.serial)
    cert.amd_extensions()
    cert.public_key()
    ANY_ALGORITHM.check_signed(cert, cert)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated(SNP_CERTS)))
def test_certificate(data: bytes) -> None:
    bounded(lambda: _use_certificate(data))
    bounded(lambda: parse_endorsement_key(load_certificate(data)))
    bounded(lambda: load_certificates(to_pem(data) + to_pem(ARK)), ParseError)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated([CRL])))
def test_crl(data: bytes) -> None:
    crl = bounded(lambda: load_crl(data), ParseError)
    if crl is not None:
        ark = load_certificate(ARK)
        bounded(lambda: AmdChainVerifier().check_crl(crl, ark, VALID_AT))
        _ = (crl.revoked, crl.revokes(ark))


# --- SNP entry points --------------------------------------------------------------------

TABLE = build_cert_table({"vcek": VCEK, "ask": ASK, "ark": ARK})


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutated([TABLE])))
def test_cert_table(data: bytes) -> None:
    bounded(lambda: parse_cert_table(data), ParseError)
    # The full path a node's configfs-tsm evidence takes: never raises, only fails.
    res = timed(
        lambda: snp.verify_tsm_evidence(
            REPORT, data, roots=[ARK_PEM], at=VALID_AT, trust_dir=NO_TRUST
        )
    )
    assert all(e.code.count(".") >= 2 for e in res.errors)


@FUZZ
@given(
    st.sampled_from(["vcek", "ask", "crl"]),
    st.one_of(st.binary(max_size=400), mutated([*SNP_CERTS, CRL])),
)
def test_snp_chain(slot: str, data: bytes) -> None:
    """A hostile VCEK, intermediate or CRL in ``verify_report``: a result, never a raise."""
    vcek, chain, crl = VCEK, to_pem(ASK) + to_pem(ARK), None
    if slot == "vcek":
        vcek = data
    elif slot == "ask":
        chain = to_pem(data) + to_pem(ARK)
    else:
        crl = data
    res = timed(
        lambda: snp.verify_report(
            REPORT,
            vcek=vcek,
            cert_chain=chain,
            crl=crl,
            roots=[ARK_PEM],
            at=VALID_AT,
            trust_dir=NO_TRUST,
        )
    )
    assert all(e.code.count(".") >= 2 for e in res.errors)


# --- TDX entry points --------------------------------------------------------------------


def _pem_chain(ders: list[bytes]) -> bytes:
    return b"".join(to_pem(d) for d in ders) + b"\x00"


@st.composite
def pck_chain_bytes(draw: st.DrawFn) -> bytes:
    """The quote's PCK chain with one certificate's DER mutated (re-encoded as PEM, so the
    edit reaches the PKI layer's DER parser), or its PEM text mutated."""
    if draw(st.booleans()):
        return draw(mutated([PCK_CHAIN]))
    ders = list(PCK_DERS)
    i = draw(st.integers(0, len(ders) - 1))
    ders[i] = draw(mutated([ders[i]]))
    return _pem_chain(ders)


@FUZZ
@given(pck_chain_bytes())
def test_pck_chain(chain: bytes) -> None:
    bounded(lambda: load_pem_chain(chain, "fuzz"))
    bounded(lambda: tdx.TdxVerifier().pck_info(chain, ROOTS, ROOTS_KEY))


@FUZZ
@given(st.integers(0, len(TCB_DERS) - 1), mutated(TCB_DERS))
def test_tcb_signing_chain(i: int, der: bytes) -> None:
    ders = list(TCB_DERS)
    ders[i] = der
    chain = _pem_chain(ders)
    bounded(
        lambda: verify_chain(
            chain_verifier(), load_pem_chain(chain, "fuzz"), ROOTS, "tdx.collateral.chain_invalid"
        )
    )
    coll = bounded(
        lambda: load_collateral_json(
            INTEL.collateral_with(
                tcb_info_issuer_chain=chain.decode("latin-1"),
                qe_identity_issuer_chain=chain.decode("latin-1"),
            )
        )
    )
    if coll is not None:
        bounded(lambda: coll.verify(chain_verifier(), ROOTS))


@FUZZ
@given(
    st.sampled_from(["pck_crl", "root_ca_crl"]),
    st.one_of(st.binary(max_size=300), mutated([PCK_CRL, ROOT_CRL])),
)
def test_tdx_crls(field: str, crl: bytes) -> None:
    coll = bounded(lambda: load_collateral_json(INTEL.collateral_with(**{field: crl.hex()})))
    if coll is None:
        return

    def check() -> None:
        verifier = tdx.TdxVerifier()
        verifier.verified(coll, ROOTS, ROOTS_KEY)
        verifier.pck_crl(coll, verifier.pck_info(PCK_CHAIN, ROOTS, ROOTS_KEY))

    bounded(check)
    res = timed(lambda: tdx.verify_quote(QUOTE, collateral=coll, roots=[INTEL.root_pem]))
    assert all(e.code.startswith("tdx.") for e in res.errors)


@FUZZ
@given(pck_chain_bytes())
def test_quote_with_hostile_chain(chain: bytes) -> None:
    """The whole TDX path with the mutated chain inside a correctly signed quote."""
    CARRIER.chain_edit = lambda _: chain
    quote = CARRIER.quote(b"fuzz")
    res = timed(
        lambda: tdx.verify_quote(quote, collateral=INTEL.collateral(), roots=[INTEL.root_pem])
    )
    assert all(e.code.startswith("tdx.") for e in res.errors)
    if chain != PCK_CHAIN and res.verified:
        # Only whitespace inside the base64 or a dropped trailing NUL may keep it valid.
        assert pki.pem_blocks(chain.rstrip(b"\x00"), strict=True) == PCK_DERS
