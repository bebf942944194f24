"""An isolated software TPM (swtpm) driven with tpm2-tools, for tests, the demo and benches.

Each instance has its own state directory, its own TCP ports and (by default) its own local
CA that issues its EK certificates, so parallel tests never share a TPM or a CA. Facts this
relies on (measured with swtpm 0.7.1 / tpm2-tools 5.4):
socket mode with `--flags not-need-init,startup-clear`, the `swtpm:` TCTI, one client at a
time, `tpm2_flushcontext -t` after each command (no resource manager), EK certificates at
NV 0x01c00002 (RSA-2048) and 0x01c00016 (ECC P-384, high-range template).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sealgate.node.tpm import run_tpm2
from sealgate.testing.eventlog import LogEvent, build_event_log, digests_for

NV_EK_CERT = {"rsa": "0x01c00002", "ecc": "0x01c00016"}
EK_ALG = {"rsa": "rsa", "ecc": "ecc384"}
REQUIRED_TOOLS = ("swtpm", "swtpm_setup", "swtpm_ioctl", "tpm2_quote", "tpm2_createek")


def tools_available() -> bool:
    return all(shutil.which(t) for t in REQUIRED_TOOLS)


class SwtpmError(RuntimeError):
    pass


@dataclass(frozen=True)
class TpmKey:
    """A key loaded in the TPM: its context file and TPM2B_PUBLIC bytes."""

    kind: str
    ctx: Path
    public: bytes  # TPM2B_PUBLIC as tpm2-tools writes it (-u)
    name: bytes


@dataclass(frozen=True)
class Quote:
    message: bytes  # TPMS_ATTEST
    signature: bytes  # TPMT_SIGNATURE
    pcrs_file: bytes  # tpm2_quote -o serialized PCR values
    selection: str


def _port_pair() -> int:
    """A port P with P and P+1 free on loopback (server and control channel)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = int(s.getsockname()[1])
        if p >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise SwtpmError("no free port pair on 127.0.0.1")


class Swtpm:
    """One swtpm process. Use as a context manager; `stop()` always ends the process."""

    def __init__(
        self,
        workdir: Path,
        *,
        banks: tuple[str, ...] = ("sha256", "sha1"),
        ek_certs: bool = True,
        ca_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.state = self.workdir / "state"
        self.ca_dir = ca_dir or self.workdir / "ca"
        self.banks = banks
        self.ek_certs = ek_certs
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._n = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TPM2TOOLS_TCTI"] = self.tcti
        return env

    def manufacture(self) -> None:
        """swtpm_setup with this instance's own local CA (EK certs RSA-2048 and ECC)."""
        self.state.mkdir(parents=True, exist_ok=True)
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "swtpm-localca.conf"
        conf.write_text(
            f"statedir = {self.ca_dir}\n"
            f"signingkey = {self.ca_dir}/signkey.pem\n"
            f"issuercert = {self.ca_dir}/issuercert.pem\n"
            f"certserial = {self.ca_dir}/certserial\n"
        )
        opts = self.workdir / "swtpm-localca.options"
        opts.write_text(
            "--platform-manufacturer sealgate\n--platform-version 2.1\n--platform-model swtpm\n"
        )
        setup = self.workdir / "swtpm_setup.conf"
        setup.write_text(
            "create_certs_tool= /usr/bin/swtpm_localca\n"
            f"create_certs_tool_config = {conf}\n"
            f"create_certs_tool_options = {opts}\n"
            f"active_pcr_banks = {','.join(self.banks)}\n"
        )
        cmd = [
            "swtpm_setup",
            "--tpm2",
            "--tpmstate",
            str(self.state),
            "--config",
            str(setup),
            "--pcr-banks",
            ",".join(self.banks),
            "--overwrite",
        ]
        if self.ek_certs:
            cmd += ["--create-ek-cert", "--create-platform-cert"]
        else:
            cmd += ["--createek"]
        r = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        if r.returncode != 0:
            raise SwtpmError(f"swtpm_setup failed: {r.stderr.decode(errors='replace')[-400:]}")

    def start(self) -> Swtpm:
        if not (self.state / "tpm2-00.permall").exists():
            self.manufacture()
        last = ""
        for _ in range(5):
            self.port = _port_pair()
            self.proc = subprocess.Popen(
                [
                    "swtpm",
                    "socket",
                    "--tpm2",
                    "--tpmstate",
                    f"dir={self.state}",
                    "--server",
                    f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                    "--ctrl",
                    f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                    "--flags",
                    "not-need-init,startup-clear",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = (self.proc.stderr.read() if self.proc.stderr else b"").decode()
                    break
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port + 1), timeout=0.2),
                ):
                    return self
                time.sleep(0.02)
            self._kill()
        raise SwtpmError(f"swtpm did not start: {last[-300:]}")

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def stop(self) -> None:
        """Orderly shutdown (TPM2_Shutdown, then the control channel), then by pid."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["tpm2_shutdown", "-c"],
                    env=self._env(),
                    capture_output=True,
                    timeout=5,
                    check=False,
                )
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["swtpm_ioctl", "--tcp", f"127.0.0.1:{self.port + 1}", "-s"],
                    capture_output=True,
                    timeout=5,
                    check=False,
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self._kill()

    def __enter__(self) -> Swtpm:
        return self.start()

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- tpm2-tools --------------------------------------------------------------------

    def tpm2(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run `tpm2_<tool>` against this TPM, then flush transient handles."""
        r = run_tpm2(self.tcti, tool, *args)
        if check and r.returncode != 0:
            raise SwtpmError(f"tpm2_{tool} failed: {r.stderr.decode(errors='replace')[-400:]}")
        return r

    def _path(self, stem: str) -> Path:
        self._n += 1
        d = self.workdir / "objs"
        d.mkdir(exist_ok=True)
        return d / f"{self._n:03d}-{stem}"

    def ek_certificate(self, kind: str = "rsa") -> bytes:
        """The DER EK certificate the manufacturer (our local CA) stored in NV."""
        out = self._path(f"ek-{kind}.der")
        self.tpm2("nvread", NV_EK_CERT[kind], "-o", str(out))
        return out.read_bytes()

    def ca_certificates(self) -> tuple[bytes, bytes]:
        """(root, intermediate) PEM of this instance's local CA."""
        return (
            (self.ca_dir / "swtpm-localca-rootca-cert.pem").read_bytes(),
            (self.ca_dir / "issuercert.pem").read_bytes(),
        )

    def create_ek(self, kind: str = "rsa") -> TpmKey:
        ctx, pub = self._path(f"ek-{kind}.ctx"), self._path(f"ek-{kind}.pub")
        self.tpm2("createek", "-c", str(ctx), "-G", EK_ALG[kind], "-u", str(pub))
        return TpmKey(kind, ctx, pub.read_bytes(), b"")

    def create_ak(self, ek: TpmKey, kind: str = "rsa") -> TpmKey:
        """An AK under `ek`: RSA-2048 RSASSA-SHA256 or ECC P-256 ECDSA-SHA256."""
        ctx, pub, name = self._path("ak.ctx"), self._path("ak.pub"), self._path("ak.name")
        alg, scheme = ("rsa", "rsassa") if kind == "rsa" else ("ecc", "ecdsa")
        self.tpm2(
            "createak",
            "-C",
            str(ek.ctx),
            "-c",
            str(ctx),
            "-G",
            alg,
            "-g",
            "sha256",
            "-s",
            scheme,
            "-u",
            str(pub),
            "-n",
            str(name),
        )
        return TpmKey(kind, ctx, pub.read_bytes(), name.read_bytes())

    def extend(self, pcr: int, digests: dict[str, bytes]) -> None:
        spec = ",".join(f"{b}={d.hex()}" for b, d in digests.items())
        self.tpm2("pcrextend", f"{pcr}:{spec}")

    def replay_events(self, events: list[LogEvent]) -> tuple[bytes, dict[str, dict[int, bytes]]]:
        """Extend the PCRs as firmware would for `events`; return (event log, expected PCRs)."""
        banks = tuple(b for b in ("sha1", "sha256", "sha384", "sha512") if b in self.banks)
        log, expected = build_event_log(events, banks)
        for ev in events:
            if ev.event_type != 0x3:
                self.extend(ev.pcr, digests_for(ev.data, banks))
        return log, expected

    def quote(self, ak: TpmKey, nonce: bytes, selection: str = "sha256:0,1,2,3,4,5,6,7") -> Quote:
        msg, sig, pcrs = self._path("quote.msg"), self._path("quote.sig"), self._path("quote.pcrs")
        self.tpm2(
            "quote",
            "-c",
            str(ak.ctx),
            "-l",
            selection,
            "-q",
            nonce.hex(),
            "-g",
            "sha256",
            "-m",
            str(msg),
            "-s",
            str(sig),
            "-o",
            str(pcrs),
        )
        return Quote(msg.read_bytes(), sig.read_bytes(), pcrs.read_bytes(), selection)

    def write_quote(self, q: Quote, directory: Path) -> dict[str, Path]:
        """Write a quote as files the CLI and tpm2_checkquote take."""
        directory.mkdir(parents=True, exist_ok=True)
        out = {
            "quote": directory / "quote.msg",
            "signature": directory / "quote.sig",
            "pcrs": directory / "quote.pcrs",
        }
        out["quote"].write_bytes(q.message)
        out["signature"].write_bytes(q.signature)
        out["pcrs"].write_bytes(q.pcrs_file)
        return out
