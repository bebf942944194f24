"""The node agent shares only ``sealgate.protocol`` with the service: it imports neither the
server-side broker nor the service."""

from __future__ import annotations

import subprocess
import sys

from sealgate._proto import attestation_pb2, common_pb2
from sealgate.protocol import PLATFORM_ENUM, PLATFORM_NAMES, SUITE_ENUM, SUITE_NAMES
from sealgate.protocol.hpke import SUITES, X25519


def test_node_agent_imports_neither_broker_nor_service() -> None:
    code = (
        "import sys\n"
        "import sealgate.node.agent, sealgate.node.session, sealgate.node.cvm, "
        "sealgate.node.tpm, sealgate.node.tsm\n"
        "print(sorted(m for m in sys.modules if m.startswith(('sealgate.broker', "
        "'sealgate.service'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_enum_maps_cover_the_wire_enums_both_ways() -> None:
    platforms = [v for v in common_pb2.Platform.values() if v != common_pb2.PLATFORM_UNSPECIFIED]
    assert sorted(PLATFORM_NAMES) == sorted(platforms)
    assert all(PLATFORM_NAMES[PLATFORM_ENUM[n]] == n for n in PLATFORM_ENUM)
    assert sorted(SUITE_ENUM) == sorted(SUITES)
    assert sorted(SUITE_NAMES) == sorted(attestation_pb2.HpkeSuite.values())
    assert all(SUITE_NAMES[SUITE_ENUM[s]] == s for s in SUITE_ENUM)
    assert SUITE_NAMES[attestation_pb2.HPKE_SUITE_UNSPECIFIED] == X25519
