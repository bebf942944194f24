"""SNP/TDX evidence through Linux configfs-tsm (Documentation/ABI/testing/configfs-tsm).

A report is requested by creating a directory under ``/sys/kernel/config/tsm/report``,
writing the 64-byte report_data to ``inblob`` and reading ``outblob`` (SNP: the attestation
report; TDX: the quote) and, for SNP, ``auxblob`` (the certificate table of the GHCB spec
§4.1.8.1: entries of GUID, offset u32, length u32, ended by an all-zero entry). The root
directory is a parameter so tests can point it at a fake tree.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from sealgate._proto import attestation_pb2
from sealgate.node.agent import AgentError

#: GHCB spec Table "certificate table GUIDs": VCEK, VLEK, ASK, ARK.
GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes_le
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1").bytes_le
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782").bytes_le
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae").bytes_le
#: An auxblob holds a handful of certificates; more entries than this is not a cert table.
MAX_CERT_ENTRIES = 16
REPORT_DATA_SIZE = 64


def parse_cert_table(aux: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for i in range(MAX_CERT_ENTRIES + 1):
        off = i * 24
        if off + 24 > len(aux):
            raise AgentError("node.tsm.bad_auxblob", "certificate table not terminated")
        guid, c_off, c_len = aux[off : off + 16], *struct.unpack_from("<II", aux, off + 16)
        if guid == bytes(16):
            return out
        if c_off + c_len > len(aux):
            raise AgentError("node.tsm.bad_auxblob", "certificate entry beyond the table")
        out[guid] = aux[c_off : c_off + c_len]
    raise AgentError("node.tsm.bad_auxblob", f"more than {MAX_CERT_ENTRIES} certificates")


def _pem(der: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


class ConfigfsTsmCollector:
    def __init__(
        self,
        platform: str,
        root: Path = Path("/sys/kernel/config/tsm/report"),
        collateral: bytes | None = None,
    ) -> None:
        if platform not in ("snp", "tdx"):
            raise AgentError(
                "node.tsm.platform", f"configfs-tsm serves snp and tdx, not {platform}"
            )
        self.platform = platform
        self.root = root
        self.collateral = collateral

    def _report(self, report_data: bytes) -> tuple[bytes, bytes]:
        if not self.root.is_dir():
            raise AgentError("node.tsm.unavailable", f"{self.root} does not exist (not a CVM?)")
        entry = self.root / f"sealgate-{uuid.uuid4().hex[:12]}"
        try:
            entry.mkdir()
        except OSError as e:
            raise AgentError(
                "node.tsm.unavailable", f"cannot create {entry}: {e.strerror}"
            ) from None
        try:
            (entry / "inblob").write_bytes(report_data)
            out = (entry / "outblob").read_bytes()
            aux_path = entry / "auxblob"
            aux = aux_path.read_bytes() if aux_path.exists() else b""
        except OSError as e:
            raise AgentError("node.tsm.failed", f"report request failed: {e.strerror}") from None
        finally:
            try:
                entry.rmdir()
            except OSError:
                pass
        return out, aux

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        if len(binding) != REPORT_DATA_SIZE:
            raise AgentError("node.tsm.bad_report_data", "report_data must be 64 bytes")
        out, aux = self._report(binding)
        if self.platform == "tdx":
            return attestation_pb2.Evidence(
                tdx=attestation_pb2.TdxEvidence(quote=out, collateral=self.collateral or b"")
            )
        certs = parse_cert_table(aux) if aux else {}
        vcek = certs.get(GUID_VCEK) or certs.get(GUID_VLEK) or b""
        chain = b"".join(_pem(certs[g]) for g in (GUID_ASK, GUID_ARK) if g in certs)
        return attestation_pb2.Evidence(
            snp=attestation_pb2.SnpEvidence(report=out, vcek=vcek, cert_chain=chain)
        )
