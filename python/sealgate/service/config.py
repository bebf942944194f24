"""Service configuration: a JSON/YAML file, overridden by command-line flags.

Safe defaults: loopback listeners, a data dir created 0700 on first start, TLS off (and
then only loopback addresses are accepted, unless ``allow_insecure_remote`` is set).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealgate.documents import load_document
from sealgate.errors import UsageError

ROLES = ("admin", "operator", "auditor")


@dataclass
class OperatorKey:
    """A trusted operator public key (PEM) and the roles tokens signed by it may carry."""

    name: str
    public_key: Path
    roles: list[str]


@dataclass
class Limits:
    #: Largest gRPC message accepted (bounds every request).
    max_message_bytes: int = 4 << 20
    #: Largest evidence blob (quote, report, certificate bundle, collateral).
    max_evidence_bytes: int = 1 << 20
    #: Largest event log (TCG logs of real hosts are tens of KiB; CCEL similar).
    max_event_log_bytes: int = 2 << 20
    #: Most key ids in one request.
    max_keys_per_request: int = 32
    #: Seconds a call may take from its headers to its complete request message (and
    #: between the messages of a client stream); later, it ends DEADLINE_EXCEEDED. Honest
    #: clients send the message with the headers; 4 MiB at 1 MB/s still fits.
    request_timeout: float = 10.0
    #: Concurrent calls per process, including those still waiting for their request. When
    #: full, the call waiting longest for its request is dropped to admit a new one.
    max_concurrent_rpcs: int = 256
    #: Concurrent calls per client address (an IPv6 client by its /64), checked first.
    max_rpcs_per_peer: int = 64
    #: Concurrent streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113
    #: §6.5.2); gRPC clients queue calls beyond it rather than fail.
    max_streams_per_connection: int = 32
    #: gRPC connections per process (keep below the descriptor limit, ``ulimit -n``), and
    #: seconds after which a connection without calls is closed (clients reconnect).
    max_connections: int = 1000
    connection_idle_timeout: float = 120.0
    #: HTTP side port: seconds to send a complete request head (and idle keep-alive time),
    #: and open connections at most (when full, the longest idle one is closed).
    http_timeout: float = 10.0
    http_max_connections: int = 128

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if not ok or not math.isfinite(value):
                raise UsageError("config.invalid", f"limits.{name} must be a positive number")
            if not name.endswith("timeout") and not isinstance(value, int):
                raise UsageError("config.invalid", f"limits.{name} must be an integer")


@dataclass
class RateLimit:
    #: Sustained requests per second per node id (or peer address without one), and burst.
    per_node_rps: float = 20.0
    burst: int = 40
    #: Per peer address as well: node ids are chosen by the client, so a caller rotating
    #: them would otherwise never be limited. Generous, as many nodes may share a NAT.
    per_peer_rps: float = 200.0
    peer_burst: int = 400


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

    @property
    def db_path(self) -> Path:
        return self.data_dir / "sealgate.db"

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


def _paths(v: Any, where: str) -> list[Path]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise UsageError("config.invalid", f"{where} must be a path or list of paths")
    return [Path(x) for x in v]


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
        if not isinstance(doc, dict):
            raise UsageError("config.invalid", f"{path}: top level must be a mapping")
        _apply(cfg, doc)
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, Path(v) if k == "data_dir" else v)
    check_listen(cfg)
    return cfg


def _section(cls: type[Any], value: Any, where: str) -> Any:
    """A ``limits``/``rate_limit`` mapping → its dataclass; every field typed and positive."""
    if not isinstance(value, dict):
        raise UsageError("config.invalid", f"{where} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise UsageError("config.invalid", f"unknown {where} key(s) {', '.join(unknown)}")
    out = cls()
    for key, v in value.items():
        want = type(getattr(out, key))
        ok = (
            isinstance(v, int | float) if want is float else isinstance(v, want)
        ) and not isinstance(v, bool)
        if not ok:
            raise UsageError("config.invalid", f"{where}.{key} must be a {want.__name__}")
        if not v > 0:
            raise UsageError("config.invalid", f"{where}.{key} must be positive")
        setattr(out, key, want(v))
    return out


def _path(value: Any, key: str) -> Path | None:
    if value is None and key != "data_dir":
        return None
    if not isinstance(value, str) or not value:
        raise UsageError("config.invalid", f"{key} must be a non-empty path string")
    return Path(value)


def _apply(cfg: ServiceConfig, doc: dict[str, Any]) -> None:
    # Scalar keys and the type each must have (bool is an int in Python: refuse it apart).
    simple: dict[str, type] = {
        "listen": str,
        "http_listen": str,
        "verifier_id": str,
        "token_ttl": int,
        "challenge_ttl": int,
        "enrollment_ttl": int,
        "max_workers": int,
        "workers": int,
        "allow_insecure_remote": bool,
        "bootstrap_operator": bool,
        "snp_allow_missing_crl": bool,
        "tdx_collateral_max_age": int,
    }
    for key, value in doc.items():
        if key in simple:
            want = simple[key]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise UsageError("config.invalid", f"{key} must be a {want.__name__}")
            if isinstance(value, int) and want is int and value < (0 if key == "workers" else 1):
                raise UsageError("config.invalid", f"{key} must be positive")
            setattr(cfg, key, value)
        elif key in ("data_dir", "tls_cert", "tls_key", "tls_client_ca", "collateral_dir"):
            setattr(cfg, key, _path(value, key))
        elif key in ("ek_ca_roots", "ek_ca_intermediates", "snp_roots", "tdx_roots", "snp_crls"):
            setattr(cfg, key, _paths(value, key))
        elif key == "operators":
            if not isinstance(value, list):
                raise UsageError("config.invalid", "operators must be a list")
            for op in value:
                roles = op.get("roles", []) if isinstance(op, dict) else None
                if (
                    not isinstance(op, dict)
                    or not set(op) <= {"name", "public_key", "roles"}
                    or not isinstance(op.get("name", ""), str)
                    or not isinstance(op.get("public_key"), str)
                    or not op["public_key"]
                    or not isinstance(roles, list)
                    or not all(isinstance(r, str) for r in roles)
                    or not set(roles) <= set(ROLES)
                ):
                    raise UsageError(
                        "config.invalid",
                        f"operators entries need name, public_key and roles from {ROLES}",
                    )
                cfg.operators.append(
                    OperatorKey(str(op.get("name", "operator")), Path(op["public_key"]), roles)
                )
        elif key == "limits":
            cfg.limits = _section(Limits, value, "limits")
        elif key == "rate_limit":
            cfg.rate_limit = _section(RateLimit, value, "rate_limit")
        else:
            raise UsageError("config.invalid", f"unknown configuration key {key[:40]!r}")


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
