"""Evidence collection through Linux configfs-tsm (SEV-SNP and TDX guests).

Kernel ABI (Documentation/ABI/testing/configfs-tsm, Linux 6.7+): ``mkdir`` of a directory
under ``/sys/kernel/config/tsm/report`` creates a report request. Writing ``inblob`` (up to
64 bytes: SNP REPORT_DATA / TDX REPORTDATA) and then reading ``outblob`` yields the signed
report (SNP ATTESTATION_REPORT) or quote (TDX); ``auxblob`` holds supplemental data (SNP:
the certificate table of the extended guest request, when the host provisioned one);
``provider`` names the backend (``sev_guest``, ``tdx_guest``); ``generation`` counts writes
to the entry's inputs, so reading it before and after detects a concurrent writer that
changed ``inblob`` between our write and our read. ``privlevel`` (SNP VMPL) is optional.

``EvidenceSource`` is the interface the node agent uses; ``ConfigfsTsm`` talks to the
kernel, ``FakeTsm`` emulates the kernel on a plain directory for tests.
"""

from __future__ import annotations

import os
import secrets
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealgate.errors import SealgateError

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
#: REPORT_DATA size for both SNP (ABI spec Table 22 MSG_REPORT_REQ) and TDX (TDREPORT).
REPORT_DATA_SIZE = 64
#: outblob/auxblob larger than this are refused: an SNP report is 1184 bytes, a TDX quote a
#: few KiB, an SNP certificate table a few KiB.
MAX_BLOB = 1 << 20
#: Providers sealgate knows, by platform.
PROVIDERS = {"snp": "sev_guest", "tdx": "tdx_guest"}


class TsmError(SealgateError):
    """Evidence could not be collected (codes ``node.tsm.*``)."""


@dataclass(frozen=True)
class Evidence:
    provider: str
    outblob: bytes
    auxblob: bytes | None
    generation: int


class EvidenceSource(ABC):
    @abstractmethod
    def collect(self, report_data: bytes, *, privlevel: int | None = None) -> Evidence:
        """Produce evidence binding exactly these 64 bytes."""


class ConfigfsTsm(EvidenceSource):
    """The kernel's configfs-tsm report interface."""

    def __init__(self, root: Path = TSM_REPORT_ROOT, *, platform: str | None = None) -> None:
        self.root = Path(root)
        self.expected_provider = PROVIDERS[platform] if platform is not None else None

    # File operations are methods so a fake can emulate the kernel's side effects.
    def _mkdir(self, p: Path) -> None:
        p.mkdir()

    def _rmdir(self, p: Path) -> None:
        p.rmdir()

    def _write(self, p: Path, data: bytes) -> None:
        with open(p, "wb", buffering=0) as f:
            f.write(data)

    def _read(self, p: Path) -> bytes:
        with open(p, "rb") as f:
            data = f.read(MAX_BLOB + 1)
        if len(data) > MAX_BLOB:
            raise TsmError("node.tsm.too_large", f"{p.name} exceeds {MAX_BLOB} bytes")
        return data

    def _generation(self, entry: Path) -> int:
        raw = self._read(entry / "generation").strip()
        if not raw.isdigit():
            raise TsmError("node.tsm.bad_generation", f"generation {raw!r}")
        return int(raw)

    def collect(self, report_data: bytes, *, privlevel: int | None = None) -> Evidence:
        if len(report_data) != REPORT_DATA_SIZE:
            raise TsmError(
                "node.tsm.bad_report_data",
                f"report_data is {len(report_data)} bytes, need {REPORT_DATA_SIZE}",
            )
        if not self.root.is_dir():
            raise TsmError("node.tsm.unavailable", f"{self.root} does not exist (no configfs-tsm)")
        entry = self.root / f"sealgate-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            self._mkdir(entry)
        except OSError as e:
            raise TsmError("node.tsm.unavailable", f"cannot create {entry}: {e.strerror}") from None
        try:
            provider = self._read(entry / "provider").decode("ascii", "replace").strip()
            if self.expected_provider is not None and provider != self.expected_provider:
                raise TsmError(
                    "node.tsm.wrong_provider",
                    f"provider {provider!r}, expected {self.expected_provider!r}",
                )
            if privlevel is not None:
                self._write(entry / "privlevel", str(privlevel).encode())
            self._write(entry / "inblob", report_data)
            gen = self._generation(entry)
            outblob = self._read(entry / "outblob")
            aux_path = entry / "auxblob"
            auxblob = self._read(aux_path) if aux_path.exists() else None
            if self._generation(entry) != gen:
                raise TsmError(
                    "node.tsm.generation_changed",
                    "another writer changed the request while it was read; retry",
                )
            if not outblob:
                raise TsmError("node.tsm.empty", "outblob is empty")
            return Evidence(provider, outblob, auxblob or None, gen)
        except OSError as e:
            raise TsmError("node.tsm.io", f"{e.filename}: {e.strerror}") from None
        finally:
            try:
                self._rmdir(entry)
            except OSError:
                pass


#: A fake provider: report_data → (outblob, auxblob or None).
Responder = Callable[[bytes], tuple[bytes, bytes | None]]


class FakeTsm(ConfigfsTsm):
    """configfs-tsm emulated on an ordinary directory, for tests.

    ``mkdir`` creates the entry with ``provider`` and ``generation``; writing ``inblob``
    runs ``responder`` and fills ``outblob``/``auxblob`` and bumps ``generation``, as the
    kernel does. ``interfere`` (tests only) lets a test play a concurrent writer.
    """

    def __init__(
        self,
        root: Path,
        responder: Responder,
        *,
        provider: str = "sev_guest",
        platform: str | None = None,
        interfere: Callable[[Path], None] | None = None,
    ) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        super().__init__(root, platform=platform)
        self.responder = responder
        self.provider = provider
        self.interfere = interfere

    def _mkdir(self, p: Path) -> None:
        p.mkdir()
        (p / "provider").write_text(self.provider + "\n")
        (p / "generation").write_text("0\n")

    def _rmdir(self, p: Path) -> None:
        shutil.rmtree(p)

    def _write(self, p: Path, data: bytes) -> None:
        p.write_bytes(data)
        entry = p.parent
        gen = int((entry / "generation").read_text()) + 1
        (entry / "generation").write_text(f"{gen}\n")
        if p.name == "inblob":
            out, aux = self.responder(data)
            (entry / "outblob").write_bytes(out)
            if aux is not None:
                (entry / "auxblob").write_bytes(aux)

    def _read(self, p: Path) -> bytes:
        data = super()._read(p)
        if p.name == "outblob" and self.interfere is not None:
            self.interfere(p.parent)
        return data
