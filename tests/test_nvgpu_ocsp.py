"""OCSP (RFC 6960) checks of an NVIDIA-shaped chain with responses built here: good,
revoked, unknown, stale, wrong signer, delegated responder, certID mismatch, malformed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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


# -- the verifier: device chain and RIM signer chains from one pool -----------------------


def _gpu_and_rims(
    seed: str = "wired",
) -> tuple[Any, RimHierarchy, Any, list[bytes], list[bytes]]:
    """A synthetic GPU, its verifier, the RIM source matching it, and good responses for
    its device chain and for the RIM signer chain."""
    from sealgate import nvgpu
    from sealgate.nvgpu.rim import RimSource
    from sealgate.testing.nvgpu import NvidiaHierarchy, SyntheticGpu
    from sealgate.testing.nvgpu_rim import matching_rims

    dh = NvidiaHierarchy()
    gpu = SyntheticGpu(dh, 0)
    rh = make_hierarchy(seed)
    drv, vb = matching_rims(
        rh, gpu.measurements, driver_version=gpu.driver_version, vbios_version="96.00.5E.00.01"
    )
    src = RimSource(roots=[rh.root_cert], blobs=[("driver", drv), ("vbios", vb)])
    dev = [
        _resp(gpu.leaf, dh.ica, dh.ica_key, dh.ica),
        _resp(dh.ica, dh.root, dh.root_key, dh.root),
    ]
    v = nvgpu.GpuVerifier(roots=[dh.root_pem()])
    return (gpu, rh, (v, src), dev, _good(rh))


def _verify(parts: Any, ocsp_: list[bytes], src: Any = None) -> Any:
    from sealgate import nvgpu

    gpu, _, (v, s), _, _ = parts
    n = b"\x07" * 32
    ev = nvgpu.GpuEvidence(gpu.report(n), gpu.cert_chain())
    return v.verify(ev, nonce=n, at=AT, rims=src or s, ocsp=ocsp_)


def test_verifier_checks_rim_signer_chains_too() -> None:
    parts = _gpu_and_rims()
    _, _, _, dev, rim_rs = parts
    # Device chain only: the GPU verifies, the RIM chains are "not checked".
    r = _verify(parts, dev)
    assert r.verified, r.errors
    rev = r.claims["revocation"]
    assert rev["device"]["checked"] and rev["checked"] is False
    assert rev["status"] == "not_checked"
    assert {k: v["checked"] for k, v in rev["rims"].items()} == {"driver": False, "vbios": False}
    assert rev["rims"]["driver"]["id"] == r.claims["rim"]["driver"]["id"]
    # Both chains in one pool, any order: every chain checked.
    r = _verify(parts, rim_rs + dev)
    assert r.verified, r.errors
    rev = r.claims["revocation"]
    assert rev["checked"] is True and rev["status"] == "good"
    assert len(rev["certificates"]) == 2 == len(rev["rims"]["vbios"]["certificates"])
    # Only the RIM chain's responses: the device chain is the one not checked.
    r = _verify(parts, rim_rs)
    assert r.verified and r.claims["revocation"]["device"]["checked"] is False


@pytest.mark.parametrize(
    ("which", "code"),
    [
        ("revoked", "gpu.ocsp.revoked"),
        ("unknown", "gpu.ocsp.unknown"),
        ("stale", "gpu.ocsp.stale"),
        ("partial", "gpu.ocsp.missing"),
        ("forged", "gpu.ocsp.signature_invalid"),
    ],
)
def test_a_bad_rim_chain_response_fails_the_gpu(which: str, code: str) -> None:
    parts = _gpu_and_rims()
    _, rh, _, dev, rim_rs = parts
    if which == "revoked":
        rim_rs[0] = _resp(rh.signer, rh.ca, rh.ca_key, rh.ca, status=ocsp.OCSPCertStatus.REVOKED)
    elif which == "unknown":
        rim_rs[1] = _resp(rh.ca, rh.root, rh.root_key, rh.root, status=ocsp.OCSPCertStatus.UNKNOWN)
    elif which == "stale":
        rim_rs[0] = _resp(rh.signer, rh.ca, rh.ca_key, rh.ca, next_update=AT - timedelta(minutes=1))
    elif which == "partial":
        rim_rs = rim_rs[:1]
    else:
        other = make_hierarchy("forger")
        rim_rs[0] = _resp(rh.signer, rh.ca, other.ca_key, other.ca)
    r = _verify(parts, dev + rim_rs)
    assert not r.verified
    assert [e.code for e in r.errors] == [code]
    rev = r.claims["revocation"]
    assert rev["checked"] is False and rev["status"] == code
    assert rev["device"]["checked"] is True
    assert {v["status"] for v in rev["rims"].values()} == {code}


def test_rim_chain_responses_from_the_collateral_cache(tmp_path: Any) -> None:
    from sealgate.collateral import CollateralCache
    from sealgate.nvgpu.fetch import ocsp_cache_parts
    from sealgate.nvgpu.rim import RimSource

    parts = _gpu_and_rims()
    _, rh, (_, src), dev, rim_rs = parts
    cache = CollateralCache(tmp_path)
    for cert, resp in zip(rh.pki_chain(), rim_rs, strict=False):
        cache.put("nvidia", *ocsp_cache_parts(cert), data=resp)
    cached = RimSource(roots=src.roots, blobs=src._items, ocsp_cache=tmp_path)
    r = _verify(parts, dev, cached)
    assert r.verified and r.claims["revocation"]["checked"] is True
    # A revoked signer in the cache fails the GPU as a sent one would.
    cache.put(
        "nvidia",
        *ocsp_cache_parts(rh.pki_chain()[0]),
        data=_resp(rh.signer, rh.ca, rh.ca_key, rh.ca, status=ocsp.OCSPCertStatus.REVOKED),
    )
    r = _verify(parts, dev, cached)
    assert [e.code for e in r.errors] == ["gpu.ocsp.revoked"]
    # No cache directory: not checked, never an error.
    none = RimSource(roots=src.roots, blobs=src._items, ocsp_cache=tmp_path / "absent")
    r = _verify(parts, dev, none)
    assert r.verified and r.claims["revocation"]["checked"] is False


def test_responses_for_selects_and_bounds() -> None:
    from sealgate.nvgpu.ocsp import responses_for

    h, other = make_hierarchy("o"), make_hierarchy("other")
    mine, theirs = _good(h), _good(other)
    assert responses_for(_chain(h), theirs + mine) == mine
    assert responses_for(_chain(h), theirs) == []
    with pytest.raises(SealgateError) as e:
        responses_for(_chain(h), [*mine, b"junk"])
    assert e.value.code == "gpu.ocsp.malformed"
    with pytest.raises(SealgateError) as e:
        responses_for(_chain(h), mine * (MAX_RESPONSES // 2 + 1))
    assert e.value.code == "gpu.ocsp.too_large"


def test_a_malformed_response_in_the_pool_fails_once() -> None:
    parts = _gpu_and_rims()
    _, _, _, dev, rim_rs = parts
    r = _verify(parts, [*dev, b"\x30\x03\x0a\x01\x00", *rim_rs])
    assert [e.code for e in r.errors] == ["gpu.ocsp.malformed"]
    rev = r.claims["revocation"]
    assert rev["checked"] is False and rev["status"] == "gpu.ocsp.malformed"
    assert rev["device"]["status"] == rev["rims"]["driver"]["status"] == "gpu.ocsp.malformed"


def test_several_responses_for_one_certificate() -> None:
    """A node's older "good" (still in window) cannot outvote a fresher "revoked" from the
    cache; a stale one beside a fresh one is set aside; a forged one is never ignored."""
    h = make_hierarchy("o")
    good = _good(h)
    revoked = _resp(h.signer, h.ca, h.ca_key, h.ca, status=ocsp.OCSPCertStatus.REVOKED)
    for rs in ([*good, revoked], [revoked, *good]):
        with pytest.raises(SealgateError) as e:
            check_chain(_chain(h), rs, at=AT)
        assert e.value.code == "gpu.ocsp.revoked"
    unknown = _resp(h.signer, h.ca, h.ca_key, h.ca, status=ocsp.OCSPCertStatus.UNKNOWN)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), [*good, unknown], at=AT)
    assert e.value.code == "gpu.ocsp.unknown"
    stale = _resp(h.signer, h.ca, h.ca_key, h.ca, next_update=AT - timedelta(minutes=1))
    assert check_chain(_chain(h), [stale, *good], at=AT).checked
    # Revocation is permanent: an authentic "revoked" counts even outside its window.
    old_rev = _resp(
        h.signer,
        h.ca,
        h.ca_key,
        h.ca,
        status=ocsp.OCSPCertStatus.REVOKED,
        this_update=AT - timedelta(days=3),
        next_update=AT - timedelta(days=2),
    )
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), [old_rev, *good], at=AT)
    assert e.value.code == "gpu.ocsp.revoked"
    other = make_hierarchy("forger")
    forged = _resp(h.signer, h.ca, other.ca_key, other.ca)
    with pytest.raises(SealgateError) as e:
        check_chain(_chain(h), [*good, forged], at=AT)
    assert e.value.code == "gpu.ocsp.signature_invalid"


def test_cli_ocsp_pool_covers_device_and_rim_chains(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sealgate verify nvidia-gpu --rim ... --ocsp ...``: the responses given are one pool
    for the device chain and the RIM signer chain."""
    import json

    from sealgate.cli import main

    parts = _gpu_and_rims()
    gpu, rh, (_, src), dev, rim_rs = parts
    n = b"\x07" * 32
    (tmp_path / "report.bin").write_bytes(gpu.report(n))
    (tmp_path / "chain.pem").write_bytes(gpu.cert_chain())
    roots = gpu.hierarchy.root_pem() + rh.root.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "roots.pem").write_bytes(roots)
    argv = ["verify", "nvidia-gpu", "--report", str(tmp_path / "report.bin")]
    argv += ["--cert-chain", str(tmp_path / "chain.pem"), "--roots", str(tmp_path / "roots.pem")]
    argv += ["--nonce", n.hex(), "--at", "2024-06-01T00:00:00Z"]
    for i, (_, xml) in enumerate(src._items):
        (tmp_path / f"rim{i}.xml").write_bytes(xml)
        argv += ["--rim", str(tmp_path / f"rim{i}.xml")]
    files = []
    for i, r in enumerate([*rim_rs, *dev]):
        (tmp_path / f"o{i}.der").write_bytes(r)
        files.append(str(tmp_path / f"o{i}.der"))
    assert main([*argv, *(a for f in files for a in ("--ocsp", f))]) == 0
    out = json.loads(capsys.readouterr().out)
    rev = out["claims"]["revocation"]
    assert out["verified"] and rev["checked"] is True
    assert set(rev["rims"]) == {"driver", "vbios"}
    # Only the device chain's responses: still verified, the RIM chain "not checked".
    assert main([*argv, *(a for f in files[len(rim_rs) :] for a in ("--ocsp", f))]) == 0
    rev = json.loads(capsys.readouterr().out)["claims"]["revocation"]
    assert rev["device"]["checked"] is True and rev["checked"] is False


def test_no_collateral_revocation_claims_equal_the_general_path() -> None:
    # Without OCSP responses and RIMs the verifier takes a short path; its claims must be
    # exactly what the per-chain path gives for an empty pool (policy reads them).
    from sealgate import nvgpu
    from sealgate.nvgpu.revocation import chain_revocation
    from sealgate.result import VerifyResult

    gpu, _, (v, _), _, _ = _gpu_and_rims()
    n = b"\x07" * 32
    ev = nvgpu.GpuEvidence(gpu.report(n), gpu.cert_chain())
    short = v.verify(ev, nonce=n, at=AT)
    assert short.verified, short.errors
    chain = v.chains.verify(gpu.cert_chain(), AT)
    general = VerifyResult(nvgpu.PLATFORM)
    device = chain_revocation(general, chain.path.certs, [[]], AT)
    assert short.claims["revocation"] == {
        "checked": False,
        "status": "not_checked",
        "certificates": device["certificates"],
        "device": device,
        "rims": {},
    }
    assert not general.errors
