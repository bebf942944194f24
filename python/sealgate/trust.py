"""Trust anchors: vendor roots pinned by SHA-256 fingerprint, stored in a trust directory.

The repository ships fingerprints, not vendor certificates (a clone carries no vendor
material that could go stale). Certificates come from the vendor
(``sealgate trust fetch <platform>``) or an operator (``sealgate trust import FILE``); both
paths accept a root only when its SHA-256(DER) equals a pin below, and an intermediate only
when a pinned root signed it. Loading re-checks pins, so a file swapped in the directory
later is ignored, never trusted.

Layout: ``<trust_dir>/<platform>/roots/<pin name>.pem`` and
``<trust_dir>/<platform>/intermediates/<subject CN>.pem``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sealgate.collateral import atomic_write
from sealgate.errors import ChainError, ParseError, UsageError
from sealgate.pki import Certificate, ChainVerifier, load_certificates, to_pem

__all__ = [
    "ALGORITHMS",
    "PINS",
    "Imported",
    "Pin",
    "TrustStore",
    "import_file",
    "pin_for",
    "pins",
]


@dataclass(frozen=True)
class Pin:
    """One pinned root certificate."""

    platform: str  # "snp" | "tdx" | "nvidia"
    name: str  # file stem in the trust directory, e.g. "ark-milan"
    sha256: str  # lowercase hex SHA-256 of the certificate DER
    description: str


#: Pinned roots: SHA-256 of the DER certificates the vendors publish (AMD KDS
#: /vcek/v1/<product>/cert_chain, Intel PCS issuer chains), recomputed independently.
PINS: tuple[Pin, ...] = (
    # --- AMD SEV-SNP: AMD Root Key per product line (RSA-4096, self-signed, RSASSA-PSS). ---
    Pin(
        "snp",
        "ark-milan",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        "AMD ARK-Milan (2020-10-22..2045-10-22)",
    ),
    Pin(
        "snp",
        "ark-genoa",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        "AMD ARK-Genoa (2022-01-26..2047-01-26)",
    ),
    Pin(
        "snp",
        "ark-turin",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        "AMD ARK-Turin (2023-05-15..2048-05-15)",
    ),
    # --- Intel TDX: Intel SGX Root CA (ECDSA P-256, 2018-05-21..2049-12-31). ---
    Pin(
        "tdx",
        "intel-sgx-root-ca",
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
        "Intel SGX Root CA (2018-05-21..2049-12-31)",
    ),
    # --- NVIDIA: Device Identity CA (ECDSA P-384, self-signed, 2021-11-05..9999-12-31), the
    # root of every Hopper GPU / NVSwitch attestation chain (nvtrust verifier_device_root.pem).
    Pin(
        "nvidia",
        "nvidia-device-identity-ca",
        "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48",
        "NVIDIA Device Identity CA (2021-11-05..9999-12-31)",
    ),
    # --- NVIDIA: the RIM (reference value) signing root, ECDSA P-384, self-signed; the PEM
    # NVIDIA ships with its local verifier (nvtrust verifier/certs/verifier_RIM_root.pem). ---
    Pin(
        "nvidia",
        "nvidia-rim-root",
        "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1",
        "NVIDIA CoRIM signing Root CA (RIM signer root, P-384)",
    ),
)

_BY_FINGERPRINT = {p.sha256: p for p in PINS}

#: The signature algorithms each vendor signs its root and intermediates with: AMD
#: RSASSA-PSS SHA-384 (pub. 57230 §2), Intel ECDSA P-256 SHA-256 (Intel SGX PCK Certificate
#: and CRL Profile). An import is checked under the same profile verification applies.
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "snp": ("rsa-pss-sha384",),
    "tdx": ("ecdsa-sha256",),
    # NVIDIA signs its device identity and RIM hierarchies with ECDSA P-384/SHA-384.
    "nvidia": ("ecdsa-sha384",),
}


def pin_for(fingerprint: str) -> Pin | None:
    return _BY_FINGERPRINT.get(fingerprint.lower())


def pins(platform: str) -> list[Pin]:
    return [p for p in PINS if p.platform == platform]


def default_trust_dir() -> Path:
    """``$SEALGATE_TRUST_DIR``, else ``$XDG_DATA_HOME/sealgate/trust``."""
    env = os.environ.get("SEALGATE_TRUST_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sealgate" / "trust"


def _stem(cn: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", cn.lower()).strip("-")
    return s[:100] or "unnamed"


@dataclass(frozen=True)
class Imported:
    platform: str
    kind: str  # "root" | "intermediate"
    name: str
    sha256: str
    path: Path

    def as_dict(self) -> dict[str, str]:
        return {
            "platform": self.platform,
            "kind": self.kind,
            "name": self.name,
            "sha256": self.sha256,
            "path": str(self.path),
        }


class TrustStore:
    """Root and intermediate certificates by platform, pins enforced on every load."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_trust_dir()

    def _dir(self, platform: str, kind: str) -> Path:
        if not re.fullmatch(r"[a-z0-9]+", platform):
            raise UsageError("trust.usage.bad_platform", f"bad platform {platform!r}")
        return self.root / platform / kind

    def _load_dir(self, d: Path) -> list[Certificate]:
        out: list[Certificate] = []
        if not d.is_dir():
            return out
        for f in sorted(d.glob("*.pem")):
            try:
                out.extend(load_certificates(f.read_bytes(), str(f)))
            except (OSError, ParseError):
                continue  # An unreadable file is skipped; it can only remove trust.
        return out

    def roots(self, platform: str) -> list[Certificate]:
        """Stored roots of ``platform`` whose fingerprint is pinned (others are ignored)."""
        return [
            c
            for c in self._load_dir(self._dir(platform, "roots"))
            if (p := pin_for(c.fingerprint)) is not None and p.platform == platform
        ]

    def intermediates(self, platform: str) -> list[Certificate]:
        """Stored intermediates; callers still verify them against a pinned root."""
        return self._load_dir(self._dir(platform, "intermediates"))

    def add_root(self, cert: Certificate) -> Imported:
        pin = pin_for(cert.fingerprint)
        if pin is None:
            raise ChainError(
                "trust.import.unpinned",
                f"{cert.subject_cn!r} (sha256 {cert.fingerprint}) is not a pinned root",
            )
        path = self._dir(pin.platform, "roots") / f"{pin.name}.pem"
        atomic_write(path, to_pem(cert.der))
        return Imported(pin.platform, "root", pin.name, cert.fingerprint, path)

    def add_intermediate(self, platform: str, cert: Certificate) -> Imported:
        name = _stem(cert.subject_cn)
        path = self._dir(platform, "intermediates") / f"{name}.pem"
        atomic_write(path, to_pem(cert.der))
        return Imported(platform, "intermediate", name, cert.fingerprint, path)

    def import_certificates(self, certs: list[Certificate]) -> list[Imported]:
        """Store pinned roots, then intermediates signed by a pinned root (given or stored).

        Fails as a whole (nothing written) when any certificate is neither.
        """
        # One verifier per platform for this import; its signature memo dies with it.
        verifiers = {platform: ChainVerifier(algs) for platform, algs in ALGORITHMS.items()}
        roots: list[tuple[Pin, Certificate]] = []
        for c in certs:
            p = pin_for(c.fingerprint)
            if p is not None:
                # The pinned bytes carry their self-signature: checked, not assumed.
                verifiers[p.platform].check_signed(c, c)
                roots.append((p, c))
        for platform in {p.platform for p in PINS}:
            for c in self.roots(platform):
                p = pin_for(c.fingerprint)
                if p is not None and all(r.fingerprint != c.fingerprint for _, r in roots):
                    roots.append((p, c))
        plan: list[tuple[str, Certificate]] = []
        for c in certs:
            if pin_for(c.fingerprint) is not None:
                continue
            issuer = next(
                (
                    (p, r)
                    for p, r in roots
                    if r.subject == c.issuer and _signed_by(verifiers[p.platform], c, r)
                ),
                None,
            )
            if issuer is None:
                raise ChainError(
                    "trust.import.unpinned",
                    f"{c.subject_cn!r} (sha256 {c.fingerprint}) is neither a pinned root nor "
                    "signed by one",
                )
            plan.append((issuer[0].platform, c))
        out = [self.add_root(c) for c in certs if pin_for(c.fingerprint) is not None]
        out.extend(self.add_intermediate(platform, c) for platform, c in plan)
        return out


def _signed_by(verifier: ChainVerifier, cert: Certificate, issuer: Certificate) -> bool:
    try:
        verifier.check_signed(cert, issuer)
    except (ChainError, ParseError):
        return False
    return True


def import_file(path: Path, trust_dir: Path | None = None) -> list[Imported]:
    """Import a PEM bundle or DER certificate into the trust directory, checking pins."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError("cli.input.unreadable", f"cannot read {path}: {e.strerror}") from None
    certs = load_certificates(data, str(path))
    return TrustStore(trust_dir).import_certificates(certs)
