from __future__ import annotations

from collections.abc import Iterator

import pytest
from sealgate.testing import softhsm

#: Tokens of the test run: the main one, a second for token-to-token moves, and one that
#: no test logs in to except with a wrong PIN.
TOKENS = ("sealgate", "sealgate-b", "pin-test")


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[softhsm.SoftHsm]:
    if not softhsm.available():
        pytest.skip(f"SoftHSM2 is not installed ({softhsm.MODULE}, softhsm2-util)")
    yield softhsm.make_softhsm(tmp_path_factory.mktemp("softhsm"), TOKENS)
