"""The node agent: challenge → evidence bound to a fresh runtime key → attest → unseal.

TPM nodes enroll on first contact: when the server answers ``tpm.ak.unenrolled`` the agent
sends its EK certificate and AK, answers the MakeCredential challenge with
ActivateCredential, and attests again with a new challenge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sealgate._proto import attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.errors import SealgateError
from sealgate.protocol import PLATFORM_ENUM, SUITE_ENUM, runtime_binding
from sealgate.protocol.gpu_binding import composite_binding, gpu_nonces
from sealgate.protocol.hpke import X25519, RuntimeKeyPair


class Collector(Protocol):
    platform: str

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence: ...


class GpuCollector(Protocol):
    """The node's confidential GPUs (NVML on a real node): one attestation report and
    certificate chain per GPU, each for the SPDM requester nonce given at its index."""

    def collect(self, nonces: list[bytes]) -> list[attestation_pb2.GpuEvidence]: ...

    def count(self) -> int: ...


@runtime_checkable
class TpmCollector(Collector, Protocol):
    def enrollment_material(self) -> tuple[bytes, list[bytes], bytes]:
        """(EK certificate DER, EK CA chain, AK TPM2B_PUBLIC)."""
        ...

    def activate(self, id_object: bytes, encrypted_secret: bytes) -> bytes: ...


class AgentError(SealgateError):
    """A call failed; ``code`` is the server's stable code (or a transport code)."""

    def __init__(self, code: str, message: str, status: grpc.StatusCode | None = None) -> None:
        super().__init__(code, message)
        self.status = status


def error_code(err: grpc.RpcError) -> str:
    """The stable code from a sealgate error's google.rpc.Status ErrorInfo."""
    call = err if isinstance(err, grpc.Call) else None
    if call is not None:
        try:
            st = rpc_status.from_call(call)
        except ValueError:
            st = None
        if st is not None:
            for d in st.details:
                info = error_details_pb2.ErrorInfo()
                if d.Is(info.DESCRIPTOR) and d.Unpack(info):
                    return str(info.reason)
    code = err.code() if isinstance(err, grpc.Call) else None
    return f"grpc.{code.name.lower()}" if code is not None else "grpc.unknown"


def to_agent_error(err: grpc.RpcError) -> AgentError:
    status = err.code() if isinstance(err, grpc.Call) else None
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    return AgentError(error_code(err), details or "", status)


@dataclass
class KeyDenial:
    key_id: str
    failures: list[common_pb2.Failure]


@dataclass
class NodeResult:
    token: str = ""
    expires_at: int = 0
    keys: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: Key id → the OMS root digest its released key is bound to (model-bound keys only).
    models: dict[str, bytes] = field(default_factory=dict)
    denied: list[KeyDenial] = field(default_factory=list)
    evidence_failures: list[common_pb2.Failure] = field(default_factory=list)


class NodeAgent:
    def __init__(
        self,
        channel: grpc.Channel,
        node_id: str,
        collector: Collector,
        suite: str = X25519,
        timeout: float = 30.0,
        gpus: GpuCollector | None = None,
    ) -> None:
        self.stub = attestation_pb2_grpc.AttestationStub(channel)
        self.node_id = node_id
        self.collector = collector
        self.gpus = gpus
        self.suite = suite
        self.timeout = timeout
        self.runtime: RuntimeKeyPair | None = None

    def _call(self, fn: object, req: object) -> object:
        try:
            return fn(req, timeout=self.timeout)  # type: ignore[operator]
        except grpc.RpcError as e:
            raise to_agent_error(e) from None

    def enroll(self) -> bytes:
        col = self.collector
        if not isinstance(col, TpmCollector):
            raise AgentError("node.enroll.unsupported", f"{col.platform} nodes do not enroll")
        ek_cert, chain, ak_pub = col.enrollment_material()
        resp = self._call(
            self.stub.EnrollTpm,
            attestation_pb2.EnrollTpmRequest(
                node_id=self.node_id, ek_certificate=ek_cert, ek_chain=chain, ak_public=ak_pub
            ),
        )
        assert isinstance(resp, attestation_pb2.EnrollTpmResponse)
        secret = col.activate(resp.credential_blob, resp.encrypted_secret)
        done = self._call(
            self.stub.ActivateTpm,
            attestation_pb2.ActivateTpmRequest(enrollment_id=resp.enrollment_id, secret=secret),
        )
        assert isinstance(done, attestation_pb2.ActivateTpmResponse)
        return bytes(done.ak_name)

    def attest(self, key_ids: list[str], *, auto_enroll: bool = True) -> NodeResult:
        try:
            return self._attest_once(key_ids)
        except AgentError as e:
            if not (auto_enroll and e.code == "tpm.ak.unenrolled"):
                raise
        self.enroll()
        return self._attest_once(key_ids)

    def challenge(self) -> attestation_pb2.ChallengeResponse:
        ch = self._call(
            self.stub.Challenge,
            attestation_pb2.ChallengeRequest(
                platform=PLATFORM_ENUM[self.collector.platform], node_id=self.node_id
            ),
        )
        assert isinstance(ch, attestation_pb2.ChallengeResponse)
        return ch

    def build_attest(
        self, ch: attestation_pb2.ChallengeResponse, key_ids: list[str]
    ) -> attestation_pb2.AttestRequest:
        self.runtime = RuntimeKeyPair.generate(self.suite)
        base = runtime_binding(ch.nonce, self.runtime.public_bytes)
        gpus: list[attestation_pb2.GpuEvidence] = []
        if self.gpus is not None:
            # GPU reports first (each for its own nonce), then the CPU evidence committing
            # to them (sealgate.protocol.gpu_binding).
            gpus = self.gpus.collect(gpu_nonces(base, self.gpus.count()))
        binding = composite_binding(
            ch.nonce, self.runtime.public_bytes, [bytes(g.report) for g in gpus]
        )
        evidence = self.collector.collect(ch.nonce, binding)
        return attestation_pb2.AttestRequest(
            challenge_id=ch.challenge_id,
            node_id=self.node_id,
            evidence=evidence,
            runtime_public_key=self.runtime.public_bytes,
            suite=SUITE_ENUM[self.suite],
            key_ids=key_ids,
            gpus=gpus,
        )

    def _attest_once(self, key_ids: list[str]) -> NodeResult:
        req = self.build_attest(self.challenge(), key_ids)
        resp = self._call(self.stub.Attest, req)
        assert isinstance(resp, attestation_pb2.AttestResponse)
        return self.unseal(
            resp.token, resp.expires_at, resp.granted, resp.denied, list(resp.evidence_failures)
        )

    def unseal(
        self,
        token: str,
        expires_at: int,
        granted: object,
        denied: object,
        evidence_failures: list[common_pb2.Failure] | None = None,
    ) -> NodeResult:
        assert self.runtime is not None
        out = NodeResult(
            token=token, expires_at=expires_at, evidence_failures=evidence_failures or []
        )
        for g in granted:  # type: ignore[attr-defined]
            out.keys[g.key_id] = (int(g.version), self.runtime.open(bytes(g.sealed), bytes(g.info)))
            if g.model_root_digest:
                out.models[g.key_id] = bytes(g.model_root_digest)
        for d in denied:  # type: ignore[attr-defined]
            out.denied.append(KeyDenial(d.key_id, list(d.failures)))
        return out

    def refetch(self, token: str, key_ids: list[str]) -> NodeResult:
        """ReleaseKey with a still-valid token, keys sealed to the same runtime key."""
        assert self.runtime is not None, "attest first"
        resp = self._call(
            self.stub.ReleaseKey,
            attestation_pb2.ReleaseKeyRequest(
                token=token,
                runtime_public_key=self.runtime.public_bytes,
                suite=SUITE_ENUM[self.suite],
                key_ids=key_ids,
            ),
        )
        assert isinstance(resp, attestation_pb2.ReleaseKeyResponse)
        return self.unseal(token, 0, resp.granted, resp.denied)


def explain(result: NodeResult) -> list[str]:
    """Human-readable lines for every denial: code, message, actual vs expected."""
    lines = []
    for f in result.evidence_failures:
        lines.append(f"evidence: {f.code}: {f.message}")
    for d in result.denied:
        for f in d.failures:
            line = f"{d.key_id}: {f.code}: {f.message}"
            if f.expected and f.expected not in f.message:
                line += f" (actual {f.actual or '-'}, expected {f.expected})"
            lines.append(line)
    return lines
