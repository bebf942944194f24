"""A fake Intel DCAP hierarchy that signs TDX quotes and collateral (tests, demos, benches).

Everything real verification looks at is produced for real: a self-signed "Intel SGX Root
CA" look-alike, a PCK Platform CA, PCK certificates carrying a DER-encoded SGX extension
(1.2.840.113741.1.13.1: PPID, TCB components, PCESVN, CPUSVN, PCE-ID, FMSPC, SGX type),
a TCB signing certificate, CRLs, TCB info v3 / TD_QE identity JSON signed over their exact
text, and v4/v5 quotes signed by an attestation key whose hash the QE report (signed by
the PCK key) carries. Keys derive from a seed and ECDSA signatures are RFC 6979
deterministic, so ``scripts/gen_tdx_vectors.py`` regenerates byte-identical files.

The service's end-to-end tests use :class:`FakeIntel` to play TDX nodes::

    intel = FakeIntel()
    quote = intel.quote(report_data=binding)
    verify_quote(quote, collateral=intel.collateral(), roots=[intel.root_pem])

This module is for tests only: its root is trusted only when passed explicitly as ``roots``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from sealgate.tdx.collateral import TdxCollateral, load_collateral_json
from sealgate.testing.layout import TDX_BODY10, TDX_BODY15, TDX_HEADER, TDX_QE_REPORT

QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
#: Intel's TD_QE MRSIGNER (from PCS QE identity responses).
QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
QE_ISVPRODID = 2
DEFAULT_FMSPC = bytes.fromhex("00a06f000000")
#: Certificate/collateral window of generated hierarchies (synthetic: deliberately long).
NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
ISSUE_DATE = datetime(2026, 1, 1, tzinfo=UTC)
NEXT_UPDATE = datetime(2046, 1, 1, tzinfo=UTC)

_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order


def _key(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    d = int.from_bytes(hashlib.sha256(seed + b"/" + label.encode()).digest(), "big") % (_N - 1)
    return ec.derive_private_key(d + 1, ec.SECP256R1())


def _sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    der = key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _xy(key: ec.EllipticCurvePrivateKey) -> bytes:
    n = key.public_key().public_numbers()
    return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")


# --- DER encoding of the SGX extension (X.690) ---


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        ln = bytes([n])
    elif n < 0x100:
        ln = bytes([0x81, n])
    else:
        ln = bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + ln + body


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for a in arcs[2:]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        out += bytes(reversed(chunk))
    return _tlv(6, bytes(out))


def _int(v: int) -> bytes:
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return _tlv(2, b)


def sgx_extension(
    *,
    components: tuple[int, ...],
    pcesvn: int,
    fmspc: bytes,
    pceid: bytes = b"\x00\x00",
    ppid: bytes = b"\x11" * 16,
) -> bytes:
    """DER of the SGX extension ("Intel SGX PCK Certificate and CRL Profile" §3.5)."""
    base = "1.2.840.113741.1.13.1"
    tcb = b"".join(
        _tlv(0x30, _oid(f"{base}.2.{i + 1}") + _int(v)) for i, v in enumerate(components)
    )
    tcb += _tlv(0x30, _oid(f"{base}.2.17") + _int(pcesvn))
    tcb += _tlv(0x30, _oid(f"{base}.2.18") + _tlv(4, bytes(components)))
    body = (
        _tlv(0x30, _oid(f"{base}.1") + _tlv(4, ppid))
        + _tlv(0x30, _oid(f"{base}.2") + _tlv(0x30, tcb))
        + _tlv(0x30, _oid(f"{base}.3") + _tlv(4, pceid))
        + _tlv(0x30, _oid(f"{base}.4") + _tlv(4, fmspc))
        + _tlv(0x30, _oid(f"{base}.5") + _tlv(10, b"\x00"))
    )
    return _tlv(0x30, body)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation (sealgate test)"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    serial: int,
    ca: bool,
    extra: list[x509.ExtensionType] | None = None,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    )
    for e in extra or []:
        b = b.add_extension(e, False)
    return b.sign(signer, hashes.SHA256(), ecdsa_deterministic=True)


def _pem(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _comps(n: int) -> list[dict[str, Any]]:
    return [{"svn": n}] * 16


@dataclass
class Platform:
    """One simulated TDX host: its PCK certificate and TCB."""

    components: tuple[int, ...] = (2,) * 16
    pcesvn: int = 11
    fmspc: bytes = DEFAULT_FMSPC
    serial: int = 0x1001
    #: "platform" (multi-package platforms) or "processor": which PCK CA issued the PCK.
    ca: str = "platform"
    #: The PPID in the PCK certificate (the platform's identity).
    ppid: bytes = b"\x11" * 16


@dataclass
class FakeIntel:
    """A deterministic fake Intel DCAP hierarchy."""

    seed: bytes = b"sealgate-tdx-test"
    revoked_serials: tuple[int, ...] = (0xDEAD,)
    #: Serials on the Root CA CRL (2 = PCK Platform CA, 3 = TCB signing certificate).
    root_revoked: tuple[int, ...] = ()
    issue_date: datetime = ISSUE_DATE
    next_update: datetime = NEXT_UPDATE
    _pck: dict[tuple[Any, ...], tuple[ec.EllipticCurvePrivateKey, bytes]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        self.root_key = _key(self.seed, "root")
        self.ca_key = _key(self.seed, "pck-platform-ca")
        self.tcb_key = _key(self.seed, "tcb-signing")
        self.att_key = _key(self.seed, "attestation-key")
        self.root = _cert(
            "Intel SGX Root CA", "Intel SGX Root CA", self.root_key, self.root_key, 1, True
        )
        self.proc_ca_key = _key(self.seed, "pck-processor-ca")
        self.pck_proc_ca = _cert(
            "Intel SGX PCK Processor CA",
            "Intel SGX Root CA",
            self.proc_ca_key,
            self.root_key,
            4,
            True,
        )
        self.pck_ca = _cert(
            "Intel SGX PCK Platform CA", "Intel SGX Root CA", self.ca_key, self.root_key, 2, True
        )
        self.tcb_signer = _cert(
            "Intel SGX TCB Signing", "Intel SGX Root CA", self.tcb_key, self.root_key, 3, False
        )

    @property
    def root_pem(self) -> bytes:
        return _pem(self.root)

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    @property
    def tcb_signing_chain(self) -> bytes:
        return _pem(self.tcb_signer) + _pem(self.root)

    def pck_chain(self, platform: Platform) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """(PCK private key, PEM chain PCK ‖ PCK CA ‖ root) for ``platform`` (cached)."""
        k: tuple[Any, ...] = (
            platform.components,
            platform.pcesvn,
            platform.fmspc,
            platform.serial,
            platform.ca,
        )
        if platform.ppid != Platform.ppid:  # keyed as before for the default (same keys)
            k = (*k, platform.ppid)
        hit = self._pck.get(k)
        if hit is None:
            key = _key(self.seed, f"pck-{k}")
            ext = x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.2.840.113741.1.13.1"),
                sgx_extension(
                    components=platform.components,
                    pcesvn=platform.pcesvn,
                    fmspc=platform.fmspc,
                    ppid=platform.ppid,
                ),
            )
            proc = platform.ca == "processor"
            ca_cert = self.pck_proc_ca if proc else self.pck_ca
            cert = _cert(
                "Intel SGX PCK Certificate",
                f"Intel SGX PCK {'Processor' if proc else 'Platform'} CA",
                key,
                self.proc_ca_key if proc else self.ca_key,
                platform.serial,
                False,
                [ext],
            )
            hit = (key, _pem(cert) + _pem(ca_cert) + _pem(self.root) + b"\x00")
            self._pck[k] = hit
        return hit

    # --- collateral ---

    def tcb_info(self, fmspc: bytes = DEFAULT_FMSPC) -> dict[str, Any]:
        """TDX TCB info v3 with four levels (newest first) and TDX module identity TDX_01."""

        def level(
            sgx: int, pce: int, tdx: int, status: str, date: str, adv: list[str]
        ) -> dict[str, Any]:
            lv: dict[str, Any] = {
                "tcb": {
                    "sgxtcbcomponents": _comps(sgx),
                    "pcesvn": pce,
                    "tdxtcbcomponents": [{"svn": tdx}] * 16,
                },
                "tcbDate": date,
                "tcbStatus": status,
            }
            if adv:
                lv["advisoryIDs"] = adv
            return lv

        zero48 = "00" * 48
        return {
            "id": "TDX",
            "version": 3,
            "issueDate": self.issue_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nextUpdate": self.next_update.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fmspc": fmspc.hex().upper(),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": {
                "mrsigner": zero48,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            },
            "tdxModuleIdentities": [
                {
                    "id": "TDX_01",
                    "mrsigner": zero48,
                    "attributes": "0000000000000000",
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                    "tcbLevels": [
                        {
                            "tcb": {"isvsvn": 4},
                            "tcbDate": "2025-06-01T00:00:00Z",
                            "tcbStatus": "UpToDate",
                        },
                        {
                            "tcb": {"isvsvn": 2},
                            "tcbDate": "2024-01-01T00:00:00Z",
                            "tcbStatus": "OutOfDate",
                            "advisoryIDs": ["INTEL-SA-01010"],
                        },
                    ],
                }
            ],
            "tcbLevels": [
                level(2, 11, 0, "UpToDate", "2025-06-01T00:00:00Z", []),
                level(2, 10, 0, "SWHardeningNeeded", "2025-01-01T00:00:00Z", ["INTEL-SA-00615"]),
                level(
                    1,
                    10,
                    0,
                    "OutOfDate",
                    "2024-01-01T00:00:00Z",
                    ["INTEL-SA-00837", "INTEL-SA-00615"],
                ),
                level(0, 5, 0, "Revoked", "2023-01-01T00:00:00Z", ["INTEL-SA-00001"]),
            ],
        }

    def qe_identity(self) -> dict[str, Any]:
        return {
            "id": "TD_QE",
            "version": 2,
            "issueDate": self.issue_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nextUpdate": self.next_update.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": QE_ATTRIBUTES.hex().upper(),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER.hex().upper(),
            "isvprodid": QE_ISVPRODID,
            "tcbLevels": [
                {"tcb": {"isvsvn": 4}, "tcbDate": "2025-06-01T00:00:00Z", "tcbStatus": "UpToDate"},
                {"tcb": {"isvsvn": 1}, "tcbDate": "2023-01-01T00:00:00Z", "tcbStatus": "OutOfDate"},
            ],
        }

    def _signed_body(self, member: str, doc: dict[str, Any]) -> tuple[str, bytes]:
        text = json.dumps(doc, separators=(",", ":"))
        return text, _sign_raw(self.tcb_key, text.encode())

    def pcs_tcb_info(self, fmspc: bytes = DEFAULT_FMSPC) -> bytes:
        """The PCS response body: {"tcbInfo": <signed text>, "signature": hex}."""
        text, sig = self._signed_body("tcbInfo", self.tcb_info(fmspc))
        return ('{"tcbInfo":' + text + ',"signature":"' + sig.hex() + '"}').encode()

    def pcs_qe_identity(self) -> bytes:
        text, sig = self._signed_body("enclaveIdentity", self.qe_identity())
        return ('{"enclaveIdentity":' + text + ',"signature":"' + sig.hex() + '"}').encode()

    def crl(self, issuer: str, key: ec.EllipticCurvePrivateKey, revoked: tuple[int, ...]) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer))
            .last_update(self.issue_date)
            .next_update(self.next_update)
            # RFC 5280 §5.2: conforming CRLs carry a CRL number and the issuer's key id (as
            # Intel's do; some verifiers, e.g. dcap-qvl, refuse CRLs without them).
            .add_extension(x509.CRLNumber(1), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
        )
        for s in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(s)
                .revocation_date(self.issue_date)
                .build()
            )
        crl = b.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
        return crl.public_bytes(serialization.Encoding.DER)

    def pck_crl(self, ca: str = "platform") -> bytes:
        if ca == "processor":
            return self.crl("Intel SGX PCK Processor CA", self.proc_ca_key, self.revoked_serials)
        return self.crl("Intel SGX PCK Platform CA", self.ca_key, self.revoked_serials)

    def root_crl(self) -> bytes:
        return self.crl("Intel SGX Root CA", self.root_key, self.root_revoked)

    def collateral_json(self, fmspc: bytes = DEFAULT_FMSPC, ca: str = "platform") -> bytes:
        """Collateral in dcap-qvl's QuoteCollateralV3 JSON layout."""
        tcb_text, tcb_sig = self._signed_body("tcbInfo", self.tcb_info(fmspc))
        qe_text, qe_sig = self._signed_body("enclaveIdentity", self.qe_identity())
        chain = self.tcb_signing_chain.decode()
        doc = {
            "pck_crl_issuer_chain": (
                _pem(self.pck_proc_ca if ca == "processor" else self.pck_ca) + _pem(self.root)
            ).decode(),
            "root_ca_crl": self.root_crl().hex(),
            "pck_crl": self.pck_crl(ca).hex(),
            "tcb_info_issuer_chain": chain,
            "tcb_info": tcb_text,
            "tcb_info_signature": tcb_sig.hex(),
            "qe_identity_issuer_chain": chain,
            "qe_identity": qe_text,
            "qe_identity_signature": qe_sig.hex(),
        }
        return json.dumps(doc, indent=1).encode()

    def collateral(self, fmspc: bytes = DEFAULT_FMSPC, ca: str = "platform") -> TdxCollateral:
        return load_collateral_json(self.collateral_json(fmspc, ca))

    # --- quotes ---

    def quote(
        self,
        report_data: bytes = b"",
        *,
        version: int = 4,
        body_type: int = 2,
        platform: Platform | None = None,
        tee_tcb_svn: bytes = bytes([4, 1, 2]) + bytes(13),
        td_attributes: bytes = bytes.fromhex("0000001000000000"),
        mr_td: bytes = b"\x5a" * 48,
        rtmrs: tuple[bytes, bytes, bytes, bytes] = (b"\x00" * 48,) * 4,
        qe_isv_svn: int = 4,
        trailing: bytes = b"",
        corrupt_binding: bool = False,
        mr_config_id: bytes = bytes(48),
    ) -> bytes:
        """A signed TDX quote. ``report_data`` is zero-padded to 64 bytes."""
        if len(report_data) > 64:
            raise ValueError("report_data is at most 64 bytes")
        plat = platform or Platform()
        pck_key, chain = self.pck_chain(plat)
        h = TDX_HEADER.new()
        TDX_HEADER.put(h, "version", version)
        TDX_HEADER.put(h, "att_key_type", 2)  # ECDSA-256-with-P-256
        TDX_HEADER.put(h, "tee_type", 0x81)  # TDX
        TDX_HEADER.put(h, "pce_svn", plat.pcesvn)
        TDX_HEADER.put(h, "qe_vendor_id", QE_VENDOR_ID)
        header = bytes(h)
        L = TDX_BODY15 if version == 5 and body_type == 3 else TDX_BODY10
        b = L.new()
        L.put(b, "tee_tcb_svn", tee_tcb_svn)
        L.put(b, "mr_seam", b"\x11" * 48)
        # MRSIGNERSEAM zero: Intel's own TDX module; SEAMATTRIBUTES, MROWNER and
        # MROWNERCONFIG zero; MRCONFIGID as given (zero by default).
        L.put(b, "td_attributes", td_attributes)
        L.put(b, "mr_config_id", mr_config_id)
        L.put(b, "xfam", bytes.fromhex("e702060000000000"))
        L.put(b, "mr_td", mr_td)
        L.put(b, "rtmr", b"".join(rtmrs))
        L.put(b, "report_data", report_data.ljust(64, b"\x00"))
        if L is TDX_BODY15:
            L.put(b, "tee_tcb_svn2", bytes([4, 1, 2]) + bytes(13))
        body = bytes(b)
        signed = header + (struct.pack("<HI", body_type, len(body)) if version == 5 else b"") + body
        ak = _xy(self.att_key)
        auth = hashlib.sha256(self.seed + b"/qe-auth").digest()
        binding = hashlib.sha256(ak + auth).digest() + b"\x00" * 32
        if corrupt_binding:
            binding = bytes([binding[0] ^ 1]) + binding[1:]
        Q = TDX_QE_REPORT
        qe = Q.new()
        Q.put(qe, "cpu_svn", bytes(plat.components))
        Q.put(qe, "attributes", QE_ATTRIBUTES)
        Q.put(qe, "mr_enclave", hashlib.sha256(b"td-qe").digest())
        Q.put(qe, "mr_signer", QE_MRSIGNER)
        Q.put(qe, "isv_prod_id", QE_ISVPRODID)
        Q.put(qe, "isv_svn", qe_isv_svn)
        Q.put(qe, "report_data", binding)
        inner = (
            bytes(qe)
            + _sign_raw(pck_key, bytes(qe))
            + struct.pack("<H", len(auth))
            + auth
            + struct.pack("<HI", 5, len(chain))
            + chain
        )
        sig_data = _sign_raw(self.att_key, signed) + ak + struct.pack("<HI", 6, len(inner)) + inner
        return signed + struct.pack("<I", len(sig_data)) + sig_data + trailing


_DEFAULT = FakeIntel()


def tsm_responder(
    intel: FakeIntel | None = None, **kw: Any
) -> Callable[[bytes], tuple[bytes, bytes | None]]:
    """A ``sealgate.node.tsm.FakeTsm`` responder that answers like a TDX guest's
    configfs-tsm (``provider`` ``tdx_guest``): ``outblob`` = a quote over ``inblob``."""
    fake = intel or _DEFAULT

    def respond(inblob: bytes) -> tuple[bytes, bytes | None]:
        return fake.quote(inblob, **kw), None

    return respond


def fresh_quote(report_data: bytes, intel: FakeIntel | None = None, **kw: Any) -> bytes:
    """A freshly signed quote for ``report_data`` from the default fake hierarchy."""
    return (intel or _DEFAULT).quote(report_data, **kw)


__all__ = [
    "FakeIntel",
    "Platform",
    "fresh_quote",
    "sgx_extension",
    "tsm_responder",
]
