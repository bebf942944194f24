"""TPM evidence through tpm2-tools (``/dev/tpmrm0`` by default, or any TCTI).

Keys: the RSA EK is re-created from its template each run (deterministic primary); the AK
(ECC P-256, ECDSA-SHA256, restricted signing, made by ``tpm2_createak``) is made persistent
at ``ak_handle`` the first time so it survives restarts. ``tpm2_flushcontext -t`` runs after
each command because swtpm has no resource manager (see ``run_tpm2``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sealgate import tpm
from sealgate._proto import attestation_pb2
from sealgate.node.agent import AgentError

NV_EK_CERT_RSA = "0x01c00002"
DEFAULT_AK_HANDLE = "0x81010002"
DEFAULT_SELECTION = "sha256:0,1,2,3,4,5,6,7"


def run_tpm2(tcti: str | None, tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `tpm2_<tool>` (TCTI from `tcti` or the environment), then flush transient
    handles: without a resource manager they pile up and the third object fails with 0x902
    (TPM_RC_OBJECT_MEMORY, TPM 2.0 Part 2 §6.6.3). Real hosts use /dev/tpmrm0, where the
    flush is harmless."""
    env = dict(os.environ)
    if tcti:
        env["TPM2TOOLS_TCTI"] = tcti
    r = subprocess.run(
        [f"tpm2_{tool}", *args], env=env, capture_output=True, timeout=60, check=False
    )
    subprocess.run(
        ["tpm2_flushcontext", "-t"], env=env, capture_output=True, timeout=30, check=False
    )
    return r


def extend_model_event(tcti: str | None, eventlog: Path, root_digest: bytes) -> bool:
    """Measure a model into the TPM for an attested model binding
    (``sealgate.protocol.model_binding``): extend PCR 12 with the model event in every bank
    the event log carries and append the event to ``eventlog`` (the node's copy of its log,
    kept in step with the PCRs). Once per boot: a log that already names this model is left
    as it is (False). The log must be a crypto-agile one."""
    from sealgate import _core
    from sealgate.errors import SealgateError
    from sealgate.protocol.model_binding import (
        EV_EVENT_TAG,
        MODEL_PCR,
        tpm_event_digests,
        tpm_model_digests,
        tpm_model_event,
        tpm_pcr_event2,
    )

    try:
        data = eventlog.read_bytes()
        log = _core.parse_event_log(data)
    except OSError as e:
        raise AgentError("node.tpm.eventlog_unreadable", f"{eventlog}: {e.strerror}") from None
    except SealgateError as e:
        raise AgentError(e.code, f"{eventlog}: {e.message}") from None
    banks = [b for b in log.banks if b in ("sha1", "sha256", "sha384", "sha512")]
    if not banks:
        raise AgentError("node.tpm.eventlog_unsupported", f"{eventlog}: no crypto-agile banks")
    everything = {b: list(range(24)) for b in banks}
    if root_digest.hex() in tpm_model_digests(log.events, everything):
        return False
    event = tpm_model_event(root_digest)
    digests = tpm_event_digests(event, banks)
    spec = ",".join(f"{b}={d.hex()}" for b, d in digests.items())
    r = run_tpm2(tcti, "pcrextend", f"{MODEL_PCR}:{spec}")
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise AgentError("node.tpm.pcrextend_failed", err[-1][:300] if err else "tpm2_pcrextend")
    # Appended after the extend: a crash in between leaves a log that does not replay (the
    # server refuses it, never a log claiming more than the PCR holds).
    with eventlog.open("ab") as f:
        f.write(tpm_pcr_event2(MODEL_PCR, EV_EVENT_TAG, digests, event))
    return True


class Tpm2ToolsCollector:
    platform = "tpm"

    def __init__(
        self,
        tcti: str | None = None,
        state_dir: Path | None = None,
        selection: str = DEFAULT_SELECTION,
        eventlog: Path | None = None,
        ek_chain: list[bytes] | None = None,
        ak_handle: str = DEFAULT_AK_HANDLE,
    ) -> None:
        if shutil.which("tpm2_quote") is None:
            raise AgentError("node.tpm.no_tools", "tpm2-tools are not installed")
        self.tcti = tcti
        self._tmp = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sealgate-node-")
            state_dir = Path(self._tmp.name)
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        tpm.parse_selection(selection)
        self.selection = selection
        self.eventlog = eventlog
        self.ek_chain = ek_chain or []
        self.ak_handle = ak_handle
        self._ek_ready = False
        self._ak_public: bytes | None = None

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        r = run_tpm2(self.tcti, tool, *args)
        if check and r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            raise AgentError(
                f"node.tpm.{tool}_failed", f"tpm2_{tool} failed: {err[-1] if err else r.returncode}"
            )
        return r

    def _p(self, name: str) -> str:
        return str(self.state / name)

    def ensure_keys(self) -> bytes:
        """Create the EK context and the persistent AK if needed; return the AK public."""
        if not self._ek_ready:
            self.run("createek", "-c", self._p("ek.ctx"), "-G", "rsa", "-u", self._p("ek.pub"))
            self._ek_ready = True
        if self._ak_public is None:
            r = self.run("readpublic", "-c", self.ak_handle, "-o", self._p("ak.pub"), check=False)
            if r.returncode != 0:
                self.run(
                    "createak",
                    "-C",
                    self._p("ek.ctx"),
                    "-c",
                    self._p("ak.ctx"),
                    "-G",
                    "ecc",
                    "-g",
                    "sha256",
                    "-s",
                    "ecdsa",
                    "-u",
                    self._p("ak.pub"),
                    "-n",
                    self._p("ak.name"),
                )
                self.run("evictcontrol", "-C", "o", "-c", self._p("ak.ctx"), self.ak_handle)
            self._ak_public = Path(self._p("ak.pub")).read_bytes()
        return self._ak_public

    def enrollment_material(self) -> tuple[bytes, list[bytes], bytes]:
        ak_pub = self.ensure_keys()
        self.run("nvread", NV_EK_CERT_RSA, "-o", self._p("ek-cert.der"))
        return Path(self._p("ek-cert.der")).read_bytes(), self.ek_chain, ak_pub

    def activate(self, id_object: bytes, encrypted_secret: bytes) -> bytes:
        self.ensure_keys()
        blob = Path(self._p("cred.blob"))
        blob.write_bytes(b"\xba\xdc\xc0\xde\x00\x00\x00\x01" + id_object + encrypted_secret)
        sess = self._p("session.ctx")
        self.run("startauthsession", "--policy-session", "-S", sess)
        try:
            # The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT) (TCG EK profile, L-1).
            self.run("policysecret", "-S", sess, "-c", "e")
            self.run(
                "activatecredential",
                "-c",
                self.ak_handle,
                "-C",
                self._p("ek.ctx"),
                "-i",
                str(blob),
                "-o",
                self._p("cred.secret"),
                "-P",
                f"session:{sess}",
            )
        finally:
            self.run("flushcontext", sess, check=False)
        return Path(self._p("cred.secret")).read_bytes()

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        self.ensure_keys()
        self.run(
            "quote",
            "-c",
            self.ak_handle,
            "-l",
            self.selection,
            "-q",
            binding[:32].hex(),
            "-g",
            "sha256",
            "-m",
            self._p("quote.msg"),
            "-s",
            self._p("quote.sig"),
            "-o",
            self._p("quote.pcrs"),
        )
        pcrs = tpm.load_pcrs(Path(self._p("quote.pcrs")).read_bytes())
        ev = attestation_pb2.TpmEvidence(
            quote=Path(self._p("quote.msg")).read_bytes(),
            signature=Path(self._p("quote.sig")).read_bytes(),
            pcrs=[
                attestation_pb2.PcrValue(bank=b, index=i, value=v)
                for b, vals in pcrs.items()
                for i, v in sorted(vals.items())
            ],
        )
        if self.eventlog is not None:
            ev.event_log = self.eventlog.read_bytes()
        return attestation_pb2.Evidence(tpm=ev)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
