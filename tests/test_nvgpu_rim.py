"""NVIDIA RIMs: the published RIMs verify at their stated times and match/mismatch the
published reports as PROVENANCE states; tampered, untrusted, expired and hostile XML fail
with named codes; RimSource lookup as NVIDIA names RIMs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sealgate import pki
from sealgate.errors import SealgateError
from sealgate.nvgpu import rim
from sealgate.nvgpu.rim import RimSource, compare, parse_rim, require_match
from sealgate.testing.nvgpu_rim import make_hierarchy, make_rim

from tests.vectors import shared

T_OK = datetime(2024, 6, 1, tzinfo=UTC)  # inside every shipped RIM's window
T_LATE = datetime(2026, 1, 1, tzinfo=UTC)  # after every shipped RIM signer expired


def _nv(*parts: str) -> Path:
    return shared("nvidia-gpu", *parts)


def _root() -> list[pki.Certificate]:
    return pki.load_certificates(_nv("roots", "verifier_RIM_root.pem").read_bytes())


def _blocks(report_hex: str) -> dict[int, bytes]:
    """SPDM 1.1 MEASUREMENTS blocks {index: value} (DSP0274 §10.11), for comparing only;
    the full parser is sealgate.nvgpu's. Request 37 B, response header 4 B, count 1 B,
    record length 3 B, then blocks (index, spec, size u16, type, value size u16, value)."""
    b = bytes.fromhex(report_hex.strip())
    off = 37 + 4
    n = b[off]
    length = int.from_bytes(b[off + 1 : off + 4], "little")
    off += 4
    end = off + length
    out: dict[int, bytes] = {}
    for _ in range(n):
        idx, size = b[off], int.from_bytes(b[off + 2 : off + 4], "little")
        vsize = int.from_bytes(b[off + 5 : off + 7], "little")
        out[idx] = b[off + 7 : off + 7 + vsize]
        off += 4 + size
    assert off == end
    return out


def _load(*parts: str, at: datetime | None = T_OK) -> rim.Rim:
    return parse_rim(_nv(*parts).read_bytes(), roots=_root(), at=at)


# -- published RIMs ---------------------------------------------------------------------


def test_every_shipped_rim_verifies_at_its_time() -> None:
    files = sorted(_nv("rims").glob("*.swidtag")) + sorted(
        _nv("h100-drv545-testrims").glob("*.swidtag")
    )
    assert len(files) == 10
    for f in files:
        r = parse_rim(f.read_bytes(), roots=_root(), at=T_OK)
        assert r.signer[0].subject_cn == "HCC RIM L4 Signer"
        assert r.signer[-1].subject_cn == "NVIDIA CoRIM signing Root CA"
        assert r.product == "GH100"
        if f.name.startswith("Driver"):
            assert (r.kind, r.version) == ("driver", "545.00")
            assert r.active_indices == frozenset({7, *range(21, 41)})
        else:
            assert r.kind == "vbios"
            assert r.active_indices == frozenset({*range(0, 7), *range(8, 13)})
            # The file name carries the VBIOS version NVIDIA's way: 96005E0003 = 96.00.5E.00.03.
            hexv = f.name.split("_")[3]
            assert r.version.replace(".", "").upper() == hexv.upper()


def test_window_of_vbios_5e0003() -> None:
    r = _load("rims", "1010_0200_882_96005E0003_PROD.swidtag")
    assert r.not_before == datetime(2023, 9, 6, 8, 28, 52, tzinfo=UTC)
    assert r.not_after == datetime(2025, 9, 5, 8, 28, 52, tzinfo=UTC)


def test_expired_at_t_is_its_own_code() -> None:
    with pytest.raises(SealgateError) as e:
        _load("h100-drv545-testrims", "Driver_RIM_test_no_gpu.swidtag", at=T_LATE)
    assert e.value.code == "gpu.rim.not_valid_at"
    with pytest.raises(SealgateError) as e:
        _load("rims", "1010_0205_862_96005E0002_PROD.swidtag", at=datetime(2023, 1, 1, tzinfo=UTC))
    assert e.value.code == "gpu.rim.not_valid_at"


def test_drv545_test_rims_match_all_33() -> None:
    blocks = _blocks(_nv("h100-drv545-testrims", "attestationReport.txt").read_text())
    assert len(blocks) == 64
    drv = _load("h100-drv545-testrims", "Driver_RIM_test_no_gpu.swidtag")
    vb = _load("h100-drv545-testrims", "1010_0200_882_96005E0001_test_no_gpu.swidtag")
    assert len(drv.active_indices) + len(vb.active_indices) == 33
    assert compare(blocks, drv, vb) == []
    require_match([])


def test_drv545_prod_vbios_mismatches_1_2_3_9() -> None:
    blocks = _blocks(_nv("h100-drv545-testrims", "attestationReport.txt").read_text())
    drv = _load("h100-drv545-testrims", "Driver_RIM_test_no_gpu.swidtag")
    vb = _load("h100-drv545-testrims", "1010_0200_882_96005E0001_PROD.swidtag")
    mm = compare(blocks, drv, vb)
    assert [m.index for m in mm] == [1, 2, 3, 9]
    assert all(m.kind == "vbios" and m.actual == blocks[m.index + 1] for m in mm)
    assert all(m.actual not in m.expected for m in mm)
    with pytest.raises(SealgateError) as e:
        require_match(mm)
    assert e.value.code == "gpu.rim.mismatch"
    assert "vbios[1] actual " + blocks[2].hex() in e.value.message


def test_drv550_has_no_rim() -> None:
    src = RimSource(roots=_root(), dirs=[_nv("rims"), _nv("h100-drv545-testrims")])
    assert src.find("driver", "550.90.07", at=T_OK) is None
    assert src.find("vbios", "96.00.9F.00.01", at=T_OK) is None
    with pytest.raises(SealgateError) as e:
        src.require("vbios", "96.00.9F.00.01", at=T_OK, project="1010", project_sku="0200")
    assert e.value.code == "gpu.rim.not_found"
    # Every shipped VBIOS RIM mismatches the 550 report in at least four indices.
    blocks = _blocks(_nv("h100-drv550", "hopperAttestationReport.txt").read_text())
    drv = _load("h100-drv545-testrims", "Driver_RIM_test_no_gpu.swidtag")
    for f in sorted(_nv("rims").glob("*.swidtag")):
        mm = [m for m in compare(blocks, drv, _load("rims", f.name)) if m.kind == "vbios"]
        assert len(mm) >= 4, f.name


def test_source_finds_by_version_and_sku() -> None:
    src = RimSource(roots=_root(), dirs=[_nv("rims"), _nv("h100-drv545-testrims")])
    r = src.find("vbios", "96.00.5e.00.03", at=T_OK, project="1010", project_sku="0200")
    assert r is not None and r.version == "96.00.5E.00.03"
    assert src.find("vbios", "96.00.5E.00.03", at=T_OK, project_sku="0205") is None
    d = src.find("driver", "545.00", at=T_OK)
    assert d is not None and d.kind == "driver"
    with pytest.raises(SealgateError) as e:
        src.find("driver", "545.00", at=T_LATE)
    assert e.value.code == "gpu.rim.not_valid_at"
    assert src.errors() == []


def test_wrong_root() -> None:
    dev_root = pki.load_certificates(_nv("roots", "verifier_device_root.pem").read_bytes())
    with pytest.raises(SealgateError) as e:
        parse_rim(
            _nv("rims", "1010_0205_862_96005E0004_PROD.swidtag").read_bytes(),
            roots=dev_root,
            at=T_OK,
        )
    assert e.value.code == "gpu.rim.untrusted"
    with pytest.raises(SealgateError) as e:
        parse_rim(
            _nv("rims", "1010_0205_862_96005E0004_PROD.swidtag").read_bytes(), roots=[], at=T_OK
        )
    assert e.value.code == "gpu.rim.untrusted"


def test_tampered_shipped_rim() -> None:
    xml = _nv("h100-drv545-testrims", "1010_0200_882_96005E0001_PROD.swidtag").read_bytes()
    # An edited measurement: the reference digest no longer matches.
    i = xml.index(b'index="1" active="True"')
    j = xml.index(b'Hash0="', i) + len(b'Hash0="')
    flip = b"0" if xml[j : j + 1] != b"0" else b"1"
    bad = xml[:j] + flip + xml[j + 1 :]
    with pytest.raises(SealgateError) as e:
        parse_rim(bad, roots=_root(), at=T_OK)
    assert e.value.code == "gpu.rim.signature_invalid"
    # An edited DigestValue: the SignedInfo signature no longer verifies.
    k = xml.index(b"<ds:DigestValue>") + len(b"<ds:DigestValue>")
    flip = b"A" if xml[k : k + 1] != b"A" else b"B"
    with pytest.raises(SealgateError) as e:
        parse_rim(xml[:k] + flip + xml[k + 1 :], roots=_root(), at=T_OK)
    assert e.value.code == "gpu.rim.signature_invalid"
    # Deactivating a measurement is an edit too.
    with pytest.raises(SealgateError) as e:
        parse_rim(
            xml.replace(b'index="9" active="True"', b'index="9" active="False"'),
            roots=_root(),
            at=T_OK,
        )
    assert e.value.code == "gpu.rim.signature_invalid"


# -- synthetic RIMs -----------------------------------------------------------------------


def _pair(seed: str = "t") -> tuple[rim.Rim, rim.Rim, dict[int, bytes]]:
    h = make_hierarchy(seed)
    vals = {i: bytes([i]) * 48 for i in range(1, 65)}
    vb = make_rim(
        h,
        kind="vbios",
        version="96.00.9F.00.01",
        measurements={i: (True, [b"\xee" * 48, vals[i + 1]]) for i in (0, 1, 2, 8)},
    )
    drv = make_rim(
        h,
        kind="driver",
        version="550.90.07",
        measurements={7: (True, [vals[8]]), 21: (True, [vals[22]])},
    )
    at = datetime(2024, 6, 1, tzinfo=UTC)
    return (
        parse_rim(drv, roots=[h.root_cert], at=at),
        parse_rim(vb, roots=[h.root_cert], at=at),
        vals,
    )


def test_synthetic_match_alternatives_and_mismatch() -> None:
    drv, vb, vals = _pair()
    assert compare(vals, drv, vb) == []
    vals2 = dict(vals)
    vals2[9] = b"\x99" * 48  # RIM index 8
    del vals2[22]  # RIM index 21: block absent
    mm = compare(vals2, drv, vb)
    assert [(m.index, m.kind) for m in mm] == [(8, "vbios"), (21, "driver")]
    assert mm[0].actual == b"\x99" * 48 and mm[0].expected == (b"\xee" * 48, vals[9])
    assert mm[1].actual is None
    assert mm[1].as_dict()["actual"] is None
    with pytest.raises(SealgateError) as e:
        compare(vals, vb, drv)
    assert e.value.code == "gpu.rim.wrong_kind"


def test_synthetic_overlap_is_named() -> None:
    h = make_hierarchy("ov")
    vals = {i: bytes([i]) * 48 for i in range(1, 65)}
    at = datetime(2024, 6, 1, tzinfo=UTC)
    vb = parse_rim(
        make_rim(h, kind="vbios", version="96.00.01.00.01", measurements={7: (True, [vals[8]])}),
        roots=[h.root_cert],
        at=at,
    )
    drv = parse_rim(
        make_rim(h, kind="driver", version="1.0", measurements={7: (True, [vals[8]])}),
        roots=[h.root_cert],
        at=at,
    )
    with pytest.raises(SealgateError) as e:
        compare(vals, drv, vb)
    assert e.value.code == "gpu.rim.index_overlap"


def test_synthetic_other_hierarchy_untrusted_and_expiry() -> None:
    h1, h2 = make_hierarchy("a"), make_hierarchy("b")
    x = make_rim(h1, kind="driver", version="1.0", measurements={7: (True, [bytes(48)])})
    with pytest.raises(SealgateError) as e:
        parse_rim(x, roots=[h2.root_cert], at=None)
    assert e.value.code == "gpu.rim.untrusted"
    with pytest.raises(SealgateError) as e:
        parse_rim(x, roots=[h1.root_cert], at=datetime(2030, 1, 1, tzinfo=UTC))
    assert e.value.code == "gpu.rim.not_valid_at"


def test_blobs_source() -> None:
    h = make_hierarchy("blob")
    x = make_rim(h, kind="driver", version="560.1", measurements={7: (True, [bytes(48)])})
    src = RimSource(roots=[h.root_cert], blobs=[("evidence", x), ("junk", b"<x/>")])
    assert src.find("driver", "560.1") is not None
    assert [(n, e.code) for n, e in src.errors()] == [("junk", "gpu.rim.malformed")]


# -- hostile XML ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        (b"", "gpu.rim.malformed"),
        (b"<a", "gpu.rim.malformed"),
        (b"<a/>", "gpu.rim.malformed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;'
            b'&a;&a;&a;&a;&a;&a;">]><l>&b;</l>',
            "gpu.rim.malformed",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
            "gpu.rim.malformed",
        ),
        (b"<a>" * 40 + b"</a>" * 40, "gpu.rim.malformed"),
        (b"<a>" + b" " * (rim.MAX_RIM_BYTES + 1) + b"</a>", "gpu.rim.too_large"),
        (
            b'<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd"/>',
            "gpu.rim.no_signer",
        ),
    ],
)
def test_hostile_xml(xml: bytes, code: str) -> None:
    h = make_hierarchy("hostile")
    t0 = time.monotonic()
    with pytest.raises(SealgateError) as e:
        parse_rim(xml, roots=[h.root_cert], at=None)
    assert e.value.code == code
    assert time.monotonic() - t0 < 2


def test_bomb_in_signed_rim_refused() -> None:
    h = make_hierarchy("bomb")
    x = make_rim(h, kind="driver", version="1.0", measurements={7: (True, [bytes(48)])})
    head, _, body = x.partition(b"?>")
    bomb = head + b'?><!DOCTYPE s [<!ENTITY z "zz">]>' + body
    with pytest.raises(SealgateError) as e:
        parse_rim(bomb, roots=[h.root_cert], at=None)
    assert e.value.code == "gpu.rim.malformed"


def test_vbios_version_text() -> None:
    assert rim.vbios_version_text(bytes.fromhex("005e009601000000")) == "96.00.5E.00.01"
