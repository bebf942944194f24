from __future__ import annotations

from collections.abc import Iterator

import pytest
from sealgate.testing import softhsm

#: Tokens of the test run: the main one, one for the service tests, one that no test logs
#: in to except with a wrong PIN, and one for the dropped-login test alone.
TOKENS = ("sealgate", "sealgate-b", "pin-test", "relogin")


@pytest.fixture(scope="session")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[softhsm.SoftHsm]:
    if not softhsm.available():
        pytest.skip(f"SoftHSM2 is not installed ({softhsm.MODULE}, softhsm2-util)")
    yield softhsm.make_softhsm(tmp_path_factory.mktemp("softhsm"), TOKENS)
