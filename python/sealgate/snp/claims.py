"""Typed SEV-SNP claims: what appraisal and revocation read from a verified report.

The claims dict of ``VerifyResult`` stays the wire form (CLI JSON, EAR token); this is the
typed view of it, built once at the platform boundary so appraisal never reads string keys.
Built from any mapping without raising: a claim that is absent or of the wrong type reads as
absent, and every check on an absent claim fails closed (an absent guest policy reads as
debug allowed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


@dataclass(frozen=True, slots=True)
class SnpClaims:
    measurement: str | None
    host_data: str | None
    #: Guest policy DEBUG bit (SEV-SNP ABI §4.3); True when the policy is not known.
    debug: bool
    vmpl: int | None
    product: str | None
    #: REPORTED_TCB components (``bootloader``, ``tee``, ``snp``, ``microcode``, ...).
    reported_tcb: Mapping[str, int]
    chip_id: str | None
    #: ``(kind, sha256)`` of the VCEK/VLEK that signed the report.
    endorsement_key: tuple[str, str] | None

    platform = "snp"

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> SnpClaims:
        policy = claims.get("policy")
        debug = bool(policy.get("debug", True)) if isinstance(policy, Mapping) else True
        vmpl = claims.get("vmpl")
        reported = claims.get("reported_tcb")
        tcb = (
            {k: v for k, v in reported.items() if isinstance(k, str) and isinstance(v, int)}
            if isinstance(reported, Mapping)
            else {}
        )
        ek = claims.get("endorsement_key")
        endorsement = None
        if isinstance(ek, Mapping) and ek.get("kind") in ("vcek", "vlek") and ek.get("sha256"):
            endorsement = (str(ek["kind"]), str(ek["sha256"]))
        return cls(
            measurement=_str(claims.get("measurement")),
            host_data=_str(claims.get("host_data")),
            debug=debug,
            vmpl=vmpl if isinstance(vmpl, int) else None,
            product=_str(claims.get("product")),
            reported_tcb=tcb,
            chip_id=_str(claims.get("chip_id")),
            endorsement_key=endorsement,
        )

    def identities(self) -> list[str]:
        """CHIP_ID unless masked (all zero), and the VCEK/VLEK certificate's SHA-256.

        A VCEK-signed report must carry the VCEK's hwID as CHIP_ID (checked in
        verification), so VCEK reports always name the chip. A VLEK is shared by a cloud
        provider's hosts at one TCB, so a VLEK report with a masked CHIP_ID names only the
        VLEK, and revoking that revokes every host it signs for.
        """
        out: list[str] = []
        if self.chip_id and self.chip_id.strip("0"):
            out.append(f"chip_id:{self.chip_id}")
        if self.endorsement_key is not None:
            kind, sha256 = self.endorsement_key
            out.append(f"{kind}:{sha256}")
        return out
