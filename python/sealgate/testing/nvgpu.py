"""A synthetic NVIDIA confidential GPU for tests: its own device identity hierarchy and
SPDM 1.1 attestation reports signed for a chosen nonce.

Layout as NVIDIA's Hopper reports (DMTF DSP0274 GET_MEASUREMENTS request ‖ MEASUREMENTS
response, opaque-data TLVs, raw r‖s ECDSA P-384 signature over everything before it; see
``sealgate.nvgpu.report``). The hierarchy is root → provisioner CA → device leaf, all
ECDSA P-384/SHA-384, the leaf carrying the TCG DICE TcbInfo extension (2.23.133.5.4.1) whose
FWID equals the report's FWID TLV. Its root is not NVIDIA's: a test trusts it by handing its
PEM to the verifier (``GpuVerifier(roots=...)``, service ``nvgpu_roots``), never through a
pinned fingerprint.

``SyntheticSwitch`` is an LS10-style NVSwitch under the same root (its own "LS_10"
provisioner CA, as NVIDIA's switch chains have), with the switch opaque TLVs
(``sealgate.nvgpu.switch``); ``SyntheticPpcieSet`` is a protected-PCIe board: N GPUs and M
switches whose PDIs agree (each GPU names every switch, byte-reversed, as real GPUs do).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

#: TCG DICE TcbInfo (TCG DICE Attestation Architecture §6.1.1).
OID_DICE_TCB_INFO = x509.ObjectIdentifier("2.23.133.5.4.1")
_SHA384_OID_DER = bytes.fromhex("0609608648016503040202")
#: Opaque-data TLV types NVIDIA uses (PROVENANCE "NVIDIA GPU confidential computing").
TLV_DRIVER_VERSION, TLV_VBIOS_VERSION, TLV_CHIP_SKU, TLV_PROJECT = 3, 6, 15, 17
TLV_PROJECT_SKU, TLV_FWID = 18, 20
TLV_MSRSCNT, TLV_PROTECTED_PCIE_STATUS, TLV_SWITCH_PDI = 12, 21, 22
#: LS10 switch TLVs (nvtrust PPCIe verifier switch_spdm): 22 is the switch's own PDI there.
TLV_DEVICE_PDI, TLV_DISABLED_PORTS, TLV_POSITION_ID = 22, 23, 24
TLV_LOCK_STATUS, TLV_SWITCH_GPU_PDIS = 25, 26
N_BLOCKS = 64
#: An LS10 report has 31 measurement blocks (nvtrust's published switch evidence).
N_SWITCH_BLOCKS = 31
#: NVLinks per Hopper GPU (the GPU's SWITCH_PDI TLV holds one PDI per link).
NVLINKS = 18


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def dice_tcb_info(fwid: bytes) -> bytes:
    """DiceTcbInfo ::= SEQUENCE { ..., fwids [6] IMPLICIT FWIDLIST } with one SHA-384 FWID."""
    one = _tlv(0x30, _SHA384_OID_DER + _tlv(0x04, fwid))
    return _tlv(0x30, _tlv(0xA6, one))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca_or_leaf_builder(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    *,
    ca: bool,
    not_before: dt.datetime,
    not_after: dt.datetime,
    serial: int,
) -> x509.CertificateBuilder:
    """The profile both synthetic NVIDIA hierarchies (devices here, RIM signers in
    ``sealgate.testing.nvgpu_rim``) share: basicConstraints and keyUsage for a CA
    (keyCertSign, cRLSign) or a signing leaf (digitalSignature), both critical."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    fwid: bytes | None = None,
) -> x509.Certificate:
    b = ca_or_leaf_builder(
        _name(subject),
        key,
        _name(issuer),
        ca=ca,
        not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        serial=x509.random_serial_number(),
    )
    if fwid is not None:
        b = b.add_extension(
            x509.UnrecognizedExtension(OID_DICE_TCB_INFO, dice_tcb_info(fwid)), critical=False
        )
    return b.sign(issuer_key, hashes.SHA384())


@dataclass
class NvidiaHierarchy:
    """Synthetic device identity root → provisioner CA (→ device leaves)."""

    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    ica_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    switch_ica_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )

    def __post_init__(self) -> None:
        self.root = _cert(
            "Synthetic Device Identity CA",
            self.root_key,
            "Synthetic Device Identity CA",
            self.root_key,
            ca=True,
        )
        self.ica = _cert(
            "Synthetic GH100 Provisioner ICA",
            self.ica_key,
            "Synthetic Device Identity CA",
            self.root_key,
            ca=True,
        )
        self.switch_ica = _cert(
            "Synthetic LS_10 Provisioner ICA",
            self.switch_ica_key,
            "Synthetic Device Identity CA",
            self.root_key,
            ca=True,
        )

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


#: GPU modes (NVML ``nvmlSystemGetConfComputeSettings``: CC on, CC with developer tools,
#: CC off). NVIDIA's RIMs describe production CC mode only; a GPU in developer-tools mode
#: still answers with a genuine, signed report for the nonce, but the firmware measures its
#: debug configuration into the VBIOS and GSP/driver measurement blocks, so those blocks
#: differ from the RIM (nvtrust's verifier reports the failure and, in devtools mode, sets
#: the GPU ready anyway). With CC off NVML returns no attestation report at all.
MODE_CC, MODE_DEVTOOLS, MODE_OFF = "cc", "devtools", "off"
#: SPDM blocks (1-based) a synthetic devtools GPU measures differently: one VBIOS block
#: (RIM index 9) and one driver block (RIM index 7), so both manifests see a mismatch.
DEVTOOLS_BLOCKS = (10, 8)


def default_measurements() -> dict[int, bytes]:
    return {
        i: hashlib.sha384(b"synthetic gpu block %d" % i).digest() for i in range(1, N_BLOCKS + 1)
    }


@dataclass
class SyntheticGpu:
    """One GPU: its leaf under ``hierarchy`` and what its reports say."""

    hierarchy: NvidiaHierarchy
    serial: int = 0
    driver_version: str = "550.54.15"
    #: VBIOS version as the 8 little-endian bytes of the TLV (005e009601000000 = 96.00.5E.00.01).
    vbios: bytes = bytes.fromhex("005e009601000000")
    measurements: dict[int, bytes] = field(default_factory=default_measurements)
    chip_sku: str = "885"
    project: str = "G520"
    project_sku: str = "0200"
    #: The GPU's own PDI (what the NVSwitches list); random when not given.
    pdi: bytes = field(default_factory=lambda: os.urandom(8))
    #: PROTECTED_PCIE_STATUS TLV: True 0xAA, False 0x55, None absent.
    ppcie: bool | None = None
    #: SWITCH_PDI TLV, one 8-byte PDI per NVLink, exactly as the GPU reports them (the
    #: reverse byte order of each switch's own DEVICE_PDI); empty: no TLV.
    switch_pdis: tuple[bytes, ...] = ()
    #: MODE_CC, MODE_DEVTOOLS or MODE_OFF (what the fake NVML reports and how it measures).
    mode: str = MODE_CC

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.fwid = hashlib.sha384(b"synthetic fwid %d" % self.serial).digest()
        self.leaf = _cert(
            f"Synthetic GH100 FMC LF {self.serial}",
            self.key,
            "Synthetic GH100 Provisioner ICA",
            self.hierarchy.ica_key,
            ca=False,
            fwid=self.fwid,
        )

    def cert_chain(self) -> bytes:
        """PEM, leaf first, ending at the root (as NVML returns it)."""
        h = self.hierarchy
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, h.ica, h.root)
        )

    def reported_measurements(self) -> dict[int, bytes]:
        """The blocks this GPU measures in its mode: ``measurements`` in CC mode; in devtools
        mode the DEVTOOLS_BLOCKS differ (what the production RIMs do not list)."""
        out = dict(self.measurements)
        if self.mode == MODE_DEVTOOLS:
            for idx in DEVTOOLS_BLOCKS:
                if idx in out:
                    out[idx] = hashlib.sha384(b"synthetic devtools|" + out[idx]).digest()
        return out

    def report(self, nonce: bytes, *, responder_nonce: bytes | None = None) -> bytes:
        """An attestation report for the SPDM requester ``nonce`` (32 bytes), signed."""
        opaque = b""
        for t, val in (
            (TLV_DRIVER_VERSION, self.driver_version.encode() + b"\x00"),
            (TLV_VBIOS_VERSION, self.vbios),
            (TLV_CHIP_SKU, self.chip_sku.encode() + b"\x00"),
            (TLV_PROJECT, self.project.encode() + b"\x00"),
            (TLV_PROJECT_SKU, self.project_sku.encode() + b"\x00"),
            (TLV_FWID, self.fwid),
        ):
            opaque += _otlv(t, val)
        if self.ppcie is not None:
            opaque += _otlv(TLV_PROTECTED_PCIE_STATUS, b"\xaa" if self.ppcie else b"\x55")
        if self.switch_pdis:
            opaque += _otlv(TLV_SWITCH_PDI, b"".join(self.switch_pdis))
        return _spdm_report(self.key, nonce, self.reported_measurements(), opaque, responder_nonce)

    def evidence_item(self, nonce: bytes) -> dict[str, Any]:
        """One item of the NRAS / attestation SDK evidence list."""
        return _item("HOPPER", self.report(nonce), self.cert_chain(), nonce)


def _otlv(t: int, val: bytes) -> bytes:
    return t.to_bytes(2, "little") + len(val).to_bytes(2, "little") + val


def _item(arch: str, report: bytes, chain: bytes, nonce: bytes) -> dict[str, Any]:
    return {
        "arch": arch,
        "evidence": base64.b64encode(report).decode(),
        "certificate": base64.b64encode(chain).decode(),
        "nonce": nonce.hex(),
        "version": "1.0",
    }


def _spdm_report(
    key: ec.EllipticCurvePrivateKey,
    nonce: bytes,
    measurements: dict[int, bytes],
    opaque: bytes,
    responder_nonce: bytes | None,
) -> bytes:
    """DSP0274 GET_MEASUREMENTS request ‖ MEASUREMENTS response ‖ raw r‖s P-384 signature."""
    if len(nonce) != 32:
        raise ValueError("SPDM nonce is 32 bytes")
    req = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
    rec = b""
    for idx in sorted(measurements):
        v = measurements[idx]
        dmtf = bytes([0x01]) + len(v).to_bytes(2, "little") + v
        rec += bytes([idx, 0x01]) + len(dmtf).to_bytes(2, "little") + dmtf
    rnonce = responder_nonce if responder_nonce is not None else hashlib.sha256(nonce).digest()
    resp = (
        bytes([0x11, 0x60, 0x00, 0x00, len(measurements)])
        + len(rec).to_bytes(3, "little")
        + rec
        + rnonce
        + len(opaque).to_bytes(2, "little")
        + opaque
    )
    signed = req + resp
    r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA384())))
    return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")


def default_switch_measurements() -> dict[int, bytes]:
    return {
        i: hashlib.sha384(b"synthetic switch block %d" % i).digest()
        for i in range(1, N_SWITCH_BLOCKS + 1)
    }


@dataclass
class SyntheticSwitch:
    """One LS10-style NVSwitch: its leaf under the hierarchy's LS_10 CA and its report, with
    the switch opaque TLVs in the order NVIDIA's switches send them (6, 22, 12, 26, 23, 24,
    25): the ASCII VBIOS version, its own PDI, the GPU PDIs it is connected to."""

    hierarchy: NvidiaHierarchy
    serial: int = 0
    pdi: bytes = field(default_factory=lambda: os.urandom(8))
    #: The GPUs' PDIs (up to 8 slots; unused slots are sent as all-ones).
    gpu_pdis: tuple[bytes, ...] = ()
    vbios_version: str = "96.10.73.00.01"
    position_id: int = 0
    lock_status: int = 1
    measurements: dict[int, bytes] = field(default_factory=default_switch_measurements)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.leaf = _cert(
            f"Synthetic LS_10 FSP FMC LF {self.serial}",
            self.key,
            "Synthetic LS_10 Provisioner ICA",
            self.hierarchy.switch_ica_key,
            ca=False,
            fwid=hashlib.sha384(b"synthetic switch fwid %d" % self.serial).digest(),
        )

    def cert_chain(self) -> bytes:
        h = self.hierarchy
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, h.switch_ica, h.root)
        )

    def report(self, nonce: bytes, *, responder_nonce: bytes | None = None) -> bytes:
        if len(self.gpu_pdis) > 8:
            raise ValueError("an LS10 report has 8 GPU PDI slots")
        slots = b"".join(self.gpu_pdis) + b"\xff" * 8 * (8 - len(self.gpu_pdis))
        # The per-port GPU map after the 8 PDI slots (1 byte per port, 0xFF unused).
        ports = bytes(i % max(1, len(self.gpu_pdis)) for i in range(32)) + b"\xff" * 32
        opaque = b"".join(
            (
                _otlv(TLV_VBIOS_VERSION, self.vbios_version.encode()),
                _otlv(TLV_DEVICE_PDI, self.pdi),
                _otlv(TLV_MSRSCNT, b"".join(i.to_bytes(4, "little") for i in range(27))),
                _otlv(TLV_SWITCH_GPU_PDIS, slots + ports),
                _otlv(TLV_DISABLED_PORTS, bytes.fromhex("ec00")),
                _otlv(TLV_POSITION_ID, self.position_id.to_bytes(2, "little")),
                _otlv(TLV_LOCK_STATUS, self.lock_status.to_bytes(2, "little")),
            )
        )
        return _spdm_report(self.key, nonce, self.measurements, opaque, responder_nonce)

    def evidence_item(self, nonce: bytes) -> dict[str, Any]:
        return _item("LS10", self.report(nonce), self.cert_chain(), nonce)


@dataclass
class SyntheticPpcieSet:
    """A protected-PCIe board: ``n_gpus`` GPUs in PPCIe mode and ``n_switches`` NVSwitches
    with consistent PDIs. Each GPU's 18 NVLinks are spread over the switches in turn and
    every link's PDI is the switch's own PDI byte-reversed (PROVENANCE, nvtrust PPCIe
    verifier); every switch lists every GPU's PDI."""

    n_gpus: int = 8
    n_switches: int = 4
    hierarchy: NvidiaHierarchy = field(default_factory=NvidiaHierarchy)

    def __post_init__(self) -> None:
        h = self.hierarchy
        self.gpus = [SyntheticGpu(h, serial=i, ppcie=True) for i in range(self.n_gpus)]
        gpu_pdis = tuple(g.pdi for g in self.gpus)
        self.switches = [
            SyntheticSwitch(h, serial=100 + j, gpu_pdis=gpu_pdis, position_id=j)
            for j in range(self.n_switches)
        ]
        for g in self.gpus:
            g.switch_pdis = self.links()

    def links(self, switches: list[SyntheticSwitch] | None = None) -> tuple[bytes, ...]:
        """A GPU's 18 SWITCH_PDI entries for ``switches`` (default: this set's)."""
        sw = self.switches if switches is None else switches
        return tuple(sw[k % len(sw)].pdi[::-1] for k in range(NVLINKS)) if sw else ()

    def evidence(self, nonce: bytes) -> list[dict[str, Any]]:
        """The evidence list: GPUs first, then switches."""
        return [g.evidence_item(nonce) for g in self.gpus] + [
            s.evidence_item(nonce) for s in self.switches
        ]

    def evidence_json(self, nonce: bytes) -> bytes:
        return json.dumps(self.evidence(nonce)).encode()


class SyntheticCollector:
    """A node's GPU collector (``sealgate.node.agent.GpuCollector``) over synthetic GPUs and
    NVSwitches, in the order given: each device signs the nonce at its index. A real node
    collects GPUs through NVML (``sealgate.node.nvml``) and NVSwitches through NVIDIA's NSCQ
    library (NVML exposes no switch attestation); this stands in for both in tests.

    ``rims`` is sent with every entry, ``ocsp`` per entry index; ``replace`` maps an index to
    a report sent instead of a fresh one (a hostile node's replay or splice)."""

    def __init__(
        self,
        devices: list[SyntheticGpu | SyntheticSwitch],
        *,
        rims: list[bytes] | None = None,
        ocsp: dict[int, list[bytes]] | None = None,
    ) -> None:
        self.devices = devices
        self.rims = list(rims or [])
        self.ocsp = dict(ocsp or {})
        self.replace: dict[int, bytes] = {}

    def count(self) -> int:
        return len(self.devices)

    def collect(self, nonces: list[bytes]) -> list[Any]:
        from sealgate._proto import attestation_pb2

        return [
            attestation_pb2.GpuEvidence(
                report=self.replace.get(i) or d.report(n),
                cert_chain=d.cert_chain(),
                rims=self.rims,
                ocsp_responses=self.ocsp.get(i, []),
            )
            for i, (d, n) in enumerate(zip(self.devices, nonces, strict=True))
        ]
