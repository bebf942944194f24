"""Admin changes commit in one transaction with their audit entry (docs/audit.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sealgate.broker.audit import AuditLog
from sealgate.service.config import load_config
from sealgate.service.core import Verifier
from sealgate.storage import ReferenceValue
from sealgate.storage.sqlite import SqliteStorage


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Verifier]:
    cfg = load_config(None, data_dir=tmp_path)
    st = SqliteStorage(cfg.db_path)
    yield Verifier(cfg, st)
    st.close()


POLICY = '{"platforms": {"tpm": {"reference_sets": ["g"]}}}'


def _failing_append(*_: object, **__: object) -> None:
    raise OSError("disk full while appending the audit entry")


def _events(core: Verifier) -> list[str]:
    from sealgate.broker.audit import decode_entry

    events = [decode_entry(r.entry)["event"] for r in core.st.list_audit()]
    # The deployment's first start made the first signing key, audited.
    assert events[:1] == ["signing_key.created"]
    return events[1:]


CHANGES: list[tuple[str, Callable[[Verifier], Any], Callable[[Verifier], bool]]] = [
    (
        "admin.refval.added",
        lambda c: c.add_reference_values(
            "op", [ReferenceValue("r1", "tpm", "g", "sha256:0", "00" * 32, "", 1)]
        ),
        lambda c: bool(c.st.list_reference_values()),
    ),
    (
        "admin.policy.put",
        lambda c: c.put_policy("op", "k", POLICY),
        lambda c: c.st.get_policy("k") is not None,
    ),
    (
        "admin.key.created",
        lambda c: c.create_key("op", "k", None, ""),
        lambda c: c.st.get_model_key("k") is not None,
    ),
    (
        "admin.identity.revoked",
        lambda c: c.revoke_identity("op", "snp", "chip_id:" + "ab" * 64, "rma"),
        lambda c: bool(c.st.list_revocations()),
    ),
]


@pytest.mark.parametrize(("event", "change", "visible"), CHANGES, ids=[c[0] for c in CHANGES])
def test_change_is_undone_when_its_audit_entry_fails(
    core: Verifier,
    monkeypatch: pytest.MonkeyPatch,
    event: str,
    change: Callable[[Verifier], Any],
    visible: Callable[[Verifier], bool],
) -> None:
    monkeypatch.setattr(AuditLog, "append", _failing_append)
    with pytest.raises(OSError):
        change(core)
    assert not visible(core), "a change without its audit entry was committed"
    monkeypatch.undo()
    change(core)
    assert visible(core) and _events(core) == [event]


def test_every_admin_change_leaves_one_entry(core: Verifier) -> None:
    core.create_key("op", "k", None, "")
    core.rotate_key("op", "k", None)
    core.put_policy("op", "k", POLICY)
    assert core.delete_policy("op", "k") and not core.delete_policy("op", "k")
    rv = ReferenceValue("r1", "tpm", "g", "sha256:0", "00" * 32, "", 1)
    core.add_reference_values("op", [rv])
    assert core.remove_reference_value("op", "r1")
    kid = core.rotate_signing_key("op")
    assert core.tokens.active_kid == kid
    assert _events(core) == [
        "admin.key.created",
        "admin.key.rotated",
        "admin.policy.put",
        "admin.policy.deleted",
        "admin.refval.added",
        "admin.refval.removed",
        "admin.signing_key.rotated",
    ]
    # Without a checkpoint the head is not anchored, and verification says so.
    assert core.verify_audit().code == "audit.checkpoint.missing"
    assert core.checkpointer.run_once() is not None
    assert core.verify_audit().ok


def test_failed_signing_key_rotation_keeps_the_old_key(
    core: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = core.tokens.active_kid

    monkeypatch.setattr(AuditLog, "append", _failing_append)
    with pytest.raises(OSError):
        core.rotate_signing_key("op")
    assert core.tokens.active_kid == before
    assert [k.kid for k in core.st.list_signing_keys()] == [before]


def test_lift_and_forget_are_undone_when_their_audit_entry_fails(
    core: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealgate.storage import Node

    ident = "ppid:" + "11" * 16
    core.revoke_identity("op", "tdx", ident)
    core.st.upsert_node(
        Node("n", "tpm", "ee" * 32, "ca", b"\x00\x0b" + b"a" * 32, b"p", 1, False, 0)
    )
    monkeypatch.setattr(AuditLog, "append", _failing_append)
    with pytest.raises(OSError):
        core.lift_revocation("admin", "tdx", ident)
    with pytest.raises(OSError):
        core.forget_node("op", "n")
    with pytest.raises(OSError):
        core.revoke_node("op", "n")
    assert [r.identity for r in core.st.list_revocations()] == [ident]
    node = core.st.get_node("n")
    assert node is not None and not node.revoked
    monkeypatch.undo()
    core.revoke_node("op", "n")
    core.lift_revocation("admin", "tdx", ident)
    core.forget_node("op", "n")
    assert _events(core)[1:] == [
        "admin.node.revoked",
        "admin.identity.lifted",
        "admin.node.forgotten",
    ]
    assert core.st.get_node("n") is None


def test_policy_without_measurement_refused_and_explicit_any_audited(core: Verifier) -> None:
    import grpc
    from sealgate.broker.audit import decode_entry
    from sealgate.service.errors import ServiceError
    from sealgate.service.grpc_errors import status_of

    for doc in ('{"platforms": {"snp": {}}}', '{"platforms": {"tdx": {"tcb_statuses": ["x"]}}}'):
        with pytest.raises(ServiceError) as e:
            core.put_policy("op", "k", doc)
        assert status_of(e.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.code == "policy.document.no_measurement"
    assert core.st.get_policy("k") is None and _events(core) == []
    core.put_policy("op", "k", '{"platforms": {"snp": {"allow_any_measurement": true}}}')
    core.put_policy("op", "k", POLICY)
    entries = [decode_entry(r.entry) for r in core.st.list_audit()][1:]
    assert [e["event"] for e in entries] == ["admin.policy.put"] * 2
    assert "snp" in repr(entries[0]) and "allow_any_measurement" in repr(entries[0])
    assert "allow_any_measurement" not in repr(entries[1])


@pytest.mark.parametrize("key_id", ["", "a\n", "-k", "k" * 129, "k y", "k\x00"])
def test_policy_key_ids_validated_like_model_key_ids(core: Verifier, key_id: str) -> None:
    from sealgate.errors import SealgateError

    for change in (
        lambda: core.put_policy("op", key_id, POLICY),
        lambda: core.delete_policy("op", key_id),
        lambda: core.create_key("op", key_id, None, ""),
    ):
        with pytest.raises(SealgateError) as e:
            change()
        assert e.value.code == "broker.key.bad_id"
    assert _events(core) == []
