"""``SnpVerifier.cached_entry``: the steady-state look-up callers use before verifying a
report in their own call into Rust (``_core.verify_azure``). It finds only what
``verify_report`` verified, inside the chain's window, and its memo stays bounded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sealgate import snp
from sealgate.testing.snp import VALID_AT, SyntheticNode


def _lookup(v: snp.SnpVerifier, node: SyntheticNode, tmp: Path, **kw: object) -> object:
    args: dict[str, object] = {
        "cert_chain": node.cert_chain,
        "roots": [node.ark_pem],
        "at": VALID_AT,
        "trust_dir": tmp,
        "cache_dir": None,
    }
    args.update(kw)
    vcek = args.pop("vcek", node.vcek_der)
    assert isinstance(vcek, bytes)
    return v.cached_entry(vcek, **args)  # type: ignore[arg-type]


def test_finds_only_verified_chains_inside_their_window(tmp_path: Path) -> None:
    node = SyntheticNode.load()
    v = snp.SnpVerifier()
    assert _lookup(v, node, tmp_path) is None  # nothing verified yet
    res = v.verify_report(
        node.report(bytes(64)),
        vcek=node.vcek_der,
        cert_chain=node.cert_chain,
        roots=[node.ark_pem],
        at=VALID_AT,
        trust_dir=tmp_path,
    )
    assert res.verified
    entry = _lookup(v, node, tmp_path)
    assert entry is not None
    # The same look-up a second time (from the memo) and with equal, not identical, inputs.
    assert _lookup(v, node, tmp_path) is entry
    assert _lookup(v, node, tmp_path, vcek=bytes(node.vcek_der), trust_dir=Path(tmp_path)) is entry
    # Other inputs are other chains: other roots, another trust directory, no chain.
    assert _lookup(v, node, tmp_path, roots=None) is None
    assert _lookup(v, node, tmp_path, trust_dir=tmp_path / "other") is None
    assert _lookup(v, node, tmp_path, cert_chain=None) is None
    # Outside the chain's validity window the chain must be verified again.
    assert _lookup(v, node, tmp_path, at=VALID_AT + timedelta(days=365 * 40)) is None
    v.clear()
    assert _lookup(v, node, tmp_path) is None


def test_memo_is_bounded_and_refuses_nothing(tmp_path: Path) -> None:
    node = SyntheticNode.load()
    v = snp.SnpVerifier()
    for i in range(snp.KEY_MEMO_SIZE + 40):
        assert _lookup(v, node, tmp_path, vcek=i.to_bytes(4, "big") * 100) is None
        assert len(v._keys) <= snp.KEY_MEMO_SIZE
    # Inputs that do not split (a PEM block that is not one) are not found and not kept.
    before = len(v._keys)
    assert _lookup(v, node, tmp_path, vcek=b"-----BEGIN CERTIFICATE-----\nxx\n") is None
    assert len(v._keys) == before
    big = bytes(snp.KEY_MEMO_BYTES // 4)
    for i in range(8):
        _lookup(v, node, tmp_path, vcek=big + bytes([i]))
        assert v._keys_bytes <= snp.KEY_MEMO_BYTES
