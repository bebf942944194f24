"""Policy RPCs over gRPC: key ids checked like model key ids, empty requirements refused."""

from __future__ import annotations

import grpc
import pytest
from sealgate._proto import admin_pb2
from sealgate.node.agent import error_code

from tests.service.conftest import Env


def _refused(env: Env, call: str, req: object) -> str:
    with pytest.raises(grpc.RpcError) as e:
        getattr(env.admin, call)(req, metadata=env.md)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return error_code(e.value)


def test_policy_rpcs_refuse_bad_key_ids_and_unconstrained_policies(env: Env) -> None:
    good = '{"platforms": {"snp": {"measurement": ["aa"]}}}'
    for kid in ("", "a\n", "-x", "x" * 129, "x" * 100_000):
        assert _refused(env, "PutPolicy", admin_pb2.PutPolicyRequest(key_id=kid, json=good)) == (
            "broker.key.bad_id"
        )
        assert _refused(env, "GetPolicy", admin_pb2.GetPolicyRequest(key_id=kid)) == (
            "broker.key.bad_id"
        )
        assert _refused(env, "DeletePolicy", admin_pb2.DeletePolicyRequest(key_id=kid)) == (
            "broker.key.bad_id"
        )
    for doc in ('{"platforms": {"snp": {}}}', "platforms:\n  tdx: {mr_config_id: [aa]}\n"):
        req = admin_pb2.PutPolicyRequest(key_id="m", json=doc)
        assert _refused(env, "PutPolicy", req) == "policy.document.no_measurement"
    bomb = 'a: &a ["x","x","x"]\nb: [*a,*a,*a]\n'
    req = admin_pb2.PutPolicyRequest(key_id="m", json=bomb)
    assert _refused(env, "PutPolicy", req) == "policy.document.invalid"
    env.admin.PutPolicy(admin_pb2.PutPolicyRequest(key_id="m", json=good), metadata=env.md)
    assert env.admin.GetPolicy(admin_pb2.GetPolicyRequest(key_id="m"), metadata=env.md).revision
