"""`make demo`: the whole sealgate story on one machine, from nothing (README "Service").

1. start the server (SQLite, local KEK file) as its own process;
2. register a golden swtpm node's PCRs as reference values;
3. sign a sample model (OMS v1.0), encrypt it bound to its root digest, import its key,
   write a policy that requires the publisher's signature, register the signed model (a
   model signed by another key is refused);
4. a serving node backed by swtpm enrolls (EK chain + MakeCredential/ActivateCredential),
   attests, receives the key and decrypts the model (files checked against the signature);
5. a second node with one extra PCR extension is denied, and the explanation names the PCR;
6. a replayed Attest is refused;
7. the golden node with two confidential GPUs gets a key whose policy requires them (each
   GPU's SPDM report fresh for the challenge, bound into the TPM quote, matched against its
   RIMs, OCSP-checked); with one GPU in developer-tools mode it is denied, naming the GPU;
8. the audit chain verifies (and a tampered copy does not).

Every step runs the real CLI (`sealgate serve | admin | node | model | audit`) against real
gRPC on loopback, except the GPU step: this machine has no GPU, so the node agent talks to
a fake NVML backed by synthetic H100s whose device and RIM roots (``sealgate.testing``) the
demo server is configured to trust — never NVIDIA's. Everything started is stopped at the
end, also on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
from sealgate.node.agent import NodeAgent, error_code
from sealgate.node.nvml import NvmlGpus
from sealgate.node.tpm import Tpm2ToolsCollector
from sealgate.testing.eventlog import LogEvent, sample_boot_events
from sealgate.testing.fake_nvml import FakeNvml
from sealgate.testing.nvgpu import MODE_DEVTOOLS, NvidiaHierarchy, SyntheticGpu
from sealgate.testing.swtpm import Swtpm, tools_available

BIN = Path(sys.executable).parent / "sealgate"
KEY_ID = "llama-3-8b"
GPU_KEY_ID = "llama-3-70b-gpu"
GPU_VBIOS = "96.00.5E.00.01"
SELECTION = "sha256:0,1,2,3,4,5,6,7"


def step(n: int, msg: str) -> None:
    print(f"\n==> [{n}] {msg}", flush=True)


def say(msg: str) -> None:
    print(f"    {msg}", flush=True)


def sealgate(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    if check and r.returncode != 0:
        raise RuntimeError(
            f"sealgate {' '.join(args[:2])} failed ({r.returncode}): {r.stderr.strip()[-400:]}"
        )
    return r.stdout + r.stderr


def tree_hash(d: Path) -> str:
    """SHA-256 over the names and bytes of every file under ``d`` (sorted)."""
    h = hashlib.sha256()
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(d)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def write_ec_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)


def public_pem(private: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private.read_bytes(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


@dataclass
class GpuWorld:
    """Two synthetic H100s, the roots the demo server trusts for them, RIMs matching their
    firmware in a RIM directory, and good OCSP responses for their device chains and the RIM
    signer chain in the server's collateral cache."""

    gpus: list[SyntheticGpu]
    config: str

    @classmethod
    def make(cls, tmp: Path) -> GpuWorld:
        from cryptography.hazmat.primitives import serialization
        from sealgate import pki
        from sealgate.collateral import CollateralCache
        from sealgate.nvgpu.fetch import ocsp_cache_parts
        from sealgate.testing.nvgpu_rim import make_hierarchy, matching_rims, ocsp_good

        pem = serialization.Encoding.PEM
        dh = NvidiaHierarchy()
        gpus = [SyntheticGpu(dh, i) for i in range(2)]
        rh = make_hierarchy("demo", not_before=datetime.now(UTC) - timedelta(days=1))
        d = tmp / "gpu"
        (d / "rims").mkdir(parents=True)
        (d / "device-root.pem").write_bytes(dh.root_pem())
        (d / "rim-root.pem").write_bytes(rh.root.public_bytes(pem))
        drv, vb = matching_rims(
            rh, gpus[0].measurements, driver_version=gpus[0].driver_version,
            vbios_version=GPU_VBIOS,
        )  # fmt: skip
        (d / "rims" / "driver.swidtag").write_bytes(drv)
        (d / "rims" / "vbios.swidtag").write_bytes(vb)
        cache = CollateralCache(tmp / "collateral")
        pairs = [(g.leaf, dh.ica, dh.ica_key) for g in gpus]
        pairs += [(dh.ica, dh.root, dh.root_key), (rh.signer, rh.ca, rh.ca_key)]
        pairs += [(rh.ca, rh.root, rh.root_key)]
        for cert, issuer, key in pairs:
            c = pki.load_certificate(cert.public_bytes(serialization.Encoding.DER))
            cache.put("nvidia", *ocsp_cache_parts(c), data=ocsp_good(cert, issuer, key))
        config = (
            f"nvgpu_roots: [{d / 'device-root.pem'}]\n"
            f"nvgpu_rim_roots: [{d / 'rim-root.pem'}]\n"
            f"nvgpu_rim_dirs: [{d / 'rims'}]\ncollateral_dir: {tmp / 'collateral'}\n"
        )
        return cls(gpus, config)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    """Everything the demo starts, so ``main`` can stop it whatever happens."""

    server: subprocess.Popen[str] | None = None
    tpms: list[Swtpm] = field(default_factory=list)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        for t in self.tpms:
            t.stop()


def main() -> int:
    if not tools_available():
        print("swtpm/tpm2-tools missing: run `make setup`", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="sealgate-demo-"))
    started = Started()
    try:
        return run(tmp, started)
    finally:
        started.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, started: Started) -> int:
    ca = tmp / "tpm-vendor-ca"
    golden_tpm = Swtpm(tmp / "golden-tpm", ca_dir=ca)
    rogue_tpm = Swtpm(tmp / "rogue-tpm", ca_dir=ca)
    started.tpms += [golden_tpm, rogue_tpm]
    golden_tpm.start()
    rogue_tpm.start()

    step(1, "start the sealgate server (SQLite, local KEK file, loopback only)")
    gpu_world = GpuWorld.make(tmp)
    port, http_port = free_port(), free_port()
    data = tmp / "server-data"
    config = tmp / "sealgate.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nhttp_listen: 127.0.0.1:{http_port}\ndata_dir: {data}\n"
        f"ek_ca_roots: [{ca / 'swtpm-localca-rootca-cert.pem'}]\n"
        f"ek_ca_intermediates: [{ca / 'issuercert.pem'}]\n" + gpu_world.config
    )
    server = subprocess.Popen(
        [str(BIN), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started.server = server
    assert server.stdout is not None
    line = server.stdout.readline()
    if "serving" not in line:
        raise RuntimeError(f"server did not start: {line}{server.stdout.read()[-500:]}")
    say(line.strip().removeprefix("sealgate: "))
    say(f"KEK file {data / 'kek.key'} mode {oct((data / 'kek.key').stat().st_mode & 0o777)}")
    addr = f"127.0.0.1:{port}"
    token = sealgate(
        "admin",
        "token",
        "--key",
        str(data / "operator-key.pem"),
        "--role",
        "admin",
        "--subject",
        "demo-operator",
    ).strip()
    env = dict(os.environ, SEALGATE_SERVER=addr, SEALGATE_TOKEN=token)
    say("operator token minted from the bootstrap operator key (admin role, 10 minutes)")

    step(2, "golden node boots; its PCRs become the reference values")
    log_golden, expected = golden_tpm.replay_events(sample_boot_events())
    (tmp / "golden.log").write_bytes(log_golden)
    values = {f"sha256:{i}": expected["sha256"].get(i, bytes(32)).hex() for i in range(8)}
    (tmp / "golden-refs.json").write_text(
        json.dumps({"platform": "tpm", "set_name": "golden-swtpm", "values": values})
    )
    sealgate("admin", "refval-import", str(tmp / "golden-refs.json"), env=env)
    say(
        f"registered {len(values)} PCR values in set golden-swtpm "
        f"(sha256:4 = {values['sha256:4'][:16]}...)"
    )

    step(3, "sign a sample model, encrypt it, import its key, write the policy, register it")
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architecture": "demo"}')
    (model / "model-00001.safetensors").write_bytes(os.urandom(3 << 20) + b"weights-1")
    (model / "model-00002.safetensors").write_bytes(os.urandom(1 << 20) + b"weights-2")
    model_hash = tree_hash(model)
    # The model publisher's signing key (ECDSA P-384): OMS v1.0 signature over every file.
    publisher = tmp / "publisher-key.pem"
    write_ec_key(publisher)
    (tmp / "publisher-pub.pem").write_bytes(public_pem(publisher))
    signature = tmp / "model.sig"
    sealgate("model", "sign", str(model), "--signature", str(signature),
             "--private-key", str(publisher))  # fmt: skip
    checked = json.loads(
        sealgate(
            "model",
            "verify-signature",
            str(model),
            "--signature",
            str(signature),
            "--public-key",
            str(tmp / "publisher-pub.pem"),
        )
    )["claims"]
    root = checked["root_digest"]
    say(f"model.sig: OMS v1.0, {checked['files']} files, root digest {root[:16]}... (verified)")
    key_file = tmp / "operator-model.key"
    key_file.write_bytes(os.urandom(32))
    os.chmod(key_file, 0o600)
    sealgate("model", "encrypt", "--key-file", str(key_file), "--key-id", KEY_ID,
             "--key-version", "1", "--model-signature", str(signature),
             "--in", str(model), "--out", str(tmp / "model.sgm"))  # fmt: skip
    say("model.sgm/: every file encrypted under a data key derived from the root digest")
    sealgate("admin", "key-import", KEY_ID, str(key_file), "--description", "demo model", env=env)
    key_file.unlink()
    say(f"key {KEY_ID} imported (stored AES-256-GCM-wrapped under the KEK); local copy deleted")
    policy = {
        "platforms": {"tpm": {"reference_sets": ["golden-swtpm"], "required_selection": SELECTION}},
        "model": {
            "require_signature": True,
            "signers": [{"public_key": (tmp / "publisher-pub.pem").read_text()}],
        },
    }
    (tmp / "policy.json").write_text(json.dumps(policy))
    sealgate("admin", "policy-put", KEY_ID, str(tmp / "policy.json"), env=env)
    say(f"policy: TPM nodes whose {SELECTION} match golden-swtpm, model signed by the publisher")
    # A model signed by anyone else is refused at registration.
    stranger = tmp / "stranger-key.pem"
    write_ec_key(stranger)
    sealgate("model", "sign", str(model), "--signature", str(tmp / "stranger.sig"),
             "--private-key", str(stranger))  # fmt: skip
    r = subprocess.run(
        [str(BIN), "admin", "model-register", KEY_ID, "--signature", str(tmp / "stranger.sig")],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    if r.returncode == 0:
        raise RuntimeError("a model signed by a stranger was registered")
    say(f"a model signed by another key: refused ({last_line(r.stdout + r.stderr)})")
    sealgate("admin", "model-register", KEY_ID, "--signature", str(signature),
             "--model", str(model), env=env)  # fmt: skip
    say(f"registered: {KEY_ID} version 1 is bound to root digest {root[:16]}...")

    step(4, "the golden node enrolls, attests, receives the key and decrypts the model")

    def request_keys(tpm: Swtpm, n: int, log: Path) -> list[str]:
        """`sealgate node request-keys` for serving node n (its own TPM, state and key dir)."""
        return ["node", "request-keys", "--server", addr, "--platform", "tpm",
                "--tcti", tpm.tcti, "--node-id", f"serving-node-{n}", "--key-id", KEY_ID,
                "--out", str(tmp / f"node{n}-keys"), "--state", str(tmp / f"node{n}-state"),
                "--eventlog", str(log), "--model-signature", str(signature),
                "--model", str(tmp / "model.sgm")]  # fmt: skip

    out = sealgate(*request_keys(golden_tpm, 1, tmp / "golden.log"))
    say(out.strip())
    mode = (tmp / "node1-keys" / f"{KEY_ID}@1.key").stat().st_mode & 0o777
    say(f"key written 0{mode:o}; decrypting the model with it (files checked against model.sig)")
    sealgate("model", "decrypt", "--keys-dir", str(tmp / "node1-keys"),
             "--model-signature", str(signature),
             "--in", str(tmp / "model.sgm"), "--out", str(tmp / "model.decrypted"))  # fmt: skip
    got = tree_hash(tmp / "model.decrypted")
    if got != model_hash:
        raise RuntimeError("decrypted model differs")
    say(f"decrypted model (sha256 over its files {got[:16]}...) matches the original")
    nodes = json.loads(sealgate("admin", "node-list", "--json", env=env))["nodes"]
    say(
        f"enrolled nodes: {[n['node_id'] for n in nodes]} (AK bound to EK "
        f"{nodes[0]['ek_fingerprint'][:16]}...)"
    )

    step(5, "a second node booted with one extra PCR extension is denied")
    extra = [*sample_boot_events(), LogEvent(4, 0xD, b"unapproved-bootloader-module")]
    log_rogue, _ = rogue_tpm.replay_events(extra)
    (tmp / "rogue.log").write_bytes(log_rogue)
    r = subprocess.run(
        [str(BIN), *request_keys(rogue_tpm, 2, tmp / "rogue.log")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in (r.stdout + r.stderr).strip().splitlines():
        say(line)
    if r.returncode != 1 or "sha256:4" not in r.stdout:
        raise RuntimeError("the second node was not denied with PCR 4 named")
    keys2 = tmp / "node2-keys"
    written = sorted(p.name for p in keys2.glob("*.key")) if keys2.exists() else []
    if written:  # (the node still saves its result token, whose status says denied)
        raise RuntimeError(f"the denied node got key files: {written}")
    say(f"exit {r.returncode}; no key file written")

    step(6, "a replayed Attest is refused")
    with grpc.insecure_channel(addr) as ch:
        agent = NodeAgent(
            ch,
            "serving-node-1",
            Tpm2ToolsCollector(golden_tpm.tcti, tmp / "node1-state", eventlog=tmp / "golden.log"),
        )
        req = agent.build_attest(agent.challenge(), [KEY_ID])
        first = agent.stub.Attest(req)
        say(f"first use of challenge {req.challenge_id[:12]}...: {len(first.granted)} key granted")
        try:
            agent.stub.Attest(req)
        except grpc.RpcError as e:
            say(f"same request again: {e.code().name}, {error_code(e)}")
        else:
            raise RuntimeError("replayed Attest was accepted")

    step(7, "the golden node with two confidential GPUs; then one GPU in developer-tools mode")
    gpu_key = tmp / "gpu-model.key"
    gpu_key.write_bytes(os.urandom(32))
    os.chmod(gpu_key, 0o600)
    sealgate("admin", "key-import", GPU_KEY_ID, str(gpu_key), "--description", "GPU model",
             env=env)  # fmt: skip
    gpu_key.unlink()
    g0 = gpu_world.gpus[0]
    gpu_policy = {
        "platforms": {"tpm": {"reference_sets": ["golden-swtpm"], "required_selection": SELECTION}},
        "gpu": {
            "min_count": 2,
            "cc_mode": "on",
            "devtools": "forbidden",
            "driver_versions": [g0.driver_version],
            "vbios_versions": [GPU_VBIOS],
            "require_revocation_check": True,
        },
    }
    (tmp / "gpu-policy.json").write_text(json.dumps(gpu_policy))
    sealgate("admin", "policy-put", GPU_KEY_ID, str(tmp / "gpu-policy.json"), env=env)
    say(
        f"policy for {GPU_KEY_ID}: the golden TPM state and >= 2 GPUs in CC mode, driver "
        f"{g0.driver_version}, VBIOS {GPU_VBIOS}, measurements = RIMs, OCSP checked"
    )

    def gpu_attest() -> Any:
        with grpc.insecure_channel(addr) as ch:
            agent = NodeAgent(
                ch,
                "serving-node-1",
                Tpm2ToolsCollector(
                    golden_tpm.tcti, tmp / "node1-state", eventlog=tmp / "golden.log"
                ),
                gpus=NvmlGpus(FakeNvml(gpu_world.gpus), count=2),
            )
            return agent.attest([GPU_KEY_ID])

    res = gpu_attest()
    if list(res.keys) != [GPU_KEY_ID]:
        raise RuntimeError(f"the GPU node was not granted {GPU_KEY_ID}: {res.denied}")
    claims = jwt.decode(res.token, options={"verify_signature": False})
    subs = {k: v["ear.status"] for k, v in claims["submods"].items() if "/gpu" in k}
    say(f"granted {GPU_KEY_ID}; EAR GPU submods {subs}")
    gpu_world.gpus[1].mode = MODE_DEVTOOLS
    res = gpu_attest()
    if res.keys or not res.denied:
        raise RuntimeError("a GPU in developer-tools mode was granted a key")
    for d in res.denied:
        for f in d.failures:
            say(f"denied {d.key_id}: {f.code}: {f.message}")

    step(8, "the audit chain verifies; a tampered copy does not")
    v = json.loads(sealgate("admin", "audit-verify", "--json", env=env))
    say(
        f"server: ok={v['ok']}, {v['entries']} entries hash-chained (SHA-256 over "
        "deterministic CBOR, checked in Rust)"
    )
    entries = json.loads(sealgate("admin", "audit-list", "--json", "--limit", "200", env=env))[
        "entries"
    ]
    events: dict[str, int] = {}
    for entry in entries:
        events[entry["event"]] = events.get(entry["event"], 0) + 1
    say("events: " + ", ".join(f"{k} x{n}" for k, n in sorted(events.items())))
    # The copy an insider would edit: the database, with the KEK (for the entry MACs) and the
    # signed checkpoints next to it, as in the data dir.
    copy = tmp / "tampered"
    copy.mkdir(mode=0o700)
    shutil.copy2(data / "kek.key", copy / "kek.key")
    shutil.copytree(data / "audit-checkpoints", copy / "audit-checkpoints")
    src = sqlite3.connect(data / "sealgate.db")
    dst = sqlite3.connect(copy / "sealgate.db")
    src.backup(dst)
    src.close()
    row = next(
        r
        for r in dst.execute("SELECT seq, entry FROM audit ORDER BY seq")
        if b"serving-node-2" in bytes(r[1])
    )
    dst.execute(
        "UPDATE audit SET entry = ? WHERE seq = ?",
        (bytes(row[1]).replace(b"serving-node-2", b"serving-node-X"), row[0]),
    )
    dst.commit()
    dst.close()
    out = sealgate("audit", "verify", "--data-dir", str(copy), check=False, env=env)
    if "BROKEN" not in out or f"entry {row[0]}" not in out:
        raise RuntimeError(f"tampered audit copy was not refused: {out.strip()}")
    say(f"copy with entry {row[0]} edited: {out.strip()}")

    step(9, "stop everything")
    server.send_signal(signal.SIGTERM)
    rest = server.communicate(timeout=30)[0].strip().splitlines()[-2:]
    said = " / ".join(x.removeprefix("sealgate: ") for x in rest)
    say(f"server: {said} (exit {server.returncode})")
    for t in started.tpms:
        t.stop()
    say("swtpm instances stopped")
    print("\ndemo complete", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
