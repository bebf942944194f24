"""Service configuration: a JSON/YAML file, overridden by command-line flags.

Safe defaults: loopback listeners, a data dir created 0700 on first start, TLS off (and
then only loopback addresses are accepted, unless ``allow_insecure_remote`` is set).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, Field, NonNegativeInt, PositiveInt
from pydantic_core import PydanticCustomError
from sealgate.documents import STRICT, load_document, validate
from sealgate.errors import UsageError
from sealgate.storage.url import DatabaseUrl, default_url
from sealgate.storage.url import parse as parse_database_url

ROLES = ("admin", "operator", "auditor")


@dataclass
class OperatorKey:
    """A trusted operator public key (PEM) and the roles tokens signed by it may carry."""

    name: str
    public_key: Path
    roles: list[str]


# ``limits`` and ``rate_limit`` are validated where they are declared (pydantic dataclasses):
# every value a positive number, integers where a count is meant; a float field takes an
# integer too (``request_timeout: 3`` means 3 s; JSON and YAML write whole numbers without
# a fraction), never a bool or a string such as "4M". Strict per field rather than per
# class: a strict dataclass would accept only an instance, not the document's mapping.
_Count = Annotated[int, Field(strict=True, gt=0)]
_Rate = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
_SECTION = pydantic.ConfigDict(extra="forbid")


@pydantic.dataclasses.dataclass(config=_SECTION)
class Limits:
    #: Largest gRPC message accepted (bounds every request).
    max_message_bytes: _Count = 4 << 20
    #: Largest evidence blob (quote, report, certificate bundle, collateral).
    max_evidence_bytes: _Count = 1 << 20
    #: Largest event log (TCG logs of real hosts are tens of KiB; CCEL similar).
    max_event_log_bytes: _Count = 2 << 20
    #: Most key ids in one request.
    max_keys_per_request: _Count = 32
    #: Seconds a call may take from its headers to its complete request message (and
    #: between the messages of a client stream); later, it ends DEADLINE_EXCEEDED. Honest
    #: clients send the message with the headers; 4 MiB at 1 MB/s still fits.
    request_timeout: _Rate = 10.0
    #: Concurrent calls per process, including those still waiting for their request. When
    #: full, the call waiting longest for its request is dropped to admit a new one.
    max_concurrent_rpcs: _Count = 256
    #: Concurrent calls per client address (an IPv6 client by its /64), checked first.
    max_rpcs_per_peer: _Count = 64
    #: Concurrent streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113
    #: §6.5.2); gRPC clients queue calls beyond it rather than fail.
    max_streams_per_connection: _Count = 32
    #: gRPC connections per process (keep below the descriptor limit, ``ulimit -n``), and
    #: seconds after which a connection without calls is closed (clients reconnect).
    max_connections: _Count = 1000
    connection_idle_timeout: _Rate = 120.0
    #: HTTP side port: seconds to send a complete request head (and idle keep-alive time),
    #: and open connections at most (when full, the longest idle one is closed).
    http_timeout: _Rate = 10.0
    http_max_connections: _Count = 128


@pydantic.dataclasses.dataclass(config=_SECTION)
class RateLimit:
    #: Sustained requests per second per node id (or peer address without one), and burst.
    per_node_rps: _Rate = 20.0
    burst: _Count = 40
    #: Per peer address as well: node ids are chosen by the client, so a caller rotating
    #: them would otherwise never be limited. Generous, as many nodes may share a NAT.
    per_peer_rps: _Rate = 200.0
    peer_burst: _Count = 400


@dataclass
class ServiceConfig:
    listen: str = "127.0.0.1:50051"
    http_listen: str = "127.0.0.1:9090"
    data_dir: Path = Path("sealgate-data")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: When set, clients must present a certificate issued by this CA (mTLS).
    tls_client_ca: Path | None = None
    allow_insecure_remote: bool = False
    operators: list[OperatorKey] = field(default_factory=list)
    #: Trust the bootstrap admin key in the data dir (``operator-key.pem``, made on first
    #: start). Set false once real operators are configured: the file is then neither
    #: created nor trusted.
    bootstrap_operator: bool = True
    #: EK CA roots (PEM files or directories) and known intermediates.
    ek_ca_roots: list[Path] = field(default_factory=list)
    ek_ca_intermediates: list[Path] = field(default_factory=list)
    #: SNP/TDX trust roots handed to the platform verifiers (files or directories).
    snp_roots: list[Path] = field(default_factory=list)
    tdx_roots: list[Path] = field(default_factory=list)
    #: NVIDIA Device Identity CA PEMs for GPU evidence (files or directories); empty: the
    #: trust directory's pinned root.
    nvgpu_roots: list[Path] = field(default_factory=list)
    #: NVIDIA RIM root PEMs (files or directories) RIM signatures must chain to; empty: the
    #: trust directory's pinned ``nvidia-rim-root``.
    nvgpu_rim_roots: list[Path] = field(default_factory=list)
    #: Directories of NVIDIA RIMs (``*.swidtag``/``*.xml``) searched after those sent with the
    #: evidence and before the collateral cache's ``nvidia/rims``.
    nvgpu_rim_dirs: list[Path] = field(default_factory=list)
    #: The verifier's own AMD CRLs (files or directories); empty: the collateral cache's.
    snp_crls: list[Path] = field(default_factory=list)
    #: Accept SNP evidence when the verifier holds no current CRL for the chain's ARK.
    snp_allow_missing_crl: bool = False
    #: Collateral cache (``sealgate collateral fetch`` fills it); None: the default one.
    collateral_dir: Path | None = None
    #: Oldest node-supplied or cached TDX TCB info / QE identity (issueDate) and PCK CRL
    #: (thisUpdate) accepted, in seconds. Intel PCS issues them with a 30-day window and
    #: re-issues them daily (a PCCS refreshes daily by default), so genuine collateral is
    #: a day or two old; a week tolerates a PCCS outage while a CRL older than that, which
    #: may predate a revocation, is refused.
    tdx_collateral_max_age: int = 7 * 86400
    verifier_id: str = "sealgate"
    token_ttl: int = 300
    challenge_ttl: int = 60
    enrollment_ttl: int = 300
    max_workers: int = 16
    #: gRPC server processes sharing the port (SO_REUSEPORT); Python handlers hold the GIL,
    #: so more processes use more cores. The HTTP side port runs in the first one only.
    workers: int = 1
    limits: Limits = field(default_factory=Limits)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    #: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB`` (``sealgate.storage.url``);
    #: None: SQLite at ``db_path``. Shown only ``redacted`` (it may carry a password).
    database: str | None = None
    #: The KEK (docs/kek.md): ``file:///PATH`` or a PKCS#11 URI (RFC 7512); None: the key
    #: file in the data dir. ``kek_previous``: KEKs that only unwrap, while ``sealgate kek
    #: rotate`` moves what they wrapped to ``kek``.
    kek: str | None = None
    kek_previous: list[str] = field(default_factory=list)

    @property
    def kek_uri(self) -> str:
        from sealgate.broker.kek import default_kek_uri

        return self.kek if self.kek is not None else default_kek_uri(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "sealgate.db"

    @property
    def database_url(self) -> DatabaseUrl:
        return parse_database_url(
            default_url(self.data_dir) if self.database is None else self.database
        )

    @property
    def kek_path(self) -> Path:
        return self.data_dir / "kek.key"

    @property
    def audit_checkpoint_dir(self) -> Path:
        """Signed audit checkpoints, outside the database (``broker.checkpoint``)."""
        return self.data_dir / "audit-checkpoints"

    @property
    def bootstrap_operator_key(self) -> Path:
        return self.data_dir / "operator-key.pem"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


#: Configuration files are a few KiB.
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | Path | None, **overrides: Any) -> ServiceConfig:
    cfg = ServiceConfig()
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise UsageError("config.unreadable", f"cannot read {path}: {e.strerror}") from None
        doc = load_document(data, code="config.invalid", what=str(path), max_bytes=MAX_CONFIG_BYTES)
        _apply(cfg, doc, str(path))
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, Path(v) if k == "data_dir" else v)
    check_listen(cfg)
    cfg.database_url  # noqa: B018 (a malformed URL fails here, before anything starts)
    return cfg


def _path(v: Any) -> Any:
    if v is not None and (not isinstance(v, str) or not v):
        raise PydanticCustomError("path", "must be a non-empty path string")
    return v


def _paths(v: Any) -> Any:
    # One path may be written without the list.
    return [v] if isinstance(v, str) else v


_Path = Annotated[str, BeforeValidator(_path)]
_OptPath = Annotated[str | None, BeforeValidator(_path)]
_Paths = Annotated[list[_Path], BeforeValidator(_paths)]


class _OperatorDoc(BaseModel):
    model_config = STRICT
    name: str = "operator"
    public_key: _Path
    roles: list[Literal["admin", "operator", "auditor"]] = []


class _ConfigDoc(BaseModel):
    """The configuration file: the keys of :class:`ServiceConfig`, each optional (the keys
    given are set on the defaults)."""

    model_config = STRICT
    listen: str = ServiceConfig.listen
    http_listen: str = ServiceConfig.http_listen
    verifier_id: str = ServiceConfig.verifier_id
    data_dir: _Path = str(ServiceConfig.data_dir)
    database: str | None = None
    tls_cert: _OptPath = None
    tls_key: _OptPath = None
    tls_client_ca: _OptPath = None
    collateral_dir: _OptPath = None
    allow_insecure_remote: bool = ServiceConfig.allow_insecure_remote
    bootstrap_operator: bool = ServiceConfig.bootstrap_operator
    snp_allow_missing_crl: bool = ServiceConfig.snp_allow_missing_crl
    operators: list[_OperatorDoc] = []
    ek_ca_roots: _Paths = []
    ek_ca_intermediates: _Paths = []
    snp_roots: _Paths = []
    tdx_roots: _Paths = []
    nvgpu_roots: _Paths = []
    nvgpu_rim_roots: _Paths = []
    nvgpu_rim_dirs: _Paths = []
    snp_crls: _Paths = []
    tdx_collateral_max_age: PositiveInt = ServiceConfig.tdx_collateral_max_age
    token_ttl: PositiveInt = ServiceConfig.token_ttl
    challenge_ttl: PositiveInt = ServiceConfig.challenge_ttl
    enrollment_ttl: PositiveInt = ServiceConfig.enrollment_ttl
    max_workers: PositiveInt = ServiceConfig.max_workers
    workers: NonNegativeInt = ServiceConfig.workers
    limits: Limits = Field(default_factory=Limits)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    kek: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    kek_previous: list[Annotated[str, Field(min_length=1, max_length=4096)]] = []


_CONFIG = pydantic.TypeAdapter(_ConfigDoc)
_PATH_KEYS = ("data_dir", "tls_cert", "tls_key", "tls_client_ca", "collateral_dir")
_PATH_LIST_KEYS = (
    "ek_ca_roots",
    "ek_ca_intermediates",
    "snp_roots",
    "tdx_roots",
    "nvgpu_roots",
    "nvgpu_rim_roots",
    "nvgpu_rim_dirs",
    "snp_crls",
)


def _apply(cfg: ServiceConfig, doc: Any, where: str) -> None:
    """Validate a configuration document and set the keys it names on ``cfg``."""
    d = validate(
        _CONFIG,
        doc,
        code="config.invalid",
        what=where,
        hints={"operators": f"operators entries need name, public_key and roles from {ROLES}"},
    )
    for key in d.model_fields_set:
        value = getattr(d, key)
        if key in _PATH_KEYS:
            value = None if value is None else Path(value)
        elif key in _PATH_LIST_KEYS:
            value = [Path(x) for x in value]
        elif key == "operators":
            value = [OperatorKey(o.name, Path(o.public_key), list(o.roles)) for o in value]
        setattr(cfg, key, value)


def is_loopback(hostport: str) -> bool:
    host = hostport.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(cfg: ServiceConfig) -> None:
    if not cfg.bootstrap_operator and not cfg.operators:
        # Checked here too so ``serve --workers N`` refuses before starting any worker.
        raise UsageError(
            "config.invalid", "bootstrap_operator is false but no operators are configured"
        )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise UsageError("config.invalid", "tls_cert and tls_key go together")
    if cfg.tls_client_ca is not None and cfg.tls_cert is None:
        raise UsageError("config.invalid", "tls_client_ca needs tls_cert and tls_key")
    if not cfg.tls and not cfg.allow_insecure_remote and not is_loopback(cfg.listen):
        raise UsageError(
            "config.insecure_listen",
            f"refusing to listen on {cfg.listen} without TLS; configure tls_cert/tls_key "
            "or set allow_insecure_remote",
        )
