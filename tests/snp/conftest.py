from __future__ import annotations

from collections.abc import Iterator

import pytest
from sealgate import snp


@pytest.fixture(autouse=True)
def _fresh_chain_cache() -> Iterator[None]:
    """Each test starts without cached chains so it exercises chain verification."""
    snp.clear_cache()
    yield
    snp.clear_cache()
