"""SEV-SNP / TDX evidence for the node agent, through configfs-tsm.

The kernel interface itself is ``sealgate.node.tsm`` (``ConfigfsTsm``, ``FakeTsm``; built
with the SNP/TDX platforms); this adapter turns its output into the
``Evidence`` message: SNP report + VCEK/VLEK and ASK/ARK from the ``auxblob`` certificate
table (``sealgate.snp.certtable``), or TDX quote + operator-supplied collateral JSON. Until
those modules are part of the build, collecting answers ``node.tsm.unavailable``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from sealgate._proto import attestation_pb2
from sealgate.errors import SealgateError
from sealgate.node.agent import AgentError

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise AgentError(
            "node.tsm.unavailable", f"{name} is not part of this sealgate build"
        ) from None


def _pem(der: bytes) -> bytes:
    """One certificate of the kernel's certificate table as PEM, checked to be one DER
    certificate (the PKI layer's parser: AMD's serial-0 VCEKs included)."""
    from sealgate import pki
    from sealgate.errors import ParseError

    try:
        return pki.to_pem(pki.load_certificate(der).der)
    except ParseError:
        raise AgentError(
            "node.tsm.bad_auxblob", "certificate table holds a non-X.509 entry"
        ) from None


class ConfidentialVmCollector:
    """``Collector`` for SNP and TDX guests; ``source`` defaults to the kernel's configfs-tsm."""

    def __init__(
        self,
        platform: str,
        root: Path = TSM_REPORT_ROOT,
        collateral: bytes | None = None,
        source: Any = None,
    ) -> None:
        if platform not in ("snp", "tdx"):
            raise AgentError(
                "node.tsm.platform", f"configfs-tsm serves snp and tdx, not {platform}"
            )
        self.platform = platform
        self.collateral = collateral
        self.root = root
        self._source = source

    def _src(self) -> Any:
        if self._source is None:
            tsm = _module("sealgate.node.tsm")
            self._source = tsm.ConfigfsTsm(self.root, platform=self.platform)
        return self._source

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        try:
            ev = self._src().collect(binding)
        except SealgateError as e:
            raise AgentError(e.code, e.message) from None
        if self.platform == "tdx":
            return attestation_pb2.Evidence(
                tdx=attestation_pb2.TdxEvidence(quote=ev.outblob, collateral=self.collateral or b"")
            )
        certs: dict[str, bytes] = {}
        if ev.auxblob:
            certtable = _module("sealgate.snp.certtable")
            try:
                certs = certtable.parse_cert_table(ev.auxblob)
            except SealgateError as e:
                raise AgentError(e.code, e.message) from None
        vcek = certs.get("vcek") or certs.get("vlek") or b""
        chain = b"".join(_pem(certs[n]) for n in ("ask", "ark") if n in certs)
        return attestation_pb2.Evidence(
            snp=attestation_pb2.SnpEvidence(report=ev.outblob, vcek=vcek, cert_chain=chain)
        )
