"""SNP: the verifier's own CRLs decide revocation; chains are bounded in work and memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sealgate import pki, snp
from sealgate.lru import BoundedCache
from sealgate.pki import load_certificates, load_crl, to_pem
from sealgate.result import VerifyResult
from sealgate.snp import CrlSource, Revocation, certs, verify_report
from sealgate.snp.certtable import build_cert_table, parse_cert_table
from sealgate.testing.snp import VALID_AT

from tests.vectors import project

NO_TRUST_DIR = Path("/nonexistent/sealgate-trust")


def v(name: str) -> bytes:
    return project("sev-snp", name).read_bytes()


def run(report: str = "report-v5.bin", vcek: str = "vcek-milan.der", **kw: Any) -> VerifyResult:
    kw.setdefault("cert_chain", v("cert_chain-milan.pem"))
    return verify_report(
        v(report),
        vcek=v(vcek),
        roots=[v("ark-milan.pem")],
        at=kw.pop("at", VALID_AT),
        trust_dir=NO_TRUST_DIR,
        **kw,
    )


def codes(res: VerifyResult) -> list[str]:
    return [e.code for e in res.errors]


REVOKED = ("report-v5-revoked-vcek.bin", "vcek-milan-revoked.der")


# --- the verifier's CRLs ------------------------------------------------------------------


def test_verifier_crl_revokes_when_the_node_sends_none() -> None:
    own = Revocation((load_crl(v("crl-milan.der")),))
    assert codes(run(*REVOKED)) == []  # without a CRL of its own, nothing to check against
    assert codes(run(*REVOKED, revocation=own)) == ["snp.chain.revoked"]
    ok = run(revocation=own)
    assert ok.verified, ok.errors
    assert ok.claims["endorsement_key"]["crl_checked"] is True


def test_node_crl_adds_but_never_replaces() -> None:
    own = Revocation((load_crl(v("crl-milan.der")),))
    # A node sending a genuine CRL that lacks the revocation (here: the one revoking the
    # ASK only) does not lift the verifier's.
    res = run(*REVOKED, revocation=own, crl=v("crl-milan-ask-revoked.der"))
    assert "snp.chain.revoked" in codes(res)
    # And a node CRL still adds its revocations to a verifier CRL that lacks them.
    lax = Revocation((load_crl(v("crl-milan-ask-revoked.der")),))
    assert codes(run(*REVOKED, revocation=lax)) == ["snp.chain.revoked"]  # ASK revoked
    lax_ok = Revocation((load_crl(v("crl-milan-expired.der")),), allow_missing=True)
    assert codes(run(*REVOKED, revocation=lax_ok, crl=v("crl-milan.der"))) == ["snp.chain.revoked"]


def test_missing_or_stale_verifier_crl_fails_unless_allowed() -> None:
    assert codes(run(revocation=Revocation(()))) == ["snp.crl.missing"]
    stale = Revocation((load_crl(v("crl-milan-expired.der")),))
    assert codes(run(revocation=stale)) == ["snp.crl.expired"]
    # A CRL of another product's ARK does not count as one for this chain.
    assert codes(run(revocation=Revocation((load_crl(v("crl-milan.der")),)),
                     report="report-turin-v5.bin", vcek="vcek-turin.der",
                     cert_chain=v("cert_chain-turin.pem"))) != []  # fmt: skip
    allowed = Revocation((load_crl(v("crl-milan-expired.der")),), allow_missing=True)
    assert run(revocation=allowed).verified
    assert run(revocation=Revocation((), allow_missing=True)).verified


def test_crl_source_reads_configured_files_and_the_cache(tmp_path: Path) -> None:
    f = tmp_path / "amd.crl"
    f.write_bytes(v("crl-milan-expired.der"))
    src = CrlSource([f])
    assert codes(run(revocation=src.revocation())) == ["snp.crl.expired"]
    # Refreshing the file takes effect without a restart.
    f.write_bytes(v("crl-milan.der"))
    os.utime(f, ns=(1, 2))
    src._scanned = -1e9  # skip the rescan interval
    assert codes(run(*REVOKED, revocation=src.revocation())) == ["snp.chain.revoked"]
    # No configured files: the collateral cache (`sealgate collateral fetch snp` layout).
    cache = tmp_path / "cache"
    assert codes(run(revocation=CrlSource([], cache).revocation())) == ["snp.crl.missing"]
    (cache / "snp" / "Milan").mkdir(parents=True)
    (cache / "snp" / "Milan" / "crl.der").write_bytes(v("crl-milan.der"))
    res = run(*REVOKED, revocation=CrlSource([], cache).revocation())
    assert codes(res) == ["snp.chain.revoked"]
    # A file that is no CRL is left out (fails closed as missing).
    g = tmp_path / "junk.crl"
    g.write_bytes(b"not a crl")
    assert codes(run(revocation=CrlSource([g]).revocation())) == ["snp.crl.missing"]


# --- bounded work -----------------------------------------------------------------------


def _fake_asks(n: int) -> bytes:
    """``n`` distinct certificates with the ASK's name and key but broken signatures:
    each would cost the verifier RSA-4096 verifications."""
    ask = load_certificates(v("ask-milan.pem"))[0].der
    out = []
    for i in range(n):
        b = bytearray(ask)
        b[-1 - (i % 500)] ^= 1 + i // 500
        out.append(to_pem(bytes(b)))
    return b"".join(out)


@pytest.fixture
def signature_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The signatures the PKI layer is asked for or may check: one per ``check_signed`` /
    ``check_crl``, and for ``build`` every link its search can try (RFC 5280 issuer
    matching by name and key identifier: leaf to pool or anchor, pool to pool or anchor)
    plus each anchor's self-signature (once: a verified one is in the memo, and only a
    link the anchor verifiably signed leads to it)."""
    seen: list[str] = []
    real_build = pki.ChainVerifier.build

    def build(self: pki.ChainVerifier, leaf: Any, pool: Any, anchors: Any, at: Any = None) -> Any:
        issuers = [*pool, *anchors]
        for p in pool:
            if certs.may_have_issued(leaf, p):
                seen.append(f"{p.subject_cn} signed {leaf.subject_cn}")
                for q in issuers:
                    if q is not p and certs.may_have_issued(p, q):
                        seen.append(f"{q.subject_cn} signed {p.subject_cn}")
        for a in anchors:
            if certs.may_have_issued(leaf, a):
                seen.append(f"{a.subject_cn} signed {leaf.subject_cn}")
            seen.append(f"{a.subject_cn} self-signed")
        return real_build(self, leaf, pool, anchors, at)

    real_signed, real_crl = pki.ChainVerifier.check_signed, pki.ChainVerifier.check_crl

    def check_signed(self: pki.ChainVerifier, cert: Any, issuer: Any) -> None:
        seen.append(f"{issuer.subject_cn} signed {cert.subject_cn}")
        real_signed(self, cert, issuer)

    def check_crl(self: pki.ChainVerifier, crl: Any, issuer: Any, at: Any = None) -> None:
        seen.append(f"{issuer.subject_cn} signed a CRL")
        real_crl(self, crl, issuer, at)

    monkeypatch.setattr(pki.ChainVerifier, "build", build)
    monkeypatch.setattr(pki.ChainVerifier, "check_signed", check_signed)
    monkeypatch.setattr(pki.ChainVerifier, "check_crl", check_crl)
    return seen


def test_a_flood_of_fake_asks_is_refused_before_any_signature(
    signature_attempts: list[str],
) -> None:
    res = run(cert_chain=_fake_asks(360) + v("cert_chain-milan.pem"))
    assert codes(res) == ["snp.chain.too_many_certificates"]
    assert signature_attempts == []


def test_candidates_within_the_cap_cost_bounded_signatures(
    signature_attempts: list[str],
) -> None:
    bundle = _fake_asks(2) + v("cert_chain-milan.pem")
    res = run(cert_chain=bundle)
    assert res.verified, res.errors
    assert len(signature_attempts) <= 2 * snp.MAX_BUNDLE_CERTS


def test_key_identifiers_rule_candidates_out() -> None:
    from sealgate.testing import snp as t

    class _Unsigned(t.RsaKey):
        def sign_pss_sha384(self, msg: bytes) -> bytes:
            return bytes(512)

    key = _Unsigned(1, 3, 1, "x")
    spki = load_certificates(v("ask-milan.pem"))[0].spki

    def cert(subject: str, issuer: str, exts: list[bytes]) -> Any:
        der = t.certificate(serial=7, issuer=issuer, subject=subject,
                            not_before=t.ROOT_VALIDITY[0], not_after=t.ROOT_VALIDITY[1],
                            spki=spki, extensions=exts, signer=key)  # fmt: skip
        return load_certificates(der)[0]

    aki = t.extension(certs.OID_AUTHORITY_KEY_ID, t.seq(t.tlv(0x80, b"\x01" * 20)))
    leaf = cert("SEV-VCEK", "SEV-Milan", [aki])
    same = cert(
        "SEV-Milan", "ARK-Milan", [t.extension(certs.OID_SUBJECT_KEY_ID, t.octets(b"\x01" * 20))]
    )
    other = cert(
        "SEV-Milan", "ARK-Milan", [t.extension(certs.OID_SUBJECT_KEY_ID, t.octets(b"\x02" * 20))]
    )
    silent = cert("SEV-Milan", "ARK-Milan", [])
    renamed = cert("SEV-Genoa", "ARK-Milan", [])
    assert certs.may_have_issued(leaf, same)
    assert not certs.may_have_issued(leaf, other)
    assert certs.may_have_issued(leaf, silent)  # no identifier: the name decides
    assert not certs.may_have_issued(leaf, renamed)


# --- bounded memory ---------------------------------------------------------------------


def test_padded_bundles_are_refused_and_cache_keys_are_fingerprints() -> None:
    cache: BoundedCache[tuple[Any, ...], Any] = snp.new_chain_cache()
    chain = v("cert_chain-milan.pem")
    padded = chain + b"#" * (1 << 20)
    res = run(cert_chain=padded, chain_cache=cache)
    assert codes(res) == ["x509.format.trailing_bytes"]
    assert len(cache) == 0
    # Re-wrapped and re-spaced copies of the same certificates share one entry.
    for i in range(5):
        variant = chain.replace(b"\n", b"\n" + b" " * i) + b"\n" * i
        assert run(cert_chain=variant, chain_cache=cache).verified
    assert len(cache) == 1
    assert cache.bytes < 64 << 10


def test_chain_cache_is_bounded_by_bytes() -> None:
    cache: BoundedCache[tuple[Any, ...], Any] = BoundedCache(4096, 20 << 10)
    for vcek, report in (("vcek-milan.der", "report-v5.bin"), (REVOKED[1], REVOKED[0])):
        assert run(report, vcek, chain_cache=cache).verified
    assert cache.bytes <= 20 << 10


def test_cert_table_trailing_bytes_refused_zero_fill_accepted() -> None:
    table = build_cert_table({"vcek": v("vcek-milan.der")})
    assert parse_cert_table(table + bytes(4096))["vcek"] == v("vcek-milan.der")
    with pytest.raises(Exception) as e:
        parse_cert_table(table + b"\x00junk")
    assert getattr(e.value, "code", "") == "snp.format.trailing_bytes"


def test_warm_check_tells_hits_from_misses() -> None:
    cache: BoundedCache[tuple[Any, ...], Any] = snp.new_chain_cache()
    kw: dict[str, Any] = {
        "cert_chain": v("cert_chain-milan.pem"),
        "roots": [v("ark-milan.pem")],
        "trust_dir": NO_TRUST_DIR,
        "at": VALID_AT,
        "chain_cache": cache,
    }
    assert not snp.chain_cached(v("vcek-milan.der"), **kw)
    assert verify_report(v("report-v5.bin"), vcek=v("vcek-milan.der"), **kw).verified
    assert snp.chain_cached(v("vcek-milan.der"), **kw)
    assert not snp.chain_cached(v("vcek-milan-revoked.der"), **kw)
    assert not snp.chain_cached(v("vcek-milan.der"), **{**kw, "cert_chain": _fake_asks(9)})


# --- the CLI: unchanged unless asked --------------------------------------------------------


def test_cli_require_crl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sealgate.cli import main

    def cli(report: str, vcek: str, *extra: str) -> tuple[int, list[str]]:
        rc = main(["verify", "snp", "--report", str(project("sev-snp", report)),
                   "--vcek", str(project("sev-snp", vcek)),
                   "--cert-chain", str(project("sev-snp", "cert_chain-milan.pem")),
                   "--roots", str(project("sev-snp", "ark-milan.pem")),
                   "--at", VALID_AT.isoformat(), "--trust-dir", str(NO_TRUST_DIR),
                   "--cache-dir", str(tmp_path), *extra])  # fmt: skip
        return rc, [e["code"] for e in json.loads(capsys.readouterr().out)["errors"]]

    crl = str(project("sev-snp", "crl-milan.der"))
    assert cli("report-v5.bin", "vcek-milan.der") == (0, [])
    assert cli("report-v5.bin", "vcek-milan.der", "--require-crl") == (1, ["snp.crl.missing"])
    assert cli("report-v5.bin", "vcek-milan.der", "--require-crl", "--crl", crl) == (0, [])
    stale = str(project("sev-snp", "crl-milan-expired.der"))
    assert cli("report-v5.bin", "vcek-milan.der", "--require-crl", "--crl", stale) == (
        1,
        ["snp.crl.expired"],
    )
    assert cli(*REVOKED, "--require-crl", "--crl", crl) == (1, ["snp.chain.revoked"])


def test_cached_crls_apply_to_their_own_hierarchy(tmp_path: Path) -> None:
    vlek: dict[str, Any] = {
        "report": "report-v3-vlek.bin",
        "vcek": "vlek-milan.der",
        "cert_chain": v("vlek_cert_chain-milan.pem"),
    }
    d = tmp_path / "snp" / "Milan"
    d.mkdir(parents=True)
    (d / "crl.der").write_bytes(v("crl-milan.der"))  # the VCEK hierarchy's
    assert codes(run(**vlek, revocation=CrlSource([], tmp_path).revocation())) == [
        "snp.crl.missing"
    ]
    assert run(revocation=CrlSource([], tmp_path).revocation()).verified
    (d / "vlek_crl.der").write_bytes(v("crl-milan.der"))
    res = run(**vlek, revocation=CrlSource([], tmp_path).revocation())
    assert res.verified, res.errors


# --- the verifier object ------------------------------------------------------------------


def test_verifier_owns_chains_signatures_and_crls(tmp_path: Path) -> None:
    kw: dict[str, Any] = {
        "cert_chain": v("cert_chain-milan.pem"),
        "roots": [v("ark-milan.pem")],
        "trust_dir": NO_TRUST_DIR,
        "at": VALID_AT,
    }
    verifier = snp.SnpVerifier()
    assert verifier.verify_report(v("report-v5.bin"), vcek=v("vcek-milan.der"), **kw).verified
    assert verifier.chain_cached(v("vcek-milan.der"), **kw)
    assert verifier.amd.chains.memo_len >= 3  # VCEK, ASK and the ARK's self-signature
    # Module functions keep nothing between calls.
    assert verify_report(v("report-v5.bin"), vcek=v("vcek-milan.der"), **kw).verified
    assert not snp.chain_cached(v("vcek-milan.der"), **kw)
    verifier.clear()
    assert not verifier.chain_cached(v("vcek-milan.der"), **kw)
    assert verifier.amd.chains.memo_len == 0
    # Its own CRLs decide revocation for every call that passes none.
    f = tmp_path / "amd.crl"
    f.write_bytes(v("crl-milan.der"))
    own = snp.SnpVerifier(crls=CrlSource([f]))
    assert codes(run(*REVOKED, verifier=own)) == ["snp.chain.revoked"]
    assert run(verifier=own).claims["endorsement_key"]["crl_checked"] is True
    with pytest.raises(ValueError):
        run(verifier=own, chain_cache=snp.new_chain_cache())
