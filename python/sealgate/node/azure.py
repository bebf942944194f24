"""Azure confidential VM evidence for the node agent, through the vTPM and IMDS.

An Azure CVM guest has no ``/dev/sev-guest`` or configfs-tsm: the paravisor (HCL) owns the
hardware report and publishes it in the vTPM (``sealgate.azure``). To attest a challenge the
agent, with tpm2-tools and any TCTI (``/dev/tpmrm0`` by default):

1. writes the binding SHA-512(nonce ‖ runtime key) (64 bytes) to NV index ``0x01400002``
   (defining it, owner read/write, if this boot has not yet), so the paravisor regenerates
   the HCL report with it as runtime data ``user-data``;
2. reads the HCL report from NV ``0x01400001`` until it carries that user data (bounded
   retries: the paravisor needs a moment), checking locally that the hardware report's
   REPORT_DATA is SHA-256 of the runtime data, so a torn or stale read is never sent;
3. quotes the PCRs with the HCL attestation key at ``0x81000003`` with the binding's first
   32 bytes as extraData (``tpm2_quote``);
4. TDX: asks the quote provider for the TD quote of the HCL report's TDREPORT (Azure IMDS
   ``POST /acc/tdquote`` {"report": base64url}); SNP: sends the VCEK and its chain, from
   files the operator gives or from IMDS's THIM endpoint
   (``GET /metadata/THIM/amd/certification``, header ``Metadata: true``).

IMDS is plain HTTP on the link-local 169.254.169.254, reachable only from inside the VM; its
answers are not trusted (the verifier checks everything), only bounded in size and time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sealgate import tpm
from sealgate._proto import attestation_pb2
from sealgate.errors import SealgateError
from sealgate.node.agent import AgentError
from sealgate.node.tpm import run_tpm2
from sealgate.protocol import BINDING_SIZE, TPM_BINDING_SIZE

NV_HCL_REPORT = "0x01400001"
NV_USER_DATA = "0x01400002"
AK_HANDLE = "0x81000003"
IMDS_URL = "http://169.254.169.254"
TD_QUOTE_PATH = "/acc/tdquote"
THIM_PATH = "/metadata/THIM/amd/certification"
#: All 24 SHA-256 PCRs, as Azure's attestation clients quote them.
AZURE_SELECTION = "sha256:" + ",".join(str(i) for i in range(24))
#: IMDS answers are a few KiB (a TD quote ~5 KiB, base64url); anything larger is refused.
MAX_IMDS_RESPONSE = 64 << 10
USER_DATA_ATTRIBUTES = "ownerread|ownerwrite|authread|authwrite|no_da"


class AzureVtpmCollector:
    """``Collector`` for Azure CVMs (``platform`` ``azure-snp`` or ``azure-tdx``)."""

    def __init__(
        self,
        platform: str,
        *,
        tcti: str | None = None,
        state_dir: Path | None = None,
        selection: str = AZURE_SELECTION,
        eventlog: Path | None = None,
        ak_handle: str = AK_HANDLE,
        imds_url: str = IMDS_URL,
        vcek: bytes | None = None,
        cert_chain: bytes | None = None,
        collateral: bytes | None = None,
        report_attempts: int = 50,
        report_delay: float = 0.1,
        imds_timeout: float = 10.0,
    ) -> None:
        if platform not in ("azure-snp", "azure-tdx"):
            raise AgentError("node.azure.platform", f"not an Azure platform: {platform}")
        if shutil.which("tpm2_quote") is None:
            raise AgentError("node.tpm.no_tools", "tpm2-tools are not installed")
        if not 1 <= report_attempts <= 600 or not 0 < report_delay <= 5:
            raise AgentError("node.azure.retries", "1..600 attempts, 0..5 s apart")
        tpm.parse_selection(selection)
        self.platform = platform
        self.kind = platform.removeprefix("azure-")
        self.tcti = tcti
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sealgate-azure-")
            state_dir = Path(self._tmp.name)
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.selection = selection
        self.eventlog = eventlog
        self.ak_handle = ak_handle
        self.imds_url = imds_url.rstrip("/")
        self.vcek = vcek
        self.cert_chain = cert_chain
        self.collateral = collateral
        self.report_attempts = report_attempts
        self.report_delay = report_delay
        self.imds_timeout = imds_timeout

    # -- tpm2-tools -----------------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> bytes:
        r = run_tpm2(self.tcti, tool, *args)
        if check and r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            raise AgentError(
                f"node.tpm.{tool}_failed", f"tpm2_{tool} failed: {err[-1] if err else r.returncode}"
            )
        return r.stdout if r.returncode == 0 else b""

    def _p(self, name: str) -> str:
        return str(self.state / name)

    def write_user_data(self, binding: bytes) -> None:
        if len(binding) != BINDING_SIZE:
            raise AgentError("node.azure.binding", f"user data is {BINDING_SIZE} bytes")
        if run_tpm2(self.tcti, "nvreadpublic", NV_USER_DATA).returncode != 0:
            # Not defined yet in this vTPM: the guest defines it (owner hierarchy), as
            # Azure's attestation clients do on first use.
            self._run(
                "nvdefine", NV_USER_DATA, "-C", "o", "-s", str(BINDING_SIZE),
                "-a", USER_DATA_ATTRIBUTES,
            )  # fmt: skip
        path = Path(self._p("user-data.bin"))
        path.write_bytes(binding)
        self._run("nvwrite", NV_USER_DATA, "-C", "o", "-i", str(path))

    def read_report(self, binding: bytes) -> bytes:
        """The HCL report once it carries ``binding`` as user data (bounded retries)."""
        from sealgate.azure import RuntimeData, parse_hcl_report

        last = "no report read"
        for attempt in range(self.report_attempts):
            if attempt:
                time.sleep(self.report_delay)
            data = self._run("nvread", NV_HCL_REPORT, "-C", "o", check=False)
            if not data:
                last = "NV 0x01400001 could not be read"
                continue
            try:
                hcl = parse_hcl_report(data)
                rt = RuntimeData.parse(hcl.runtime_data)
            except SealgateError as e:
                last = f"{e.code}: {e.message}"  # possibly read while being rewritten
                continue
            if hcl.kind != self.kind:
                raise AgentError(
                    "node.azure.wrong_platform",
                    f"this VM's HCL report holds {hcl.kind}, not {self.kind}",
                )
            digest = hashlib.sha256(hcl.runtime_data).digest() + bytes(32)
            if rt.user_data == binding and hcl.report_data == digest:
                return data
            last = "the HCL report does not carry this challenge's user data yet"
        raise AgentError(
            "node.azure.report_stale",
            f"no fresh HCL report after {self.report_attempts} reads: {last}",
        )

    def quote(self, binding: bytes) -> tuple[bytes, bytes, tpm.PcrMap]:
        if not self._run("readpublic", "-c", self.ak_handle, check=False):
            raise AgentError(
                "node.azure.no_ak", f"no HCL attestation key at {self.ak_handle} in this vTPM"
            )
        self._run(
            "quote",
            "-c", self.ak_handle,
            "-l", self.selection,
            "-q", binding[:TPM_BINDING_SIZE].hex(),
            "-g", "sha256",
            "-m", self._p("quote.msg"),
            "-s", self._p("quote.sig"),
            "-o", self._p("quote.pcrs"),
        )  # fmt: skip
        pcrs = tpm.load_pcrs(Path(self._p("quote.pcrs")).read_bytes())
        return (
            Path(self._p("quote.msg")).read_bytes(),
            Path(self._p("quote.sig")).read_bytes(),
            pcrs,
        )

    # -- IMDS -----------------------------------------------------------------------------

    def _imds(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.imds_url + path
        headers = {"Metadata": "true"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.imds_timeout) as resp:  # noqa: S310
                raw = resp.read(MAX_IMDS_RESPONSE + 1)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise AgentError("node.azure.imds_failed", f"{url}: {e}") from None
        if len(raw) > MAX_IMDS_RESPONSE:
            raise AgentError("node.azure.imds_failed", f"{url}: answer too large")
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise AgentError("node.azure.imds_failed", f"{url}: answer is not a JSON object")
        return doc

    def td_quote(self, hcl_report: bytes) -> bytes:
        from sealgate.azure import parse_hcl_report

        tdreport = parse_hcl_report(hcl_report).hardware_report
        doc = self._imds(
            TD_QUOTE_PATH,
            {"report": base64.urlsafe_b64encode(tdreport).rstrip(b"=").decode()},
        )
        q = doc.get("quote")
        if not isinstance(q, str):
            raise AgentError("node.azure.imds_failed", "the quote provider sent no quote")
        try:
            return base64.urlsafe_b64decode(q + "=" * (-len(q) % 4))
        except ValueError:
            raise AgentError("node.azure.imds_failed", "the TD quote is not base64url") from None

    def snp_certificates(self) -> tuple[bytes, bytes]:
        """(VCEK, chain) PEM: the operator's files, else IMDS THIM."""
        if self.vcek is not None:
            return self.vcek, self.cert_chain or b""
        doc = self._imds(THIM_PATH)
        vcek, chain = doc.get("vcekCert"), doc.get("certificateChain")
        if not isinstance(vcek, str) or not isinstance(chain, str):
            raise AgentError("node.azure.imds_failed", "THIM sent no vcekCert/certificateChain")
        return vcek.encode(), chain.encode()

    # -- Collector ------------------------------------------------------------------------

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        self.write_user_data(binding)
        report = self.read_report(binding)
        msg, sig, pcrs = self.quote(binding)
        ev = attestation_pb2.AzureEvidence(
            hcl_report=report,
            quote=msg,
            signature=sig,
            pcrs=[
                attestation_pb2.PcrValue(bank=b, index=i, value=v)
                for b, vals in pcrs.items()
                for i, v in sorted(vals.items())
            ],
        )
        if self.eventlog is not None:
            ev.event_log = self.eventlog.read_bytes()
        if self.kind == "tdx":
            ev.td_quote = self.td_quote(report)
            if self.collateral:
                ev.collateral = self.collateral
            return attestation_pb2.Evidence(azure_tdx=ev)
        ev.vcek, ev.cert_chain = self.snp_certificates()
        return attestation_pb2.Evidence(azure_snp=ev)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
