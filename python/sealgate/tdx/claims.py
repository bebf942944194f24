"""Typed TDX claims: what appraisal and revocation read from a verified quote.

The claims dict of ``VerifyResult`` stays the wire form (CLI JSON, EAR token); this is the
typed view of it, built once at the platform boundary so appraisal never reads string keys.
Built from any mapping without raising: a claim that is absent or of the wrong type reads as
absent, and every check on an absent claim fails closed (absent TD attributes read as debug
allowed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The TD report body's measurement registers (Intel TDX DCAP Quote Generation Library and
#: Quote Verification Library, TD report body v1.0/v1.5), as the claims name them.
REGISTERS = (
    "mr_seam",
    "mr_signer_seam",
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mr_service_td",
)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


@dataclass(frozen=True, slots=True)
class TdxClaims:
    #: Register name (``REGISTERS``) → hex value, for the registers the quote carries.
    registers: Mapping[str, str]
    #: TD_ATTRIBUTES.DEBUG; True when the attributes are not known.
    debug: bool
    #: The platform's TCB status from Intel's TCB info (``UpToDate``, ...).
    tcb_status: str | None
    ppid: str | None
    platform_instance_id: str | None

    platform = "tdx"

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> TdxClaims:
        attrs = claims.get("td_attributes")
        return cls(
            registers={n: v for n in REGISTERS if isinstance(v := claims.get(n), str)},
            debug=bool(attrs.get("debug", True)) if isinstance(attrs, Mapping) else True,
            tcb_status=_str(claims.get("tcb_status")),
            ppid=_str(claims.get("ppid")),
            platform_instance_id=_str(claims.get("platform_instance_id")),
        )

    def identities(self) -> list[str]:
        """The PPID (stable across TCB recovery, unlike the PCK certificate) and, for PCK
        certificates issued by the Platform CA, the platform instance id."""
        out: list[str] = []
        if self.ppid:
            out.append(f"ppid:{self.ppid}")
        if self.platform_instance_id:
            out.append(f"platform_instance_id:{self.platform_instance_id}")
        return out
