"""Shared fixtures: isolated swtpm instances that are always stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sealgate.testing.swtpm import Swtpm, tools_available


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A started swtpm with its own ports, state and local CA (EK certs RSA-2048 and ECC)."""
    if not tools_available():
        pytest.skip("swtpm / tpm2-tools not installed (make setup installs them)")
    tpm = Swtpm(tmp_path / "swtpm")
    try:
        tpm.start()
        yield tpm
    finally:
        tpm.stop()
