"""NVIDIA's device-identity hierarchy as a vendor profile of the PKI layer (``sealgate.pki``).

A Hopper GPU presents five certificates, leaf first (nvtrust local verifier, NVIDIA CC
deployment guide): GSP FMC LF (the attestation key, per boot, a TCG DICE alias cert) → GSP
BROM (DeviceID) → NVIDIA GH100 Provisioner ICA → NVIDIA GH100 Identity → NVIDIA Device
Identity CA (self-signed). Every certificate is ECDSA P-384 / SHA-384 and valid to
9999-12-31 (RFC 5280 §4.1.2.5 "no well-defined expiration"). The chain is built and its
signatures checked by ``pki.ChainVerifier`` (its memo means a known chain costs no ECDSA
work); this module names NVIDIA's root, reads the leaf's TCG DICE FWID (TCG DICE Attestation
Architecture §6.1.1, OID 2.23.133.5.4.1) and maps failures to ``gpu.chain.*``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealgate import _core, pki
from sealgate.errors import ChainError, ParseError
from sealgate.trust import TrustStore, pin_for

#: The trust-store platform directory (``<trust>/nvidia/roots``; the RIM root lives there too).
TRUST_PLATFORM = "nvidia"
#: The trust-store pin name of the device root (``sealgate.trust.PINS``).
DEVICE_ROOT_PIN = "nvidia-device-identity-ca"
NVIDIA_ALGORITHMS = ("ecdsa-sha384",)
#: Leaf + 3 intermediates + root; a chain longer than this is refused.
NVIDIA_DEPTH = 5
MAX_CHAIN_PEM = 64 * 1024
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
#: Chains remembered (by SHA-256 of the PEM text): enough for a few hundred GPUs.
CACHE_ENTRIES = 1024

CHAIN_CODES = {
    "x509.chain.not_ca": "gpu.chain.not_ca",
    "x509.chain.key_usage": "gpu.chain.not_ca",
    "x509.chain.path_len_exceeded": "gpu.chain.not_ca",
    "x509.chain.algorithm_not_allowed": "gpu.chain.bad_signature_algorithm",
    "x509.chain.unsupported_algorithm": "gpu.chain.bad_signature_algorithm",
    "x509.chain.signature_invalid": "gpu.chain.signature_invalid",
    "x509.chain.expired": "gpu.chain.expired",
    "x509.chain.not_yet_valid": "gpu.chain.not_yet_valid",
}


@dataclass(frozen=True)
class DeviceChain:
    """A verified device chain and what the report check needs from it. ``nvkey``: the leaf
    key parsed once for the Rust report check (``_core.verify_nvgpu``), with the leaf FWID,
    cached with the chain so a known device costs no key parsing."""

    path: pki.Path
    key: ec.EllipticCurvePublicKey
    fwid: bytes | None
    root_pin: str | None
    nvkey: _core.NvGpuKey

    def verify_signature(self, signed: bytes, sig: bytes) -> bool:
        """ECDSA P-384 / SHA-384, raw r‖s (DSP0274 §15), with the leaf key (aws-lc, Rust)."""
        return self.nvkey.verify_signature(signed, sig)

    def claims(self) -> dict[str, object]:
        leaf = self.path.leaf
        return {
            "leaf_subject": leaf.subject_cn,
            "leaf_serial": f"{leaf.serial:X}",
            "leaf_sha256": leaf.fingerprint,
            "root": self.path.anchor.subject_cn,
            "root_sha256": self.path.anchor.fingerprint,
            "root_pinned": self.root_pin,
            "chain": [c.subject_cn for c in self.path.certs],
        }


def _fwid(leaf: pki.Certificate) -> bytes | None:
    try:
        info = leaf.dice_tcb_info()
    except ParseError as e:
        raise ChainError("gpu.chain.bad_dice_extension", e.message) from None
    if info is None:
        return None
    for alg, digest in reversed(info.fwids):
        if alg == OID_SHA384:
            return digest
    return None


class NvidiaChainVerifier:
    """NVIDIA's profile over one ``pki.ChainVerifier``. Anchors: roots given explicitly (the
    operator's choice, like ``--roots`` for AMD/Intel), else the trust store's roots, which
    load only when their SHA-256 is pinned in ``sealgate.trust``."""

    def __init__(
        self, *, roots: Sequence[bytes] | None = None, trust_dir: Path | None = None
    ) -> None:
        self.chains = pki.ChainVerifier(
            NVIDIA_ALGORITHMS, max_depth=NVIDIA_DEPTH, check_anchor_signature=True
        )
        self._explicit = roots is not None
        if roots is not None:
            # Explicit roots are the operator's choice, but never the pinned RIM root: it
            # signs reference manifests, not devices.
            self.anchors = [
                c
                for r in roots
                for c in pki.load_certificates(r, "root")
                if (p := pin_for(c.fingerprint)) is None or p.name == DEVICE_ROOT_PIN
            ]
        else:
            # The "nvidia" trust directory also holds the RIM root; a device chain may
            # anchor only at the Device Identity CA.
            self.anchors = [
                c
                for c in TrustStore(trust_dir).roots(TRUST_PLATFORM)
                if (p := pin_for(c.fingerprint)) is not None and p.name == DEVICE_ROOT_PIN
            ]
        self._cache: OrderedDict[bytes, DeviceChain] = OrderedDict()

    def verify(self, pem: bytes, at: datetime) -> DeviceChain:
        """The device chain (PEM, leaf first) verified to an anchor, valid at ``at``."""
        if len(pem) > MAX_CHAIN_PEM:
            raise ChainError("gpu.chain.too_large", f"{len(pem)} bytes of PEM")
        key = hashlib.sha256(pem).digest()
        hit = self._cache.get(key)
        if hit is None:
            hit = self._build(pem, at)
            self._cache[key] = hit
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        bad = hit.path.invalid_at(at)
        if bad is not None:
            cert, why = bad
            code = "gpu.chain.expired" if why == "expired" else "gpu.chain.not_yet_valid"
            raise ChainError(code, f"{pki.describe(cert)} is {why} at {at}")
        return hit

    def _build(self, pem: bytes, at: datetime) -> DeviceChain:
        try:
            certs = pki.load_certificates(pem, "GPU certificate chain")
        except ParseError as e:
            raise ChainError("gpu.chain.invalid", e.message) from None
        if not certs:
            raise ChainError("gpu.chain.invalid", "no certificate in the chain")
        if len(certs) > NVIDIA_DEPTH:
            raise ChainError("gpu.chain.too_long", f"{len(certs)} certificates")
        if not self.anchors:
            raise ChainError("gpu.chain.untrusted_root", "no NVIDIA Device Identity CA is trusted")
        leaf = certs[0]
        if leaf.key_type[0] != "ec" or leaf.key_type[2] != pki.OID_P384:
            raise ChainError("gpu.chain.bad_key", f"{pki.describe(leaf)} key is not EC P-384")
        try:
            path = self.chains.build(leaf, certs[1:], self.anchors, None)
        except ChainError as e:
            raise pki.remap(e, CHAIN_CODES, "gpu.chain.untrusted_root") from None
        pub = leaf.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise ChainError("gpu.chain.bad_key", f"{pki.describe(leaf)} key is not EC")
        pin = pin_for(path.anchor.fingerprint)
        fwid = _fwid(leaf)
        point = pub.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return DeviceChain(
            path,
            pub,
            fwid,
            pin.name if pin and pin.name == DEVICE_ROOT_PIN else None,
            _core.NvGpuKey.from_sec1(point, fwid),
        )
