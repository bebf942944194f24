"""deploy/sealgate.service: systemd accepts it, its ExecStart is a valid ``sealgate serve``
command line, its limits follow the service's defaults, and the service runs a full flow
under the same kernel restrictions the unit asks for (seccomp system-call filter, address
families, no W+X memory, no new privileges)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from sealgate._proto import admin_pb2, admin_pb2_grpc
from sealgate.node.agent import NodeAgent
from sealgate.service.auth import mint_operator_token
from sealgate.service.config import ServiceConfig
from sealgate.testing.softnode import SoftwareCa, SoftwareTpm

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "sealgate.service"
BIN = str(Path(sys.executable).parent / "sealgate")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def _directives(text: str) -> dict[str, list[str]]:
    """KEY → values of a unit file (systemd.syntax(7): a key may repeat; "#"/";" comments;
    no line continuations in our unit)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;[":
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {raw!r}"
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _one(d: dict[str, list[str]], key: str) -> str:
    assert len(d.get(key, [])) == 1, f"{key}: {d.get(key)}"
    return d[key][0]


def _exec_start(d: dict[str, list[str]]) -> list[str]:
    return shlex.split(_one(d, "ExecStart"))


def _unit_for_test(tmp: Path) -> Path:
    """The unit with ExecStart pointing at this venv's entry point, so systemd-analyze
    finds an executable (it checks that)."""
    text = UNIT.read_text()
    binary = _exec_start(_directives(text))[0]
    path = tmp / "sealgate.service"
    path.write_text(text.replace(f"ExecStart={binary} ", f"ExecStart={BIN} ", 1))
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    unit = _unit_for_test(tmp_path)
    r = _analyze("verify", "--man=no", str(unit))
    # Unknown keys and bad values are warnings on stderr with exit status 0: any output fails.
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


@needs_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive and a missing binary are reported."""
    unit = _unit_for_test(tmp_path)
    text = unit.read_text()
    typo = tmp_path / "typo.service"
    typo.write_text(text.replace("ProtectSystem=strict", "ProtectSystm=strict"))
    r = _analyze("verify", "--man=no", str(typo))
    assert "ProtectSystm" in r.stderr
    missing = tmp_path / "missing.service"
    missing.write_text(text.replace(f"ExecStart={BIN} ", "ExecStart=/nonexistent/sealgate ", 1))
    r = _analyze("verify", "--man=no", str(missing))
    assert r.returncode != 0 and "/nonexistent/sealgate" in r.stderr


@needs_analyze
def test_exposure_stays_low(tmp_path: Path) -> None:
    """`systemd-analyze security` scores the sandbox 0 (locked down) to 10; the unit scores
    1.4 today. Dropping a hardening option pushes it past 2.0."""
    unit = _unit_for_test(tmp_path)
    r = _analyze("security", "--offline=yes", "--threshold=20", "--no-pager", str(unit))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    loose = tmp_path / "loose.service"
    text = unit.read_text()
    for opt in ("ProtectSystem=strict", "PrivateDevices=yes", "CapabilityBoundingSet=\n"):
        text = text.replace(opt, "\n" if opt.endswith("\n") else "")
    loose.write_text(text)
    r = _analyze("security", "--offline=yes", "--threshold=20", "--no-pager", str(loose))
    assert r.returncode != 0


def test_exec_start_is_a_valid_serve_command() -> None:
    """Every flag the unit passes is one `sealgate serve --help` lists, and the command line
    parses as the CLI parses it (values included)."""
    from sealgate.cli import build_parser

    argv = _exec_start(_directives(UNIT.read_text()))
    assert Path(argv[0]).name == "sealgate" and argv[1] == "serve"
    # %E and %S are /etc and /var/lib for a system unit (systemd.unit(5) "Specifiers").
    args = [a.replace("%E", "/etc").replace("%S", "/var/lib") for a in argv[1:]]
    assert not any("%" in a for a in args), args
    helptext = subprocess.run(
        [BIN, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    assert flags, args
    for flag in flags:
        assert flag in helptext.split(), f"{flag} is not a `sealgate serve` option"
    ns = build_parser().parse_args(args)
    assert ns.config == "/etc/sealgate/config.yaml"
    assert ns.data_dir == "/var/lib/sealgate"


def test_unit_limits_follow_the_service() -> None:
    """Stop timeout, descriptor limit and secrets against the service's own defaults."""
    text = UNIT.read_text()
    d = _directives(text)
    assert _one(d, "Type") in ("exec", "simple")  # sealgate has no sd_notify
    assert _one(d, "KillSignal") == "SIGTERM"
    # SIGTERM to the supervisor only; it stops the workers and waits grace + 5 s each
    # (sealgate.service.supervisor.serve_many).
    assert _one(d, "KillMode") == "mixed"
    ns_grace = float(_exec_start(d)[_exec_start(d).index("--grace") + 1])
    stop = _one(d, "TimeoutStopSec")
    assert stop.isdigit() and int(stop) >= ns_grace + 5 + 5, stop
    limits = ServiceConfig().limits
    nofile = int(_one(d, "LimitNOFILE"))
    assert nofile >= 2 * (limits.max_connections + limits.http_max_connections), nofile
    assert _one(d, "Restart") == "on-failure"
    assert _one(d, "StateDirectory") == "sealgate"
    assert _one(d, "ConfigurationDirectory") == "sealgate"
    assert _one(d, "NoNewPrivileges") == "yes"
    assert _one(d, "MemoryDenyWriteExecute") == "yes"
    assert _one(d, "RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    # Secrets come from files named in the environment file, never from the unit.
    assert any(v.lstrip("-").startswith("/etc/sealgate/") for v in d["EnvironmentFile"])
    for value in d.get("Environment", []):
        assert not value.upper().startswith(("PGPASSWORD", "PIN")), value
    lower = text.lower()
    assert "password=" not in lower and "pin-value" not in lower


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_makes_the_units_user(tmp_path: Path) -> None:
    """deploy/sealgate.sysusers creates the User=/Group= of the unit, its home the state
    directory, no login shell (dry run into an empty root)."""
    d = _directives(UNIT.read_text())
    conf = str(ROOT / "deploy" / "sealgate.sysusers")
    r = subprocess.run(
        ["systemd-sysusers", "--dry-run", f"--root={tmp_path}", conf],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"Creating user '{_one(d, 'User')}'" in out
    assert f"Creating group '{_one(d, 'Group')}'" in out
    line = (ROOT / "deploy" / "sealgate.sysusers").read_text().splitlines()[-1]
    fields = shlex.split(line)
    assert fields[4] == "/var/lib/" + _one(d, "StateDirectory")
    assert fields[5] == "/usr/sbin/nologin"


def test_environment_example_names_files_not_secrets() -> None:
    """The example environment file sets only variables that name files."""
    text = (ROOT / "deploy" / "sealgate.env.example").read_text()
    assignments = [x.lstrip("#") for x in text.splitlines() if "=" in x and " " not in x]
    assert {a.split("=", 1)[0] for a in assignments} == {"PGPASSFILE", "SOFTHSM2_CONF"}
    assert all(a.split("=", 1)[1].startswith("/etc/") for a in assignments)
    env_file = _directives(UNIT.read_text())["EnvironmentFile"][0].lstrip("-")
    assert env_file == "/etc/sealgate/sealgate.env" and env_file in text


def test_deploy_doc_config_example_loads(tmp_path: Path) -> None:
    """The configuration shown in docs/deploy.md is one the service accepts."""
    import dataclasses

    import yaml
    from sealgate.service.config import load_config

    doc = (ROOT / "docs" / "deploy.md").read_text()
    block = doc.split("`/etc/sealgate/config.yaml`", 1)[1].split("```yaml\n", 1)[1]
    example = yaml.safe_load(block.split("```", 1)[0])
    known = {f.name for f in dataclasses.fields(ServiceConfig)}
    missing = set(example) - known
    if missing:
        # Keys another part of this release adds (the KEK URI): checked once it is here.
        pytest.skip(f"config keys not in this tree yet: {sorted(missing)}")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(example))
    cfg = load_config(path)
    assert cfg.tls and not cfg.bootstrap_operator and cfg.workers == 2
    assert [o.roles for o in cfg.operators] == [["admin"], ["auditor"]]
    # The same document with TLS removed is refused: it listens on a public address.
    del example["tls_cert"], example["tls_key"], example["tls_client_ca"]
    path.write_text(yaml.safe_dump(example))
    with pytest.raises(Exception, match="without TLS"):
        load_config(path)


#: Commands docs/deploy.md may show before they exist (none now: every one must).
_PENDING: set[tuple[str, ...]] = set()


def _subcommands(parser: Any) -> dict[str, Any]:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_deploy_doc_commands_exist() -> None:
    """Every `sealgate …` command docs/deploy.md shows names real subcommands and flags."""
    import re

    from sealgate.cli import build_parser

    doc = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    spans = re.findall(r"`(sealgate [^`]+)`", doc)
    spans += re.findall(r"^(?:\w+=\S+ )*(sealgate [^\n#]+)", doc, flags=re.M)
    assert len(spans) > 10, spans
    checked = 0
    for span in spans:
        parser: Any = build_parser()
        path: list[str] = []
        for word in shlex.split(span.replace("…", "").replace("[", "").replace("]", ""))[1:]:
            subs = _subcommands(parser)
            if word.startswith("--"):
                flag = word.split("=", 1)[0]
                if flag not in parser._option_string_actions:
                    assert (*path, flag) in _PENDING, f"{span!r}: no {flag}"
                continue
            if subs:
                if word not in subs:
                    assert any(p[: len(path) + 1] == (*path, word) for p in _PENDING), (
                        f"{span!r}: no command {word}"
                    )
                    break
                parser = subs[word]
                path.append(word)
                checked += 1
    assert checked >= 10


# ---- the service under the unit's kernel restrictions ----------------------------------

#: Runs argv[2:] under the restrictions named in the JSON argv[1]: no_new_privs, W^X
#: (PR_SET_MDWE, the kernel's form of MemoryDenyWriteExecute=, inherited across execve),
#: and a seccomp filter: the allowed system calls, socket() only for the allowed address
#: families, everything else EPERM, as SystemCallFilter= + SystemCallErrorNumber=EPERM +
#: RestrictAddressFamilies= build it (systemd.exec(5)). libseccomp through ctypes: its
#: Python binding is not packaged for this venv.
LAUNCHER = r"""
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_MDWE) failed: errno %d" % ctypes.get_errno())
seccomp = ctypes.CDLL("libseccomp.so.2")
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
ALLOW, ERRNO_EPERM, CMP_EQ = 0x7FFF0000, 0x00050000 | 1, 4
seccomp.seccomp_init.restype = ctypes.c_void_p
seccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(Cmp)]
seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = seccomp.seccomp_init(ERRNO_EPERM)
for name in spec["syscalls"]:
    nr = seccomp.seccomp_syscall_resolve_name(name.encode())
    if nr < 0 or name == "socket":
        continue  # not a system call on this architecture; socket() below
    if seccomp.seccomp_rule_add_array(ctx, ALLOW, nr, 0, None) != 0:
        sys.exit("seccomp_rule_add " + name)
nr = seccomp.seccomp_syscall_resolve_name(b"socket")
for family in spec["families"]:
    cmp = Cmp(0, CMP_EQ, family, 0)
    if seccomp.seccomp_rule_add_array(ctx, ALLOW, nr, 1, ctypes.byref(cmp)) != 0:
        sys.exit("seccomp_rule_add socket")
if seccomp.seccomp_load(ctx) != 0:
    sys.exit("seccomp_load failed")
os.execv(sys.argv[2], sys.argv[2:])
"""

#: Run inside the sandbox: each restriction is in force after execve.
PROBE = r"""
import mmap, socket
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("W+X mapping allowed")
except PermissionError:
    pass
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    print("AF_NETLINK allowed")
except PermissionError:
    pass
import os
try:
    os.setgroups([])
    print("setgroups allowed")
except PermissionError:
    pass
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
print("confined")
"""


def _expand(group: str, seen: dict[str, set[str]]) -> set[str]:
    """The system calls of a systemd group, nested groups included
    (`systemd-analyze syscall-filter @GROUP`)."""
    if group in seen:
        return seen[group]
    out = _analyze("syscall-filter", "--no-pager", group).stdout.splitlines()
    names: set[str] = set()
    for line in out[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        names |= _expand(item, seen) if item.startswith("@") else {item}
    seen[group] = names
    return names


def _sandbox_spec() -> dict[str, object]:
    """What the unit's SystemCallFilter= lines allow: the first (an allow list) minus every
    later "~" line (systemd.exec(5): a later deny list removes from an earlier allow list);
    and the unit's RestrictAddressFamilies=."""
    d = _directives(UNIT.read_text())
    seen: dict[str, set[str]] = {}
    allowed: set[str] = set()
    for i, value in enumerate(d["SystemCallFilter"]):
        deny = value.startswith("~")
        assert deny == (i > 0), "expected one allow list, then deny lists"
        names: set[str] = set()
        for item in value.lstrip("~").split():
            names |= _expand(item, seen) if item.startswith("@") else {item}
        allowed = allowed - names if deny else names
    families = [int(getattr(socket, f)) for f in _one(d, "RestrictAddressFamilies").split()]
    return {"syscalls": sorted(allowed), "families": families}


def _sandbox_available() -> str | None:
    if ANALYZE is None:
        return "systemd-analyze not installed"
    if not Path("/usr/lib/x86_64-linux-gnu/libseccomp.so.2").exists() and not any(
        Path(p).glob("libseccomp.so.2") for p in ("/usr/lib", "/lib/x86_64-linux-gnu")
    ):
        return "libseccomp not installed"
    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    if release < (6, 3):
        return "PR_SET_MDWE needs Linux 6.3"
    return None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sandboxed(*argv: str) -> list[str]:
    return [sys.executable, "-c", LAUNCHER, json.dumps(_sandbox_spec()), *argv]


def test_sandbox_restrictions_hold_across_exec() -> None:
    """The launcher's restrictions are real: each one refuses what it should."""
    why = _sandbox_available()
    if why:
        pytest.skip(why)
    r = subprocess.run(
        _sandboxed(sys.executable, "-c", PROBE),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.split() == ["confined"], r.stdout + r.stderr


def test_service_runs_a_flow_inside_the_sandbox(tmp_path: Path) -> None:
    """`sealgate serve`, as the unit runs it (--config, --data-dir, --grace), under the
    unit's system-call filter, address families and W^X: enrol a software TPM, attest,
    unseal the model key; /healthz answers; SIGTERM drains and exits 0 (a clean stop that
    Restart=on-failure leaves alone) well within TimeoutStopSec."""
    why = _sandbox_available()
    if why:
        pytest.skip(why)
    ca = SoftwareCa()
    port, http_port = _port(), _port()
    conf = tmp_path / "config.json"
    conf.write_text(
        json.dumps(
            {
                "listen": f"127.0.0.1:{port}",
                "http_listen": f"127.0.0.1:{http_port}",
                "ek_ca_roots": [str(ca.write(tmp_path / "ca.pem"))],
            }
        )
    )
    data = tmp_path / "data"
    argv = [BIN, "serve", "--config", str(conf), "--data-dir", str(data), "--grace", "5"]
    proc = subprocess.Popen(
        _sandboxed(*argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving gRPC" in line, line + proc.stdout.read()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "\nNoNewPrivs:\t1" in status and "\nSeccomp:\t2" in status
        token = mint_operator_token((data / "operator-key.pem").read_bytes(), "t", ["admin"])
        md = (("authorization", f"Bearer {token}"),)
        key = os.urandom(32)
        tpm = SoftwareTpm(ca)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            admin = admin_pb2_grpc.AdminStub(ch)
            admin.ImportModelKey(
                admin_pb2.ImportModelKeyRequest(key_id="m", key=key), metadata=md, timeout=30
            )
            refs = {"platform": "tpm", "set_name": "golden",
                    "values": tpm.pcr_reference_values()}  # fmt: skip
            admin.BulkAddReferenceValues(
                admin_pb2.BulkAddReferenceValuesRequest(document=json.dumps(refs)),
                metadata=md, timeout=30,
            )  # fmt: skip
            policy = {"platforms": {"tpm": {"reference_sets": ["golden"],
                      "required_selection": "sha256:0,1,2,3,4,5,6,7"}}}  # fmt: skip
            admin.PutPolicy(
                admin_pb2.PutPolicyRequest(key_id="m", json=json.dumps(policy)),
                metadata=md, timeout=30,
            )  # fmt: skip
            got = NodeAgent(ch, "n1", tpm).attest(["m"])
        assert got.keys["m"][1] == key
        url = f"http://127.0.0.1:{http_port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
        assert "sealgate: stopped" in out
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
