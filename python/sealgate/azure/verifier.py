"""Verification of Azure CVM evidence: the chain of checks and its claims.

(1) The hardware report is genuine: SNP through ``sealgate.snp`` (VCEK/VLEK → ASK → ARK,
CRLs as configured), TDX through the TD quote ``sealgate.tdx`` verifies, whose body must
repeat the HCL report's TDREPORT (the TDREPORT's MAC is keyed to the platform and cannot be
checked here, so without a TD quote a TDX HCL report is not evidence). Without DCAP
collateral the TD quote is checked in signature-and-chain-only mode and the claims say so
(``tdx.tcb_evaluated: false``). (2) report_data[0:32] = SHA-256(runtime data as stored),
report_data[32:64] zero (the paravisor's binding, ``report_data_hash_type`` 1). (3) The
vTPM quote verifies with HCLAkPub from that runtime data (RSASSA-PKCS1-v1_5 / SHA-256,
TPM 2.0 Part 2 §11.2.4.3), extraData = the expected nonce, pcrDigest over the supplied PCR
values, the event log replayed as for any TPM quote (``sealgate.tpm.verify_quote``).
(4) With expected user data, ``user-data`` carries it.

No second parser or PKI: the SNP report, TD quote, TPMS_ATTEST, certificates and
collateral go through the same code as ``verify snp`` / ``verify tdx`` / ``verify tpm``
(the SNP report and the quote through the same Rust functions, ``sealgate_verify::snp::
verify_report`` and ``sealgate_verify::tpm::verify_quote``, reached in one call,
``_core.verify_azure``, whose Azure decisions are ``sealgate_verify::azure``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sealgate import _core, snp, tdx, tpm
from sealgate.azure.evidence import AzureEvidence
from sealgate.azure.hcl import USER_DATA_LEN
from sealgate.errors import ParseError, UsageError
from sealgate.result import VerifyResult

__all__ = ["TD_BINDING_FIELDS", "AzureVerifier", "verify_evidence"]

#: TDREPORT fields the TD quote body must repeat (Intel DCAP "TD Quote Body" is
#: TDREPORT's TEE_TCB_INFO and TDINFO_STRUCT fields plus REPORTDATA). ``td_attributes``
#: is compared through its hex.
TD_BINDING_FIELDS = (
    "report_data",
    "mr_td",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "xfam",
    "td_attributes",
    "tee_tcb_svn",
    "mr_seam",
    "mr_signer_seam",
    "seam_attributes",
)


class AzureVerifier:
    """One Azure CVM verifier's state for its lifetime: a ``sealgate.snp.SnpVerifier``
    (verified AMD chains, signature memo, its CRL source), a ``sealgate.tdx.TdxVerifier``
    (PCK chains, collateral, TCB evaluations). Thread-safe: the caches lock themselves.

    ``snp_roots`` / ``tdx_roots``: explicitly trusted AMD ARKs / Intel SGX Root CAs
    (default: the pinned ones of the trust directory). ``tdx_prefer_cached``: use the
    collateral cached for the quote's FMSPC before the evidence's (a service's choice).
    """

    def __init__(
        self,
        *,
        snp_verifier: snp.SnpVerifier | None = None,
        tdx_verifier: tdx.TdxVerifier | None = None,
        snp_roots: list[bytes] | None = None,
        tdx_roots: list[bytes] | None = None,
        trust_dir: Path | None = None,
        cache_dir: Path | None = None,
        tdx_allow_missing_crl: bool = False,
        tdx_prefer_cached: bool = False,
        tdx_collateral_max_age: timedelta | None = None,
    ) -> None:
        self.snp = snp_verifier if snp_verifier is not None else snp.SnpVerifier()
        self.tdx = tdx_verifier if tdx_verifier is not None else tdx.TdxVerifier()
        self.snp_roots = snp_roots
        self.tdx_roots = tdx_roots
        self.trust_dir = trust_dir
        self.cache_dir = cache_dir
        self.tdx_allow_missing_crl = tdx_allow_missing_crl
        self.tdx_prefer_cached = tdx_prefer_cached
        self.tdx_collateral_max_age = tdx_collateral_max_age

    def clear(self) -> None:
        self.snp.clear()
        self.tdx.clear()

    # --- the chain of checks -----------------------------------------------------------

    def verify(
        self,
        ev: AzureEvidence,
        *,
        nonce: bytes | None = None,
        user_data: bytes | None = None,
        at: datetime | None = None,
    ) -> VerifyResult:
        """Verify ``ev``; every failure is in the result (``platform`` ``azure-snp`` /
        ``azure-tdx``, or ``azure`` when the HCL report does not parse). ``nonce``: the
        vTPM quote's expected extraData; ``user_data``: what ``user-data`` must carry
        (zero-padded to 64 bytes).

        One call into Rust (``_core.verify_azure``) parses the HCL report and runtime
        data, checks the binding, the user data and, with the VCEK's verified chain in
        memory, the SNP report, and verifies the vTPM quote; a chain that is not in memory
        and TDX evidence are verified here after it, through ``sealgate.snp`` /
        ``sealgate.tdx``, their failures put in their place in the chain of checks."""
        if at is not None and at.tzinfo is None:
            raise UsageError("cli.usage.bad_time", "verification time must be timezone-aware")
        if user_data is not None and len(user_data) > USER_DATA_LEN:
            raise UsageError(
                "cli.usage.bad_user_data", f"user data is at most {USER_DATA_LEN} bytes"
            )
        when = at if at is not None else datetime.now(UTC)
        entry = None
        if ev.vcek is not None:
            entry = self.snp.cached_entry(
                ev.vcek,
                cert_chain=ev.cert_chain,
                roots=self.snp_roots,
                at=when,
                trust_dir=self.trust_dir,
                cache_dir=self.cache_dir,
            )
        # An event log is replayed first (as ``sealgate.tpm.verify_quote`` does); its
        # values stand in for PCR values not given, and the replay is compared with the
        # quoted values in Rust.
        pcrs = ev.pcrs
        log: VerifyResult | None = None
        replayed: tpm.PcrMap | None = None
        if ev.eventlog is not None and ev.quote is not None:
            log = VerifyResult(platform="tpm")
            replayed = tpm.replay_eventlog(log, ev.eventlog)
            if pcrs is None and replayed is not None:
                try:
                    pcrs, _ = tpm.pcrs_from_replay(ev.quote, replayed)
                except ParseError:
                    pass  # The quote's own verification reports it.
        try:
            platform, hcl_c, rt_c, snp_c, tpm_c, errors, hw_at, tpm_at, hw = _core.verify_azure(
                ev.hcl_report,
                entry.key if entry is not None else None,
                ev.quote,
                ev.signature,
                pcrs,
                nonce,
                user_data,
                replayed,
                ev.eventlog is not None,
            )
        except ParseError as e:
            res = VerifyResult(platform="azure")
            res.fail_from(e)
            return res
        claims: dict[str, Any] = {"hcl": hcl_c}
        if rt_c is not None:
            claims["runtime_data"] = rt_c
        res = VerifyResult(platform, claims, errors)
        # (1) The hardware report (verified in the call when its chain was in memory).
        if snp_c is not None and entry is not None:
            claims["snp"] = snp.endorsed_claims(snp_c, entry)
        elif hw is not None:
            report, td = hw
            part = self._snp(report, ev, when) if td is None else self._tdx(td, ev, when)
            claims.update(part.claims)
            errors[hw_at:hw_at] = part.errors
            tpm_at += len(part.errors)
        # (3) The vTPM quote.
        if log is not None and tpm_c.get("quote_checked"):
            tpm_c = {**log.claims, **tpm_c}
            errors[tpm_at:tpm_at] = log.errors
        claims["tpm"] = tpm_c
        return res

    def _snp(self, report: bytes, ev: AzureEvidence, when: datetime) -> VerifyResult:
        # REPORT_DATA is checked as the HCL binding (azure.hcl.report_data_mismatch), not
        # passed down, so the failure names what is wrong.
        r = self.snp.verify_report(
            report,
            vcek=ev.vcek,
            cert_chain=ev.cert_chain,
            roots=self.snp_roots,
            at=when,
            trust_dir=self.trust_dir,
            cache_dir=self.cache_dir,
        )
        return VerifyResult("azure-snp", {"snp": r.claims}, r.errors)

    def _tdx(self, td: dict[str, str], ev: AzureEvidence, when: datetime) -> VerifyResult:
        res = VerifyResult("azure-tdx")
        if ev.td_quote is None:
            res.claims["tdx"] = {"tdreport": td, "quote_checked": False, "tcb_evaluated": False}
            res.fail(
                "azure.hcl.td_quote_missing",
                "a TDX HCL report is evidence only with the TD quote made from its TDREPORT "
                "(the TDREPORT's MAC cannot be verified off the platform)",
            )
            return res
        r = self.tdx.verify_quote(
            ev.td_quote,
            collateral=ev.collateral,
            roots=self.tdx_roots,
            at=when,
            allow_missing_crl=self.tdx_allow_missing_crl,
            trust_dir=self.trust_dir,
            cache_dir=self.cache_dir,
            prefer_cached=self.tdx_prefer_cached,
            collateral_max_age=self.tdx_collateral_max_age,
        )
        errors = r.errors
        evaluated = True
        if ev.collateral is None and any(f.code == "tdx.collateral.missing" for f in errors):
            # Signature-and-chain-only mode: the quote signature, QE report signature, QE
            # binding and PCK chain (validity) were checked before the collateral step;
            # the TCB status and PCK revocation were not, and the claims say so.
            errors = [f for f in errors if f.code != "tdx.collateral.missing"]
            evaluated = False
        claims: dict[str, Any] = dict(r.claims)
        claims["quote_checked"] = True
        claims["tcb_evaluated"] = evaluated
        res.claims["tdx"] = claims
        res.errors.extend(errors)
        if "mr_td" not in claims:
            return res  # The quote did not parse; its failure is recorded.
        differ = []
        for name in TD_BINDING_FIELDS:
            got = claims.get(name)
            if name == "td_attributes" and isinstance(got, dict):
                got = got.get("hex")
            if got != td.get(name):
                differ.append(name)
        if differ:
            res.fail(
                "azure.hcl.td_quote_mismatch",
                f"the TD quote does not repeat the HCL report's TDREPORT: {', '.join(differ)} "
                "differ",
            )
        return res


def verify_evidence(
    ev: AzureEvidence,
    *,
    nonce: bytes | None = None,
    user_data: bytes | None = None,
    at: datetime | None = None,
    snp_roots: list[bytes] | None = None,
    tdx_roots: list[bytes] | None = None,
    trust_dir: Path | None = None,
    cache_dir: Path | None = None,
    tdx_allow_missing_crl: bool = False,
) -> VerifyResult:
    """``AzureVerifier(...).verify(ev, ...)`` with a fresh verifier (the CLI's one call)."""
    v = AzureVerifier(
        snp_roots=snp_roots,
        tdx_roots=tdx_roots,
        trust_dir=trust_dir,
        cache_dir=cache_dir,
        tdx_allow_missing_crl=tdx_allow_missing_crl,
    )
    return v.verify(ev, nonce=nonce, user_data=user_data, at=at)
