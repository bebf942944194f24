from __future__ import annotations

import json
from pathlib import Path

import pytest
from sealgate.cli import main
from sealgate.errors import ChainError
from sealgate.pki import load_certificates
from sealgate.trust import TrustStore, import_file, pin_for, pins

from tests.httpserver import serve_dir
from tests.vectors import shared

BUNDLES = ("sev-snp", "roots", "go-sev-guest-kds-bundles")


def test_pins_are_well_formed() -> None:
    assert {p.name for p in pins("snp")} == {"ark-milan", "ark-genoa", "ark-turin"}
    for p in pins("snp"):
        assert len(bytes.fromhex(p.sha256)) == 32
        assert pin_for(p.sha256.upper()) == p


def test_import_bundle_stores_root_and_intermediate(tmp_path: Path) -> None:
    out = import_file(shared(*BUNDLES, "ask_ark_milan.pem"), tmp_path)
    assert sorted((i.kind, i.name) for i in out) == [
        ("intermediate", "sev-milan"),
        ("root", "ark-milan"),
    ]
    store = TrustStore(tmp_path)
    assert [c.subject_cn for c in store.roots("snp")] == ["ARK-Milan"]
    assert [c.subject_cn for c in store.intermediates("snp")] == ["SEV-Milan"]


def test_intermediate_alone_needs_a_stored_pinned_root(tmp_path: Path) -> None:
    ask = shared("sev-snp", "roots", "virtee-builtin", "genoa_ask.pem")
    with pytest.raises(ChainError) as e:
        import_file(ask, tmp_path)
    assert e.value.code == "trust.import.unpinned"
    import_file(shared("sev-snp", "roots", "virtee-builtin", "genoa_ark.pem"), tmp_path)
    assert [i.name for i in import_file(ask, tmp_path)] == ["sev-genoa"]


def test_unpinned_file_is_rejected_and_swapped_root_ignored(tmp_path: Path) -> None:
    vcek = shared("sev-snp", "gsg-milan-v2", "vcek.der")
    with pytest.raises(ChainError):
        import_file(vcek, tmp_path)
    # A file planted in roots/ that is not pinned is never loaded as a root.
    d = tmp_path / "snp" / "roots"
    d.mkdir(parents=True)
    ask_pem = shared("sev-snp", "roots", "virtee-builtin", "milan_ask.pem").read_bytes()
    (d / "ark-milan.pem").write_bytes(ask_pem)
    assert TrustStore(tmp_path).roots("snp") == []


def test_cli_trust_fetch_snp_from_local_kds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kds = tmp_path / "kds"
    names = {"Milan": "milan", "Genoa": "genoa", "Turin": "turin_vcek"}
    for product, stem in names.items():
        vlek = "turin_vlek" if product == "Turin" else f"{stem}_vlek"
        for key, f in (("vcek", stem), ("vlek", vlek)):
            d = kds / key / "v1" / product
            d.mkdir(parents=True)
            (d / "cert_chain").write_bytes(shared(*BUNDLES, f"ask_ark_{f}.pem").read_bytes())
    trust_dir = tmp_path / "trust"
    with serve_dir(kds) as s:
        rc = main(
            ["trust", "fetch", "snp", "--base-url", s.base_url, "--trust-dir", str(trust_dir)]
        )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert {i["name"] for i in doc["imported"] if i["kind"] == "root"} == {
        "ark-milan",
        "ark-genoa",
        "ark-turin",
    }
    assert len(s.requests) == 6
    store = TrustStore(trust_dir)
    assert len(store.roots("snp")) == 3
    assert {c.subject_cn for c in store.intermediates("snp")} == {
        "SEV-Milan",
        "SEV-Genoa",
        "SEV-Turin",
        "SEV-VLEK-Milan",
        "SEV-VLEK-Genoa",
        "SEV-VLEK-Turin",
    }


def test_cli_trust_fetch_rejects_a_substituted_root(tmp_path: Path) -> None:
    kds = tmp_path / "kds" / "vcek" / "v1" / "Milan"
    kds.mkdir(parents=True)
    # A chain without its pinned ARK (and none stored yet) is refused as a whole.
    ask = load_certificates(shared(*BUNDLES, "ask_ark_milan.pem").read_bytes())[0]
    from sealgate.pki import to_pem

    (kds / "cert_chain").write_bytes(to_pem(ask.der))
    with serve_dir(tmp_path / "kds") as s:
        rc = main(
            [
                "trust",
                "fetch",
                "snp",
                "--base-url",
                s.base_url,
                "--product",
                "Milan",
                "--no-vlek",
                "--trust-dir",
                str(tmp_path / "t"),
            ]
        )
    assert rc == 1
    assert not (tmp_path / "t" / "snp").exists()


def test_cli_trust_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = shared(*BUNDLES, "ask_ark_turin_vcek.pem")
    assert main(["trust", "import", str(f), "--trust-dir", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {i["name"] for i in doc["imported"]} == {"ark-turin", "sev-turin"}
    vcek = shared("sev-snp", "gsg-milan-v2", "vcek.der")
    assert main(["trust", "import", str(vcek), "--trust-dir", str(tmp_path)]) == 1
    assert main(["trust", "import", "/nonexistent", "--trust-dir", str(tmp_path)]) == 2
