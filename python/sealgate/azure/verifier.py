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
collateral go through the same code as ``verify snp`` / ``verify tdx`` / ``verify tpm``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sealgate import _core, snp, tdx, tpm
from sealgate.azure.evidence import AzureEvidence, tpmt_signature
from sealgate.azure.hcl import USER_DATA_LEN, HclReport, RuntimeData, parse_hcl_report
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

    def runtime_data(self, data: bytes) -> tuple[RuntimeData, _core.TpmPublic]:
        """The parsed runtime data and its AK as the TPM verifier takes it (the
        conversion is a sub-microsecond wrap of n and e: nothing to cache)."""
        rt = RuntimeData.parse(data)
        return rt, rt.ak.tpm_public()

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
        (zero-padded to 64 bytes)."""
        if at is not None and at.tzinfo is None:
            raise UsageError("cli.usage.bad_time", "verification time must be timezone-aware")
        if user_data is not None and len(user_data) > USER_DATA_LEN:
            raise UsageError(
                "cli.usage.bad_user_data", f"user data is at most {USER_DATA_LEN} bytes"
            )
        when = at if at is not None else datetime.now(UTC)
        res = VerifyResult(platform="azure")
        try:
            hcl = parse_hcl_report(ev.hcl_report)
        except ParseError as e:
            res.fail_from(e)
            return res
        res.platform = hcl.platform
        claims = res.claims
        claims["hcl"] = hcl.claims()

        rt: RuntimeData | None = None
        ak: _core.TpmPublic | None = None
        try:
            rt, ak = self.runtime_data(hcl.runtime_data)
        except ParseError as e:
            res.fail_from(e)
        else:
            claims["runtime_data"] = rt.claims()

        # (1) The hardware report.
        if hcl.kind == "snp":
            self._snp(res, hcl, ev, when)
        else:
            self._tdx(res, hcl, ev, when)

        # (2) The paravisor's binding of the runtime data into the hardware report.
        expected = hcl.runtime_data_sha256 + bytes(32)
        if hcl.report_data != expected:
            res.fail(
                "azure.hcl.report_data_mismatch",
                f"hardware report_data {hcl.report_data.hex()}, expected SHA-256 of the "
                f"runtime data followed by zeros ({expected.hex()})",
            )

        # (3) The vTPM quote, signed by the AK the runtime data names.
        self._vtpm(res, ev, rt, ak, nonce)

        # (4) The caller's user data.
        if user_data is not None and rt is not None:
            want = user_data.ljust(USER_DATA_LEN, b"\x00")
            got = rt.user_data
            if got is None or got.ljust(USER_DATA_LEN, b"\x00") != want:
                res.fail(
                    "azure.runtime_data.user_data_mismatch",
                    f"user-data {got.hex() if got is not None else 'absent'}, "
                    f"expected {want.hex()}",
                )
        return res

    def _snp(self, res: VerifyResult, hcl: HclReport, ev: AzureEvidence, when: datetime) -> None:
        # REPORT_DATA is checked as the HCL binding (azure.hcl.report_data_mismatch), not
        # passed down, so the failure names what is wrong.
        r = self.snp.verify_report(
            hcl.hardware_report,
            vcek=ev.vcek,
            cert_chain=ev.cert_chain,
            roots=self.snp_roots,
            at=when,
            trust_dir=self.trust_dir,
            cache_dir=self.cache_dir,
        )
        res.claims["snp"] = r.claims
        res.errors.extend(r.errors)

    def _tdx(self, res: VerifyResult, hcl: HclReport, ev: AzureEvidence, when: datetime) -> None:
        td = hcl.td_report or {}
        if ev.td_quote is None:
            res.claims["tdx"] = {"tdreport": td, "quote_checked": False, "tcb_evaluated": False}
            res.fail(
                "azure.hcl.td_quote_missing",
                "a TDX HCL report is evidence only with the TD quote made from its TDREPORT "
                "(the TDREPORT's MAC cannot be verified off the platform)",
            )
            return
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
            return  # The quote did not parse; its failure is recorded.
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

    def _vtpm(
        self,
        res: VerifyResult,
        ev: AzureEvidence,
        rt: RuntimeData | None,
        ak: _core.TpmPublic | None,
        nonce: bytes | None,
    ) -> None:
        if ev.quote is None:
            res.claims["tpm"] = {"quote_checked": False}
            if nonce is not None or ev.eventlog is not None:
                res.fail(
                    "azure.vtpm.quote_missing",
                    "a nonce or event log was given but no vTPM quote to check it against",
                )
            return
        if rt is None or ak is None:
            res.claims["tpm"] = {"quote_checked": False}
            return  # No AK: the runtime data failure is recorded.
        if ev.signature is None:
            res.claims["tpm"] = {"quote_checked": False}
            res.fail("azure.vtpm.signature_missing", "the vTPM quote has no signature")
            return
        t = tpm.verify_quote(
            ak,
            ev.quote,
            tpmt_signature(ev.signature, len(rt.ak.n)),
            pcrs=ev.pcrs,
            eventlog=ev.eventlog,
            nonce=nonce,
        )
        claims = t.claims
        claims["quote_checked"] = True
        claims["ak_jwk_thumbprint"] = rt.ak.thumbprint
        res.claims["tpm"] = claims
        res.errors.extend(t.errors)
        scheme, alg = claims.get("signature_scheme"), claims.get("hash_alg")
        if "signature_scheme" in claims and (scheme != "rsassa" or alg != "sha256"):
            # The HCL AK signs RSASSA-PKCS1-v1_5 with SHA-256; a JWK carries no TPM
            # scheme, so the verifier pins it here rather than accept what the quote says.
            res.fail(
                "tpm.quote.unsupported_scheme",
                f"vTPM quote signed {scheme}/{alg}; the HCL AK signs rsassa/sha256",
            )


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
