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
the safe defaults: debug is forbidden and weak (SHA-1) hashes are refused unless allowed.
Reference values come from named sets: TPM names are ``<bank>:<pcr>`` (``sha256:7``), SNP
``measurement``/``host_data``, TDX ``mr_td``, ``rtmr0``..``rtmr3``, ``mr_config_id``; all
values in the sets for a name are acceptable, together with the inline ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from sealgate.errors import UsageError

PLATFORMS = ("tpm", "snp", "tdx")
_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
SNP_TCB_FIELDS = ("bootloader", "tee", "snp", "microcode", "fmc")
TDX_MEASUREMENTS = ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id")


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


@dataclass
class SnpRequirements:
    reference_sets: list[str] = field(default_factory=list)
    measurement: list[str] = field(default_factory=list)
    host_data: list[str] = field(default_factory=list)
    min_reported_tcb: dict[str, int] = field(default_factory=dict)
    allow_debug: bool = False
    vmpl: list[int] | None = None
    products: list[str] = field(default_factory=list)


@dataclass
class TdxRequirements:
    reference_sets: list[str] = field(default_factory=list)
    measurements: dict[str, list[str]] = field(default_factory=dict)
    tcb_statuses: list[str] = field(default_factory=list)
    allow_debug: bool = False


@dataclass
class Policy:
    tpm: TpmRequirements | None = None
    snp: SnpRequirements | None = None
    tdx: TdxRequirements | None = None

    @property
    def platforms(self) -> list[str]:
        return [p for p in PLATFORMS if getattr(self, p) is not None]


def _known(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        # Unknown keys are refused: a misspelt requirement must not silently mean "unchecked".
        raise _bad(f"{where}: unknown field(s) {', '.join(unknown)}")


def _tpm(d: dict[str, Any]) -> TpmRequirements:
    _known(
        d,
        {"reference_sets", "pcrs", "required_selection", "allow_weak_hashes", "ek_ca_fingerprints"},
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
                i = int(idx)
            except ValueError:
                raise _bad(f"tpm.pcrs.{bank}: bad PCR index {idx!r}") from None
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
    return r


def _tdx(d: dict[str, Any]) -> TdxRequirements:
    _known(d, {"reference_sets", "tcb_statuses", "allow_debug", *TDX_MEASUREMENTS}, "tdx")
    r = TdxRequirements()
    r.reference_sets = _str_list(d.get("reference_sets", []), "tdx.reference_sets")
    for name in TDX_MEASUREMENTS:
        if name in d:
            r.measurements[name] = _hex_list(d[name], f"tdx.{name}")
    r.tcb_statuses = _str_list(d.get("tcb_statuses", []), "tdx.tcb_statuses")
    r.allow_debug = _bool(d.get("allow_debug", False), "tdx.allow_debug")
    return r


def parse_policy(text: str) -> Policy:
    """Parse and validate a policy document (JSON or YAML); UsageError on anything odd."""
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise _bad(f"not JSON or YAML: {e}") from None
    if not isinstance(doc, dict):
        raise _bad("policy must be an object")
    _known(doc, {"platforms"}, "policy")
    plats = doc.get("platforms")
    if not isinstance(plats, dict) or not plats:
        raise _bad("policy.platforms must name at least one platform")
    p = Policy()
    for name, req in plats.items():
        if name not in PLATFORMS:
            raise _bad(f"unknown platform {name!r}")
        if not isinstance(req, dict):
            raise _bad(f"platforms.{name} must be an object")
        if name == "tpm":
            p.tpm = _tpm(req)
        elif name == "snp":
            p.snp = _snp(req)
        else:
            p.tdx = _tdx(req)
    return p


def canonical_json(text: str) -> str:
    """The stored form: validated, then re-serialized with sorted keys."""
    parse_policy(text)
    try:
        doc = json.loads(text)
    except ValueError:
        doc = yaml.safe_load(text)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
