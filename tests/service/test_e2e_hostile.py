"""Hostile certificates and CRLs in a node's evidence: a denial with the code over gRPC,
never INTERNAL (the crafted inputs of tests/snp/test_hostile.py and tests/tdx/test_hostile.py
sent by a node)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sealgate._proto import attestation_pb2
from sealgate.node.agent import NodeAgent, NodeResult, explain
from sealgate.pki import pem_blocks, to_pem
from sealgate.testing import hostile
from sealgate.testing.snp import ReportFields, SyntheticNode
from sealgate.testing.softnode import SoftwareSnp, SoftwareTdx

from tests.service.conftest import Env
from tests.tdx.test_hostile import CASES as TDX_CASES
from tests.tdx.test_hostile import _case as tdx_case
from tests.vectors import project


class Tampered:
    """A collector whose evidence is edited after collection, as a hostile node's would be."""

    def __init__(
        self, inner: SoftwareSnp, edit: Callable[[attestation_pb2.SnpEvidence], None]
    ) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.edit = edit

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        ev = self.inner.collect(nonce, binding)
        self.edit(ev.snp)
        return ev


def _codes(res: NodeResult) -> set[str]:
    return {f.code for f in res.evidence_failures} | {
        f.code for d in res.denied for f in d.failures
    }


def _snp_node() -> SoftwareSnp:
    """The synthetic SNP node from the committed vectors (building the synthetic world
    instead runs pure-Python RSA-4096 prime searches: minutes on a busy core)."""
    v = SyntheticNode.load()
    key = v.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SoftwareSnp(
        portable={"vcek_der": v.vcek_der, "vcek_key": key, "kind": "vcek", "product": v.product,
                  "tcb": v.tcb, "chip_id": v.chip_id, "chain_pem": v.cert_chain,
                  "ark_der": pem_blocks(v.ark_pem)[0],
                  "crl": project("sev-snp", "crl-milan.der").read_bytes()}
    )  # fmt: skip


def test_snp_hostile_certificates_are_denied(make_env: Callable[..., Env], tmp_path: Path) -> None:
    node = _snp_node()
    # The verifier's own CRL of the synthetic ARK (the service requires one).
    env = make_env(**node.write_trust(tmp_path))
    env.key("m", b"S" * 32)
    env.policy(
        "m",
        {"platforms": {"snp": {"measurement": [ReportFields().measurement.hex()],
                               "products": ["Milan"]}}},
    )  # fmt: skip
    ask, ark = pem_blocks(node.chain_pem)
    vcek = node.vcek.der

    def set_vcek(der: bytes) -> Callable[[attestation_pb2.SnpEvidence], None]:
        return lambda ev: setattr(ev, "vcek", der)

    def set_chain(der: bytes) -> Callable[[attestation_pb2.SnpEvidence], None]:
        return lambda ev: setattr(ev, "cert_chain", to_pem(der) + to_pem(ark))

    crl = hostile.crl_long_oid(project("sev-snp", "crl-milan.der").read_bytes(), 200_000)
    cases = {
        "vcek integer": set_vcek(hostile.vcek_huge_spl(vcek)),
        "vcek oid arc": set_vcek(hostile.vcek_long_oid_extension(vcek)),
        "ask serial": set_chain(hostile.huge_serial(ask)),
        "ask key algorithm": set_chain(hostile.unknown_key_algorithm(ask)),
        "crl oid": lambda ev: setattr(ev, "crl", crl),
    }
    # The control: the same node unedited is granted the key.
    ok = NodeAgent(env.channel, "cvm-ok", node).attest(["m"])
    assert ok.keys == {"m": (1, b"S" * 32)}, explain(ok)
    for i, (name, edit) in enumerate(cases.items()):
        res = NodeAgent(env.channel, f"cvm-{i}", Tampered(node, edit)).attest(["m"])
        assert not res.keys and not res.token, name
        assert "x509.format.invalid" in _codes(res), (name, explain(res))


def test_tdx_hostile_certificates_are_denied(make_env: Callable[..., Env], tmp_path: Path) -> None:
    roots = tmp_path / "intel-roots"
    roots.mkdir()
    nodes = []
    for i, name in enumerate(["control", *TDX_CASES]):
        if name == "control":
            intel = hostile.HostileIntel(seed=b"hostile-e2e-control")
            collateral, code = intel.collateral_json(), ""
        else:
            intel, collateral, code = tdx_case(name)
        (roots / f"root-{i}.pem").write_bytes(intel.root_pem)
        node = SoftwareTdx(intel)
        node.collateral = collateral
        nodes.append((name, node, code))
    # The hostile hierarchies issue their collateral at a fixed date; the freshness bound
    # is not what this test is about.
    env = make_env(tdx_roots=[roots], tdx_collateral_max_age=3650 * 86400)
    env.key("tdx-model", b"T" * 32)
    env.policy("tdx-model", {"platforms": {"tdx": {
        "mr_td": [(b"\x5a" * 48).hex()], "tcb_statuses": ["UpToDate"]}}})  # fmt: skip
    for i, (name, node, code) in enumerate(nodes):
        res = NodeAgent(env.channel, f"td-{i}", node).attest(["tdx-model"])
        if not code:
            assert res.keys == {"tdx-model": (1, b"T" * 32)}, explain(res)
            continue
        assert not res.keys and not res.token, name
        assert code in _codes(res), (name, explain(res))
