"""TCB evaluation as Intel's Quote Verification Library does it for TDX.

Intel SGX/TDX DCAP QVL (``QuoteVerification/QVL/Src/AttestationLibrary/src/Verifiers/
QuoteVerifier.cpp``; TDX TCB info v3 in "Intel TDX DCAP Quoting Library API" and the PCS
API "Get TDX TCB Info"):

1. Platform level: the FIRST entry of ``tcbLevels`` (Intel orders them newest first) whose
   16 ``sgxtcbcomponents`` are each ≤ the PCK certificate's component SVNs, whose ``pcesvn``
   ≤ the PCK certificate's PCESVN, and whose ``tdxtcbcomponents`` are each ≤ the quote's
   TEE_TCB_SVN — from index 2 when TEE_TCB_SVN[1] > 0, because then bytes 0 and 1 are the TDX
   module's SVN and major version, evaluated against the TDX module identity instead.
   No such level → failure ``tdx.tcb.no_matching_level`` (QVL STATUS_TCB_NOT_SUPPORTED).
2. TDX module (QVL ``TdxModuleCheck``): with TEE_TCB_SVN[1] == 0, MRSIGNERSEAM and
   SEAMATTRIBUTES (masked) must match ``tdxModule``; with TEE_TCB_SVN[1] > 0 they must match
   the identity ``TDX_%02X`` % TEE_TCB_SVN[1] in ``tdxModuleIdentities``, whose first level
   with isvsvn ≤ TEE_TCB_SVN[0] gives the module status.
3. QE identity (TD_QE): MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES (masked) must match;
   the first level with isvsvn ≤ the QE report's ISVSVN gives the QE status (none → Revoked,
   as QVL's ``EnclaveIdentityV2::getTcbStatus``).
4. Statuses converge: an OutOfDate module or QE turns UpToDate/SWHardeningNeeded into
   OutOfDate and ConfigurationNeeded/ConfigurationAndSWHardeningNeeded into
   OutOfDateConfigurationNeeded; Revoked anywhere is Revoked (a failure,
   ``tdx.tcb.revoked`` / ``tdx.qe.revoked``). Advisory IDs are the union of the matched
   levels' ``advisoryIDs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sealgate.errors import CollateralError, VerificationError

STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


@dataclass(frozen=True)
class TcbResult:
    status: str
    advisory_ids: tuple[str, ...]
    qe_status: str
    tdx_module_status: str | None
    tcb_date: str | None
    failures: tuple[tuple[str, str], ...]


def _invalid(msg: str) -> CollateralError:
    return CollateralError("tdx.collateral.invalid", msg)


def _svns(comps: Any, what: str) -> list[int]:
    if not isinstance(comps, list) or len(comps) != 16:
        raise _invalid(f"{what} must list 16 components")
    out = []
    for c in comps:
        v = c.get("svn") if isinstance(c, dict) else None
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
            raise _invalid(f"{what} has a bad svn {v!r}")
        out.append(v)
    return out


def _status(level: dict[str, Any], what: str) -> str:
    s = level.get("tcbStatus")
    if s not in STATUSES:
        raise _invalid(f"{what} has unknown tcbStatus {s!r}")
    return str(s)


def _advisories(level: dict[str, Any]) -> list[str]:
    a = level.get("advisoryIDs") or []
    if not isinstance(a, list) or not all(isinstance(x, str) for x in a):
        raise _invalid("advisoryIDs must be a list of strings")
    return list(a)


def _hexfield(d: dict[str, Any], key: str, what: str) -> bytes:
    v = d.get(key)
    try:
        return bytes.fromhex(v) if isinstance(v, str) else b""
    except ValueError:
        raise _invalid(f"{what}.{key} is not hex") from None


def converge(platform: str, other: str) -> str:
    """Merge a module/QE status into the platform status (QVL ``convergeTcbStatus...``)."""
    if other == "Revoked" or platform == "Revoked":
        return "Revoked"
    if other == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


def _isv_level(levels: Any, isvsvn: int, what: str) -> dict[str, Any] | None:
    if not isinstance(levels, list):
        raise _invalid(f"{what}.tcbLevels is not a list")
    for lv in levels:
        tcb = lv.get("tcb") if isinstance(lv, dict) else None
        need = tcb.get("isvsvn") if isinstance(tcb, dict) else None
        if not isinstance(need, int):
            raise _invalid(f"{what} level without isvsvn")
        if need <= isvsvn:
            return dict(lv)
    return None


def _masked_eq(value: bytes, expected: bytes, mask: bytes) -> bool:
    if len(value) != len(expected) or len(mask) != len(expected):
        return False
    return all((v & m) == (e & m) for v, e, m in zip(value, expected, mask, strict=True))


def evaluate(
    tcb_info: dict[str, Any],
    qe_identity: dict[str, Any],
    *,
    sgx_components: tuple[int, ...],
    pcesvn: int,
    tee_tcb_svn: bytes,
    mr_signer_seam: bytes,
    seam_attributes: bytes,
    qe_mr_signer: bytes,
    qe_isv_prod_id: int,
    qe_isv_svn: int,
    qe_misc_select: int,
    qe_attributes: bytes,
) -> TcbResult:
    failures: list[tuple[str, str]] = []
    advisories: list[str] = []

    # --- QE identity (TD_QE) ---
    if _hexfield(qe_identity, "mrsigner", "enclaveIdentity") != qe_mr_signer:
        failures.append(("tdx.qe.identity_mismatch", "QE MRSIGNER differs from the TD_QE identity"))
    if qe_identity.get("isvprodid") != qe_isv_prod_id:
        failures.append(
            (
                "tdx.qe.identity_mismatch",
                f"QE ISVPRODID {qe_isv_prod_id}, identity {qe_identity.get('isvprodid')!r}",
            )
        )
    ms = _hexfield(qe_identity, "miscselect", "enclaveIdentity")
    msm = _hexfield(qe_identity, "miscselectMask", "enclaveIdentity")
    if not _masked_eq(qe_misc_select.to_bytes(4, "big"), ms, msm):
        failures.append(("tdx.qe.identity_mismatch", "QE MISCSELECT does not match (masked)"))
    at = _hexfield(qe_identity, "attributes", "enclaveIdentity")
    atm = _hexfield(qe_identity, "attributesMask", "enclaveIdentity")
    if not _masked_eq(qe_attributes, at, atm):
        failures.append(("tdx.qe.identity_mismatch", "QE ATTRIBUTES do not match (masked)"))
    qe_level = _isv_level(qe_identity.get("tcbLevels"), qe_isv_svn, "enclaveIdentity")
    qe_status = _status(qe_level, "enclaveIdentity level") if qe_level else "Revoked"
    if qe_level:
        advisories += _advisories(qe_level)
    if qe_status == "Revoked":
        failures.append(("tdx.qe.revoked", f"QE ISVSVN {qe_isv_svn} is revoked"))

    # --- TDX module ---
    # QVL TdxModuleCheck: with TEE_TCB_SVN[1] == 0 MRSIGNERSEAM/SEAMATTRIBUTES are checked
    # against ``tdxModule``; otherwise against the matching ``tdxModuleIdentities`` entry.
    major = tee_tcb_svn[1]
    module = tcb_info.get("tdxModule")
    if major == 0 and isinstance(module, dict):
        if _hexfield(module, "mrsigner", "tdxModule") != mr_signer_seam:
            failures.append(
                ("tdx.tcb.tdx_module_mismatch", "MRSIGNERSEAM differs from tcbInfo.tdxModule")
            )
        if not _masked_eq(
            seam_attributes,
            _hexfield(module, "attributes", "tdxModule"),
            _hexfield(module, "attributesMask", "tdxModule"),
        ):
            failures.append(
                ("tdx.tcb.tdx_module_mismatch", "SEAMATTRIBUTES do not match tcbInfo.tdxModule")
            )
    module_status: str | None = None
    if major > 0:
        ident_id = f"TDX_{major:02X}"
        idents = tcb_info.get("tdxModuleIdentities") or []
        ident = next((i for i in idents if isinstance(i, dict) and i.get("id") == ident_id), None)
        if ident is None:
            failures.append(
                (
                    "tdx.tcb.tdx_module_mismatch",
                    f"TCB info has no TDX module identity {ident_id}",
                )
            )
        else:
            if _hexfield(ident, "mrsigner", ident_id) != mr_signer_seam or not _masked_eq(
                seam_attributes,
                _hexfield(ident, "attributes", ident_id),
                _hexfield(ident, "attributesMask", ident_id),
            ):
                failures.append(
                    ("tdx.tcb.tdx_module_mismatch", f"TDX module differs from {ident_id}")
                )
            lv = _isv_level(ident.get("tcbLevels"), tee_tcb_svn[0], ident_id)
            if lv is None:
                failures.append(
                    (
                        "tdx.tcb.no_matching_level",
                        f"TDX module SVN {tee_tcb_svn[0]} matches no level of {ident_id}",
                    )
                )
            else:
                module_status = _status(lv, ident_id)
                advisories += _advisories(lv)

    # --- Platform TCB level ---
    start = 2 if major > 0 else 0
    chosen: dict[str, Any] | None = None
    for lv in tcb_info.get("tcbLevels") or []:
        tcb = lv.get("tcb") if isinstance(lv, dict) else None
        if not isinstance(tcb, dict):
            raise _invalid("tcbLevels entry without tcb")
        sgx = _svns(tcb.get("sgxtcbcomponents"), "sgxtcbcomponents")
        tdx = _svns(tcb.get("tdxtcbcomponents"), "tdxtcbcomponents")
        need_pce = tcb.get("pcesvn")
        if not isinstance(need_pce, int):
            raise _invalid("tcbLevels entry without pcesvn")
        if (
            all(n <= have for n, have in zip(sgx, sgx_components, strict=True))
            and need_pce <= pcesvn
            and all(tdx[i] <= tee_tcb_svn[i] for i in range(start, 16))
        ):
            chosen = lv
            break
    if chosen is None:
        failures.append(
            (
                "tdx.tcb.no_matching_level",
                "no TCB level of the TCB info is satisfied by the platform "
                f"(PCK SVNs {list(sgx_components)}, PCESVN {pcesvn}, "
                f"TEE_TCB_SVN {tee_tcb_svn.hex()})",
            )
        )
        return TcbResult("", (), qe_status, module_status, None, tuple(failures))
    status = _status(chosen, "tcbLevel")
    advisories = _advisories(chosen) + advisories
    if module_status is not None:
        status = converge(status, module_status)
    status = converge(status, qe_status)
    if status == "Revoked":
        failures.append(("tdx.tcb.revoked", "the platform TCB level is Revoked"))
    seen: dict[str, None] = {}
    for a in advisories:
        seen.setdefault(a, None)
    return TcbResult(
        status=status,
        advisory_ids=tuple(seen),
        qe_status=qe_status,
        tdx_module_status=module_status,
        tcb_date=str(chosen.get("tcbDate")) if chosen.get("tcbDate") else None,
        failures=tuple(failures),
    )


__all__ = ["STATUSES", "TcbResult", "VerificationError", "converge", "evaluate"]
