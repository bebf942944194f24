"""OCSP (RFC 6960) checks of an NVIDIA-shaped chain with responses built here: good,
revoked, unknown, stale, wrong signer, delegated responder, certID mismatch, malformed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from sealgate import pki
from sealgate.errors import SealgateError
from sealgate.nvgpu.ocsp import MAX_RESPONSES, check_chain
from sealgate.testing.nvgpu_rim import RimHierarchy, delegated_ocsp_signer, make_hierarchy

AT = datetime(2024, 6, 1, tzinfo=UTC)


def _resp(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_cert: x509.Certificate,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    this_update: datetime = AT - timedelta(hours=1),
    next_update: datetime | None = AT + timedelta(days=1),
    include: list[x509.Certificate] | None = None,
    by_hash: bool = False,
) -> bytes:
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert,
        issuer=issuer,
        algorithm=hashes.SHA384(),
        cert_status=status,
        this_update=this_update,
        next_update=next_update,
        revocation_time=AT - timedelta(days=3) if status == ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=x509.ReasonFlags.key_compromise
        if status == ocsp.OCSPCertStatus.REVOKED
        else None,
    )
    b = b.responder_id(
        ocsp.OCSPResponderEncoding.HASH if by_hash else ocsp.OCSPResponderEncoding.NAME,
        signer_cert,
    )
    if include:
        b = b.certificates(include)
    return b.sign(signer_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)


def _good(h: RimHierarchy, **kw: object) -> list[bytes]:
    return [
        _resp(h.signer, h.ca, h.ca_key, h.ca, **kw),  # type: ignore[arg-type]
        _resp(h.ca, h.root, h.root_key, h.root, **kw),  # type: ignore[arg-type]
    ]


def _chain(h: RimHierarchy) -> list[pki.Certificate]:
    return h.pki_chain()


def test_no_responses_is_not_checked() -> None:
    h = make_hierarchy("o")
    r = check_chain(_chain(h), [], at=AT)
    assert not r.checked
    assert r.as_dict()["status"] == "not_checked"


def test_good_by_issuer() -> None:
    h = make_hierarchy("o")
    r = check_chain(_chain(h), _good(h), at=AT)
    assert r.checked and [s.responder for s in r.statuses] == ["issuer", "issuer"]
    r = check_chain(_chain(h), _good(h, by_hash=True), at=AT)
    assert r.checked


def test_revoked() -> None:
    h = make_hierarchy("o")
    rs = _good(h)
    rs[1] = _resp(h.ca, h.root, h.root_key, h.root, status=ocsp.OCSPCertStatus.REVOKED)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.revoked"
    assert "key_compromise" in e.value.message


def test_unknown_fails_closed() -> None:
    h = make_hierarchy("o")
    rs = _good(h)
    rs[0] = _resp(h.signer, h.ca, h.ca_key, h.ca, status=ocsp.OCSPCertStatus.UNKNOWN)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.unknown"


@pytest.mark.parametrize(
    ("this_update", "next_update"),
    [
        (AT - timedelta(days=3), AT - timedelta(days=1)),  # expired response
        (AT + timedelta(hours=1), AT + timedelta(days=1)),  # from the future
        (AT - timedelta(days=30), None),  # no nextUpdate and old
    ],
)
def test_stale(this_update: datetime, next_update: datetime | None) -> None:
    h = make_hierarchy("o")
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), _good(h, this_update=this_update, next_update=next_update), at=AT)
    assert e.value.code == "gpu.ocsp.stale"


def test_wrong_signer() -> None:
    h, other = make_hierarchy("o"), make_hierarchy("other")
    rs = _good(h)
    # Signed by another CA's key (responder named as that CA).
    rs[0] = _resp(h.signer, h.ca, other.ca_key, other.ca)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.signature_invalid"
    # The issuer's response with its signature altered (last byte of the DER is in it).
    good = _good(h)[0]
    rs[0] = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.signature_invalid"
    # The leaf signing its own status is no authority either.
    rs[0] = _resp(h.signer, h.ca, h.signer_key, h.signer, include=[h.signer])
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.signature_invalid"


def test_delegated_responder() -> None:
    h = make_hierarchy("o")
    k, c = delegated_ocsp_signer(h.ca_key, h.ca, "o")
    rs = _good(h)
    rs[0] = _resp(h.signer, h.ca, k, c, include=[c])
    r = check_chain(_chain(h), rs, at=AT)
    assert [s.responder for s in r.statuses] == ["delegated", "issuer"]
    # A delegated responder certified by another CA is refused.
    other = make_hierarchy("other")
    k2, c2 = delegated_ocsp_signer(other.ca_key, other.ca, "x")
    rs[0] = _resp(h.signer, h.ca, k2, c2, include=[c2])
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.signature_invalid"
    # A responder certificate without id-kp-OCSPSigning (the leaf signer) is refused.
    rs[0] = _resp(h.signer, h.ca, h.signer_key, h.signer, include=[h.signer])
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.signature_invalid"


def test_missing_and_certid_mismatch() -> None:
    h, other = make_hierarchy("o"), make_hierarchy("other")
    rs = _good(h)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs[:1], at=AT)
    assert e.value.code == "gpu.ocsp.missing"
    # Same serial, other issuer: the CertID's issuer hashes do not match.
    rs[0] = _resp(other.signer, other.ca, other.ca_key, other.ca)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), rs, at=AT)
    assert e.value.code == "gpu.ocsp.missing"


def test_malformed_and_caps() -> None:
    h = make_hierarchy("o")
    for raw in (b"", b"\x30\x03\x0a\x01\x00", b"junk" * 10):
        with pytest.raises(SealgateError) as e:
            check_chain(_chain(h), [raw], at=AT)
        assert e.value.code == "gpu.ocsp.malformed"
    unauth = ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    ).public_bytes(serialization.Encoding.DER)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), [unauth], at=AT)
    assert e.value.code == "gpu.ocsp.malformed"
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), [b"x" * 70000], at=AT)
    assert e.value.code == "gpu.ocsp.too_large"
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), _good(h) * (MAX_RESPONSES), at=AT)
    assert e.value.code == "gpu.ocsp.too_large"
