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
                "mr_config_id": ["<hex>"], "tcb_statuses": ["UpToDate"], "allow_debug": false},
        "azure-snp": {"snp": {...as "snp"...}, "tpm": {...as "tpm", without ek_ca_fingerprints...},
                      "vm_configuration": {"secure_boot": true, "console_enabled": false}},
        "azure-tdx": {"tdx": {...as "tdx", plus "allow_unevaluated_tcb": false...},
                      "tpm": {...}, "vm_configuration": {...}}
      },
      "model": {"require_signature": true, "signers": [{"public_key": "<PEM>"}],
                "attested_binding": false}
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

An Azure confidential VM (``azure-snp``, ``azure-tdx``) is three components, each with the
requirements of its own platform: the hardware report (``snp`` or ``tdx``, reference values
from the ``snp``/``tdx`` sets), the vTPM (``tpm``, reference values from the ``tpm`` sets)
and the paravisor's ``vm_configuration`` (runtime data ``vm-configuration``: an unset field
is not checked, a set one must be present in the report with that value). Each component
must constrain its measurement as its platform does. On Azure TDX the TD quote may come
without collateral: then the TCB status is not evaluated and the key is refused unless the
``tdx`` part says ``allow_unevaluated_tcb: true``.

``model`` (optional) makes the key a model key bound to a signed model (OpenSSF Model
Signing v1.0): it is released only for a key version with a registered model whose
signature verifies under one of ``signers`` (``sealgate.oms.signers`` dict form: a public
key, CA roots, or a Sigstore identity + issuer), re-checked against the current policy at
every release, and the released key is derived from the model's root digest.
``attested_binding: true`` also requires the node's evidence to commit to that root digest
(README "Model signing"). ``require_signature: true`` without signers is refused when
written (``policy.model.no_signers``): an empty requirement is not a permission. A policy
without ``model`` releases the key for any model, as before.

``gpu`` (optional) requires NVIDIA confidential GPUs next to the CPU TEE (composite evidence,
README "GPUs")::

    "gpu": {"min_count": 2, "cc_mode": "on", "devtools": "forbidden",
            "driver_versions": ["550.54.15"], "vbios_versions": ["96.00.5E.00.01"],
            "require_revocation_check": true,
            "allow_mismatch": [{"index": 9, "until": "2027-01-31T00:00:00Z"}]}

Every GPU sent must verify (genuine, fresh for the challenge, bound into the CPU evidence)
and at least ``min_count`` (≥ 1) must be sent. ``driver_versions``/``vbios_versions`` must
name at least one version, or ``allow_any_driver``/``allow_any_vbios: true`` says so
(``policy.gpu.no_versions`` when written). ``require_revocation_check`` (default true) refuses a
GPU whose chains were not checked against OCSP. ``allow_mismatch`` tolerates a measurement
mismatch at one RIM index until a time (an RFC 3339 instant with a zone); after it, the
mismatch denies again. ``cc_mode`` can only be ``on`` and ``devtools`` only ``forbidden``: the
signed SPDM report has no CC-mode field (its opaque TLVs are versions, SKUs, FWID and switch
PDIs), so the two are enforced through the measurements — a GPU outside production CC mode
measures differently from NVIDIA's RIM — and therefore the measurements must have been
compared against RIMs (a GPU verified without RIMs is refused).

NVSwitches (protected-PCIe HGX boards: GPUs in PPCIe mode behind attested NVSwitches)::

    "gpu": {..., "ppcie": "required", "min_switches": 4,
            "switch_vbios_versions": ["96.10.73.00.01"]}

``ppcie`` is ``forbidden`` (the default: a policy that does not mention protected PCIe admits
no board in that mode and no switch evidence — in PPCIe mode a GPU's confidentiality rests on
the switches and the topology, which such a policy never asked about), ``required`` (every GPU
in PPCIe mode, at least ``min_switches`` (default 1) NVSwitches sent, each verified, and the
GPU↔switch topology checked on both sides) or ``any`` (either a set with no PPCIe GPU and no
switch, or one that meets ``required``). ``min_count`` counts GPUs only. Switches are held to
their own VBIOS versions (``switch_vbios_versions``, or ``allow_any_switch_vbios: true``; one
of them when ``ppcie`` is not ``forbidden``, ``policy.gpu.no_versions`` when written), to
NVIDIA's switch RIM (``allow_mismatch`` names GPU RIM indices and never excuses a switch) and
to ``require_revocation_check``. Whatever ``ppcie`` says, an NVSwitch entry that does not
verify, or a set whose devices repeat or whose topology is inconsistent, denies every key with
a ``gpu`` policy: an empty requirement is not a permission.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sealgate.documents import STRICT, load_document, validate
from sealgate.errors import UsageError

PLATFORMS = ("tpm", "snp", "tdx", "azure-snp", "azure-tdx")
#: The Azure platforms → the platform of their hardware report.
AZURE_HARDWARE = {"azure-snp": "snp", "azure-tdx": "tdx"}
#: Policy ``vm_configuration`` field → the runtime data ``vm-configuration`` key (the names
#: the Azure paravisor writes, as in every published HCL report).
VM_CONFIGURATION_KEYS = {
    "secure_boot": "secure-boot",
    "tpm_enabled": "tpm-enabled",
    "tpm_persisted": "tpm-persisted",
    "console_enabled": "console-enabled",
}
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


def _one_or_many(v: Any) -> Any:
    # A single value may be written without the list (``measurement: <hex>``).
    return [v] if isinstance(v, str) else v


def _hex(v: str) -> str:
    if not _HEX_RE.match(v) or len(v) % 2:
        raise PydanticCustomError("hex", "{value} is not hex", {"value": repr(v[:20])})
    return v.lower()


_Hex = Annotated[str, AfterValidator(_hex)]
_HexList = Annotated[list[_Hex], BeforeValidator(_one_or_many)]


def _pcr_index(v: Any) -> int:
    # Mapping keys are strings (the loader refuses others); PCRs are 0..23 (TPM 2.0 PC
    # Client Platform Firmware Profile, §2.3.4).
    # ASCII digits only: int() would also take " 7", "+7" and other scripts' digits ("٣").
    if not isinstance(v, str) or not (v.isascii() and v.isdigit()) or len(v) > 2:
        raise PydanticCustomError("pcr_index", "bad PCR index {value}", {"value": repr(v)[:20]})
    i = int(v)
    if not 0 <= i <= 23:
        raise PydanticCustomError("pcr_index", "PCR {value} out of range", {"value": i})
    return i


def _selection(v: str) -> str:
    from sealgate.tpm import parse_selection

    try:
        parse_selection(v)
    except UsageError as e:
        raise PydanticCustomError("selection", "{why}", {"why": e.message}) from None
    return v


class _TpmDoc(BaseModel):
    model_config = STRICT
    reference_sets: list[str] = []
    pcrs: dict[str, dict[Annotated[int, BeforeValidator(_pcr_index)], _HexList]] = {}
    required_selection: Annotated[str, AfterValidator(_selection)] | None = None
    allow_weak_hashes: bool = False
    ek_ca_fingerprints: _HexList = []
    allow_any_measurement: bool = False


class _SnpTcbDoc(BaseModel):
    """Minimum reported TCB component SVNs (AMD SEV-SNP ABI, TCB_VERSION), each a byte."""

    model_config = STRICT
    bootloader: Annotated[int, Field(ge=0, le=255)] | None = None
    tee: Annotated[int, Field(ge=0, le=255)] | None = None
    snp: Annotated[int, Field(ge=0, le=255)] | None = None
    microcode: Annotated[int, Field(ge=0, le=255)] | None = None
    fmc: Annotated[int, Field(ge=0, le=255)] | None = None


class _SnpDoc(BaseModel):
    model_config = STRICT
    reference_sets: list[str] = []
    measurement: _HexList = []
    host_data: _HexList = []
    min_reported_tcb: _SnpTcbDoc = _SnpTcbDoc()
    allow_debug: bool = False
    vmpl: list[Annotated[int, Field(ge=0, le=3)]] | None = None
    products: list[str] = []
    allow_any_measurement: bool = False


class _TdxDoc(BaseModel):
    model_config = STRICT
    reference_sets: list[str] = []
    mr_td: _HexList | None = None
    rtmr0: _HexList | None = None
    rtmr1: _HexList | None = None
    rtmr2: _HexList | None = None
    rtmr3: _HexList | None = None
    mr_config_id: _HexList | None = None
    # An empty list accepts no status at all (check_writable refuses to store one).
    tcb_statuses: list[str] = list(DEFAULT_TCB_STATUSES)
    allow_debug: bool = False
    allow_any_measurement: bool = False


class _AzureTpmDoc(BaseModel):
    """The vTPM of an Azure CVM: as ``tpm`` without ``ek_ca_fingerprints`` (its AK is vouched
    for by the hardware report, not by an EK certificate)."""

    model_config = STRICT
    reference_sets: list[str] = []
    pcrs: dict[str, dict[Annotated[int, BeforeValidator(_pcr_index)], _HexList]] = {}
    required_selection: Annotated[str, AfterValidator(_selection)] | None = None
    allow_weak_hashes: bool = False
    allow_any_measurement: bool = False


class _AzureTdxPartDoc(_TdxDoc):
    #: Accept a TD quote sent without collateral (signatures and PCK chain checked, TCB
    #: status not evaluated). Off by default: the TCB status is then unknown.
    allow_unevaluated_tcb: bool = False


class _VmConfigurationDoc(BaseModel):
    model_config = STRICT
    secure_boot: bool | None = None
    tpm_enabled: bool | None = None
    tpm_persisted: bool | None = None
    console_enabled: bool | None = None
    #: Accepted ``vmUniqueId`` values (case-insensitive); empty = any.
    vm_unique_ids: list[str] = []


class _AzureSnpDoc(BaseModel):
    model_config = STRICT
    snp: _SnpDoc = _SnpDoc()
    tpm: _AzureTpmDoc = _AzureTpmDoc()
    vm_configuration: _VmConfigurationDoc = _VmConfigurationDoc()


class _AzureTdxPlatformDoc(BaseModel):
    model_config = STRICT
    tdx: _AzureTdxPartDoc = _AzureTdxPartDoc()
    tpm: _AzureTpmDoc = _AzureTpmDoc()
    vm_configuration: _VmConfigurationDoc = _VmConfigurationDoc()


class _PlatformsDoc(BaseModel):
    model_config = STRICT
    tpm: _TpmDoc | None = None
    snp: _SnpDoc | None = None
    tdx: _TdxDoc | None = None
    azure_snp: _AzureSnpDoc | None = Field(default=None, alias="azure-snp")
    azure_tdx: _AzureTdxPlatformDoc | None = Field(default=None, alias="azure-tdx")

    @model_validator(mode="after")
    def _at_least_one(self) -> _PlatformsDoc:
        if all(v is None for v in (self.tpm, self.snp, self.tdx, self.azure_snp, self.azure_tdx)):
            raise PydanticCustomError("no_platform", "must name at least one platform")
        return self


#: Signers one model policy may list (each is tried in turn at every release).
MAX_MODEL_SIGNERS = 32


class _ModelDoc(BaseModel):
    """Which signed models the key may be released for (module docstring)."""

    model_config = STRICT
    require_signature: bool = True
    signers: Annotated[list[dict[str, Any]], Field(max_length=MAX_MODEL_SIGNERS)] = []
    attested_binding: bool = False


#: GPU policy bounds: at most this many GPUs (as sealgate.protocol.gpu_binding.MAX_GPUS),
#: versions and tolerated mismatches per list.
MAX_POLICY_GPUS = 16
MAX_GPU_VERSIONS = 64
#: SPDM measurement block indices are one byte (DMTF DSP0274 MeasurementBlock ``Index``).
MAX_MEASUREMENT_INDEX = 255


def _rfc3339(v: Any) -> datetime:
    """An RFC 3339 instant: a string with a zone (a document holds no datetime objects)."""
    if not isinstance(v, str) or len(v) > 64:
        raise PydanticCustomError("time", "must be an RFC 3339 time string")
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise PydanticCustomError("time", "must be an RFC 3339 time string") from None
    if t.tzinfo is None:
        raise PydanticCustomError("naive_time", "needs a time zone (RFC 3339)")
    return t


class _AllowMismatchDoc(BaseModel):
    model_config = STRICT
    index: Annotated[int, Field(ge=0, le=MAX_MEASUREMENT_INDEX, strict=True)]
    until: Annotated[datetime, BeforeValidator(_rfc3339), Field(strict=False)]


_Versions = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(max_length=MAX_GPU_VERSIONS),
]


class _GpuDoc(BaseModel):
    """Which NVIDIA confidential GPUs must accompany the CPU evidence (module docstring)."""

    model_config = STRICT
    min_count: Annotated[int, Field(ge=1, le=MAX_POLICY_GPUS, strict=True)]
    cc_mode: Literal["on"] = "on"
    devtools: Literal["forbidden"] = "forbidden"
    driver_versions: _Versions = []
    vbios_versions: _Versions = []
    allow_any_driver: bool = False
    allow_any_vbios: bool = False
    require_revocation_check: bool = True
    allow_mismatch: Annotated[list[_AllowMismatchDoc], Field(max_length=MAX_GPU_VERSIONS)] = []
    ppcie: Literal["required", "forbidden", "any"] = "forbidden"
    min_switches: Annotated[int, Field(ge=1, le=MAX_POLICY_GPUS, strict=True)] | None = None
    switch_vbios_versions: _Versions = []
    allow_any_switch_vbios: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> _GpuDoc:
        if self.ppcie == "forbidden" and (
            self.min_switches is not None
            or self.switch_vbios_versions
            or self.allow_any_switch_vbios
        ):
            raise PydanticCustomError(
                "contradiction", "NVSwitch requirements with ppcie: forbidden (the default)"
            )
        if self.min_count + (self.min_switches or 0) > MAX_POLICY_GPUS:
            raise PydanticCustomError(
                "contradiction",
                f"min_count + min_switches over {MAX_POLICY_GPUS} devices (the evidence cap)",
            )
        if self.switch_vbios_versions and self.allow_any_switch_vbios:
            raise PydanticCustomError(
                "contradiction", "switch_vbios_versions and allow_any_switch_vbios together"
            )
        for what, versions, any_ in (
            ("driver", self.driver_versions, self.allow_any_driver),
            ("vbios", self.vbios_versions, self.allow_any_vbios),
        ):
            if versions and any_:
                raise PydanticCustomError(
                    "contradiction", f"{what}_versions and allow_any_{what} together"
                )
        idx = [m.index for m in self.allow_mismatch]
        if len(idx) != len(set(idx)):
            raise PydanticCustomError("duplicate", "allow_mismatch names an index twice")
        return self


class _PolicyDoc(BaseModel):
    """The policy document. Unknown keys are refused at every level: a misspelt
    requirement must not silently mean "unchecked"."""

    model_config = STRICT
    platforms: _PlatformsDoc
    model: _ModelDoc | None = None
    gpu: _GpuDoc | None = None


_POLICY = TypeAdapter(_PolicyDoc)


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
class VmConfigurationRequirements:
    """Required runtime data ``vm-configuration`` values (policy name → value)."""

    flags: dict[str, bool] = field(default_factory=dict)
    vm_unique_ids: list[str] = field(default_factory=list)


@dataclass
class AzureRequirements:
    """An Azure CVM's components: ``hardware`` is the SNP or TDX part (the platform named
    by ``AZURE_HARDWARE``), ``tpm`` the vTPM's, ``vm_configuration`` the paravisor's."""

    hardware: SnpRequirements | TdxRequirements
    tpm: TpmRequirements
    vm_configuration: VmConfigurationRequirements = field(
        default_factory=VmConfigurationRequirements
    )
    #: azure-tdx: accept a TD quote verified without collateral (TCB status not evaluated).
    allow_unevaluated_tcb: bool = False

    def components(self) -> Policy:
        """The hardware and vTPM parts as a policy of their own platforms, so each is
        appraised by that platform's appraiser."""
        if isinstance(self.hardware, SnpRequirements):
            return Policy(tpm=self.tpm, snp=self.hardware)
        return Policy(tpm=self.tpm, tdx=self.hardware)


@dataclass
class ModelRequirements:
    require_signature: bool = True
    #: ``sealgate.oms.signers.Signer`` objects (typed Any here: appraisal stays free of
    #: the OMS layer's imports until a policy names a model).
    signers: list[Any] = field(default_factory=list)
    attested_binding: bool = False


@dataclass
class GpuRequirements:
    min_count: int = 1
    driver_versions: list[str] = field(default_factory=list)
    vbios_versions: list[str] = field(default_factory=list)
    allow_any_driver: bool = False
    allow_any_vbios: bool = False
    require_revocation_check: bool = True
    #: RIM measurement index (0-based, as the RIM and the claims name it) → tolerated until.
    allow_mismatch: dict[int, datetime] = field(default_factory=dict)
    #: Protected PCIe (module docstring): "forbidden" (default), "required" or "any".
    ppcie: str = "forbidden"
    min_switches: int = 1
    switch_vbios_versions: list[str] = field(default_factory=list)
    allow_any_switch_vbios: bool = False


@dataclass
class Policy:
    tpm: TpmRequirements | None = None
    snp: SnpRequirements | None = None
    tdx: TdxRequirements | None = None
    azure_snp: AzureRequirements | None = None
    azure_tdx: AzureRequirements | None = None
    model: ModelRequirements | None = None
    gpu: GpuRequirements | None = None

    def requirements(
        self, platform: str
    ) -> TpmRequirements | SnpRequirements | TdxRequirements | AzureRequirements | None:
        """The requirements for ``platform`` (``azure-snp`` → ``azure_snp``), or None."""
        if platform not in PLATFORMS:
            return None
        req: TpmRequirements | SnpRequirements | TdxRequirements | AzureRequirements | None = (
            getattr(self, platform.replace("-", "_"))
        )
        return req

    @property
    def platforms(self) -> list[str]:
        return [p for p in PLATFORMS if self.requirements(p) is not None]

    @property
    def any_measurement(self) -> list[str]:
        """Platforms (Azure: ``azure-snp.snp``, ``azure-snp.tpm``, ...) whose policy
        explicitly accepts any measurement."""
        out: list[str] = []
        for p in self.platforms:
            req = self.requirements(p)
            if isinstance(req, AzureRequirements):
                hw = AZURE_HARDWARE[p]
                out += [f"{p}.{hw}"] if req.hardware.allow_any_measurement else []
                out += [f"{p}.tpm"] if req.tpm.allow_any_measurement else []
            elif req is not None and req.allow_any_measurement:
                out.append(p)
        return out


def _tpm(t: _TpmDoc | _AzureTpmDoc) -> TpmRequirements:
    return TpmRequirements(
        reference_sets=list(t.reference_sets),
        pcrs={bank: dict(values) for bank, values in t.pcrs.items()},
        required_selection=t.required_selection,
        allow_weak_hashes=t.allow_weak_hashes,
        ek_ca_fingerprints=list(t.ek_ca_fingerprints) if isinstance(t, _TpmDoc) else [],
        allow_any_measurement=t.allow_any_measurement,
    )


def _snp(s: _SnpDoc) -> SnpRequirements:
    return SnpRequirements(
        reference_sets=list(s.reference_sets),
        measurement=list(s.measurement),
        host_data=list(s.host_data),
        min_reported_tcb=s.min_reported_tcb.model_dump(exclude_none=True),
        allow_debug=s.allow_debug,
        vmpl=None if s.vmpl is None else list(s.vmpl),
        products=list(s.products),
        allow_any_measurement=s.allow_any_measurement,
    )


def _tdx(x: _TdxDoc) -> TdxRequirements:
    return TdxRequirements(
        reference_sets=list(x.reference_sets),
        measurements={n: list(v) for n in TDX_MEASUREMENTS if (v := getattr(x, n)) is not None},
        tcb_statuses=list(x.tcb_statuses),
        allow_debug=x.allow_debug,
        allow_any_measurement=x.allow_any_measurement,
    )


def _vm_configuration(v: _VmConfigurationDoc) -> VmConfigurationRequirements:
    return VmConfigurationRequirements(
        flags={n: b for n in VM_CONFIGURATION_KEYS if (b := getattr(v, n)) is not None},
        vm_unique_ids=[u.lower() for u in v.vm_unique_ids],
    )


def _policy(doc: Any) -> Policy:
    d = validate(_POLICY, doc, code="policy.document.invalid", what="policy")
    p = Policy()
    if (t := d.platforms.tpm) is not None:
        p.tpm = _tpm(t)
    if (s := d.platforms.snp) is not None:
        p.snp = _snp(s)
    if (x := d.platforms.tdx) is not None:
        p.tdx = _tdx(x)
    if (az := d.platforms.azure_snp) is not None:
        p.azure_snp = AzureRequirements(
            _snp(az.snp), _tpm(az.tpm), _vm_configuration(az.vm_configuration)
        )
    if (ax := d.platforms.azure_tdx) is not None:
        p.azure_tdx = AzureRequirements(
            _tdx(ax.tdx),
            _tpm(ax.tpm),
            _vm_configuration(ax.vm_configuration),
            allow_unevaluated_tcb=ax.tdx.allow_unevaluated_tcb,
        )
    if (m := d.model) is not None:
        p.model = ModelRequirements(
            require_signature=m.require_signature,
            signers=[_signer(i, s) for i, s in enumerate(m.signers)],
            attested_binding=m.attested_binding,
        )
    if (g := d.gpu) is not None:
        p.gpu = GpuRequirements(
            min_count=g.min_count,
            driver_versions=list(g.driver_versions),
            vbios_versions=[v.upper() for v in g.vbios_versions],
            allow_any_driver=g.allow_any_driver,
            allow_any_vbios=g.allow_any_vbios,
            require_revocation_check=g.require_revocation_check,
            allow_mismatch={m.index: m.until for m in g.allow_mismatch},
            ppcie=g.ppcie,
            min_switches=g.min_switches if g.min_switches is not None else 1,
            switch_vbios_versions=[v.upper() for v in g.switch_vbios_versions],
            allow_any_switch_vbios=g.allow_any_switch_vbios,
        )
    return p


def _signer(i: int, d: dict[str, Any]) -> Any:
    from sealgate.oms.signers import signer_from_dict

    try:
        return signer_from_dict(d)
    except UsageError as e:
        raise UsageError("policy.model.bad_signer", f"model.signers[{i}]: {e.message}") from None


def _load(text: str) -> Any:
    return load_document(
        text, code="policy.document.invalid", what="policy", max_bytes=MAX_POLICY_BYTES
    )


def parse_policy(text: str) -> Policy:
    """Parse and validate a policy document (JSON or YAML); UsageError on anything odd.

    This is also how stored policies are read, so it does not apply :func:`check_writable`:
    a stored policy without a measurement constraint is refused at appraisal instead."""
    return _policy(_load(text))


def check_writable(p: Policy) -> None:
    """Refuse a policy that lets a platform run anything without saying so.

    A platform entry with no measurement constraint (TPM: no PCR value; SNP: no
    ``measurement``; TDX: no ``mr_td``/RTMR), neither inline nor through a reference set,
    releases the key to any genuine machine running any code. That must be written down
    (``allow_any_measurement: true``), never be the result of leaving fields out."""
    if p.model is not None:
        if not p.model.require_signature:
            # "false" would read as a model requirement while requiring nothing.
            raise UsageError(
                "policy.model.invalid",
                "model.require_signature: false requires nothing; omit model instead",
            )
        if not p.model.signers:
            raise UsageError(
                "policy.model.no_signers",
                "model.require_signature needs at least one signer: an empty list of allowed "
                "signers would allow none (or, read carelessly, any)",
            )
    if p.gpu is not None:
        checks = [
            ("driver", p.gpu.driver_versions, p.gpu.allow_any_driver),
            ("vbios", p.gpu.vbios_versions, p.gpu.allow_any_vbios),
        ]
        if p.gpu.ppcie != "forbidden":
            checks.append(
                ("switch_vbios", p.gpu.switch_vbios_versions, p.gpu.allow_any_switch_vbios)
            )
        for what, versions, any_ in checks:
            if not versions and not any_:
                raise UsageError(
                    "policy.gpu.no_versions",
                    f"gpu.{what}_versions must name at least one version, or set "
                    f"allow_any_{what}: true to accept any",
                )
    parts: list[tuple[str, Policy]] = [("", p)]
    for name in AZURE_HARDWARE:
        az = p.requirements(name)
        if isinstance(az, AzureRequirements):
            # Each component of an Azure CVM is held to its own platform's rule.
            parts.append((f"{name}.", az.components()))
    missing: list[str] = []
    for prefix, q in parts:
        if q.tdx is not None and not q.tdx.tcb_statuses:
            # Once read as "any status"; say which statuses are acceptable instead.
            raise _bad(f"{prefix}tdx.tcb_statuses must name at least one TCB status")
        if q.tpm is not None and not q.tpm.allow_any_measurement:
            if not q.tpm.reference_sets and not any(
                v for b in q.tpm.pcrs.values() for v in b.values()
            ):
                missing.append(f"{prefix}tpm (no PCR value)")
        if q.snp is not None and not q.snp.allow_any_measurement:
            if not q.snp.reference_sets and not q.snp.measurement:
                missing.append(f"{prefix}snp (no measurement)")
        if q.tdx is not None and not q.tdx.allow_any_measurement:
            if not q.tdx.reference_sets and not any(
                q.tdx.measurements.get(n) for n in TDX_CODE_MEASUREMENTS
            ):
                missing.append(f"{prefix}tdx (no mr_td or RTMR)")
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
