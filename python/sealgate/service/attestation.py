"""The Attestation servicer: messages → ``Verifier`` calls → messages."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures

from sealgate._proto import attestation_pb2, attestation_pb2_grpc, common_pb2
from sealgate.appraise import PolicyFailure
from sealgate.protocol import EVIDENCE_PLATFORM, PLATFORM_NAMES, SUITE_ENUM, SUITE_NAMES
from sealgate.service import errors as E
from sealgate.service.admission import peer_key
from sealgate.service.core import AttestOutcome, Verifier
from sealgate.service.metrics import Metrics
from sealgate.service.ratelimit import RateLimiter
from sealgate.service.readiness import Readiness
from sealgate.service.servicer import Ctx, ServicerBase


def _failures(fs: list[PolicyFailure]) -> list[common_pb2.Failure]:
    return [
        common_pb2.Failure(code=f.code, message=f.message, actual=f.actual, expected=f.expected)
        for f in fs
    ]


def _outcome_granted(out: AttestOutcome) -> list[attestation_pb2.SealedKey]:
    return [
        attestation_pb2.SealedKey(
            key_id=g.key_id,
            version=g.version,
            suite=SUITE_ENUM[g.suite],
            sealed=g.sealed,
            info=g.info,
            model_root_digest=g.root_digest,
        )
        for g in out.granted
    ]


def _outcome_denied(out: AttestOutcome) -> list[attestation_pb2.DeniedKey]:
    return [
        attestation_pb2.DeniedKey(key_id=d.key_id, failures=_failures(d.failures))
        for d in out.denied
    ]


class AttestationServicer(ServicerBase, attestation_pb2_grpc.AttestationServicer):
    def __init__(
        self,
        core: Verifier,
        metrics: Metrics,
        pool: futures.Executor,
        limiter: RateLimiter,
        peer_limiter: RateLimiter,
        readiness: Readiness | None = None,
    ) -> None:
        super().__init__(core, metrics, pool, readiness)
        self.limiter = limiter
        self.peer_limiter = peer_limiter

    def _limit(self, node_id: str, context: Ctx) -> None:
        # By address, not port (the port changes per connection); IPv6 by its /64.
        peer = f"peer:{peer_key(context.peer())}"
        if not self.peer_limiter.allow(peer) or not self.limiter.allow(node_id or peer):
            raise E.ResourceExhausted(
                "service.rate_limited",
                "too many requests from this node; slow down",
            )

    def _check_evidence(self, ev: attestation_pb2.Evidence) -> str:
        """The platform the evidence is for (``azure_snp`` → ``azure-snp``), size-checked."""
        kind = ev.WhichOneof("kind")
        if kind is None:
            raise E.Invalid("service.request.no_evidence", "evidence is missing")
        lim = self.core.cfg.limits
        msg = getattr(ev, kind)
        for fd, value in msg.ListFields():
            if fd.name in ("event_log", "ccel"):
                if len(value) > lim.max_event_log_bytes:
                    raise E.Invalid(
                        "service.limits.event_log_too_large",
                        f"{fd.name} exceeds {lim.max_event_log_bytes} bytes",
                    )
            elif isinstance(value, bytes) and len(value) > lim.max_evidence_bytes:
                raise E.Invalid(
                    "service.limits.evidence_too_large",
                    f"{fd.name} exceeds {lim.max_evidence_bytes} bytes",
                )
        if kind in ("tpm", "azure_snp", "azure_tdx") and len(msg.pcrs) > 24 * 4:
            raise E.Invalid("service.limits.too_many_pcrs", "at most 96 PCR values")
        return EVIDENCE_PLATFORM[kind]

    async def Challenge(
        self, request: attestation_pb2.ChallengeRequest, context: Ctx
    ) -> attestation_pb2.ChallengeResponse:
        def run() -> attestation_pb2.ChallengeResponse:
            self._limit(request.node_id, context)
            platform = PLATFORM_NAMES.get(request.platform, "")
            cid, nonce, exp = self.core.challenge(platform, request.node_id[:128])
            return attestation_pb2.ChallengeResponse(challenge_id=cid, nonce=nonce, expires_at=exp)

        return await self._run("Challenge", context, run)

    async def Attest(
        self, request: attestation_pb2.AttestRequest, context: Ctx
    ) -> attestation_pb2.AttestResponse:
        def run() -> attestation_pb2.AttestResponse:
            self._limit(request.node_id, context)
            platform = self._check_evidence(request.evidence)
            suite = SUITE_NAMES.get(request.suite)
            if suite is None:
                raise E.Invalid("broker.hpke.unsupported_suite", f"suite {request.suite}")
            out = self.core.attest(
                challenge_id=request.challenge_id,
                node_id=request.node_id[:128],
                platform=platform,
                evidence=getattr(request.evidence, str(request.evidence.WhichOneof("kind"))),
                runtime_public_key=request.runtime_public_key,
                suite=suite,
                key_ids=list(request.key_ids),
                gpus=list(request.gpus),
            )
            self.metrics.decision(platform, "granted", len(out.granted))
            self.metrics.decision(platform, "denied", len(out.denied))
            return attestation_pb2.AttestResponse(
                token=out.token,
                granted=_outcome_granted(out),
                denied=_outcome_denied(out),
                evidence_failures=_failures(out.evidence_failures),
                expires_at=out.expires_at,
            )

        # Chain building and collateral checks the verifier has not cached yet cost
        # signature verifications an attester can choose: those requests go to the pool,
        # cache hits stay on the loop (the hot path).
        kind = request.evidence.WhichOneof("kind")
        verifier = self.core.platforms.get(EVIDENCE_PLATFORM[kind]) if kind else None
        try:
            offload = verifier is not None and not verifier.warm(
                getattr(request.evidence, str(kind))
            )
        except Exception:
            offload = True  # the verification itself will name what is wrong
        # A model key whose registration this configuration generation has not verified yet
        # costs a signature bundle verification: the pool too.
        offload = offload or not self._models_warm(request.key_ids)
        return await self._run("Attest", context, run, offload=offload)

    def _models_warm(self, key_ids: Sequence[str]) -> bool:
        if self.core.st.remote:
            # No blocking read here: under the bridge a cold registration verdict is
            # computed in a worker thread (ConfigView.model_gate, bridge.offload).
            return True
        try:
            return self.core.models_warm(list(key_ids))
        except Exception:
            return False  # the call itself will say what is wrong, from the pool

    async def ReleaseKey(
        self,
        request: attestation_pb2.ReleaseKeyRequest,
        context: Ctx,
    ) -> attestation_pb2.ReleaseKeyResponse:
        def run() -> attestation_pb2.ReleaseKeyResponse:
            self._limit("", context)
            suite = SUITE_NAMES.get(request.suite)
            if suite is None:
                raise E.Invalid("broker.hpke.unsupported_suite", f"suite {request.suite}")
            out = self.core.release_key(
                token=request.token,
                runtime_public_key=request.runtime_public_key,
                suite=suite,
                key_ids=list(request.key_ids),
            )
            return attestation_pb2.ReleaseKeyResponse(
                granted=_outcome_granted(out), denied=_outcome_denied(out)
            )

        return await self._run(
            "ReleaseKey", context, run, offload=not self._models_warm(request.key_ids)
        )

    async def EnrollTpm(
        self, request: attestation_pb2.EnrollTpmRequest, context: Ctx
    ) -> attestation_pb2.EnrollTpmResponse:
        def run() -> attestation_pb2.EnrollTpmResponse:
            self._limit(request.node_id, context)
            lim = self.core.cfg.limits.max_evidence_bytes
            if len(request.ek_certificate) > lim or sum(map(len, request.ek_chain)) > lim:
                raise E.Invalid("service.limits.evidence_too_large", "EK certificates too large")
            if len(request.ek_chain) > 8:
                raise E.Invalid("service.limits.chain_too_long", "at most 8 EK CA certificates")
            ch = self.core.enroll_tpm(
                node_id=request.node_id,
                ek_certificate=request.ek_certificate,
                ek_chain=list(request.ek_chain),
                ak_public=request.ak_public,
            )
            return attestation_pb2.EnrollTpmResponse(
                enrollment_id=ch.enrollment_id,
                credential_blob=ch.id_object,
                encrypted_secret=ch.encrypted_secret,
                tpm2_tools_blob=ch.tpm2_tools_blob,
                expires_at=ch.expires_at,
            )

        return await self._run("EnrollTpm", context, run, offload=True)

    async def ActivateTpm(
        self,
        request: attestation_pb2.ActivateTpmRequest,
        context: Ctx,
    ) -> attestation_pb2.ActivateTpmResponse:
        def run() -> attestation_pb2.ActivateTpmResponse:
            self._limit("", context)
            node = self.core.activate_tpm(
                enrollment_id=request.enrollment_id, secret=request.secret
            )
            return attestation_pb2.ActivateTpmResponse(node_id=node.node_id, ak_name=node.ak_name)

        return await self._run("ActivateTpm", context, run, offload=True)

    async def GetJwks(
        self, request: attestation_pb2.GetJwksRequest, context: Ctx
    ) -> attestation_pb2.GetJwksResponse:
        return await self._run(
            "GetJwks",
            context,
            lambda: attestation_pb2.GetJwksResponse(jwks_json=self.core.jwks_json()),
        )
