"""Intel's profile on the PKI layer (``tdx.pck``) and the verifier object's caches."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sealgate import pki, tdx
from sealgate.errors import ChainError, CollateralError
from sealgate.tdx.pck import chain_verifier, check_crl, check_roles, load_pem_chain, verify_chain
from sealgate.testing.hostile import HostileIntel
from sealgate.testing.tdx import FakeIntel, Platform

INTEL = FakeIntel(seed=b"pki-profile")
OTHER = FakeIntel(seed=b"pki-profile-other")  # same names, other keys: a look-alike root
ROOT = pki.load_certificate(INTEL.root_der)
CODE = "tdx.pck.chain_invalid"


def _chain() -> list[pki.Certificate]:
    return load_pem_chain(INTEL.pck_chain(Platform())[1], "PCK chain")


def _refused(certs: list[pki.Certificate], roots: list[pki.Certificate] | None = None) -> str:
    with pytest.raises(ChainError) as e:
        path = verify_chain(chain_verifier(), certs, [ROOT] if roots is None else roots, CODE)
        check_roles(path, ((tdx.pck.CN_PCK,), tdx.pck.CN_PCK_CAS), CODE)
    return e.value.code


def test_genuine_chain_with_and_without_its_root() -> None:
    pck, ca, root = _chain()
    for certs in ([pck, ca, root], [pck, ca]):
        path = verify_chain(chain_verifier(), certs, [ROOT], CODE)
        assert path.certs == (pck, ca, ROOT)


def test_look_alike_root_in_the_chain_is_refused() -> None:
    """The PCK CA verifies under the trusted root, but the root the chain carries is not it."""
    pck, ca, _ = _chain()
    look_alike = pki.load_certificate(OTHER.root_der)
    assert look_alike.subject == ROOT.subject and look_alike != ROOT
    assert _refused([pck, ca, look_alike]) == CODE


def test_chain_must_be_one_path_in_order() -> None:
    pck, ca, root = _chain()
    tcb_signer = load_pem_chain(INTEL.tcb_signing_chain, "TCB chain")[0]
    assert _refused([pck, root, ca]) == CODE  # out of order
    assert _refused([pck, ca, tcb_signer, root]) == CODE  # a certificate left unused
    assert _refused([ca, root]) == CODE  # a CA where the PCK certificate belongs
    assert _refused([pck, ca], roots=[]) == CODE  # nothing trusted


def test_crl_checks_map_to_collateral_codes() -> None:
    _, ca, _ = _chain()
    v = chain_verifier()
    crl = check_crl(v, INTEL.pck_crl(), ca, "PCK CRL")
    assert crl.revoked and tdx.pck.revokes(crl, _chain()[0]) is False
    with pytest.raises(CollateralError) as e:
        check_crl(v, INTEL.pck_crl(), ROOT, "PCK CRL")  # issued by the PCK CA, not the root
    assert e.value.code == "tdx.collateral.crl_issuer_mismatch"
    other_ca = load_pem_chain(OTHER.pck_chain(Platform())[1], "PCK chain")[1]
    with pytest.raises(CollateralError) as e:
        check_crl(v, INTEL.pck_crl(), other_ca, "PCK CRL")  # same name, other key
    assert e.value.code == "tdx.collateral.signature_invalid"
    with pytest.raises(CollateralError) as e:
        check_crl(v, b"\x30\x03\x02\x01\x01", ca, "PCK CRL")
    assert e.value.code == "tdx.collateral.invalid"


def test_module_functions_keep_nothing_between_calls() -> None:
    intel = FakeIntel(seed=b"pki-profile-stateless")
    quote, body, roots = intel.quote(b"s"), intel.collateral_json(), [intel.root_pem]
    coll = tdx.load_collateral_json(body)
    assert tdx.verify_quote(quote, collateral=coll, roots=roots).verified
    assert not tdx.quote_cached(quote, collateral=body, roots=roots)
    assert tdx.load_collateral_json(body) is not coll
    v = tdx.TdxVerifier()
    assert v.load_collateral_json(body) is v.load_collateral_json(body)


def test_verifier_caches_are_bounded() -> None:
    intel = HostileIntel(seed=b"pki-profile-bounded")
    v = tdx.TdxVerifier(chain_entries=2)
    coll = v.load_collateral_json(intel.collateral_json())
    at = datetime(2026, 6, 1, tzinfo=UTC)
    for n in range(4):
        p = Platform(serial=0x1000 + n)
        res = v.verify_quote(
            intel.quote(b"b", platform=p), collateral=coll, roots=[intel.root_pem], at=at
        )
        assert res.verified, res.errors
    assert len(v._pck) == 2
    v.clear()
    assert len(v._pck) == 0 and v.pki.memo_len == 0


def test_sgx_extension_bounds() -> None:
    """What the removed hand DER reader bounded, the PKI layer's SGX parser bounds alike:
    the extension's size and an SVN INTEGER's octets (eight: a machine integer in claims)."""
    from sealgate.errors import ParseError
    from sealgate.testing.tdx import sgx_extension

    with pytest.raises(ParseError) as e:
        pki.parse_sgx_extension(b"\x30\x82\x10\x01" + bytes(4097))
    assert e.value.code == "tdx.format.too_large"
    with pytest.raises(ParseError) as e:
        pki.parse_sgx_extension(sgx_extension(components=(1,) * 16, pcesvn=1 << 64, fmspc=bytes(6)))
    assert e.value.code == "tdx.format.invalid"
    big = (1 << 56) + 1  # eight octets
    ok = pki.parse_sgx_extension(sgx_extension(components=(1,) * 16, pcesvn=big, fmspc=bytes(6)))
    assert ok.pcesvn == big
