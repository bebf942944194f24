"""TPM appraisal: PCR values (inline and reference sets), PCR selection, quote hash and
the EK CA, against ``TpmClaims``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealgate.appraise.base import (
    AFFIRMING,
    CONTRAINDICATED,
    UNRECOGNIZED_EXECUTABLES,
    WEAK_CONFIG,
    Appraisal,
    reference_values,
    unconstrained,
)
from sealgate.appraise.policy import Policy
from sealgate.storage import ReferenceValue
from sealgate.tpm import parse_selection
from sealgate.tpm.claims import TpmClaims


class TpmAppraiser:
    platform = "tpm"

    def appraise(
        self,
        a: Appraisal,
        policy: Policy,
        claims: Mapping[str, Any],
        refs: Sequence[ReferenceValue],
    ) -> None:
        req = policy.tpm
        assert req is not None  # Policy.platforms lists tpm only with its requirements
        c = TpmClaims.from_claims(claims)
        a.worse("hardware", AFFIRMING)
        a.worse("executables", AFFIRMING)
        a.worse("configuration", AFFIRMING)
        expected: dict[str, dict[int, set[str]]] = {}
        for name, values in reference_values(refs, "tpm", req.reference_sets).items():
            bank, _, index = name.partition(":")
            if index.isdigit():
                expected.setdefault(bank, {}).setdefault(int(index), set()).update(values)
        for bank, pcrs in req.pcrs.items():
            for pcr, hexes in pcrs.items():
                expected.setdefault(bank, {}).setdefault(pcr, set()).update(hexes)
        if not any(expected.values()) and (req.reference_sets or not req.allow_any_measurement):
            # A policy naming reference sets that hold nothing must not mean "anything goes".
            unconstrained(a, "tpm", req.reference_sets, "TPM PCR values")
        for bank in sorted(expected):
            if bank == "sha1" and not req.allow_weak_hashes:
                a.fail(
                    "policy.tpm.weak_hash",
                    "policy expects SHA-1 PCR values but weak hashes are refused",
                    "sha1",
                    "sha256 or stronger",
                )
                a.worse("configuration", WEAK_CONFIG)
            for idx in sorted(expected[bank]):
                want = expected[bank][idx]
                got = c.pcr(bank, idx)
                if got is None:
                    a.fail(
                        "policy.tpm.pcr_missing",
                        f"PCR {bank}:{idx} is not in the quote",
                        "not quoted",
                        sorted(want),
                    )
                    a.worse("executables", UNRECOGNIZED_EXECUTABLES)
                elif got.lower() not in want:
                    a.fail(
                        "policy.tpm.pcr_mismatch",
                        f"PCR {bank}:{idx} is {got} but the policy accepts "
                        f"{', '.join(sorted(want))}",
                        got,
                        sorted(want),
                    )
                    a.worse("executables", UNRECOGNIZED_EXECUTABLES)
        if req.required_selection:
            for bank, idxs in parse_selection(req.required_selection):
                have = c.selected(bank)
                missing = sorted(set(idxs) - set(have))
                if missing:
                    a.fail(
                        "policy.tpm.selection_missing",
                        f"quote does not cover {bank}:{','.join(map(str, missing))}",
                        f"{bank}:{','.join(map(str, sorted(have)))}",
                        f"{bank}:{','.join(map(str, idxs))}",
                    )
                    a.worse("configuration", WEAK_CONFIG)
        if c.weak_hash and not req.allow_weak_hashes:
            a.fail(
                "policy.tpm.weak_hash",
                f"quote signed with {c.hash_alg}, a weak hash",
                c.hash_alg,
                "sha256 or stronger",
            )
            a.worse("configuration", WEAK_CONFIG)
        if req.ek_ca_fingerprints and c.ek_ca_fingerprint not in req.ek_ca_fingerprints:
            a.fail(
                "policy.tpm.ek_ca_not_allowed",
                "the node's EK certificate does not chain to an allowed EK CA",
                c.ek_ca_fingerprint or "unknown",
                req.ek_ca_fingerprints,
            )
            a.worse("hardware", CONTRAINDICATED)
