"""A synthetic Azure confidential VM: swtpm as the vTPM, a paravisor emulator, an IMDS emulator.

What an Azure CVM guest sees, and this module reproduces (tests, demo):

* vTPM NV index ``0x01400001`` holds the **HCL report**: a 32-byte header ("HCLA", version,
  report size, request type 2), the hardware report (SNP ATTESTATION_REPORT, or TDREPORT
  zero-padded to 1184 bytes), the IGVM request data (data size, version 1, report type 2 SNP /
  4 TDX, hash type 1 SHA-256, variable data size) and the **runtime data** JSON (``keys`` with
  ``HCLAkPub`` as an RSA JWK, ``vm-configuration``, ``user-data``). The hardware report's
  REPORT_DATA is SHA-256(runtime data) ‖ 32 zero bytes, so it commits to the AK and to the
  user data. The index is written by the platform hierarchy only (``ppwrite``) and read with
  owner authorisation (``ownerread``): the guest cannot write its own HCL report.
* NV index ``0x01400002`` (64 bytes, owner read/write) is where the guest writes its user data;
  the paravisor then regenerates the HCL report with ``user-data`` = those bytes (hex), so
  the hardware report is fresh for whatever the guest bound in it.
* The HCL attestation key (RSA-2048, RSASSA/SHA-256, restricted signing) persisted at
  ``0x81000003``; it signs vTPM quotes.
* IMDS at 169.254.169.254: ``POST /acc/tdquote`` {"report": base64url(TDREPORT)} →
  {"quote": base64url(TD quote)} on TDX, and ``GET /metadata/THIM/amd/certification``
  (header ``Metadata: true``) → {"vcekCert", "certificateChain"} PEM on SNP. The emulator
  listens on 127.0.0.1 and the node agent is pointed at it.

Differences from Azure, and why:

* libtpms caps an NV index at 2048 bytes (``MAX_NV_INDEX_SIZE``; a 2600-byte index is
  refused with TPM_RC_SIZE), so the HCL report has the older 2048-byte form: the runtime data
  carries ``HCLAkPub`` only (no ``HCLEkPub``), which also fits.
* The paravisor observes writes to ``0x01400002`` by polling it through tpm2-tools (a thread,
  every ``poll_interval`` seconds; swtpm serialises its one client at a time, so the polls
  and the guest's commands interleave safely). A real paravisor intercepts the NV write; here
  a read right after the write can still return the previous report, which the node agent's
  bounded retries cover, as they must on Azure.
* The TDREPORT's MAC is an HMAC-SHA256 under a key only this emulator holds (a real one is
  checked by the CPU when the quoting enclave converts it); the quote provider refuses a
  TDREPORT whose MAC it did not make, as the QE would.

Hardware reports are signed by the project's synthetic AMD (``sealgate.testing.snp``, chip-A
VCEK) and Intel (``sealgate.testing.tdx.FakeIntel``) hierarchies. ``SyntheticAzureVm`` starts
everything and stops everything (threads, servers, swtpm) on exit, also when a test fails.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sealgate.testing import snp as snp_world
from sealgate.testing import tdx as tdx_world
from sealgate.testing.swtpm import Swtpm

NV_HCL_REPORT = "0x01400001"
NV_USER_DATA = "0x01400002"
AK_HANDLE = "0x81000003"
#: libtpms' largest NV index (see the module docstring).
HCL_REPORT_SIZE = 2048
USER_DATA_SIZE = 64
HCL_HEADER_SIZE = 32
HW_REPORT_SIZE = 1184
IGVM_REQUEST_DATA_SIZE = 20
REPORT_TYPE = {"snp": 2, "tdx": 4}
HCL_REPORT_ATTRIBUTES = "ppwrite|ppread|ownerread|authread|platformcreate|no_da"
USER_DATA_ATTRIBUTES = "ownerread|ownerwrite|authread|authwrite|no_da"
#: The vm-configuration an Azure CVM reports (the keys of every published HCL report).
DEFAULT_VM_CONFIGURATION: dict[str, Any] = {
    "console-enabled": False,
    "secure-boot": True,
    "tpm-enabled": True,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rsa_jwk(pub: rsa.RSAPublicKey, kid: str = "HCLAkPub") -> dict[str, Any]:
    """An RSA public key as the paravisor writes it in the runtime data (RFC 7517/7518)."""
    nums = pub.public_numbers()
    n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    return {"kid": kid, "key_ops": ["sign"], "kty": "RSA", "e": b64url(e), "n": b64url(n)}


def runtime_data(
    ak_jwk: dict[str, Any], vm_configuration: dict[str, Any], user_data: bytes
) -> bytes:
    """The runtime data JSON, compact like Azure's (these exact bytes are hashed)."""
    doc = {
        "keys": [ak_jwk],
        "vm-configuration": vm_configuration,
        "user-data": user_data.hex().upper(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def hcl_report(
    kind: str, hw_report: bytes, runtime: bytes, *, size: int = HCL_REPORT_SIZE, version: int = 2
) -> bytes:
    """Assemble an HCL report (layout: module docstring), zero-padded to ``size``."""
    if len(hw_report) > HW_REPORT_SIZE:
        raise ValueError("hardware report too large")
    report_size = HCL_HEADER_SIZE + HW_REPORT_SIZE + IGVM_REQUEST_DATA_SIZE + len(runtime)
    if report_size > size:
        raise ValueError(f"runtime data of {len(runtime)} bytes does not fit {size}")
    header = b"HCLA" + struct.pack("<IIII", version, report_size, 2, 0) + bytes(12)
    igvm = struct.pack(
        "<IIIII", IGVM_REQUEST_DATA_SIZE + len(runtime), 1, REPORT_TYPE[kind], 1, len(runtime)
    )
    body = header + hw_report.ljust(HW_REPORT_SIZE, b"\x00") + igvm + runtime
    return body.ljust(size, b"\x00")


# -- TDX: TDREPORT and its quote ------------------------------------------------------------

# TDREPORT_STRUCT offsets (Intel TDX Module ABI, TDREPORT_STRUCT: REPORTMACSTRUCT 256 B,
# TEE_TCB_INFO 239 B, reserved 17 B, TDINFO 512 B).
TDREPORT_SIZE = 1024
_RM_REPORTDATA = 128
_RM_MAC = 224
_TCB_SVN = 256 + 8
_TCB_MRSEAM = 256 + 24
_TD_ATTRIBUTES = 512
_TD_XFAM = 520
_TD_MRTD = 528
_TD_RTMR = 720


@dataclass(frozen=True)
class TdFields:
    """The TD's measurements, in its TDREPORT and in the TD quote made from it."""

    mr_td: bytes = hashlib.sha384(b"sealgate synthetic azure TD").digest()
    rtmrs: tuple[bytes, bytes, bytes, bytes] = (bytes(48),) * 4
    td_attributes: bytes = bytes.fromhex("0000001000000000")
    tee_tcb_svn: bytes = bytes([4, 1, 2]) + bytes(13)


def tdreport(report_data: bytes, f: TdFields, mac_key: bytes) -> bytes:
    b = bytearray(TDREPORT_SIZE)
    b[0:4] = bytes([0x81, 0, 0, 0])  # REPORTTYPE: TDX
    b[_RM_REPORTDATA : _RM_REPORTDATA + 64] = report_data.ljust(64, b"\x00")
    b[256:264] = b"\x01" * 8  # TEE_TCB_INFO.VALID
    b[_TCB_SVN : _TCB_SVN + 16] = f.tee_tcb_svn
    b[_TCB_MRSEAM : _TCB_MRSEAM + 48] = b"\x11" * 48
    b[_TD_ATTRIBUTES : _TD_ATTRIBUTES + 8] = f.td_attributes
    b[_TD_XFAM : _TD_XFAM + 8] = bytes.fromhex("e702060000000000")
    b[_TD_MRTD : _TD_MRTD + 48] = f.mr_td
    b[_TD_RTMR : _TD_RTMR + 192] = b"".join(f.rtmrs)
    b[_RM_MAC : _RM_MAC + 32] = _tdreport_mac(bytes(b), mac_key)
    return bytes(b)


def _tdreport_mac(report: bytes, key: bytes) -> bytes:
    return hmac.new(key, report[:_RM_MAC] + report[_RM_MAC + 32 :], hashlib.sha256).digest()


def td_fields_of(report: bytes) -> tuple[bytes, TdFields]:
    """(REPORTDATA, the TD's fields) read back from a TDREPORT."""
    rtmrs = tuple(report[_TD_RTMR + 48 * i : _TD_RTMR + 48 * (i + 1)] for i in range(4))
    return report[_RM_REPORTDATA : _RM_REPORTDATA + 64], TdFields(
        mr_td=report[_TD_MRTD : _TD_MRTD + 48],
        rtmrs=(rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]),
        td_attributes=report[_TD_ATTRIBUTES : _TD_ATTRIBUTES + 8],
        tee_tcb_svn=report[_TCB_SVN : _TCB_SVN + 16],
    )


# -- IMDS emulator --------------------------------------------------------------------------


class Imds:
    """Loopback emulator of the IMDS endpoints a CVM guest attests with (module docstring).
    ``requests`` records (method, path) of every request."""

    def __init__(self, vm: SyntheticAzureVm) -> None:
        self.vm = vm
        self.requests: list[tuple[str, str]] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                imds.requests.append(("GET", self.path))
                if self.path != "/metadata/THIM/amd/certification" or imds.vm.kind != "snp":
                    return self._send(404, {"error": "not found"})
                if self.headers.get("Metadata") != "true":
                    return self._send(400, {"error": "Metadata header required"})
                self._send(200, imds.vm.thim_certification())

            def do_POST(self) -> None:
                imds.requests.append(("POST", self.path))
                if self.path != "/acc/tdquote" or imds.vm.kind != "tdx":
                    return self._send(404, {"error": "not found"})
                n = int(self.headers.get("Content-Length") or 0)
                if not 0 < n <= 8192:
                    return self._send(400, {"error": "bad length"})
                try:
                    report = b64url_decode(json.loads(self.rfile.read(n))["report"])
                    quote = imds.vm.td_quote(report)
                except (ValueError, KeyError, TypeError):
                    return self._send(400, {"error": "invalid report"})
                self._send(200, {"quote": b64url(quote)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# -- The VM ---------------------------------------------------------------------------------


@dataclass
class VmIdentity:
    """What distinguishes one synthetic VM from another on the same synthetic hardware."""

    vm_unique_id: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    vm_configuration: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_VM_CONFIGURATION))


class SyntheticAzureVm:
    """One Azure CVM (``kind`` "snp" or "tdx"): swtpm provisioned like Azure's vTPM, the
    paravisor emulator thread and the IMDS emulator. A context manager; ``stop()`` ends the
    thread, the server and swtpm whatever happened.

    ``tcti`` and ``imds_url`` are what ``sealgate node request-keys`` is given; ``roots``
    writes the trust anchors a verifier needs; ``collateral`` (TDX) is the DCAP collateral
    JSON for this hierarchy.
    """

    def __init__(
        self,
        workdir: Path,
        kind: str = "snp",
        *,
        identity: VmIdentity | None = None,
        snp_fields: snp_world.ReportFields | None = None,
        td_fields: TdFields | None = None,
        intel: tdx_world.FakeIntel | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        if kind not in REPORT_TYPE:
            raise ValueError(f"kind is snp or tdx, not {kind}")
        self.kind = kind
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.identity = identity or VmIdentity()
        self.snp_fields = snp_fields or snp_world.ReportFields()
        self.td_fields = td_fields or TdFields()
        self.poll_interval = poll_interval
        self.tpm = Swtpm(self.workdir / "vtpm", ek_certs=False)
        self._snp: snp_world.SyntheticNode | None = None
        self._intel = intel
        self._mac_key = os.urandom(32)
        self._ak_jwk: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.imds: Imds | None = None
        #: The user data of the current HCL report, and how many reports were made.
        self.user_data: bytes = bytes(USER_DATA_SIZE)
        self.generation = 0
        self.errors: list[str] = []

    # -- hierarchies --------------------------------------------------------------------

    @property
    def snp(self) -> snp_world.SyntheticNode:
        if self._snp is None:
            self._snp = snp_world.SyntheticNode.load()
        return self._snp

    @property
    def intel(self) -> tdx_world.FakeIntel:
        if self._intel is None:
            # Collateral issued yesterday (midnight UTC), as a PCCS refreshing daily serves
            # it: verifiers bound how old collateral may be.
            day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            self._intel = tdx_world.FakeIntel(issue_date=day - timedelta(days=1))
        return self._intel

    def root_pem(self) -> bytes:
        return self.snp.ark_pem if self.kind == "snp" else self.intel.root_pem

    def write_trust(self, directory: Path) -> dict[str, list[Path]]:
        """Write what a verifier configures for this VM's hardware into ``directory``: the
        synthetic ARK and its current CRL (SNP, from vectors/sev-snp), or the synthetic Intel
        root (TDX); returns the ``ServiceConfig`` settings."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.kind == "snp":
            roots, crl = directory / "amd-roots.pem", directory / "amd-crl.der"
            roots.write_bytes(self.snp.ark_pem)
            crl.write_bytes((snp_world.VECTOR_DIR / "crl-milan.der").read_bytes())
            return {"snp_roots": [roots], "snp_crls": [crl]}
        root = directory / "intel-root.pem"
        root.write_bytes(self.intel.root_pem)
        return {"tdx_roots": [root]}

    def collateral(self) -> bytes:
        """TDX collateral JSON (``verify tdx --collateral`` form) for this hierarchy."""
        return self.intel.collateral_json()

    def thim_certification(self) -> dict[str, str]:
        """What Azure's THIM endpoint answers: the VCEK and its ASK/ARK chain, PEM."""
        from sealgate.pki import to_pem

        return {
            "vcekCert": to_pem(self.snp.vcek_der).decode(),
            "certificateChain": self.snp.cert_chain.decode(),
        }

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def tcti(self) -> str:
        return self.tpm.tcti

    @property
    def imds_url(self) -> str:
        assert self.imds is not None
        return self.imds.url

    def start(self) -> SyntheticAzureVm:
        self.tpm.start()
        try:
            self._provision()
            self.regenerate(bytes(USER_DATA_SIZE))  # the report a VM boots with
            self.imds = Imds(self)
            self.imds.start()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.imds is not None:
            self.imds.stop()
            self.imds = None
        self.tpm.stop()

    def __enter__(self) -> SyntheticAzureVm:
        return self.start()

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _provision(self) -> None:
        t = self.tpm
        ek = t.create_ek("rsa")
        ak = t.create_ak(ek, "rsa")
        t.tpm2("evictcontrol", "-C", "o", "-c", str(ak.ctx), AK_HANDLE)
        pem = self.workdir / "ak.pem"
        t.tpm2("readpublic", "-c", AK_HANDLE, "-f", "pem", "-o", str(pem))
        key = serialization.load_pem_public_key(pem.read_bytes())
        assert isinstance(key, rsa.RSAPublicKey)
        self._ak_jwk = rsa_jwk(key)
        t.tpm2(
            "nvdefine", NV_HCL_REPORT, "-C", "p", "-s", str(HCL_REPORT_SIZE),
            "-a", HCL_REPORT_ATTRIBUTES,
        )  # fmt: skip
        t.tpm2(
            "nvdefine", NV_USER_DATA, "-C", "o", "-s", str(USER_DATA_SIZE),
            "-a", USER_DATA_ATTRIBUTES,
        )  # fmt: skip

    # -- the paravisor ------------------------------------------------------------------

    @property
    def ak_jwk(self) -> dict[str, Any]:
        assert self._ak_jwk is not None, "start the VM first (or use_ak)"
        return self._ak_jwk

    def use_ak(self, pub: rsa.RSAPublicKey) -> None:
        """Make reports for an AK held elsewhere (a software AK, without swtpm: unit tests
        build real evidence with ``sealgate.testing.softtpm.SoftAk`` and ``build_report``)."""
        self._ak_jwk = rsa_jwk(pub)

    def build_report(self, user_data: bytes) -> bytes:
        """A fresh HCL report for ``user_data`` (also what another VM's report looks like
        when a test asks one directly)."""
        cfg = dict(self.identity.vm_configuration)
        cfg.setdefault("vmUniqueId", self.identity.vm_unique_id)
        runtime = runtime_data(self.ak_jwk, cfg, user_data)
        report_data = hashlib.sha256(runtime).digest() + bytes(32)
        if self.kind == "snp":
            hw = snp_world.build_report(
                snp_world.Endorsement(
                    self.snp.vcek_der,
                    self.snp.key,
                    "vcek",
                    self.snp.product,
                    self.snp.tcb,
                    self.snp.chip_id,
                ),
                replace(self.snp_fields, report_data=report_data),
            )
        else:
            hw = tdreport(report_data, self.td_fields, self._mac_key)
        return hcl_report(self.kind, hw, runtime)

    def regenerate(self, user_data: bytes) -> None:
        """Write a new HCL report for ``user_data`` to NV 0x01400001 (platform auth)."""
        with self._lock:
            path = self.workdir / "hcl-report.bin"
            path.write_bytes(self.build_report(user_data))
            self.tpm.tpm2("nvwrite", NV_HCL_REPORT, "-C", "p", "-i", str(path))
            self.user_data = user_data
            self.generation += 1

    def _read_user_data(self) -> bytes | None:
        env = dict(os.environ, TPM2TOOLS_TCTI=self.tcti)
        # No flushcontext: an NV read leaves no transient object behind.
        r = subprocess.run(
            ["tpm2_nvread", "-C", "o", NV_USER_DATA],
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        # Unwritten (TPM_RC_NV_UNINITIALIZED) or busy: nothing new to act on.
        return r.stdout if r.returncode == 0 and len(r.stdout) == USER_DATA_SIZE else None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                data = self._read_user_data()
                if data is not None and data != self.user_data:
                    self.regenerate(data)
            except Exception as e:  # recorded for the test to see; the thread goes on
                self.errors.append(f"{type(e).__name__}: {e}")

    # -- the quoting enclave (TDX) ------------------------------------------------------

    def td_quote(self, report: bytes) -> bytes:
        """The TD quote for a TDREPORT this VM's paravisor made (MAC checked)."""
        if len(report) != TDREPORT_SIZE or not hmac.compare_digest(
            report[_RM_MAC : _RM_MAC + 32], _tdreport_mac(report, self._mac_key)
        ):
            raise ValueError("TDREPORT MAC does not verify")
        report_data, f = td_fields_of(report)
        return self.intel.quote(
            report_data,
            mr_td=f.mr_td,
            rtmrs=f.rtmrs,
            td_attributes=f.td_attributes,
            tee_tcb_svn=f.tee_tcb_svn,
        )

    # -- what a test compares with ------------------------------------------------------

    def pcrs(self, selection: str = "sha256:0,1,2,3,4,5,6,7") -> dict[int, str]:
        """The vTPM's current SHA-256 PCR values (hex) for ``selection``."""
        out = self.workdir / "pcrs.bin"
        self.tpm.tpm2("pcrread", selection, "-o", str(out))
        idx = [int(i) for i in selection.split(":", 1)[1].split(",")]
        data = out.read_bytes()
        return {i: data[32 * n : 32 * (n + 1)].hex() for n, i in enumerate(idx)}

    def extend(self, pcr: int, data: bytes) -> None:
        self.tpm.extend(pcr, {"sha256": hashlib.sha256(data).digest()})


@contextlib.contextmanager
def azure_vm(workdir: Path, kind: str = "snp", **kw: Any) -> Any:
    with SyntheticAzureVm(workdir, kind, **kw) as vm:
        yield vm


def wait_for(cond: Any, timeout: float = 10.0) -> bool:
    """Poll ``cond()`` until true or ``timeout`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())
