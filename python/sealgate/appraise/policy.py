"""The policy document: which platforms may receive a key and what each must show.

JSON (or YAML) like::

    {
      "platforms": {
        "tpm": {"reference_sets": ["golden"], "required_selection": "sha256:0,1,2,3,4,5,6,7",
                "pcrs": {"sha256": {"7": ["<hex>"]}}, "allow_weak_hashes": false,
                "ek_ca_fingerprints": ["<sha256 hex of the EK root CA>"]},
        "snp": {"reference_sets": ["prod"], "measurement": ["<hex>"], "host_data": ["<hex>"],
                "min_reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
                "allow_debug": false, "vmpl": [0], "products": ["Milan", "Genoa"]},
        "tdx": {"reference_sets": ["prod"], "mr_td": ["<hex>"], "rtmr0": ["<hex>"],
                "mr_config_id": ["<hex>"], "tcb_statuses": ["UpToDate"], "allow_debug": false}
      }
    }

A platform not listed is refused. Within a platform, an unset field is not checked, except
the safe defaults: debug is forbidden, weak (SHA-1) hashes are refused unless allowed, and a
TDX TCB status must be ``UpToDate`` unless ``tcb_statuses`` says otherwise. Reference values
come from named sets: TPM names are ``<bank>:<pcr>`` (``sha256:7``), SNP
``measurement``/``host_data``, TDX ``mr_td``, ``rtmr0``..``rtmr3``, ``mr_config_id``; all
values in the sets for a name are acceptable, together with the inline ones.

An empty requirement is not a permission: every listed platform must constrain what runs
(TPM: a PCR value; SNP: ``measurement``; TDX: ``mr_td`` or an RTMR), inline or through a
reference set, or say ``allow_any_measurement: true``. :func:`check_writable` refuses a
policy without either (``policy.document.no_measurement``) when it is written; appraisal
fails closed when the named sets yield no such value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sealgate.documents import load_document
from sealgate.errors import UsageError

PLATFORMS = ("tpm", "snp", "tdx")
_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
SNP_TCB_FIELDS = ("bootloader", "tee", "snp", "microcode", "fmc")
TDX_MEASUREMENTS = ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id")
#: The TDX values that measure code (MR_CONFIG_ID is configuration the host chooses).
TDX_CODE_MEASUREMENTS = ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3")
#: Unset ``tcb_statuses``: only a platform Intel rates fully patched (Intel TDX DCAP TCB
#: info v3, ``tcbStatus``); anything else is the operator's explicit choice.
DEFAULT_TCB_STATUSES = ("UpToDate",)
#: Policy documents are a few KiB; the CLI reads at most this much too.
MAX_POLICY_BYTES = 1 << 20


def _bad(msg: str) -> UsageError:
    return UsageError("policy.document.invalid", msg)


def _str_list(v: Any, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(f"{where} must be a list of strings")
    return list(v)


def _hex_list(v: Any, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    out = _str_list(v, where)
    for x in out:
        if not _HEX_RE.match(x) or len(x) % 2:
            raise _bad(f"{where}: {x[:20]!r} is not hex")
    return [x.lower() for x in out]


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(f"{where} must be true or false")
    return v


@dataclass
class TpmRequirements:
    reference_sets: list[str] = field(default_factory=list)
    pcrs: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    required_selection: str | None = None
    allow_weak_hashes: bool = False
    ek_ca_fingerprints: list[str] = field(default_factory=list)
    allow_any_measurement: bool = False


@dataclass
class SnpRequirements:
    reference_sets: list[str] = field(default_factory=list)
    measurement: list[str] = field(default_factory=list)
    host_data: list[str] = field(default_factory=list)
    min_reported_tcb: dict[str, int] = field(default_factory=dict)
    allow_debug: bool = False
    vmpl: list[int] | None = None
    products: list[str] = field(default_factory=list)
    allow_any_measurement: bool = False


@dataclass
class TdxRequirements:
    reference_sets: list[str] = field(default_factory=list)
    measurements: dict[str, list[str]] = field(default_factory=dict)
    tcb_statuses: list[str] = field(default_factory=lambda: list(DEFAULT_TCB_STATUSES))
    allow_debug: bool = False
    allow_any_measurement: bool = False


@dataclass
class Policy:
    tpm: TpmRequirements | None = None
    snp: SnpRequirements | None = None
    tdx: TdxRequirements | None = None

    @property
    def platforms(self) -> list[str]:
        return [p for p in PLATFORMS if getattr(self, p) is not None]

    @property
    def any_measurement(self) -> list[str]:
        """Platforms whose policy explicitly accepts any measurement."""
        return [p for p in self.platforms if getattr(self, p).allow_any_measurement]


def _known(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        # Unknown keys are refused: a misspelt requirement must not silently mean "unchecked".
        raise _bad(f"{where}: unknown field(s) {', '.join(unknown)}")


def _tpm(d: dict[str, Any]) -> TpmRequirements:
    _known(
        d,
        {
            "reference_sets",
            "pcrs",
            "required_selection",
            "allow_weak_hashes",
            "ek_ca_fingerprints",
            "allow_any_measurement",
        },
        "tpm",
    )
    r = TpmRequirements()
    r.reference_sets = _str_list(d.get("reference_sets", []), "tpm.reference_sets")
    pcrs = d.get("pcrs", {})
    if not isinstance(pcrs, dict):
        raise _bad("tpm.pcrs must map bank to {pcr: [hex]}")
    for bank, values in pcrs.items():
        if not isinstance(values, dict):
            raise _bad(f"tpm.pcrs.{bank} must map PCR index to hex values")
        for idx, hexes in values.items():
            try:
                i = int(idx)  # keys are strings (the loader refuses others)
            except ValueError:
                raise _bad(f"tpm.pcrs.{bank}: bad PCR index {idx[:20]!r}") from None
            if not 0 <= i <= 23:
                raise _bad(f"tpm.pcrs.{bank}: PCR {i} out of range")
            r.pcrs.setdefault(str(bank), {})[i] = _hex_list(hexes, f"tpm.pcrs.{bank}.{idx}")
    sel = d.get("required_selection")
    if sel is not None:
        from sealgate.tpm import parse_selection

        if not isinstance(sel, str):
            raise _bad("tpm.required_selection must be a string like sha256:0,1,2")
        try:
            parse_selection(sel)
        except UsageError as e:
            raise _bad(f"tpm.required_selection: {e.message}") from None
        r.required_selection = sel
    r.allow_weak_hashes = _bool(d.get("allow_weak_hashes", False), "tpm.allow_weak_hashes")
    r.ek_ca_fingerprints = _hex_list(d.get("ek_ca_fingerprints", []), "tpm.ek_ca_fingerprints")
    r.allow_any_measurement = _bool(
        d.get("allow_any_measurement", False), "tpm.allow_any_measurement"
    )
    return r


def _snp(d: dict[str, Any]) -> SnpRequirements:
    _known(
        d,
        {
            "reference_sets",
            "measurement",
            "host_data",
            "min_reported_tcb",
            "allow_debug",
            "vmpl",
            "products",
            "allow_any_measurement",
        },
        "snp",
    )
    r = SnpRequirements()
    r.reference_sets = _str_list(d.get("reference_sets", []), "snp.reference_sets")
    r.measurement = _hex_list(d.get("measurement", []), "snp.measurement")
    r.host_data = _hex_list(d.get("host_data", []), "snp.host_data")
    tcb = d.get("min_reported_tcb", {})
    if not isinstance(tcb, dict) or not all(
        k in SNP_TCB_FIELDS and isinstance(v, int) and 0 <= v <= 255 for k, v in tcb.items()
    ):
        raise _bad(f"snp.min_reported_tcb must map {'/'.join(SNP_TCB_FIELDS)} to 0..255")
    r.min_reported_tcb = dict(tcb)
    r.allow_debug = _bool(d.get("allow_debug", False), "snp.allow_debug")
    if "vmpl" in d:
        v = d["vmpl"]
        if not isinstance(v, list) or not all(isinstance(x, int) and 0 <= x <= 3 for x in v):
            raise _bad("snp.vmpl must be a list of 0..3")
        r.vmpl = list(v)
    r.products = _str_list(d.get("products", []), "snp.products")
    r.allow_any_measurement = _bool(
        d.get("allow_any_measurement", False), "snp.allow_any_measurement"
    )
    return r


def _tdx(d: dict[str, Any]) -> TdxRequirements:
    _known(
        d,
        {
            "reference_sets",
            "tcb_statuses",
            "allow_debug",
            "allow_any_measurement",
            *TDX_MEASUREMENTS,
        },
        "tdx",
    )
    r = TdxRequirements()
    r.reference_sets = _str_list(d.get("reference_sets", []), "tdx.reference_sets")
    for name in TDX_MEASUREMENTS:
        if name in d:
            r.measurements[name] = _hex_list(d[name], f"tdx.{name}")
    if "tcb_statuses" in d:
        # An empty list accepts no status at all (check_writable refuses to store one).
        r.tcb_statuses = _str_list(d["tcb_statuses"], "tdx.tcb_statuses")
    r.allow_debug = _bool(d.get("allow_debug", False), "tdx.allow_debug")
    r.allow_any_measurement = _bool(
        d.get("allow_any_measurement", False), "tdx.allow_any_measurement"
    )
    return r


def _load(text: str) -> Any:
    return load_document(
        text, code="policy.document.invalid", what="policy", max_bytes=MAX_POLICY_BYTES
    )


def parse_policy(text: str) -> Policy:
    """Parse and validate a policy document (JSON or YAML); UsageError on anything odd.

    This is also how stored policies are read, so it does not apply :func:`check_writable`:
    a stored policy without a measurement constraint is refused at appraisal instead."""
    return _policy(_load(text))


def _policy(doc: Any) -> Policy:
    if not isinstance(doc, dict):
        raise _bad("policy must be an object")
    _known(doc, {"platforms"}, "policy")
    plats = doc.get("platforms")
    if not isinstance(plats, dict) or not plats:
        raise _bad("policy.platforms must name at least one platform")
    p = Policy()
    for name, req in plats.items():
        if name not in PLATFORMS:
            raise _bad(f"unknown platform {name[:20]!r}")
        if not isinstance(req, dict):
            raise _bad(f"platforms.{name} must be an object")
        if name == "tpm":
            p.tpm = _tpm(req)
        elif name == "snp":
            p.snp = _snp(req)
        else:
            p.tdx = _tdx(req)
    return p


def check_writable(p: Policy) -> None:
    """Refuse a policy that lets a platform run anything without saying so.

    A platform entry with no measurement constraint (TPM: no PCR value; SNP: no
    ``measurement``; TDX: no ``mr_td``/RTMR), neither inline nor through a reference set,
    releases the key to any genuine machine running any code. That must be written down
    (``allow_any_measurement: true``), never be the result of leaving fields out."""
    if p.tdx is not None and not p.tdx.tcb_statuses:
        # Once read as "any status"; say which statuses are acceptable instead.
        raise _bad("tdx.tcb_statuses must name at least one TCB status")
    missing: list[str] = []
    if p.tpm is not None and not p.tpm.allow_any_measurement:
        if not p.tpm.reference_sets and not any(v for b in p.tpm.pcrs.values() for v in b.values()):
            missing.append("tpm (no PCR value)")
    if p.snp is not None and not p.snp.allow_any_measurement:
        if not p.snp.reference_sets and not p.snp.measurement:
            missing.append("snp (no measurement)")
    if p.tdx is not None and not p.tdx.allow_any_measurement:
        if not p.tdx.reference_sets and not any(
            p.tdx.measurements.get(n) for n in TDX_CODE_MEASUREMENTS
        ):
            missing.append("tdx (no mr_td or RTMR)")
    if missing:
        raise UsageError(
            "policy.document.no_measurement",
            f"{'; '.join(missing)}: a policy must constrain the measurement, inline or through "
            "reference_sets, or set allow_any_measurement: true to accept any",
        )


def canonical_json(text: str) -> str:
    """The stored form of a policy being written: validated (including
    :func:`check_writable`), then re-serialized with sorted keys."""
    return canonical(text)[0]


def canonical(text: str) -> tuple[str, Policy]:
    """:func:`canonical_json` and the parsed policy."""
    doc = _load(text)
    p = _policy(doc)
    check_writable(p)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")), p
