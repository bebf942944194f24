"""Hostile Azure evidence over gRPC (no vTPM needed): malformed, truncated, oversized and
partial ``AzureEvidence`` gets a stable code, never a traceback or a grant."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from sealgate._proto import attestation_pb2, attestation_pb2_grpc
from sealgate.protocol import PLATFORM_ENUM, runtime_binding
from sealgate.protocol.hpke import RuntimeKeyPair
from sealgate.testing.azure import SyntheticAzureVm, hcl_report, runtime_data
from sealgate.testing.softtpm import SoftAk

from tests.service.conftest import Env


def _attest(
    env: Env, platform: str, make: Callable[[bytes], attestation_pb2.AzureEvidence]
) -> attestation_pb2.AttestResponse:
    stub = attestation_pb2_grpc.AttestationStub(env.channel)
    ch = stub.Challenge(
        attestation_pb2.ChallengeRequest(platform=PLATFORM_ENUM[platform], node_id="h")
    )
    rk = RuntimeKeyPair.generate()
    ev = make(runtime_binding(ch.nonce, rk.public_bytes))
    evidence = attestation_pb2.Evidence()
    getattr(evidence, platform.replace("-", "_")).CopyFrom(ev)
    resp: attestation_pb2.AttestResponse = stub.Attest(
        attestation_pb2.AttestRequest(
            challenge_id=ch.challenge_id,
            node_id="h",
            evidence=evidence,
            runtime_public_key=rk.public_bytes,
            key_ids=["m"],
        ),
        timeout=30,
    )
    assert not resp.granted and not resp.token
    return resp


def _codes(resp: attestation_pb2.AttestResponse) -> list[str]:
    return sorted(f.code for f in resp.evidence_failures)


@pytest.fixture
def env(make_env: Callable[..., Env], tmp_path: Path) -> Env:
    e = make_env()
    e.key("m", b"M" * 32)
    e.policy(
        "m",
        {
            "platforms": {
                p: {
                    hw: {"allow_any_measurement": True},
                    "tpm": {"allow_any_measurement": True},
                }
                for p, hw in (("azure-snp", "snp"), ("azure-tdx", "tdx"))
            }
        },
    )
    return e


def test_malformed_hcl_reports_get_azure_codes(env: Env) -> None:
    def with_report(report: bytes) -> Callable[[bytes], attestation_pb2.AzureEvidence]:
        return lambda _b: attestation_pb2.AzureEvidence(
            hcl_report=report, quote=b"q", signature=b"s"
        )

    for report in (b"", b"HCLA", bytes(2048), os.urandom(2600), b"HCLA" + bytes(2044)):
        codes = _codes(_attest(env, "azure-snp", with_report(report)))
        assert codes and all(c.startswith("azure.hcl.") for c in codes), (report[:8], codes)


def test_hostile_runtime_data_and_missing_parts(env: Env, tmp_path: Path) -> None:
    vm = SyntheticAzureVm(tmp_path / "vm", "snp")
    vm.use_ak(SoftAk("rsa").key.public_key())  # type: ignore[arg-type]
    nested = b'{"keys":' + b"[" * 500 + b"]" * 500 + b"}"
    hw = vm.build_report(bytes(64))[32 : 32 + 1184]
    codes = _codes(
        _attest(
            env,
            "azure-snp",
            lambda _b: attestation_pb2.AzureEvidence(
                hcl_report=hcl_report("snp", hw, nested, size=2600), quote=b"q", signature=b"s"
            ),
        )
    )
    assert "azure.runtime_data.invalid" in codes
    no_ak = runtime_data({"kid": "other", "kty": "RSA"}, {}, bytes(64))
    codes = _codes(
        _attest(
            env,
            "azure-snp",
            lambda _b: attestation_pb2.AzureEvidence(
                hcl_report=hcl_report("snp", hw, no_ak), quote=b"q", signature=b"s"
            ),
        )
    )
    assert "azure.runtime_data.ak_missing" in codes
    # A genuine-looking report without the vTPM quote: never granted on the report alone.
    resp = _attest(
        env,
        "azure-snp",
        lambda b: attestation_pb2.AzureEvidence(hcl_report=vm.build_report(b)),
    )
    assert _codes(resp) == ["service.azure.quote_missing"]
    # TDX collateral that is not collateral.
    resp = _attest(
        env,
        "azure-tdx",
        lambda _b: attestation_pb2.AzureEvidence(
            hcl_report=b"HCLA", quote=b"q", signature=b"s", collateral=b"{nope"
        ),
    )
    assert _codes(resp) and all(c.startswith("tdx.collateral.") for c in _codes(resp))


def test_oversized_azure_evidence_is_refused_at_the_door(env: Env) -> None:
    from sealgate.node.agent import error_code

    too_many = [
        attestation_pb2.PcrValue(bank="sha256", index=i % 24, value=bytes(32)) for i in range(97)
    ]
    for ev, code in (
        (
            attestation_pb2.AzureEvidence(hcl_report=b"x", pcrs=too_many),
            "service.limits.too_many_pcrs",
        ),
        (
            attestation_pb2.AzureEvidence(hcl_report=bytes((1 << 20) + 1)),
            "service.limits.evidence_too_large",
        ),
        (
            attestation_pb2.AzureEvidence(hcl_report=b"x", event_log=bytes((2 << 20) + 1)),
            "service.limits.event_log_too_large",
        ),
    ):
        with pytest.raises(grpc.RpcError) as e:
            _attest(env, "azure-snp", lambda _b, ev=ev: ev)  # type: ignore[misc]
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_code(e.value) == code
