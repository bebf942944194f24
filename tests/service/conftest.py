"""A live sealgate server on loopback (port 0) with a software EK CA, stopped after each test."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sealgate._proto import admin_pb2, admin_pb2_grpc
from sealgate.service.auth import mint_operator_token
from sealgate.service.config import ServiceConfig
from sealgate.service.server import RunningServer, create_server
from sealgate.testing.softnode import SoftwareCa, SoftwareTpm


@dataclass
class Env:
    server: RunningServer
    channel: grpc.Channel
    admin: admin_pb2_grpc.AdminStub
    token: str
    ca: SoftwareCa
    cfg: ServiceConfig

    @property
    def md(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def policy(self, key_id: str, doc: Mapping[str, Any]) -> None:
        self.admin.PutPolicy(
            admin_pb2.PutPolicyRequest(key_id=key_id, json=json.dumps(doc)), metadata=self.md
        )

    def golden(self, tpm: SoftwareTpm, set_name: str = "golden") -> None:
        self.admin.BulkAddReferenceValues(
            admin_pb2.BulkAddReferenceValuesRequest(
                document=json.dumps(
                    {"platform": "tpm", "set_name": set_name, "values": tpm.pcr_reference_values()}
                )
            ),
            metadata=self.md,
        )

    def key(self, key_id: str, material: bytes | None = None) -> None:
        if material is None:
            self.admin.GenerateModelKey(
                admin_pb2.GenerateModelKeyRequest(key_id=key_id), metadata=self.md
            )
        else:
            self.admin.ImportModelKey(
                admin_pb2.ImportModelKeyRequest(key_id=key_id, key=material), metadata=self.md
            )


TPM_POLICY = {
    "platforms": {
        "tpm": {"reference_sets": ["golden"], "required_selection": "sha256:0,1,2,3,4,5,6,7"}
    }
}


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    started: list[Env] = []

    def make(**overrides: object) -> Env:
        ca = SoftwareCa()
        d = tmp_path / f"srv{len(started)}"
        d.mkdir()
        cfg = ServiceConfig(
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            data_dir=d / "data",
            ek_ca_roots=[ca.write(d / "ek-ca.pem")],
        )
        for k, v in overrides.items():
            setattr(cfg, k, v)
        srv = create_server(cfg)
        ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
        token = mint_operator_token(cfg.bootstrap_operator_key.read_bytes(), "test", ["admin"])
        env = Env(srv, ch, admin_pb2_grpc.AdminStub(ch), token, ca, cfg)
        started.append(env)
        return env

    try:
        yield make
    finally:
        for env in started:
            env.channel.close()
            env.server.stop(grace=1)


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()
