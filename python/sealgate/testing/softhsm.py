"""A throwaway SoftHSM2 token set for tests (Debian ``softhsm2``).

SoftHSM reads its configuration (``SOFTHSM2_CONF``) when the module is initialized, once per
process, and lists the tokens its token directory holds then: so a test run makes one
directory with every token it needs up front and points ``SOFTHSM2_CONF`` at it before any
test loads the module. Each test then uses its own object label, so tests never share a
key. The PINs are throwaway values of this test token set; the tests pass them to the
provider only through a 0600 PIN file, as an operator would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
#: Test-only PINs: the token set is deleted with its temporary directory.
USER_PIN = "sg-test-user-7391"
SO_PIN = "sg-test-so-5518"


def available() -> bool:
    return os.path.isfile(MODULE) and shutil.which("softhsm2-util") is not None


@dataclass(frozen=True)
class SoftHsm:
    directory: Path
    conf: Path
    pin_file: Path
    tokens: tuple[str, ...]
    module: str = MODULE

    def uri(self, token: str, label: str, *, pin_file: Path | None = None, extra: str = "") -> str:
        """The PKCS#11 URI of object ``label`` in ``token`` (the PIN only by its file)."""
        q = urllib.parse.quote
        pin = pin_file or self.pin_file
        return (
            f"pkcs11:token={q(token, safe='')};object={q(label, safe='')}{extra}"
            f"?module-path={q(self.module, safe='/')}&pin-source=file:{q(str(pin), safe='/')}"
        )

    def env(self) -> dict[str, str]:
        """The environment a child process needs to see the same tokens."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def write_pin(self, name: str, pin: str) -> Path:
        """Another PIN file (a wrong PIN, say), 0600."""
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pin + "\n")
        return path


def make_softhsm(directory: Path, tokens: Sequence[str]) -> SoftHsm:
    """Initialize ``tokens`` in a fresh token directory under ``directory`` and point this
    process's ``SOFTHSM2_CONF`` at it (before the module is first loaded)."""
    tokdir = directory / "tokens"
    tokdir.mkdir(parents=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokdir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in tokens:
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                USER_PIN,
                "--so-pin",
                SO_PIN,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    hsm = SoftHsm(directory, conf, directory / "user.pin", tuple(tokens))
    hsm.write_pin("user.pin", USER_PIN)
    return hsm
