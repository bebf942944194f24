"""The HCL report and its runtime data.

The HCL report's layout is parsed in Rust (``sealgate._core.HclReportRaw``,
rust/formats/src/azure.rs documents every field); this module gives it a typed shape and
parses the runtime data: the JSON the paravisor hashes into the hardware report's
report_data (SHA-256, ``report_data_hash_type`` 1), which carries the vTPM attestation key
``HCLAkPub`` (and the endorsement key ``HCLEkPub``) as RSA JWKs (RFC 7517/7518 §6.3), the
``vm-configuration`` the paravisor reports and the ``user-data`` the guest wrote to NV
index 0x01400002 before reading the report.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from sealgate import _core

__all__ = [
    "MAX_RUNTIME_DATA",
    "HclReport",
    "Jwk",
    "RuntimeData",
    "parse_hcl_report",
]

#: The runtime data cannot be longer than the HCL report that holds it (8 KiB at most,
#: rust/formats/src/azure.rs MAX_HCL_REPORT_LEN); the published ones are 1.1-1.2 KiB.
MAX_RUNTIME_DATA = 8192
#: ``user-data`` is the 64 bytes of NV index 0x01400002, written as hex.
USER_DATA_LEN = 64


class Jwk(NamedTuple):
    """An RSA public JWK from the runtime data (RFC 7518 §6.3.1)."""

    kid: str
    n: bytes
    e: bytes
    key_ops: tuple[str, ...]

    @property
    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256, base64url; computed in Rust and kept per key,
        ``sealgate_verify::azure::jwk_thumbprint``)."""
        return _core.jwk_thumbprint(self.n, self.e)

    @property
    def bits(self) -> int:
        return int.from_bytes(self.n, "big").bit_length()

    def tpm_public(self) -> _core.TpmPublic:
        """The key as the TPM verifier takes it (an RSA AK without TPM attributes)."""
        return _core.TpmPublic.from_rsa(self.n, self.e)


def _jwk(t: tuple[str, str, bytes, bytes, list[str]]) -> Jwk:
    kid, _kty, n, e, ops = t
    return Jwk(kid, n, e, tuple(ops))


class RuntimeData(NamedTuple):
    """The runtime data JSON, checked: ``ak`` is HCLAkPub (always present), ``ek`` HCLEkPub
    (absent from old reports), ``vm_configuration`` the paravisor's VM settings with the
    keys as stored (``secure-boot``, ``tpm-enabled``, ``console-enabled``,
    ``tpm-persisted``, ``vmUniqueId``, ...; scalar values only), ``user_data`` the decoded
    ``user-data`` (None when absent)."""

    raw: bytes
    ak: Jwk
    ek: Jwk | None
    vm_configuration: dict[str, bool | int | str]
    user_data: bytes | None

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @classmethod
    def parse(cls, data: bytes) -> RuntimeData:
        """JSON syntax, duplicates, bounds and encodings, and what the keys must be (an
        RSA-2048..4096 AK with e=65537 whose key_ops allow signing, or the first paravisor
        releases' ``["encrypt"]``), are checked in Rust (rust/formats/src/azure_runtime.rs,
        rust/verify/src/azure.rs ``check_keys``): ``ParseError``
        ``azure.runtime_data.invalid`` / ``too_large`` / ``ak_missing`` /
        ``ak_unsupported``. ``AzureVerifier`` does the same in its one call into Rust."""
        ak_t, ek_t, vmc, user_data, _bits = _core.parse_runtime_data(data)
        return cls(
            raw=bytes(data),
            ak=_jwk(ak_t),
            ek=_jwk(ek_t) if ek_t is not None else None,
            vm_configuration=vmc,
            user_data=user_data,
        )


class HclReport(NamedTuple):
    """A parsed HCL report (rust/formats/src/azure.rs). ``kind`` "snp" or "tdx";
    ``hardware_report`` the SNP report (1184 B) or TDREPORT (1024 B); ``runtime_data``
    exactly as stored; ``report_data`` the hardware report's; ``td_report`` (TDX) the
    TDREPORT fields a TD quote repeats, hex, keyed as ``TdxQuote.claims()``."""

    raw: bytes
    version: int
    request_type: int
    kind: str
    report_type: int
    hash_type: int
    length: int
    hardware_report: bytes
    runtime_data: bytes
    report_data: bytes
    td_report: dict[str, str] | None
    #: SHA-256 of ``runtime_data`` (what report_data[0:32] must be).
    runtime_data_sha256: bytes

    @property
    def platform(self) -> str:
        return f"azure-{self.kind}"


def parse_hcl_report(data: bytes) -> HclReport:
    """Parse an HCL report; ``ParseError`` (``azure.hcl.*``, with field and offset)."""
    raw = _core.HclReportRaw.parse(data)
    runtime = raw.runtime_data
    return HclReport(
        raw=bytes(data),
        version=raw.version,
        request_type=raw.request_type,
        kind=raw.kind,
        report_type=raw.report_type,
        hash_type=raw.hash_type,
        length=raw.length,
        hardware_report=raw.hardware_report,
        runtime_data=runtime,
        report_data=raw.report_data,
        td_report=raw.td_report(),
        runtime_data_sha256=raw.runtime_data_sha256,
    )
