"""Generated protobuf/gRPC code must match the protos (reproducible, no drift)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "python" / "sealgate" / "_proto"


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    gen = _load_generator()
    written = gen.generate(tmp_path)  # type: ignore[attr-defined]
    fresh = {p.name: p.read_bytes() for p in written}
    committed = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.suffix in (".py", ".pyi")}
    assert sorted(fresh) == sorted(committed), "generated file set differs: run make protos"
    drift = [name for name in fresh if fresh[name] != committed[name]]
    assert not drift, f"generated code drifted from protos/: {drift}; run make protos"


def test_generated_imports_are_package_relative() -> None:
    for path in GENERATED.glob("*.py"):
        text = path.read_text()
        assert "from sealgate.v1 import" not in text, path.name


def test_services_expose_every_method() -> None:
    from sealgate._proto import admin_pb2, attestation_pb2

    att = attestation_pb2.DESCRIPTOR.services_by_name["Attestation"]
    assert [m.name for m in att.methods] == [
        "Challenge", "Attest", "ReleaseKey", "EnrollTpm", "ActivateTpm", "GetJwks",
    ]  # fmt: skip
    adm = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
    names = {m.name for m in adm.methods}
    for wanted in (
        "AddReferenceValue", "ListReferenceValues", "RemoveReferenceValue",
        "BulkAddReferenceValues", "PutPolicy", "GetPolicy", "ListPolicies", "DeletePolicy",
        "ImportModelKey", "GenerateModelKey", "RotateModelKey", "ListModelKeys",
        "ListNodes", "RevokeNode", "ListAudit", "VerifyAudit", "RotateSigningKey",
    ):  # fmt: skip
        assert wanted in names
