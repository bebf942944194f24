"""The Admin servicer: operator calls, each authenticated and authorized first."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from typing import Any

from pydantic import BaseModel, TypeAdapter
from sealgate._proto import admin_pb2, admin_pb2_grpc, common_pb2
from sealgate.broker.keys import check_key_id
from sealgate.documents import STRICT, load_document, validate
from sealgate.protocol import PLATFORM_ENUM, PLATFORM_NAMES
from sealgate.service import errors as E
from sealgate.service.auth import OperatorAuth, Principal
from sealgate.service.core import Verifier
from sealgate.service.metrics import Metrics
from sealgate.service.readiness import Readiness
from sealgate.service.servicer import Ctx, Resp, ServicerBase
from sealgate.storage import ModelRegistration, Node, ReferenceValue, Revocation


def _rv_to_pb(v: ReferenceValue) -> admin_pb2.ReferenceValue:
    return admin_pb2.ReferenceValue(
        id=v.id,
        platform=PLATFORM_ENUM.get(v.platform, common_pb2.PLATFORM_UNSPECIFIED),
        set_name=v.set_name,
        name=v.name,
        value=v.value,
        description=v.description,
        created_at=v.created_at,
    )


def _node_to_pb(n: Node) -> admin_pb2.NodeInfo:
    return admin_pb2.NodeInfo(
        node_id=n.node_id,
        platform=PLATFORM_ENUM.get(n.platform, common_pb2.PLATFORM_UNSPECIFIED),
        ek_fingerprint=n.ek_fingerprint,
        ak_name=n.ak_name,
        enrolled_at=n.enrolled_at,
        revoked=n.revoked,
        revoked_at=n.revoked_at,
    )


def _revocation_to_pb(r: Revocation) -> admin_pb2.Revocation:
    return admin_pb2.Revocation(
        seq=r.seq,
        platform=PLATFORM_ENUM.get(r.platform, common_pb2.PLATFORM_UNSPECIFIED),
        identity=r.identity,
        node_id=r.node_id,
        reason=r.reason,
        revoked_at=r.revoked_at,
        revoked_by=r.revoked_by,
        lifted_at=r.lifted_at,
        lifted_by=r.lifted_by,
    )


def _key_to_pb(k: Any) -> admin_pb2.ModelKeyInfo:
    return admin_pb2.ModelKeyInfo(
        key_id=k.key_id,
        current_version=k.current_version,
        versions=list(k.versions),
        description=k.description,
        created_at=k.created_at,
        rotated_at=k.rotated_at,
    )


def _model_to_pb(r: ModelRegistration, created: bool = False) -> admin_pb2.ModelRegistration:
    return admin_pb2.ModelRegistration(
        key_id=r.key_id,
        key_version=r.version,
        root_digest=r.root_digest,
        hash_algorithm=r.hash_algorithm,
        signer_json=r.signer_json,
        format_version=r.format_version,
        model_name=r.model_name,
        registered_at=r.registered_at,
        registered_by=r.registered_by,
        created=created,
    )


#: A bulk reference-value document: thousands of values fit; the message limit binds first.
MAX_BULK_BYTES = 16 << 20


class _RefValDoc(BaseModel):
    """One reference value of a bulk document."""

    model_config = STRICT
    platform: str
    set_name: str
    name: str
    value: str
    description: str = ""


class _RefSetDoc(BaseModel):
    """A whole set at once: ``{"platform", "set_name", "values": {name: hex}}``."""

    model_config = STRICT
    platform: str
    set_name: str
    values: dict[str, str]
    description: str = ""


_REFVAL_LIST = TypeAdapter(list[_RefValDoc])
_REFVAL_SET = TypeAdapter(_RefSetDoc)


def parse_bulk_reference_values(document: str, now: int) -> list[ReferenceValue]:
    """A list of values, or ``{"platform", "set_name", "values": {name: hex}}`` (JSON/YAML)."""
    doc = load_document(
        document,
        code="admin.refval.bad_document",
        what="reference values",
        max_bytes=MAX_BULK_BYTES,
    )
    items: list[_RefValDoc]
    if isinstance(doc, list):
        items = validate(
            _REFVAL_LIST,
            doc,
            code="admin.refval.bad_document",
            what="reference values",
            error=E.Invalid,
        )
    elif isinstance(doc, dict):
        d = validate(
            _REFVAL_SET, doc, code="admin.refval.bad_document", what="reference values",
            error=E.Invalid,
        )  # fmt: skip
        items = [
            _RefValDoc(
                platform=d.platform,
                set_name=d.set_name,
                name=name,
                value=value,
                description=d.description,
            )
            for name, value in d.values.items()
        ]
    else:
        raise E.Invalid(
            "admin.refval.bad_document", "expected a list or {platform, set_name, values}"
        )
    return [
        ReferenceValue(
            uuid.uuid4().hex, i.platform, i.set_name, i.name, i.value.lower(), i.description, now
        )
        for i in items
    ]


class AdminServicer(ServicerBase, admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        core: Verifier,
        metrics: Metrics,
        pool: futures.Executor,
        auth: OperatorAuth,
        readiness: Readiness | None = None,
    ) -> None:
        super().__init__(core, metrics, pool, readiness)
        self.auth = auth

    async def _admin(
        self,
        method: str,
        context: Ctx,
        fn: Callable[[Principal], Resp],
    ) -> Resp:
        def run() -> Resp:
            md = dict(context.invocation_metadata() or ())
            header = md.get("authorization")
            principal = self.auth.authenticate(header if isinstance(header, str) else None)
            self.auth.authorize(principal, method)
            return fn(principal)

        return await self._run(method, context, run, offload=True)

    @staticmethod
    def _actor(p: Principal) -> str:
        return f"{p.subject}@{p.key_name}"

    async def AddReferenceValue(
        self,
        request: admin_pb2.AddReferenceValueRequest,
        context: Ctx,
    ) -> admin_pb2.ReferenceValue:
        def fn(p: Principal) -> admin_pb2.ReferenceValue:
            v = request.value
            rv = ReferenceValue(
                uuid.uuid4().hex,
                PLATFORM_NAMES.get(v.platform, ""),
                v.set_name,
                v.name,
                v.value.lower(),
                v.description,
                int(time.time()),
            )
            self.core.add_reference_values(self._actor(p), [rv])
            return _rv_to_pb(rv)

        return await self._admin("AddReferenceValue", context, fn)

    async def ListReferenceValues(
        self,
        request: admin_pb2.ListReferenceValuesRequest,
        context: Ctx,
    ) -> admin_pb2.ListReferenceValuesResponse:
        def fn(p: Principal) -> admin_pb2.ListReferenceValuesResponse:
            vals = self.core.st.list_reference_values(
                PLATFORM_NAMES.get(request.platform) or None, request.set_name or None
            )
            return admin_pb2.ListReferenceValuesResponse(values=[_rv_to_pb(v) for v in vals])

        return await self._admin("ListReferenceValues", context, fn)

    async def RemoveReferenceValue(
        self,
        request: admin_pb2.RemoveReferenceValueRequest,
        context: Ctx,
    ) -> admin_pb2.RemoveReferenceValueResponse:
        return await self._admin(
            "RemoveReferenceValue",
            context,
            lambda p: admin_pb2.RemoveReferenceValueResponse(
                removed=self.core.remove_reference_value(self._actor(p), request.id)
            ),
        )

    async def BulkAddReferenceValues(
        self,
        request: admin_pb2.BulkAddReferenceValuesRequest,
        context: Ctx,
    ) -> admin_pb2.ListReferenceValuesResponse:
        def fn(p: Principal) -> admin_pb2.ListReferenceValuesResponse:
            vals = parse_bulk_reference_values(request.document, int(time.time()))
            self.core.add_reference_values(self._actor(p), vals)
            return admin_pb2.ListReferenceValuesResponse(values=[_rv_to_pb(v) for v in vals])

        return await self._admin("BulkAddReferenceValues", context, fn)

    async def PutPolicy(
        self, request: admin_pb2.PutPolicyRequest, context: Ctx
    ) -> admin_pb2.PolicyDocument:
        def fn(p: Principal) -> admin_pb2.PolicyDocument:
            rec = self.core.put_policy(self._actor(p), request.key_id, request.json)
            return admin_pb2.PolicyDocument(
                key_id=rec.key_id,
                json=rec.document,
                revision=rec.revision,
                updated_at=rec.updated_at,
            )

        return await self._admin("PutPolicy", context, fn)

    async def GetPolicy(
        self, request: admin_pb2.GetPolicyRequest, context: Ctx
    ) -> admin_pb2.PolicyDocument:
        def fn(p: Principal) -> admin_pb2.PolicyDocument:
            check_key_id(request.key_id)
            rec = self.core.st.get_policy(request.key_id)
            if rec is None:
                raise E.NotFound("admin.policy.not_found", f"no policy for {request.key_id!r}")
            return admin_pb2.PolicyDocument(
                key_id=rec.key_id,
                json=rec.document,
                revision=rec.revision,
                updated_at=rec.updated_at,
            )

        return await self._admin("GetPolicy", context, fn)

    async def ListPolicies(
        self, request: admin_pb2.ListPoliciesRequest, context: Ctx
    ) -> admin_pb2.ListPoliciesResponse:
        return await self._admin(
            "ListPolicies",
            context,
            lambda p: admin_pb2.ListPoliciesResponse(
                policies=[
                    admin_pb2.PolicyDocument(
                        key_id=r.key_id,
                        json=r.document,
                        revision=r.revision,
                        updated_at=r.updated_at,
                    )
                    for r in self.core.st.list_policies()
                ]
            ),
        )

    async def DeletePolicy(
        self, request: admin_pb2.DeletePolicyRequest, context: Ctx
    ) -> admin_pb2.DeletePolicyResponse:
        return await self._admin(
            "DeletePolicy",
            context,
            lambda p: admin_pb2.DeletePolicyResponse(
                deleted=self.core.delete_policy(self._actor(p), request.key_id)
            ),
        )

    async def ImportModelKey(
        self, request: admin_pb2.ImportModelKeyRequest, context: Ctx
    ) -> admin_pb2.ModelKeyInfo:
        return await self._admin(
            "ImportModelKey",
            context,
            lambda p: _key_to_pb(
                self.core.create_key(
                    self._actor(p), request.key_id, request.key, request.description
                )
            ),
        )

    async def GenerateModelKey(
        self,
        request: admin_pb2.GenerateModelKeyRequest,
        context: Ctx,
    ) -> admin_pb2.ModelKeyInfo:
        return await self._admin(
            "GenerateModelKey",
            context,
            lambda p: _key_to_pb(
                self.core.create_key(self._actor(p), request.key_id, None, request.description)
            ),
        )

    async def RegisterModel(
        self, request: admin_pb2.RegisterModelRequest, context: Ctx
    ) -> admin_pb2.ModelRegistration:
        def fn(p: Principal) -> admin_pb2.ModelRegistration:
            reg, new = self.core.register_model(
                self._actor(p), request.key_id, request.key_version, request.signature
            )
            return _model_to_pb(reg, new)

        return await self._admin("RegisterModel", context, fn)

    async def ListModels(
        self, request: admin_pb2.ListModelsRequest, context: Ctx
    ) -> admin_pb2.ListModelsResponse:
        def fn(p: Principal) -> admin_pb2.ListModelsResponse:
            if request.key_id:
                check_key_id(request.key_id)
            regs = self.core.st.list_model_registrations(request.key_id or None)
            return admin_pb2.ListModelsResponse(models=[_model_to_pb(r) for r in regs])

        return await self._admin("ListModels", context, fn)

    async def RotateModelKey(
        self, request: admin_pb2.RotateModelKeyRequest, context: Ctx
    ) -> admin_pb2.ModelKeyInfo:
        return await self._admin(
            "RotateModelKey",
            context,
            lambda p: _key_to_pb(
                self.core.rotate_key(self._actor(p), request.key_id, request.key or None)
            ),
        )

    async def ListModelKeys(
        self, request: admin_pb2.ListModelKeysRequest, context: Ctx
    ) -> admin_pb2.ListModelKeysResponse:
        return await self._admin(
            "ListModelKeys",
            context,
            lambda p: admin_pb2.ListModelKeysResponse(
                keys=[_key_to_pb(k) for k in self.core.keys.list()]
            ),
        )

    async def ListNodes(
        self, request: admin_pb2.ListNodesRequest, context: Ctx
    ) -> admin_pb2.ListNodesResponse:
        return await self._admin(
            "ListNodes",
            context,
            lambda p: admin_pb2.ListNodesResponse(
                nodes=[_node_to_pb(n) for n in self.core.st.list_nodes()]
            ),
        )

    async def RevokeNode(
        self, request: admin_pb2.RevokeNodeRequest, context: Ctx
    ) -> admin_pb2.NodeInfo:
        return await self._admin(
            "RevokeNode",
            context,
            lambda p: _node_to_pb(
                self.core.revoke_node(self._actor(p), request.node_id, request.reason)
            ),
        )

    async def ForgetNode(
        self, request: admin_pb2.ForgetNodeRequest, context: Ctx
    ) -> admin_pb2.NodeInfo:
        return await self._admin(
            "ForgetNode",
            context,
            lambda p: _node_to_pb(self.core.forget_node(self._actor(p), request.node_id)),
        )

    async def RevokeIdentity(
        self, request: admin_pb2.RevokeIdentityRequest, context: Ctx
    ) -> admin_pb2.Revocation:
        return await self._admin(
            "RevokeIdentity",
            context,
            lambda p: _revocation_to_pb(
                self.core.revoke_identity(
                    self._actor(p),
                    PLATFORM_NAMES.get(request.platform, ""),
                    request.identity,
                    request.reason,
                )
            ),
        )

    async def ListRevocations(
        self, request: admin_pb2.ListRevocationsRequest, context: Ctx
    ) -> admin_pb2.ListRevocationsResponse:
        return await self._admin(
            "ListRevocations",
            context,
            lambda p: admin_pb2.ListRevocationsResponse(
                revocations=[
                    _revocation_to_pb(r)
                    for r in self.core.st.list_revocations(request.include_lifted)
                ]
            ),
        )

    async def LiftRevocation(
        self, request: admin_pb2.LiftRevocationRequest, context: Ctx
    ) -> admin_pb2.Revocation:
        return await self._admin(
            "LiftRevocation",
            context,
            lambda p: _revocation_to_pb(
                self.core.lift_revocation(
                    self._actor(p), PLATFORM_NAMES.get(request.platform, ""), request.identity
                )
            ),
        )

    async def ListAudit(
        self, request: admin_pb2.ListAuditRequest, context: Ctx
    ) -> admin_pb2.ListAuditResponse:
        from sealgate.broker.audit import entry_view

        def fn(p: Principal) -> admin_pb2.ListAuditResponse:
            # A page is at most 1000 entries and about AUDIT_PAGE_BYTES of them (each shown
            # at most about MAX_ENTRY_BYTES): callers page on with after_seq = the last seq.
            limit = min(request.limit or 100, 1000)
            out = []
            for r in self.core.audit.list(request.after_seq, limit):
                d = entry_view(r.entry)
                out.append(
                    admin_pb2.AuditEntry(
                        seq=r.seq,
                        time=int(d["time"]),
                        event=d["event"],
                        actor=d["actor"],
                        details_json=json.dumps(d["details"], sort_keys=True, default=str),
                        hash=r.hash,
                    )
                )
            return admin_pb2.ListAuditResponse(entries=out)

        return await self._admin("ListAudit", context, fn)

    async def VerifyAudit(
        self, request: admin_pb2.VerifyAuditRequest, context: Ctx
    ) -> admin_pb2.VerifyAuditResponse:
        def fn(p: Principal) -> admin_pb2.VerifyAuditResponse:
            v = self.core.verify_audit()
            msg = v.message if v.ok else f"{v.code}: {v.message}"
            return admin_pb2.VerifyAuditResponse(
                ok=v.ok, entries=v.entries, first_bad_seq=v.first_bad_seq, message=msg
            )

        return await self._admin("VerifyAudit", context, fn)

    async def RotateSigningKey(
        self,
        request: admin_pb2.RotateSigningKeyRequest,
        context: Ctx,
    ) -> admin_pb2.RotateSigningKeyResponse:
        def fn(p: Principal) -> admin_pb2.RotateSigningKeyResponse:
            kid = self.core.rotate_signing_key(self._actor(p))
            kids = [k["kid"] for k in self.core.tokens.jwks()["keys"]]
            return admin_pb2.RotateSigningKeyResponse(kid=kid, published_kids=kids)

        return await self._admin("RotateSigningKey", context, fn)
