"""Revocation claims of one NVIDIA device (GPU or NVSwitch): OCSP (RFC 6960,
``sealgate.nvgpu.ocsp``) for every certificate but the anchor of the device chain and of the
signer chain of each RIM its measurements were compared with.

``ocsp`` is one pool for all of a device's chains (a node sends its device's collateral
together); a RIM chain also takes the collateral cache's responses
(``RimSource.cached_ocsp``). A chain without responses is "not checked" and policy decides;
a revoked, unknown, stale or badly signed response fails the device. The claim
``revocation``: ``checked`` only when every chain was checked, ``status``, the device
chain's ``certificates``, and ``device`` / ``rims`` (per RIM kind, with its id) saying which
chain was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sealgate.errors import SealgateError
from sealgate.nvgpu import ocsp as nv_ocsp
from sealgate.result import VerifyResult

if TYPE_CHECKING:
    from sealgate.nvgpu.rim import Rim, RimSource


def chain_revocation(
    res: VerifyResult, certs: Sequence[Any], pools: Sequence[Sequence[bytes]], at: datetime
) -> dict[str, Any]:
    """One chain's revocation from the responses of ``pools`` that concern it (each pool
    bounded by ``responses_for``); a failure is recorded in ``res``."""
    try:
        mine = [x for p in pools for x in nv_ocsp.responses_for(certs, p)]
        out = nv_ocsp.check_chain(certs, mine, at=at)
    except SealgateError as e:
        # A bad response in the shared pool fails every chain alike: say so once.
        if not any(f.code == e.code and f.message == e.message for f in res.errors):
            res.fail_from(e)
        return {"checked": False, "status": e.code, "certificates": []}
    return out.as_dict()


def record_revocation(
    res: VerifyResult,
    device_certs: Sequence[Any],
    ocsp: Sequence[bytes] | None,
    at: datetime,
    rims: Mapping[str, Rim],
    source: RimSource | None,
) -> None:
    """Set ``res.claims["revocation"]`` for the device chain ``device_certs`` (leaf first,
    anchor last) and the signer chains of ``rims`` (kind → the RIM compared with)."""
    if not ocsp and not rims:
        # Nothing to check (the usual case without collateral): the result the general
        # path gives for an empty pool, without its per-chain work.
        res.claims["revocation"] = {
            "checked": False,
            "status": "not_checked",
            "certificates": [],
            "device": {"checked": False, "status": "not_checked", "certificates": []},
            "rims": {},
        }
        return
    pool = list(ocsp or ())
    device = chain_revocation(res, device_certs, [pool], at)
    rims_out: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for kind, r in rims.items():
        # NVIDIA signs the driver and VBIOS RIMs under one chain: check it (and report a
        # failure) once.
        key = tuple(c.fingerprint for c in r.signer)
        if key not in seen:
            cached = source.cached_ocsp(r.signer) if source is not None else []
            extra = [x for x in cached if x not in pool]
            seen[key] = chain_revocation(res, r.signer, [pool, extra], at)
        rims_out[kind] = {"id": r.id, **seen[key]}
    checked = device["checked"] is True and all(v["checked"] is True for v in rims_out.values())
    bad = next(
        (
            v["status"]
            for v in (device, *rims_out.values())
            if v["status"] not in ("good", "not_checked")
        ),
        None,
    )
    res.claims["revocation"] = {
        "checked": checked,
        "status": bad or ("good" if checked else "not_checked"),
        # The device chain's certificates, where earlier claims had them.
        "certificates": device.get("certificates", []),
        "device": device,
        "rims": rims_out,
    }
