"""The service through its CLI: serve (1 and 2 workers), SIGTERM drain, admin, model files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from sealgate._proto import attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.result import VerifyResult
from sealgate.service.config import ServiceConfig
from sealgate.service.platforms import (
    PlatformRegistry,
    PlatformVerifier,
    TpmVerifier,
    VerifyContext,
)
from sealgate.service.server import create_server

from tests.service.promtext import has_sample

BIN = str(Path(sys.executable).parent / "sealgate")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(
    *args: str, env: dict[str, str] | None = None, inp: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [BIN, *args], capture_output=True, timeout=60, env=env, input=inp, check=False
    )


def _start(tmp: Path, workers: int) -> tuple[subprocess.Popen[str], int]:
    port = _port()
    proc = subprocess.Popen(
        [
            BIN,
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--http-listen",
            f"127.0.0.1:{_port()}",
            "--data-dir",
            str(tmp / "data"),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving gRPC" in line, line
    return proc, port


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_admin_cli_and_sigterm(tmp_path: Path, workers: int) -> None:
    proc, port = _start(tmp_path, workers)
    try:
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "data" / "kek.key").stat().st_mode & 0o777 == 0o600
        tok = _cli("admin", "token", "--key", str(tmp_path / "data" / "operator-key.pem"))
        assert tok.returncode == 0
        env = dict(
            os.environ,
            SEALGATE_SERVER=f"127.0.0.1:{port}",
            SEALGATE_TOKEN=tok.stdout.decode().strip(),
        )
        (tmp_path / "k.hex").write_text("ab" * 32)
        assert _cli("admin", "key-import", "m", str(tmp_path / "k.hex"), env=env).returncode == 0
        (tmp_path / "p.yaml").write_text("platforms:\n  tpm:\n    reference_sets: [g]\n")
        assert _cli("admin", "policy-put", "m", str(tmp_path / "p.yaml"), env=env).returncode == 0
        for _ in range(4):  # several calls: with 2 workers both processes answer
            r = _cli("admin", "key-list", "--json", env=env)
            keys = json.loads(r.stdout)["keys"]
            assert keys[0]["key_id"] == "m" and "key" not in keys[0]
        r = _cli("admin", "policy-get", "m", "--json", env=env)
        assert json.loads(json.loads(r.stdout)["json"])["platforms"]["tpm"]
        r = _cli("admin", "audit-verify", env=env)
        assert r.returncode == 0 and b"ok: True" in r.stdout
        bad = _cli("admin", "key-list", env=dict(env, SEALGATE_TOKEN="x.y.z"))
        assert bad.returncode == 1 and b"auth.token" in bad.stderr
        assert b"Traceback" not in bad.stderr
    finally:
        out = _stop(proc)
    assert proc.returncode == 0 and "stopped" in out
    r = _cli("audit", "verify", "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 0 and b"audit chain OK" in r.stdout
    # Every worker's clean stop anchored the head: nothing is left unanchored.
    r = _cli("audit", "verify", "--json", "--data-dir", str(tmp_path / "data"))
    v = json.loads(r.stdout)
    assert v["ok"] and v["authenticated"] and v["anchored"] == v["entries"] >= 2 + workers, v


def test_serve_refuses_plaintext_on_non_loopback(tmp_path: Path) -> None:
    r = _cli("serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2 and b"without TLS" in r.stderr


def test_model_encrypt_decrypt_cli_and_stdin_key(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(os.urandom(300_000))
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    assert (
        _cli(
            "model",
            "encrypt",
            "--key-file",
            str(key),
            "--key-id",
            "m",
            "--key-version",
            "2",
            "--in",
            str(model),
            "--out",
            str(tmp_path / "m.sgm"),
            "--chunk-size",
            "65536",
        ).returncode
        == 0
    )
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "m@2.key").write_bytes(key.read_bytes())
    assert (
        _cli(
            "model",
            "decrypt",
            "--keys-dir",
            str(keys),
            "--in",
            str(tmp_path / "m.sgm"),
            "--out",
            str(tmp_path / "out"),
        ).returncode
        == 0
    )
    assert (tmp_path / "out").read_bytes() == model.read_bytes()
    r = _cli(
        "model",
        "decrypt",
        "--key-file",
        "-",
        "--in",
        str(tmp_path / "m.sgm"),
        "--out",
        "-",
        inp=key.read_bytes(),
    )
    assert r.returncode == 0 and r.stdout == model.read_bytes()
    cut = tmp_path / "cut.sgm"
    cut.write_bytes((tmp_path / "m.sgm").read_bytes()[:-100])
    r = _cli(
        "model", "decrypt", "--keys-dir", str(keys), "--in", str(cut), "--out", str(tmp_path / "o2")
    )
    assert r.returncode == 1 and b"model.file." in r.stderr and not (tmp_path / "o2").exists()


class _SlowPlatform(PlatformVerifier):
    """A stand-in platform whose verification takes a while (to test draining)."""

    name = "snp"

    def available(self) -> bool:
        return True

    def verify(self, evidence: Any, ctx: VerifyContext) -> VerifyResult:
        time.sleep(1.0)
        res = VerifyResult("snp")
        res.fail("snp.test.slow", "verification finished after drain started")
        return res


def test_sigterm_drains_in_flight_calls_and_registry(tmp_path: Path) -> None:
    cfg = ServiceConfig(listen="127.0.0.1:0", data_dir=tmp_path / "d")
    srv = create_server(
        cfg, http=False, platforms=PlatformRegistry([TpmVerifier(), _SlowPlatform()])
    )
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    stub = attestation_pb2_grpc.AttestationStub(ch)
    c = stub.Challenge(attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_SNP))
    with pytest.raises(grpc.RpcError) as e:
        stub.Challenge(attestation_pb2.ChallengeRequest(platform=common_pb2.PLATFORM_TDX))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    result: list[Any] = []
    req = attestation_pb2.AttestRequest(
        challenge_id=c.challenge_id,
        key_ids=["m"],
        runtime_public_key=b"\x01" * 32,
        evidence=attestation_pb2.Evidence(snp=attestation_pb2.SnpEvidence(report=b"r")),
    )
    t = threading.Thread(target=lambda: result.append(stub.Attest(req, timeout=10)))
    t.start()
    time.sleep(0.3)  # the call is inside the slow verifier now
    srv.stop(grace=5)
    t.join()
    ch.close()
    assert result and result[0].evidence_failures[0].code == "snp.test.slow"


@pytest.mark.parametrize(
    "doc",
    [
        {"token_ttl": "300"},
        {"workers": True},
        {"max_workers": 0},
        {"listen": 5},
        {"allow_insecure_remote": "yes"},
    ],
)
def test_config_scalars_are_type_checked(tmp_path: Path, doc: dict[str, object]) -> None:
    from sealgate.errors import UsageError
    from sealgate.service.config import load_config

    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError) as e:
        load_config(tmp_path / "c.json")
    assert e.value.code == "config.invalid"


def test_http_port_in_use_is_a_clean_error(tmp_path: Path) -> None:
    """The gRPC side starts first; if the HTTP side port cannot bind, it is stopped again
    and the caller gets a coded error, not a half-started server."""
    from sealgate.errors import UsageError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = ServiceConfig(
            data_dir=tmp_path, listen="127.0.0.1:0", http_listen=f"127.0.0.1:{port}"
        )
        with pytest.raises(UsageError) as e:
            create_server(cfg)
        assert e.value.code == "service.listen.failed"
    srv = create_server(ServiceConfig(data_dir=tmp_path, listen="127.0.0.1:0",
                                      http_listen="127.0.0.1:0"))  # fmt: skip
    srv.stop(grace=1)


def test_metrics_add_up_sibling_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes record into one multiprocess directory (prometheus_client's
    multiprocess mode, as ``serve --workers`` sets it up); a scrape adds them up."""
    from sealgate.service.metrics import MULTIPROC_ENV, Metrics

    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    for calls in ('m.rpc("Attest", "OK", 0.003)',
                  'm.rpc("Attest", "OK", 0.2); m.decision("tpm", "granted", 2)'):  # fmt: skip
        code = f"from sealgate.service.metrics import Metrics; m = Metrics(); {calls}"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    text = Metrics().render()
    assert has_sample(text, 'sealgate_rpc_total{method="Attest",code="OK"} 2')
    assert has_sample(text, 'sealgate_rpc_duration_seconds_bucket{method="Attest",le="0.005"} 1')
    assert has_sample(text, 'sealgate_rpc_duration_seconds_count{method="Attest"} 2')
    assert has_sample(text, 'sealgate_key_decisions_total{platform="tpm",outcome="granted"} 2')


def test_metrics_cover_every_worker(tmp_path: Path) -> None:
    """With --workers 2 only the first process serves HTTP; /metrics still counts calls
    answered by the other (read from its multiprocess value files)."""
    import urllib.request

    port, http_port = _port(), _port()
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--http-listen",
         f"127.0.0.1:{http_port}", "--data-dir", str(tmp_path / "data"), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "serving gRPC" in proc.stdout.readline()
        run_dir = tmp_path / "data" / "run" / "prometheus"

        def workers_recorded() -> int:
            # One value file per process id: a worker's appears with its first call.
            return len(list(run_dir.glob("counter_*.db")))

        # At least 16 calls, and on until both workers have answered some (the second
        # may still be starting when the first announces itself); bounded in count and time.
        calls = 0
        deadline = time.monotonic() + 30
        while calls < 16 or (workers_recorded() < 2 and calls < 200):
            if time.monotonic() > deadline:
                break
            # A connection per call, so SO_REUSEPORT spreads them over both workers.
            opts = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
                attestation_pb2_grpc.AttestationStub(ch).Challenge(
                    attestation_pb2.ChallengeRequest(
                        platform=common_pb2.PLATFORM_TPM, node_id=f"m{calls}"
                    ),
                    timeout=10,
                )
            calls += 1
        want = f'sealgate_rpc_total{{method="Challenge",code="OK"}} {calls}'
        text = ""
        published = workers_recorded() >= 2
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            url = f"http://127.0.0.1:{http_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
            if has_sample(text, want):
                break
            time.sleep(0.3)
        assert has_sample(text, want), text
        assert published
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out


def test_metrics_escape_label_values() -> None:
    """A label value with a quote, backslash or newline stays one well-formed sample."""
    from sealgate.service.metrics import Metrics

    from tests.service.promtext import samples

    m = Metrics()
    odd = 'a"b\\c\nd'
    m.decision(odd, "granted", 3)
    want = ("sealgate_key_decisions_total", frozenset({("platform", odd), ("outcome", "granted")}))
    assert (*want, 3.0) in samples(m.render())


def test_multiprocess_dir_starts_empty(tmp_path: Path) -> None:
    """Value files left by an earlier run would be counted again: the directory is reset."""
    from sealgate.service.metrics import multiprocess_dir, reset_multiprocess_dir

    d = multiprocess_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "counter_12345.db").write_bytes(b"stale")
    reset_multiprocess_dir(d)
    assert d.is_dir() and not any(d.iterdir())
    assert d.stat().st_mode & 0o777 == 0o700


def test_sigterm_while_workers_start_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM as soon as the first of four workers announces itself, while the others may
    still be importing or building their servers: every worker stops on request and the
    supervisor exits 0 (a worker that had not installed its handler yet used to die of the
    signal, and the stop was reported as a failure)."""
    proc, _ = _start(tmp_path, 4)
    out = _stop(proc)
    assert proc.returncode == 0, out
    assert "exited with status" not in out, out
