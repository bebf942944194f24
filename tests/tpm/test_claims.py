"""Typed TPM claims: read from a quote's claims dict, never raising."""

from __future__ import annotations

from sealgate.tpm import pcrs_to_json
from sealgate.tpm.claims import TpmClaims


def test_from_claims() -> None:
    pcrs = pcrs_to_json({"sha256": {0: b"\xaa" * 32, 10: b"\xbb" * 32}})
    c = TpmClaims.from_claims(
        {
            "pcrs": pcrs,
            "pcr_selection": {"sha256": [0, 10]},
            "hash_alg": "sha256",
            "weak_hash": False,
            "ek_ca_fingerprint": "AB" * 32,
            "ek_fingerprint": "ee" * 32,
            "ak_name": "000b" + "aa" * 32,
        }
    )
    assert (c.pcr("sha256", 0), c.pcr("sha256", 10)) == ("aa" * 32, "bb" * 32)
    assert c.pcr("sha256", 1) is None and c.pcr("sha384", 0) is None
    assert c.selected("sha256") == (0, 10) and c.selected("sha1") == ()
    assert c.hash_alg == "sha256" and c.weak_hash is False
    assert c.ek_ca_fingerprint == "ab" * 32
    assert c.identities() == ["ek:" + "ee" * 32, "ak:000b" + "aa" * 32]


def test_absent_or_mistyped_claims_read_as_absent() -> None:
    raw = {"pcrs": {"sha256": {"07": "aa", "x": "bb", "1": 5}, "sha1": []}, "pcr_selection": 3}
    c = TpmClaims.from_claims(raw)
    # "07" is not how an index is written, so it names no PCR (a policy's 7 is not matched).
    assert [c.pcr("sha256", i) for i in (7, 1)] == [None, None] and c.pcr("sha1", 0) is None
    assert c.selected("sha256") == ()
    c = TpmClaims.from_claims({"pcr_selection": {"sha256": [0, "7", 7.0, 3]}})
    assert c.selected("sha256") == (0, 3)
    assert c.ek_ca_fingerprint == "" and c.identities() == [] and c.hash_alg is None
