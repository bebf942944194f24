"""The platform registry: which evidence kinds this server can verify.

Each platform adapter turns the evidence message into a call to that platform's facade
(``sealgate.tpm.verify_quote``, ``sealgate.snp.verify_report``, ``sealgate.tdx.verify_quote``,
``sealgate.azure.AzureVerifier``) with the runtime-key binding as the expected nonce /
report_data / user data, and returns its ``VerifyResult``.

Registration is static, with ordinary imports of the platform packages: ``default_verifiers``
lists the platforms this server verifies and ``CLAIMS`` their typed claims (what revocation
reads). A platform the registry does not hold, or whose verifier reports itself unavailable,
is answered UNIMPLEMENTED (``service.platform.unavailable``): a platform that cannot be
verified here is refused, never waved through.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sealgate import azure, snp, tdx, tpm
from sealgate.errors import UsageError
from sealgate.protocol import TPM_BINDING_SIZE
from sealgate.result import VerifyResult
from sealgate.service.config import ServiceConfig
from sealgate.snp.claims import SnpClaims
from sealgate.storage import Node
from sealgate.tdx.claims import TdxClaims
from sealgate.tpm.claims import TpmClaims


@dataclass
class VerifyContext:
    """What a platform verifier may need beyond the evidence."""

    binding: bytes
    node: Node | None = None
    roots: list[Path] = field(default_factory=list)


class PlatformVerifier:
    name = ""
    #: Whether a node must be enrolled first (TPM: the AK comes from enrollment).
    needs_enrollment = False

    def available(self) -> bool:
        """Whether this verifier can verify here (the built-in ones always can; a verifier
        depending on something outside this build may say no, and is then refused)."""
        return True

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        raise NotImplementedError

    def warm(self, evidence: Any) -> bool:
        """Whether verifying ``evidence`` costs only the per-report work (what it derives
        from certificates and collateral is cached): the service runs it on its event loop
        then, and everything else (chain building, RSA, collateral signatures) in its thread
        pool. Must itself be cheap and bounded; when unsure, False."""
        return True


#: Evidence fields larger than this are never checked for a cache hit on the event loop
#: (the check runs before the rate limiter; hashing large fields there would be the work it
#: is meant to avoid): real SNP chains and TDX quotes are a few KiB, TDX collateral JSON
#: 16-20 KiB.
WARM_CHECK_MAX_BYTES = 64 << 10


class TpmVerifier(PlatformVerifier):
    name = "tpm"
    needs_enrollment = True

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        assert ctx.node is not None
        pcrs: tpm.PcrMap | None = None
        if len(evidence.pcrs):
            pcrs = {}
            for p in evidence.pcrs:
                pcrs.setdefault(p.bank, {})[int(p.index)] = bytes(p.value)
        res = tpm.verify_quote(
            ctx.node.ak_public,
            bytes(evidence.quote),
            bytes(evidence.signature),
            pcrs=pcrs,
            eventlog=bytes(evidence.event_log) if evidence.event_log else None,
            # The first 32 bytes of SHA-512(nonce ‖ runtime key) are the quote's extraData.
            nonce=ctx.binding[:TPM_BINDING_SIZE],
        )
        res.claims["node_id"] = ctx.node.node_id
        res.claims["ek_ca_fingerprint"] = ctx.node.ek_ca_fingerprint
        res.claims["ek_fingerprint"] = ctx.node.ek_fingerprint
        res.claims["ak_name"] = ctx.node.ak_name.hex()
        return res


def _read_roots(paths: list[Path]) -> list[bytes] | None:
    """Configured root certificates, one entry per file (PEM or DER); None = the pinned ones."""
    out: list[bytes] = []
    for p in paths:
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        out.extend(f.read_bytes() for f in files if f.is_file())
    return out or None


class SnpVerifier(PlatformVerifier):
    """SEV-SNP via ``sealgate.snp.verify_report``, report_data = the binding.

    Revocation is the verifier's: its own CRLs (``snp_crls``, else the collateral cache),
    never only what the node sends (``sealgate.snp.CrlSource``). It owns one
    ``sealgate.snp.SnpVerifier`` (chain cache, signature memo, CRL source) for its lifetime.
    """

    name = "snp"

    def __init__(
        self,
        *,
        roots: list[Path] | None = None,
        crls: list[Path] | None = None,
        collateral_dir: Path | None = None,
        allow_missing_crl: bool = False,
    ) -> None:
        self.roots = list(roots or [])
        self.collateral_dir = collateral_dir
        self.allow_missing_crl = allow_missing_crl
        self._crls = list(crls or [])
        self._verifier: snp.SnpVerifier | None = None
        self._lock = threading.Lock()

    def _snp(self) -> snp.SnpVerifier:
        with self._lock:
            if self._verifier is None:
                source = snp.CrlSource(
                    self._crls, self.collateral_dir, allow_missing=self.allow_missing_crl
                )
                self._verifier = snp.SnpVerifier(crls=source)
            return self._verifier

    def warm(self, evidence: Any) -> bool:
        if not evidence.vcek or any(
            len(b) > WARM_CHECK_MAX_BYTES
            for b in (evidence.vcek, evidence.cert_chain, evidence.crl)
        ):
            return False
        return self._snp().chain_cached(
            bytes(evidence.vcek),
            cert_chain=bytes(evidence.cert_chain) or None,
            roots=_read_roots(self.roots),
            crl=bytes(evidence.crl) or None,
            cache_dir=self.collateral_dir,
        )

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        return self._snp().verify_report(
            bytes(evidence.report),
            vcek=bytes(evidence.vcek) or None,
            cert_chain=bytes(evidence.cert_chain) or None,
            roots=_read_roots(ctx.roots),
            crl=bytes(evidence.crl) or None,
            report_data=ctx.binding,
            cache_dir=self.collateral_dir,
        )


class TdxVerifier(PlatformVerifier):
    """TDX via one ``sealgate.tdx.TdxVerifier`` held for the adapter's lifetime; report_data =
    the binding.

    Collateral cached for the quote's FMSPC (``sealgate collateral fetch tdx``) is used in
    preference to the node's; either is refused when older than ``collateral_max_age``.
    """

    name = "tdx"

    def __init__(
        self,
        *,
        roots: list[Path] | None = None,
        collateral_dir: Path | None = None,
        collateral_max_age: int = 7 * 86400,
    ) -> None:
        self.roots = list(roots or [])
        self.collateral_dir = collateral_dir
        self.max_age = timedelta(seconds=collateral_max_age)
        #: Verified PCK chains, loaded and verified collateral, CRLs and TCB evaluations
        #: for the service's lifetime (bounded).
        self.verifier = tdx.TdxVerifier()

    def warm(self, evidence: Any) -> bool:
        if len(evidence.quote) > WARM_CHECK_MAX_BYTES or (
            len(evidence.collateral) > WARM_CHECK_MAX_BYTES
        ):
            return False
        return self.verifier.quote_cached(
            bytes(evidence.quote),
            collateral=bytes(evidence.collateral) or None,
            roots=_read_roots(self.roots),
            cache_dir=self.collateral_dir,
        )

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        collateral = None
        if evidence.collateral:
            # Collateral JSON as `sealgate verify tdx --collateral` takes it (README "Intel TDX").
            collateral = self.verifier.load_collateral_json(bytes(evidence.collateral))
        return self.verifier.verify_quote(
            bytes(evidence.quote),
            collateral=collateral,
            roots=_read_roots(ctx.roots),
            ccel=bytes(evidence.ccel) or None,
            report_data=ctx.binding,
            cache_dir=self.collateral_dir,
            prefer_cached=True,
            collateral_max_age=self.max_age,
        )


class AzureVerifier(PlatformVerifier):
    """An Azure CVM (``azure-snp`` / ``azure-tdx``) via ``sealgate.azure.AzureVerifier``.

    Binding (README "gRPC API"): the HCL report's runtime data ``user-data`` must be the
    whole binding (the paravisor made the hardware report for this challenge) and the vTPM
    quote's extraData its first 32 bytes. The hardware report is verified with the SNP or
    TDX adapter's own verifier (chain cache, CRL source, collateral cache), so an Azure SNP
    chip is checked exactly like a bare one. No enrollment: the AK is HCLAkPub, which the
    hardware report commits to.
    """

    def __init__(self, name: str, *, snp_adapter: SnpVerifier, tdx_adapter: TdxVerifier) -> None:
        if name not in ("azure-snp", "azure-tdx"):
            raise ValueError(name)
        self.name = name
        self.snp_adapter = snp_adapter
        self.tdx_adapter = tdx_adapter
        self._verifier: azure.AzureVerifier | None = None
        self._lock = threading.Lock()

    def _azure(self) -> azure.AzureVerifier:
        with self._lock:
            if self._verifier is None:
                # The configured roots are read once, as the SNP/TDX adapters' caches do.
                self._verifier = azure.AzureVerifier(
                    snp_verifier=self.snp_adapter._snp(),
                    tdx_verifier=self.tdx_adapter.verifier,
                    snp_roots=_read_roots(self.snp_adapter.roots),
                    tdx_roots=_read_roots(self.tdx_adapter.roots),
                    cache_dir=self.snp_adapter.collateral_dir or self.tdx_adapter.collateral_dir,
                    tdx_prefer_cached=True,
                    tdx_collateral_max_age=self.tdx_adapter.max_age,
                )
            return self._verifier

    def warm(self, evidence: Any) -> bool:
        # The vTPM quote costs one RSA verification whatever is cached; the hardware part
        # is what the SNP/TDX adapters' caches decide.
        if any(len(b) > WARM_CHECK_MAX_BYTES for b in (evidence.vcek, evidence.cert_chain)):
            return False
        if self.name == "azure-snp":
            return bool(evidence.vcek) and self.snp_adapter._snp().chain_cached(
                bytes(evidence.vcek),
                cert_chain=bytes(evidence.cert_chain) or None,
                roots=_read_roots(self.snp_adapter.roots),
                cache_dir=self.snp_adapter.collateral_dir,
            )
        if len(evidence.td_quote) > WARM_CHECK_MAX_BYTES or (
            len(evidence.collateral) > WARM_CHECK_MAX_BYTES
        ):
            return False
        return bool(evidence.td_quote) and self.tdx_adapter.verifier.quote_cached(
            bytes(evidence.td_quote),
            collateral=bytes(evidence.collateral) or None,
            roots=_read_roots(self.tdx_adapter.roots),
            cache_dir=self.tdx_adapter.collateral_dir,
        )

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        if not evidence.quote or not evidence.signature:
            # The CLI may check an HCL report alone; the service never grants on one: the
            # vTPM quote is what PCR requirements and the AK's possession rest on.
            res = VerifyResult(self.name)
            res.fail("service.azure.quote_missing", "Azure evidence needs the vTPM quote")
            return res
        pcrs: tpm.PcrMap | None = None
        if len(evidence.pcrs):
            pcrs = {}
            for p in evidence.pcrs:
                pcrs.setdefault(p.bank, {})[int(p.index)] = bytes(p.value)
        ev = azure.AzureEvidence(
            hcl_report=bytes(evidence.hcl_report),
            quote=bytes(evidence.quote),
            signature=bytes(evidence.signature),
            pcrs=pcrs,
            eventlog=bytes(evidence.event_log) or None,
            vcek=bytes(evidence.vcek) or None,
            cert_chain=bytes(evidence.cert_chain) or None,
            td_quote=bytes(evidence.td_quote) or None,
            # Collateral JSON as `sealgate verify tdx --collateral` takes it.
            collateral=self.tdx_adapter.verifier.load_collateral_json(bytes(evidence.collateral))
            if evidence.collateral
            else None,
        )
        res = self._azure().verify(ev, nonce=ctx.binding[:TPM_BINDING_SIZE], user_data=ctx.binding)
        if res.platform != self.name:
            # An HCL report that did not parse (platform "azure": its failures say why), or
            # one of the other kind (TDX under an azure-snp challenge): never appraised as
            # this platform.
            out = VerifyResult(self.name)
            out.errors.extend(res.errors)
            if res.platform in ("azure-snp", "azure-tdx") or not out.errors:
                out.fail(
                    "service.azure.platform_mismatch",
                    f"challenge is for {self.name}, the HCL report holds {res.platform}",
                )
            return out
        return res


class PlatformRegistry:
    def __init__(self, verifiers: list[PlatformVerifier] | None = None) -> None:
        self._v: dict[str, PlatformVerifier] = {}
        for v in verifiers if verifiers is not None else default_verifiers():
            self.register(v)

    def register(self, v: PlatformVerifier) -> None:
        self._v[v.name] = v

    def get(self, name: str) -> PlatformVerifier | None:
        v = self._v.get(name)
        return v if v is not None and v.available() else None

    def available(self) -> list[str]:
        return [n for n, v in self._v.items() if v.available()]


def _with_azure(verifiers: list[PlatformVerifier]) -> list[PlatformVerifier]:
    """Add the Azure platforms, sharing the SNP and TDX adapters' verifiers and caches."""
    by_name = {v.name: v for v in verifiers}
    s, t = by_name["snp"], by_name["tdx"]
    assert isinstance(s, SnpVerifier) and isinstance(t, TdxVerifier)
    return [
        *verifiers,
        AzureVerifier("azure-snp", snp_adapter=s, tdx_adapter=t),
        AzureVerifier("azure-tdx", snp_adapter=s, tdx_adapter=t),
    ]


def default_verifiers(cfg: ServiceConfig | None = None) -> list[PlatformVerifier]:
    if cfg is None:
        return _with_azure([TpmVerifier(), SnpVerifier(), TdxVerifier()])
    for p in cfg.snp_crls:
        # A mistyped path would otherwise surface only as snp.crl.missing on every node.
        if not p.exists():
            raise UsageError("config.invalid", f"snp_crls: {p} does not exist")
    if cfg.tdx_collateral_max_age < 3600:
        raise UsageError("config.invalid", "tdx_collateral_max_age must be at least 3600 s")
    return _with_azure(
        [
            TpmVerifier(),
            SnpVerifier(
                roots=cfg.snp_roots,
                crls=cfg.snp_crls,
                collateral_dir=cfg.collateral_dir,
                allow_missing_crl=cfg.snp_allow_missing_crl,
            ),
            TdxVerifier(
                roots=cfg.tdx_roots,
                collateral_dir=cfg.collateral_dir,
                collateral_max_age=cfg.tdx_collateral_max_age,
            ),
        ]
    )


# -- Hardware identities (what revocation sticks to) ---------------------------------------

#: Identity kinds per platform and the byte lengths their values may have.
IDENTITY_KINDS: dict[str, dict[str, tuple[int, ...]]] = {
    # SHA-256 of the EK certificate; the AK's TPM Name (2-byte nameAlg ‖ digest).
    "tpm": {"ek": (32,), "ak": (22, 34, 50, 66)},
    # CHIP_ID (64 bytes; Turin: 8 bytes then zeros); SHA-256 of the VCEK/VLEK certificate.
    "snp": {"chip_id": (64,), "vcek": (32,), "vlek": (32,)},
    # PPID and platform instance id from the PCK certificate's SGX extension.
    "tdx": {"ppid": (16,), "platform_instance_id": (16,)},
}
#: An Azure CVM is identified by its hardware (the chip or PCK behind the paravisor).
IDENTITY_KINDS["azure-snp"] = IDENTITY_KINDS["snp"]
IDENTITY_KINDS["azure-tdx"] = IDENTITY_KINDS["tdx"]

#: Where revocations of a platform's identities are looked up: its own, and for an Azure
#: CVM its hardware platform's (revoking a chip as ``snp`` revokes it behind the paravisor).
_REVOCATION_PLATFORMS = {"azure-snp": ("azure-snp", "snp"), "azure-tdx": ("azure-tdx", "tdx")}


def revocation_platforms(platform: str) -> tuple[str, ...]:
    return _REVOCATION_PLATFORMS.get(platform, (platform,))


_IDENTITY = re.compile(r"([a-z_]+):([0-9a-f]+)")


def tpm_identities(ek_fingerprint: str, ak_name: bytes) -> list[str]:
    return [f"ek:{ek_fingerprint}", f"ak:{ak_name.hex()}"]


class _Identified(Protocol):
    def identities(self) -> list[str]: ...


#: Platform name → its typed claims, built from the claims dict (``<platform>/claims.py``).
def _part(
    name: str, build: Callable[[Mapping[str, Any]], _Identified]
) -> Callable[[Mapping[str, Any]], _Identified]:
    """Typed claims of one component of composite claims (Azure: ``snp`` / ``tdx``)."""

    def parse(claims: Mapping[str, Any]) -> _Identified:
        part = claims.get(name)
        return build(part if isinstance(part, Mapping) else {})

    return parse


CLAIMS: Mapping[str, Callable[[Mapping[str, Any]], _Identified]] = {
    "tpm": TpmClaims.from_claims,
    "snp": SnpClaims.from_claims,
    "tdx": TdxClaims.from_claims,
    "azure-snp": _part("snp", SnpClaims.from_claims),
    "azure-tdx": _part("tdx", TdxClaims.from_claims),
}


def identities(platform: str, claims: Mapping[str, Any]) -> list[str]:
    """The hardware identities a verified attestation names, as ``kind:hex``: what a
    revocation is keyed on (with the platform), never the node id the client chose. Each
    platform's claims say which (``TpmClaims.identities`` and the others); a platform
    without typed claims names none.
    """
    build = CLAIMS.get(platform)
    return build(claims).identities() if build is not None else []


def parse_identity(platform: str, identity: str) -> str:
    """An operator-given identity, checked and normalised (lowercase hex); ValueError says
    what is wrong."""
    kinds = IDENTITY_KINDS.get(platform)
    if kinds is None:
        raise ValueError(f"platform {platform or 'unspecified'} has no identities")
    m = _IDENTITY.fullmatch(identity.strip().lower())
    if m is None or m.group(1) not in kinds:
        raise ValueError(f"{platform} identities are KIND:HEX with KIND one of {', '.join(kinds)}")
    kind, value = m.groups()
    if len(value) % 2 or len(value) // 2 not in kinds[kind]:
        raise ValueError(f"{kind} is {' or '.join(map(str, kinds[kind]))} bytes")
    return f"{kind}:{value}"
