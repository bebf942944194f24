"""Typed TPM claims: what appraisal and revocation read from a verified quote.

The claims dict of ``VerifyResult`` stays the wire form (CLI JSON, EAR token); this is the
typed view of it, built once at the platform boundary so appraisal never reads string keys.
Built from any mapping without raising: a claim that is absent or of the wrong type reads as
absent, and every check on an absent claim fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


@dataclass(frozen=True, slots=True)
class TpmClaims:
    #: The quoted PCR values as the claims carry them (bank → decimal index → hex); read
    #: through ``pcr`` and ``selected``, which check the shape where a value is used rather
    #: than copying every PCR of every bank per attestation.
    _pcrs: Mapping[str, Any]
    _selection: Mapping[str, Any]
    hash_alg: str | None
    weak_hash: bool
    #: The enrolled node's EK CA (lowercase SHA-256 hex, "" when unknown).
    ek_ca_fingerprint: str
    ek_fingerprint: str | None
    ak_name: str | None

    platform = "tpm"

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> TpmClaims:
        pcrs = claims.get("pcrs")
        selection = claims.get("pcr_selection")
        return cls(
            _pcrs=pcrs if isinstance(pcrs, Mapping) else {},
            _selection=selection if isinstance(selection, Mapping) else {},
            hash_alg=_str(claims.get("hash_alg")),
            weak_hash=bool(claims.get("weak_hash")),
            ek_ca_fingerprint=str(claims.get("ek_ca_fingerprint", "")).lower(),
            ek_fingerprint=_str(claims.get("ek_fingerprint")),
            ak_name=_str(claims.get("ak_name")),
        )

    def pcr(self, bank: str, index: int) -> str | None:
        """PCR ``bank:index`` as quoted (hex), or None when the quote does not carry it.
        Indices are written in decimal (``pcrs_to_json``): ``"07"`` is no PCR."""
        values = self._pcrs.get(bank)
        v = values.get(str(index)) if isinstance(values, Mapping) else None
        return v if isinstance(v, str) else None

    def selected(self, bank: str) -> tuple[int, ...]:
        """The PCR indices of ``bank`` the quote's selection covers."""
        idxs = self._selection.get(bank)
        if not isinstance(idxs, list | tuple):
            return ()
        return tuple(i for i in idxs if isinstance(i, int))

    def identities(self) -> list[str]:
        """The EK certificate's SHA-256 and the AK's Name, from the enrolled node (the AK is
        bound to that EK by ActivateCredential at enrollment)."""
        out: list[str] = []
        if self.ek_fingerprint:
            out.append(f"ek:{self.ek_fingerprint}")
        if self.ak_name:
            out.append(f"ak:{self.ak_name}")
        return out
