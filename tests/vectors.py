"""The one loader for test vectors.

Two sources:
- ``shared(...)``: published real-world vectors in ``../shared/vectors``, each with its
  provenance. Not part of the repository; tests that use them skip when absent.
- ``project(...)``: vectors this project generates itself under ``vectors/`` (synthetic
  roots and evidence, swtpm fixtures, malformed cases), each with its generator script.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEALGATE_SHARED_VECTORS", ROOT.parent / "shared" / "vectors"))
PROJECT = ROOT / "vectors"


def shared_available() -> bool:
    return (SHARED / "PROVENANCE.md").is_file()


def shared(*parts: str) -> Path:
    """Path to a published vector; skips the calling test when ../shared is absent."""
    if not shared_available():
        pytest.skip("../shared/vectors is not present (published vectors are not in the repo)")
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared vector {p} is missing")
    return p


def project(*parts: str) -> Path:
    """Path to a project-generated vector (always present in the repo)."""
    p = PROJECT.joinpath(*parts)
    assert p.exists(), f"{p} missing: run `make vectors`"
    return p
