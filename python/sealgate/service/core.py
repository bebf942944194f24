"""The verifier/broker application, independent of gRPC (the servicers adapt to it).

One instance per process; all methods are thread-safe (state lives in Storage, the token
issuer's keys are immutable snapshots, counters are under a lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sealgate.appraise import Appraisal, PolicyFailure, appraise, ear_status
from sealgate.appraise.azure import REFERENCE_PLATFORMS
from sealgate.appraise.base import component_vectors
from sealgate.appraise.gpu import GPU_TOPOLOGY_CLAIM, GPUS_CLAIM
from sealgate.appraise.policy import Policy, canonical, parse_policy
from sealgate.broker.audit import AuditLog, AuditVerdict
from sealgate.broker.auditkeys import load_audit_keys
from sealgate.broker.checkpoint import Checkpointer, CheckpointStore, log_origin
from sealgate.broker.kek import KekProvider, KekRing, as_ring, open_ring
from sealgate.broker.keys import ModelKeys, check_key_id
from sealgate.broker.models import MAX_BUNDLE_BYTES, bound_key, signer_json, verify_registration
from sealgate.broker.nonces import Challenges
from sealgate.broker.tokens import TokenError, TokenIssuer
from sealgate.errors import SealgateError, UsageError
from sealgate.pki import Certificate
from sealgate.protocol import runtime_binding
from sealgate.protocol.gpu_binding import MAX_GPUS, composite_binding
from sealgate.protocol.hpke import jwk, jwk_thumbprint, release_info, seal
from sealgate.protocol.model_binding import binding_hint, model_commitments
from sealgate.result import VerifyResult
from sealgate.service import errors as E
from sealgate.service.cache import ConfigCache, ConfigView
from sealgate.service.config import ServiceConfig
from sealgate.service.gpus import add_token_claims as add_gpu_token_claims
from sealgate.service.gpus import check_bounds as check_gpu_bounds
from sealgate.service.platforms import (
    PlatformRegistry,
    VerifyContext,
    default_verifiers,
    identities,
    parse_identity,
    revocation_platforms,
    tpm_identities,
)
from sealgate.storage import (
    AttestationRecord,
    AuditAppend,
    Enrollment,
    ModelKeyRecord,
    ModelRegistration,
    Node,
    PolicyRecord,
    ReferenceValue,
    Revocation,
    Storage,
    StorageError,
    StorageUnavailable,
)
from sealgate.tpm.enroll import (
    EkVerifier,
    check_ak,
    ek_public_key,
    load_certificates,
    make_credential,
)

log = logging.getLogger("sealgate.service")

#: Credential secret size for MakeCredential (fits every EK nameAlg).
ENROLL_SECRET_SIZE = 32


@dataclass
class Granted:
    key_id: str
    version: int
    suite: str
    sealed: bytes
    info: bytes
    #: Set for a key bound to a signed model: its root digest and the accepted signer.
    root_digest: bytes = b""
    signer: dict[str, Any] | None = None

    def model_claim(self) -> dict[str, Any]:
        """What the EAR token and the audit entry record of the model (``sealgate.models``)."""
        return {
            "version": self.version,
            "root_digest": self.root_digest.hex(),
            "signer": self.signer,
        }


def _models(granted: list[Granted]) -> dict[str, dict[str, Any]]:
    return {g.key_id: g.model_claim() for g in granted if g.root_digest}


@dataclass
class Denied:
    key_id: str
    failures: list[PolicyFailure]


@dataclass
class AttestOutcome:
    token: str = ""
    expires_at: int = 0
    granted: list[Granted] = field(default_factory=list)
    denied: list[Denied] = field(default_factory=list)
    evidence_failures: list[PolicyFailure] = field(default_factory=list)


@dataclass
class EnrollChallenge:
    enrollment_id: str
    id_object: bytes
    encrypted_secret: bytes
    tpm2_tools_blob: bytes
    expires_at: int


def token_models(claims: dict[str, Any], platform: str) -> dict[str, Any]:
    """The ``sealgate.models`` of a verified token's submod (empty when it names none)."""
    sub = claims.get("submods")
    sub = sub.get(platform) if isinstance(sub, dict) else None
    models = sub.get("sealgate.models") if isinstance(sub, dict) else None
    return models if isinstance(models, dict) else {}


def _load_pem_dir(paths: Sequence[Any]) -> list[Certificate]:
    out: list[Certificate] = []
    for p in paths:
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        for f in files:
            out.extend(load_certificates(f.read_bytes()))
    return out


def kek_ring(cfg: ServiceConfig, *, create: bool = True) -> KekRing:
    """The KEK ring of a configuration (``kek``, ``kek_previous``): what the service, ``audit
    verify`` and ``kek rotate`` all unwrap with. ``create``: make the primary KEK (key file or
    token object) if absent, as the service's first start does."""
    return open_ring(cfg.kek_uri, cfg.kek_previous, create=create)


class Verifier:
    def __init__(
        self,
        cfg: ServiceConfig,
        storage: Storage,
        kek: KekProvider | None = None,
        platforms: PlatformRegistry | None = None,
    ) -> None:
        self.cfg = cfg
        self.st = storage
        # ``kek``: tests hand in a provider or ring; else the configured ring.
        self.kek = as_ring(kek) if kek is not None else kek_ring(cfg)
        # The audit keys first: a deployment that cannot have them must not start at all.
        audit_keys = load_audit_keys(storage, self.kek)
        self.keys = ModelKeys(storage, self.kek)
        self.tokens = TokenIssuer(storage, self.kek, cfg.verifier_id, cfg.token_ttl, create=False)
        self.audit = AuditLog(storage, audit_keys.mac())
        # The first start of a deployment (on any replica) makes the first signing key.
        self.tokens.ensure_active(
            lambda kid: self.audit.append("signing_key.created", "sealgate", {"kid": kid})
        )
        self.checkpoints = CheckpointStore(cfg.audit_checkpoint_dir)
        self.checkpointer = Checkpointer(
            storage, audit_keys.signer(), self.checkpoints, log_origin(cfg.verifier_id)
        )
        self.challenges = Challenges(storage, cfg.challenge_ttl)
        self.platforms = platforms or PlatformRegistry(default_verifiers(cfg))
        if cfg.snp_allow_missing_crl:
            log.warning(
                "snp_allow_missing_crl is set: SNP evidence is accepted without a current "
                "verifier-side AMD CRL (revoked VCEKs/ASKs may pass)"
            )
        self.config = ConfigCache(storage)
        # The EK CA roots and intermediates, and the memo of CA signatures verified.
        self.ek = EkVerifier(_load_pem_dir(cfg.ek_ca_roots), _load_pem_dir(cfg.ek_ca_intermediates))
        #: Built at the first GPU evidence (its chain and RIM caches live as long as the
        #: service): a sealgate.service.gpus.GpuCollateral.
        self._gpu_verifier: Any = None

    # -- Attestation --------------------------------------------------------------------
    def challenge(self, platform: str, node_id: str) -> tuple[str, bytes, int]:
        if self.platforms.get(platform) is None:
            raise E.Unimplemented(
                "service.platform.unavailable",
                f"platform {platform or 'unspecified'} is not "
                f"available here (available: {', '.join(self.platforms.available())})",
            )
        ch = self.challenges.issue(
            platform,
            node_id,
            audit=lambda c: self.audit.pending(
                "challenge.issued", node_id or "-", {"challenge_id": c.id, "platform": platform}
            ),
        )
        return ch.id, ch.nonce, ch.expires_at

    def attest(
        self,
        *,
        challenge_id: str,
        node_id: str,
        platform: str,
        evidence: Any,
        runtime_public_key: bytes,
        suite: str,
        key_ids: list[str],
        gpus: Sequence[Any] = (),
    ) -> AttestOutcome:
        try:
            return self._attest(
                challenge_id=challenge_id,
                node_id=node_id,
                platform=platform,
                evidence=evidence,
                runtime_public_key=runtime_public_key,
                suite=suite,
                key_ids=key_ids,
                gpus=gpus,
            )
        except E.ServiceError:
            raise  # every refusal has consumed the challenge and been audited already
        except Exception as e:
            # Something unexpected after the challenge lookup (a failing KEK, a bug): the
            # challenge is used up and the failure audited all the same (the servicer maps
            # the exception to a status). A challenge no longer live is left alone.
            if isinstance(e, StorageUnavailable):
                # Nothing was committed and the storage is gone: the challenge stays live
                # (a retry may use it) and nothing can be audited now.
                raise
            code = e.code if isinstance(e, SealgateError) else "service.internal.error"
            if self.challenges.live(challenge_id) is not None:
                with contextlib.suppress(Exception):
                    self._refuse(challenge_id, node_id, code)
            raise

    def _attest(
        self,
        *,
        challenge_id: str,
        node_id: str,
        platform: str,
        evidence: Any,
        runtime_public_key: bytes,
        suite: str,
        key_ids: list[str],
        gpus: Sequence[Any] = (),
    ) -> AttestOutcome:
        verifier = self.platforms.get(platform)
        if verifier is None:
            raise E.Unimplemented(
                "service.platform.unavailable",
                f"platform {platform or 'unspecified'} is not available here",
            )
        self._check_keys_request(key_ids)
        try:
            rk_jwk = jwk(suite, runtime_public_key)
        except UsageError as e:
            raise E.Invalid(e.code, e.message) from None
        # Read now, consume at the end in the transaction that records the decision (one
        # write-lock section per Attest instead of two); a concurrent second use of the same
        # challenge then loses there and gets nothing (``_complete``). The node and the
        # configuration generation come with it, in one round trip on a database server:
        # a configuration change committed from here on applies from the next Attest.
        inputs = self.st.attest_inputs(challenge_id, node_id, int(time.time()))
        ch = inputs.challenge
        view = self.config.view(inputs.generation)
        if ch is None:
            self.audit.append(
                "attest.refused",
                node_id or "-",
                {"challenge_id": challenge_id[:64], "code": "attest.challenge.invalid"},
            )
            raise E.Precondition(
                "attest.challenge.invalid",
                "challenge unknown, already used or expired; request a new one",
            )
        # From here on every outcome consumes the challenge and is audited, in one
        # transaction (``_refuse`` / ``_complete``).
        if ch.platform != platform:
            self._refuse(ch.id, node_id, "attest.challenge.platform_mismatch")
            raise E.Precondition(
                "attest.challenge.platform_mismatch",
                f"challenge was issued for {ch.platform}, evidence is {platform}",
            )
        if ch.node_id and node_id != ch.node_id:
            self._refuse(ch.id, node_id, "attest.challenge.node_mismatch")
            raise E.Precondition(
                "attest.challenge.node_mismatch", "challenge was issued to another node"
            )
        node: Node | None = None
        #: The hardware identities and the revocation mark recorded with the token.
        ids: list[str] = []
        mark = 0
        if verifier.needs_enrollment:
            node = inputs.node if node_id else None
            if node is None:
                self._refuse(ch.id, node_id, "tpm.ak.unenrolled")
                raise E.Denied("tpm.ak.unenrolled", f"node {node_id!r} has no enrolled AK")
            if node.revoked:
                self._refuse(ch.id, node_id, "tpm.ak.revoked")
                raise E.Denied("tpm.ak.revoked", f"node {node_id!r} has been revoked")
            ids = tpm_identities(node.ek_fingerprint, node.ak_name)
            mark, revoked = self._revoked(platform, ids, view)
            if revoked:
                self._refuse(ch.id, node_id, "tpm.ak.revoked", revoked=revoked)
                raise E.Denied("tpm.ak.revoked", f"node {node_id!r}: its TPM has been revoked")
        if len(gpus) > MAX_GPUS:
            self._refuse(ch.id, node_id, "gpu.evidence.too_many")
            raise E.Invalid(
                "gpu.evidence.too_many", f"more than {MAX_GPUS} GPU and NVSwitch reports"
            )
        try:
            check_gpu_bounds(gpus)
        except SealgateError as e:
            self._refuse(ch.id, node_id, e.code)
            raise E.Invalid(e.code, e.message) from None
        base = runtime_binding(ch.nonce, runtime_public_key)
        # Composite evidence (sealgate.protocol.gpu_binding): with GPUs, the CPU evidence
        # must commit to the exact ordered GPU report set, so the CPU check below already
        # refuses a spliced, dropped or reordered GPU report.
        binding = composite_binding(ch.nonce, runtime_public_key, [bytes(g.report) for g in gpus])
        roots = self.cfg.snp_roots if platform in ("snp", "azure-snp") else self.cfg.tdx_roots
        try:
            result = verifier.verify(evidence, VerifyContext(binding, node, list(roots)))
        except SealgateError as e:
            result = VerifyResult(platform)
            result.fail_from(e)
        if result.verified and gpus:
            # Each GPU's and NVSwitch's outcome is a claim, and so is the set's (distinct
            # devices, protected-PCIe topology); the key's ``gpu`` policy decides (a key
            # without one does not depend on the GPUs).
            devices, topology = self._verify_gpus(base, gpus)
            result.claims[GPUS_CLAIM] = devices
            result.claims[GPU_TOPOLOGY_CLAIM] = topology
        out = AttestOutcome()
        if not result.verified:
            out.evidence_failures = [PolicyFailure(f.code, f.message) for f in result.errors]
            out.denied = [Denied(k, list(out.evidence_failures)) for k in key_ids]
            self._complete(
                ch.id,
                self.audit.pending(
                    "attest.denied",
                    node_id or "-",
                    {
                        "challenge_id": ch.id,
                        "platform": platform,
                        "codes": sorted({f.code for f in result.errors}),
                        "keys": key_ids,
                    },
                ),
            )
            return out
        if not verifier.needs_enrollment:
            # Only verified claims name an identity (a failed report names nothing).
            ids = identities(platform, result.claims)
            if not ids:
                self._refuse(ch.id, node_id, "attest.identity.missing")
                raise E.Denied(
                    "attest.identity.missing",
                    "verified evidence names no hardware identity: revocation cannot be checked",
                )
            mark, revoked = self._revoked(platform, ids, view)
            if revoked:
                self._refuse(ch.id, node_id, "attest.identity.revoked", revoked=revoked)
                raise E.Denied(
                    "attest.identity.revoked", f"{platform} identity {revoked[0]} is revoked"
                )
        jkt = jwk_thumbprint(rk_jwk)
        appraisals = self._release(view, result, key_ids, suite, runtime_public_key, ch.id, out)
        vector: dict[str, int] = {}
        for a, _rev in appraisals.values():
            for k, v in a.vector.items():
                vector[k] = max(vector.get(k, 0), v)
        policy_ids = [f"sealgate:policy/{k}#{rev}" for k, (_, rev) in appraisals.items()]
        submod = {
            "ear.status": ear_status(vector),
            "ear.trustworthiness-vector": vector,
            "ear.appraisal-policy-id": policy_ids[0] if policy_ids else "sealgate:policy/none",
            "sealgate.appraisal-policy-ids": policy_ids,
            "sealgate.granted-key-ids": [g.key_id for g in out.granted],
        }
        if models := _models(out.granted):
            # Per granted model key: the OMS root digest its key is bound to and who signed it.
            submod["sealgate.models"] = models
        submods = {platform: submod}
        # Composite evidence (DESIGN.md): one submod per component as well, each with its
        # own status and vector (worst over the keys' appraisals), named <platform>/<part>.
        for part, vec in component_vectors([a for a, _ in appraisals.values()]).items():
            submods[f"{platform}/{part}"] = {
                "ear.status": ear_status(vec),
                "ear.trustworthiness-vector": vec,
            }
        # Each GPU's and NVSwitch's submod also says what it was (versions, RIMs,
        # revocation; a switch its PDI and the topology verdict).
        add_gpu_token_claims(
            submods,
            platform,
            result.claims.get(GPUS_CLAIM),
            result.claims.get(GPU_TOPOLOGY_CLAIM),
        )
        now = int(time.time())
        token, claims = self.tokens.issue(
            nonce=ch.nonce,
            runtime_jkt=jkt,
            submods=submods,
            now=now,
            extra={"sub": node_id or ch.id},
            generation=view.generation,
        )
        out.token, out.expires_at = token, int(claims["exp"])
        decided = self.audit.pending(
            "attest.decided",
            node_id or "-",
            {
                "challenge_id": ch.id,
                "platform": platform,
                "jti": claims["jti"],
                "identities": ids,
                "status": submod["ear.status"],
                "granted": [f"{g.key_id}@{g.version}" for g in out.granted],
                "denied": {d.key_id: sorted({f.code for f in d.failures}) for d in out.denied},
                **({"models": models} if models else {}),
            },
        )
        record = AttestationRecord(
            claims["jti"],
            node_id,
            platform,
            ch.id,
            json.dumps(result.claims, sort_keys=True),
            jkt,
            now,
            claims["exp"],
            tuple(g.key_id for g in out.granted),
            mark,
        )
        # The challenge's consumption, the token's record and its audit entry commit
        # together (one transaction); nothing is returned unless they did.
        self._complete(ch.id, decided, record)
        return out

    def _verify_gpus(
        self, base: bytes, gpus: Sequence[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Verify each GPU or NVSwitch for its own challenge nonce, with RIMs and OCSP
        responses, then the set's topology (``sealgate.service.gpus``): one claim set per
        entry, in order, and the set's."""
        if self._gpu_verifier is None:
            from sealgate.service.gpus import GpuCollateral

            self._gpu_verifier = GpuCollateral(self.cfg)
        devices, topology = self._gpu_verifier.verify(base, gpus)
        return list(devices), dict(topology)

    def _revocations(
        self, platform: str, ids: list[str], view: ConfigView | None = None
    ) -> tuple[int, list[Revocation]]:
        """The revocation mark and the revocations of ``ids``: under ``platform`` and, for a
        platform whose hardware is another's (Azure SNP/TDX), under that one too, so a chip
        revoked as ``snp`` is revoked behind the paravisor as well."""
        mark, revs = 0, list[Revocation]()
        for p in revocation_platforms(platform):
            m, r = view.revocation_state(p, ids) if view else self.st.revocation_state(p, ids)
            mark, revs = max(mark, m), revs + r
        return mark, revs

    def _revoked(
        self, platform: str, ids: list[str], view: ConfigView | None = None
    ) -> tuple[int, list[str]]:
        """The revocation mark to record, and which of ``ids`` are revoked now (as of
        ``view``'s generation when given)."""
        mark, revs = self._revocations(platform, ids, view)
        return mark, sorted({r.identity for r in revs if not r.lifted_at})

    def _refuse(self, challenge_id: str, node_id: str, code: str, **details: Any) -> None:
        """Consume the challenge with an ``attest.refused`` entry naming ``code``."""
        self._complete(
            challenge_id,
            self.audit.pending(
                "attest.refused",
                node_id or "-",
                {"challenge_id": challenge_id, "code": code, **details},
            ),
        )

    def _complete(
        self, challenge_id: str, audit: AuditAppend, record: AttestationRecord | None = None
    ) -> None:
        if not self.st.complete_attestation(challenge_id, int(time.time()), audit, record):
            # Another Attest used this challenge while this one was being verified, or it
            # expired meanwhile: this outcome (token, sealed keys) is dropped unsent.
            self.audit.append(
                "attest.refused",
                "-",
                {"challenge_id": challenge_id[:64], "code": "attest.challenge.invalid"},
            )
            raise E.Precondition(
                "attest.challenge.invalid",
                "challenge unknown, already used or expired; request a new one",
            )

    def _check_keys_request(self, key_ids: list[str]) -> None:
        if not key_ids:
            raise E.Invalid("service.request.no_keys", "ask for at least one key id")
        if len(key_ids) > self.cfg.limits.max_keys_per_request:
            raise E.Invalid(
                "service.limits.too_many_keys",
                f"at most {self.cfg.limits.max_keys_per_request} key ids",
            )
        # The rule keys are created under: a name no key can have is refused at the door,
        # before it reaches a policy lookup or an audit entry.
        for k in key_ids:
            try:
                check_key_id(k)
            except UsageError as e:
                raise E.Invalid(e.code, e.message) from None

    def _release(
        self,
        view: ConfigView,
        result: VerifyResult,
        key_ids: list[str],
        suite: str,
        runtime_public_key: bytes,
        challenge_id: str,
        out: AttestOutcome,
        granted_at_attest: frozenset[str] | None = None,
        token_models: dict[str, Any] | None = None,
    ) -> dict[str, tuple[Appraisal, int]]:
        """Appraise each wanted key's policy; seal the granted ones to the runtime key.

        ``granted_at_attest`` (ReleaseKey): only these keys may be served; any other is
        denied unappraised, so a token is never wider than its attestation's decision.
        ``token_models`` (ReleaseKey): the token's ``sealgate.models``; a model key is
        served only for the version and model its token names.
        """
        # An Azure platform's components are appraised with their own platforms' values.
        refs = [
            r
            for p in REFERENCE_PLATFORMS.get(result.platform, (result.platform,))
            for r in view.reference_values(p)
        ]
        appraisals: dict[str, tuple[Appraisal, int]] = {}
        for key_id in dict.fromkeys(key_ids):
            entry = view.policy(key_id)
            if entry is None:
                failure = PolicyFailure("policy.key.no_policy", f"{key_id}: no policy")
                out.denied.append(Denied(key_id, [failure]))
                continue
            if granted_at_attest is not None and key_id not in granted_at_attest:
                failure = PolicyFailure(
                    "broker.key.not_granted",
                    f"{key_id}: not granted at Attest; attest again to ask for it",
                )
                out.denied.append(Denied(key_id, [failure]))
                continue
            rec, policy = entry
            a = appraise(policy, result, refs)
            appraisals[key_id] = (a, rec.revision)
            if not a.ok:
                out.denied.append(Denied(key_id, a.failures))
                continue
            kv = view.current_key(key_id)
            if kv is None:
                failure = PolicyFailure("broker.key.not_found", f"{key_id}: no such key")
                out.denied.append(Denied(key_id, [failure]))
                continue
            root_digest, signer = b"", None
            if policy.model is not None:
                gate = self._model_gate(view, key_id, kv.version, policy, result, token_models)
                if isinstance(gate, PolicyFailure):
                    out.denied.append(Denied(key_id, [gate]))
                    continue
                root_digest, signer = gate
            version, material = kv.version, self.keys.unwrap(kv)
            if root_digest:
                material = bound_key(material, key_id, version, root_digest)
            info = release_info(key_id, version, challenge_id)
            sealed = seal(suite, runtime_public_key, material, info)
            out.granted.append(Granted(key_id, version, suite, sealed, info, root_digest, signer))
        return appraisals

    def models_warm(self, key_ids: Sequence[str]) -> bool:
        """Whether every model key among ``key_ids`` has this generation's registration
        verdict cached. A cold one costs a bundle verification (milliseconds; tens for a
        manifest of thousands of files, more for Sigstore), which the servicer runs in the
        thread pool instead of on the event loop. Unknown or malformed ids count as warm:
        they are refused before any verification."""
        view = self.config.view()
        for key_id in key_ids[: self.cfg.limits.max_keys_per_request]:
            try:
                check_key_id(key_id)
            except UsageError:
                continue
            entry = view.policy(key_id)
            if entry is None or entry[1].model is None:
                continue
            kv = view.current_key(key_id)
            if kv is not None and not view.model_gate_cached(key_id, kv.version):
                return False
        return True

    def _model_gate(
        self,
        view: ConfigView,
        key_id: str,
        version: int,
        policy: Policy,
        result: VerifyResult,
        token_models: dict[str, Any] | None,
    ) -> tuple[bytes, dict[str, Any]] | PolicyFailure:
        """A model key's release condition: a registered model for this version whose signer
        the current policy allows (and, with ``attested_binding``, that the evidence commits
        to its root digest). The root digest and signer, or the named failure."""
        assert policy.model is not None
        reg, check = view.model_gate(key_id, version, policy)
        if reg is None:
            return PolicyFailure(
                "policy.model.not_registered",
                f"{key_id}@{version}: no signed model is registered for this key version "
                "(sealgate admin model-register)",
            )
        if check is None or not check.ok or check.signer is None:
            return PolicyFailure(
                check.code if check else "policy.model.signer_not_allowed",
                check.message if check else f"{key_id}@{version}: signer not allowed",
            )
        if token_models is not None:
            named = token_models.get(key_id)
            if (
                not isinstance(named, dict)
                or named.get("version") != version
                or named.get("root_digest") != reg.root_digest.hex()
            ):
                # Rotated (or re-registered) since the attestation: its evidence was appraised
                # for another version's model.
                return PolicyFailure(
                    "broker.token.model_changed",
                    f"{key_id}: the token was issued for another key version or model; "
                    "attest again",
                )
        if policy.model.attested_binding:
            committed = model_commitments(result.platform, result.claims)
            if reg.root_digest not in committed:
                return PolicyFailure(
                    "policy.model.binding_missing",
                    f"{key_id}@{version}: the evidence does not commit to the model's root "
                    f"digest {reg.root_digest.hex()} ({binding_hint(result.platform)})",
                )
        return reg.root_digest, check.signer

    def release_key(
        self, *, token: str, runtime_public_key: bytes, suite: str, key_ids: list[str]
    ) -> AttestOutcome:
        self._check_keys_request(key_ids)
        # One generation read serves the signing keys (a rotation elsewhere) and appraisal.
        view = self.config.view()
        try:
            claims = self.tokens.verify(token, generation=view.generation)
        except TokenError as e:
            raise E.Denied(e.code, e.message) from None
        try:
            jkt = jwk_thumbprint(jwk(suite, runtime_public_key))
        except UsageError as e:
            raise E.Invalid(e.code, e.message) from None
        if not hmac.compare_digest(jkt, claims["cnf"]["jkt"]):
            raise E.Denied(
                "broker.token.key_mismatch", "runtime key is not the one the token is bound to"
            )
        rec = self.st.get_attestation(claims["jti"])
        if rec is None:
            # Unknown, or purged after its token expired.
            raise E.Denied("broker.token.unknown", "token does not match an attestation")
        self._check_token_record(claims, rec)
        self._check_not_revoked(rec)
        result = VerifyResult(rec.platform, json.loads(rec.claims_json))
        out = AttestOutcome(token=token, expires_at=int(claims["exp"]))
        self._release(
            view,
            result,
            key_ids,
            suite,
            runtime_public_key,
            rec.challenge_id,
            out,
            frozenset(rec.granted_key_ids),
            token_models(claims, rec.platform),
        )
        models = _models(out.granted)
        self.audit.append(
            "key.released",
            rec.node_id or "-",
            {
                "jti": rec.jti,
                "granted": [f"{g.key_id}@{g.version}" for g in out.granted],
                "denied": {d.key_id: sorted({f.code for f in d.failures}) for d in out.denied},
                **({"models": models} if models else {}),
            },
        )
        return out

    def _check_token_record(self, claims: dict[str, Any], rec: AttestationRecord) -> None:
        """The token must be the one issued for its record, not merely signed by one of our
        keys: whoever holds a leaked signing key can mint any claims around a jti from the
        audit log, but not the record's runtime-key thumbprint and lifetime. Such a token is
        audited: it means a signing key is out."""
        if (
            hmac.compare_digest(rec.runtime_key_jkt, claims["cnf"]["jkt"])
            and rec.expires_at == claims["exp"]
            and rec.issued_at == claims["iat"]
        ):
            return
        self.audit.append(
            "key.refused",
            rec.node_id or "-",
            {"jti": rec.jti, "code": "broker.token.record_mismatch"},
        )
        raise E.Denied(
            "broker.token.record_mismatch",
            "token does not match the attestation it names (binding or lifetime differ)",
        )

    def _check_not_revoked(self, rec: AttestationRecord) -> None:
        """A token is dead once one of its identities is revoked, and stays dead after the
        revocation is lifted: any revocation with a seq above the token's mark (decided
        after it) counts, lifted or not."""
        claims = json.loads(rec.claims_json)
        ids = identities(rec.platform, claims)
        _mark, revs = self._revocations(rec.platform, ids) if ids else (0, [])
        dead = [r.identity for r in revs if not r.lifted_at or r.seq > rec.revocation_mark]
        if rec.platform == "tpm":
            node = self.st.get_node(rec.node_id) if rec.node_id else None
            # The node id re-bound to another TPM (forgotten, enrolled again) is not the
            # node that attested.
            if (
                dead
                or node is None
                or node.revoked
                or (node.ek_fingerprint != claims.get("ek_fingerprint"))
            ):
                raise E.Denied("tpm.ak.revoked", f"node {rec.node_id!r} has been revoked")
        elif not ids:
            raise E.Denied("attest.identity.missing", "attestation names no hardware identity")
        elif dead:
            raise E.Denied(
                "attest.identity.revoked", f"{rec.platform} identity {dead[0]} is revoked"
            )

    # -- TPM enrollment -------------------------------------------------------------------
    def enroll_tpm(
        self, *, node_id: str, ek_certificate: bytes, ek_chain: list[bytes], ak_public: bytes
    ) -> EnrollChallenge:
        if not node_id or len(node_id) > 128:
            raise E.Invalid("tpm.enroll.bad_node_id", "node id must be 1..128 characters")
        try:
            info = self.ek.verify(ek_certificate, ek_chain)
            ak = check_ak(ak_public)
        except SealgateError as e:
            self.audit.append("enroll.refused", node_id, {"code": e.code})
            raise E.Denied(e.code, e.message) from None
        assert ak.name is not None
        refusal = self._enroll_refusal(node_id, info.fingerprint, ak.name)
        if refusal is not None:
            self.audit.append("enroll.refused", node_id, refusal[1])
            raise refusal[0]
        secret = os.urandom(ENROLL_SECRET_SIZE)
        cred = make_credential(ek_public_key(info.certificate), ak.name, secret)
        now = int(time.time())
        eid = uuid.uuid4().hex
        enrollment = Enrollment(
            eid,
            node_id,
            info.fingerprint,
            info.root_fingerprint,
            ak_public,
            ak.name,
            hashlib.sha256(secret).digest(),
            now,
            now + self.cfg.enrollment_ttl,
        )
        with self.st.atomic():
            self.st.create_enrollment(enrollment)
            self.audit.append(
                "enroll.challenged",
                node_id,
                {"enrollment_id": eid, "ek": info.fingerprint, "ak_name": ak.name.hex()},
            )
        return EnrollChallenge(
            eid,
            cred.id_object,
            cred.encrypted_secret,
            cred.tpm2_tools_blob(),
            now + self.cfg.enrollment_ttl,
        )

    def _enroll_refusal(
        self, node_id: str, ek_fingerprint: str, ak_name: bytes
    ) -> tuple[E.ServiceError, dict[str, Any]] | None:
        """Why this EK/AK may not (re-)enroll under ``node_id``, with the audit details."""
        ids = tpm_identities(ek_fingerprint, ak_name)
        _mark, revoked = self._revoked("tpm", ids)
        if revoked:
            return E.Denied(
                "tpm.enroll.revoked",
                "this TPM's EK or AK is revoked; an operator must lift the revocation",
            ), {"code": "tpm.enroll.revoked", "revoked": revoked}
        bound = self.st.get_node(node_id)
        if bound is not None and bound.ek_fingerprint != ek_fingerprint:
            # A second genuine TPM must not take over a node id (and its name in the audit
            # log): re-binding needs an operator (ForgetNode).
            return E.AlreadyExists(
                "tpm.enroll.node_id_taken",
                f"node id {node_id!r} is bound to another TPM (EK); an operator must forget "
                "it first",
            ), {
                "code": "tpm.enroll.node_id_taken",
                "ek": ek_fingerprint,
                "bound_ek": bound.ek_fingerprint,
            }
        return None

    def activate_tpm(self, *, enrollment_id: str, secret: bytes) -> Node:
        # The enrollment's single use, the node it makes trusted (or the failed answer) and
        # the audit entry commit together; the refusal is raised after the commit.
        refusal: E.ServiceError | None = None
        with self.st.atomic():
            e = self.st.consume_enrollment(enrollment_id, int(time.time()))
            if e is None:
                wrong = False
            elif not hmac.compare_digest(hashlib.sha256(secret).digest(), e.secret_hash):
                wrong = True
                self.audit.append(
                    "enroll.failed",
                    e.node_id,
                    {"enrollment_id": e.id, "code": "tpm.enroll.wrong_secret"},
                )
            elif (
                found := self._enroll_refusal(e.node_id, e.ek_fingerprint, e.ak_name)
            ) is not None:
                # Checked again here, in the transaction that would bind the node: a
                # revocation or another enrollment may have landed since EnrollTpm.
                refusal = found[0]
                self.audit.append("enroll.refused", e.node_id, {"enrollment_id": e.id, **found[1]})
            else:
                node = Node(
                    e.node_id,
                    "tpm",
                    e.ek_fingerprint,
                    e.ek_ca_fingerprint,
                    e.ak_name,
                    e.ak_public,
                    int(time.time()),
                    False,
                    0,
                )
                self.st.upsert_node(node)
                self.audit.append(
                    "enroll.completed",
                    e.node_id,
                    {"enrollment_id": e.id, "ek": e.ek_fingerprint, "ak_name": e.ak_name.hex()},
                )
                return node
        if refusal is not None:
            raise refusal
        if wrong:
            raise E.Denied(
                "tpm.enroll.wrong_secret",
                "ActivateCredential answer is wrong: the AK is not in that TPM",
            )
        raise E.Precondition(
            "tpm.enroll.unknown", "enrollment unknown, already answered or expired"
        )

    def jwks_json(self) -> str:
        return json.dumps(self.tokens.jwks(), sort_keys=True)

    # -- Admin ----------------------------------------------------------------------------
    # Every change commits in one transaction with its audit entry (Storage.atomic): a crash
    # can lose neither the entry of a change that happened nor invent one that did not.
    def add_reference_values(self, actor: str, values: list[ReferenceValue]) -> None:
        for v in values:
            if v.platform not in ("tpm", "snp", "tdx"):
                raise E.Invalid("admin.refval.bad_platform", f"platform {v.platform!r}")
            if not v.name or not v.set_name:
                raise E.Invalid("admin.refval.incomplete", "reference values need set and name")
            try:
                bytes.fromhex(v.value)
            except ValueError:
                raise E.Invalid("admin.refval.bad_value", f"{v.name}: value is not hex") from None
        try:
            with self.st.atomic():
                self.st.add_reference_values(values)
                self.audit.append(
                    "admin.refval.added",
                    actor,
                    {"ids": [v.id for v in values], "sets": sorted({v.set_name for v in values})},
                )
        except StorageError as e:
            raise E.AlreadyExists(e.code, e.message) from None

    def remove_reference_value(self, actor: str, rv_id: str) -> bool:
        with self.st.atomic():
            ok = self.st.remove_reference_value(rv_id)
            if ok:
                self.audit.append("admin.refval.removed", actor, {"id": rv_id})
        return ok

    def put_policy(self, actor: str, key_id: str, document: str) -> PolicyRecord:
        check_key_id(key_id)
        try:
            canon, policy = canonical(document)
        except UsageError as e:
            raise E.Invalid(e.code, e.message) from None
        entry: dict[str, Any] = {
            "key_id": key_id,
            "revision": 0,
            "sha256": hashlib.sha256(canon.encode()).hexdigest(),
        }
        if policy.any_measurement:
            # An explicit "any measurement" is a decision an auditor must be able to find.
            entry["allow_any_measurement"] = policy.any_measurement
        if policy.model is not None:
            # Who may sign the models this key is released for (changing it re-decides every
            # registered model at the next release).
            entry["model"] = {
                "signers": [s.describe() for s in policy.model.signers],
                "attested_binding": policy.model.attested_binding,
            }
        else:
            entry["model"] = None
        with self.st.atomic():
            rec = self.st.put_policy(key_id, canon, int(time.time()))
            entry["revision"] = rec.revision
            self.audit.append("admin.policy.put", actor, entry)
        return rec

    def delete_policy(self, actor: str, key_id: str) -> bool:
        check_key_id(key_id)
        with self.st.atomic():
            ok = self.st.delete_policy(key_id)
            if ok:
                self.audit.append("admin.policy.deleted", actor, {"key_id": key_id})
        return ok

    def create_key(
        self, actor: str, key_id: str, material: bytes | None, description: str
    ) -> ModelKeyRecord:
        try:
            with self.st.atomic():
                # Checked inside the transaction (it holds the write lock), so no other
                # writer can create the key between the check and the insert.
                if self.keys.get(key_id) is not None:
                    raise E.AlreadyExists("storage.model_key.exists", f"model key {key_id} exists")
                rec = self.keys.create(key_id, material, description, int(time.time()))
                self.audit.append(
                    "admin.key.created",
                    actor,
                    {"key_id": key_id, "imported": material is not None},
                )
        except UsageError as e:
            raise E.Invalid(e.code, e.message) from None
        return rec

    def rotate_key(self, actor: str, key_id: str, material: bytes | None) -> ModelKeyRecord:
        try:
            with self.st.atomic():
                if self.keys.get(key_id) is None:
                    raise E.NotFound("broker.key.not_found", f"no model key {key_id!r}")
                rec = self.keys.rotate(key_id, material, int(time.time()))
                self.audit.append(
                    "admin.key.rotated", actor, {"key_id": key_id, "version": rec.current_version}
                )
        except UsageError as e:
            raise E.Invalid(e.code, e.message) from None
        return rec

    def register_model(
        self, actor: str, key_id: str, version: int, bundle: bytes
    ) -> tuple[ModelRegistration, bool]:
        """Bind a signed model to a key version (0 = current): the bundle must verify (no
        files: the server never sees the model) under the signers of the key's CURRENT
        policy, now. A version already bound to this model is left as it is (False); one
        bound to another model is refused: a new model needs a new key version."""
        check_key_id(key_id)
        if not bundle:
            raise E.Invalid("admin.model.no_signature", "no signature bundle given")
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise E.Invalid(
                "admin.model.signature_too_large", f"signature bundle over {MAX_BUNDLE_BYTES} bytes"
            )
        prec = self.st.get_policy(key_id)
        if prec is None:
            raise E.Precondition(
                "admin.model.no_policy", f"{key_id} has no policy: put one with model.signers first"
            )
        policy = parse_policy(prec.document)
        if policy.model is None:
            raise E.Precondition(
                "admin.model.not_required",
                f"the policy of {key_id} has no model section: a registration would bind "
                "nothing (add model.require_signature and model.signers)",
            )
        try:
            vs = verify_registration(bundle, policy.model.signers)
        except SealgateError as e:
            self.audit.append(
                "admin.model.refused", actor, {"key_id": key_id, "version": version, "code": e.code}
            )
            raise E.Denied(e.code, e.message) from None
        signer = vs.signer.as_dict()
        now = int(time.time())
        try:
            with self.st.atomic():
                key = self.keys.get(key_id)
                if key is None:
                    raise E.NotFound("broker.key.not_found", f"no model key {key_id!r}")
                v = version or key.current_version
                if v not in key.versions:
                    raise E.NotFound(
                        "broker.key.not_found", f"no version {v} of model key {key_id!r}"
                    )
                reg = ModelRegistration(
                    key_id,
                    v,
                    vs.root_digest,
                    vs.hash_algorithm,
                    signer_json(signer),
                    vs.format_version,
                    vs.model_name[:1024],
                    bundle,
                    now,
                    actor,
                )
                stored, new = self.st.add_model_registration(reg)
                if not new and stored.root_digest != reg.root_digest:
                    raise E.AlreadyExists(
                        "admin.model.version_bound",
                        f"{key_id}@{v} is bound to the model with root digest "
                        f"{stored.root_digest.hex()}; rotate the key for a new model",
                    )
                if new:
                    self.audit.append(
                        "admin.model.registered",
                        actor,
                        {
                            "key_id": key_id,
                            "version": v,
                            "root_digest": vs.root_digest.hex(),
                            "hash_algorithm": vs.hash_algorithm,
                            "signer": signer,
                            "format_version": vs.format_version,
                            "bundle_sha256": hashlib.sha256(bundle).hexdigest(),
                        },
                    )
        except StorageUnavailable:
            raise
        except StorageError as e:
            if e.code == "storage.model_key.not_found":
                raise E.NotFound(e.code, e.message) from None
            raise E.Invalid(e.code, e.message) from None
        return stored, new

    def revoke_node(self, actor: str, node_id: str, reason: str = "") -> Node:
        """Revoke a TPM node and, with it, its hardware (EK and AK): it cannot enroll
        again under any node id until an operator lifts the revocation."""
        now = int(time.time())
        with self.st.atomic():
            node = self.st.revoke_node(node_id, now)
            if node is not None:
                ids = tpm_identities(node.ek_fingerprint, node.ak_name)
                for ident in ids:
                    self.st.add_revocation(
                        Revocation(0, "tpm", ident, node_id, reason[:256], now, actor)
                    )
                self.audit.append(
                    "admin.node.revoked", actor, {"node_id": node_id, "identities": ids}
                )
        if node is None:
            raise E.NotFound("admin.node.not_found", f"no node {node_id!r}")
        return node

    def forget_node(self, actor: str, node_id: str) -> Node:
        """Unbind a node id from its TPM so another TPM may enroll under it. Revocations of
        the old TPM stay; its tokens die (ReleaseKey compares the node's EK)."""
        with self.st.atomic():
            node = self.st.delete_node(node_id)
            if node is not None:
                self.audit.append(
                    "admin.node.forgotten",
                    actor,
                    {"node_id": node_id, "ek": node.ek_fingerprint, "ak_name": node.ak_name.hex()},
                )
        if node is None:
            raise E.NotFound("admin.node.not_found", f"no node {node_id!r}")
        return node

    @staticmethod
    def _identity(platform: str, identity: str) -> str:
        try:
            return parse_identity(platform, identity)
        except ValueError as e:
            raise E.Invalid("admin.revocation.bad_identity", str(e)) from None

    def revoke_identity(
        self, actor: str, platform: str, identity: str, reason: str = ""
    ) -> Revocation:
        ident = self._identity(platform, identity)
        with self.st.atomic():
            rev, new = self.st.add_revocation(
                Revocation(0, platform, ident, "", reason[:256], int(time.time()), actor)
            )
            if new:
                self.audit.append(
                    "admin.identity.revoked",
                    actor,
                    {"platform": platform, "identity": ident, "seq": rev.seq, "reason": rev.reason},
                )
        return rev

    def lift_revocation(self, actor: str, platform: str, identity: str) -> Revocation:
        """Let the identity enroll and attest again. Tokens decided before the revocation
        stay dead. A TPM node whose EK and AK are then both clear is un-revoked."""
        ident = self._identity(platform, identity)
        with self.st.atomic():
            rev = self.st.lift_revocation(platform, ident, int(time.time()), actor)
            if rev is not None:
                restored = self._restore_nodes(ident) if platform == "tpm" else []
                self.audit.append(
                    "admin.identity.lifted",
                    actor,
                    {"platform": platform, "identity": ident, "seq": rev.seq, "nodes": restored},
                )
        if rev is None:
            raise E.NotFound(
                "admin.revocation.not_found", f"{platform} identity {ident} is not revoked"
            )
        return rev

    def _restore_nodes(self, ident: str) -> list[str]:
        out = []
        for n in self.st.list_nodes():
            ids = tpm_identities(n.ek_fingerprint, n.ak_name)
            if n.revoked and ident in ids and not self._revoked("tpm", ids)[1]:
                self.st.upsert_node(dataclasses.replace(n, revoked=False, revoked_at=0))
                out.append(n.node_id)
        return out

    def rotate_signing_key(self, actor: str) -> str:
        try:
            with self.st.atomic():
                # The entry first: it serializes rotations on every replica (see rotate).
                kid = self.tokens.rotate(
                    before_insert=lambda k: self.audit.append(
                        "admin.signing_key.rotated", actor, {"kid": k}
                    )
                )
        except BaseException:
            # rotate() loaded the new key inside the transaction; it was rolled back.
            self.tokens.reload()
            raise
        return kid

    def verify_audit(self) -> AuditVerdict:
        """The chain, every entry's MAC, and every stored checkpoint (signature, and that
        the chain holds its head at its size)."""
        return self.audit.verify_anchored(self.checkpoints, self.checkpointer.verifier)

    def checkpoint_key(self) -> str:
        """The checkpoint verifier key (signed-note vkey) auditors keep."""
        return self.checkpointer.verifier.encode()
