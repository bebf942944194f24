"""NVIDIA GPU reports: the published vectors' verdicts and tampered variants.

Verdicts per ../shared/vectors/PROVENANCE.md "NVIDIA GPU confidential computing".
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sealgate import nvgpu, pki
from sealgate.errors import ParseError
from sealgate.nvgpu import MAX_REPORT, REQUEST_LEN

from tests.vectors import shared

NONCE_545 = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
NONCE_550 = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
NONCE_PPCIE = bytes.fromhex("4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e")
FWID_550 = (
    "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f72754"
    "94ba94bb5cdfdb3055ee051762b1f75d"
)
AT = datetime(2026, 12, 1, tzinfo=UTC)


def _read(*parts: str) -> bytes:
    return shared("nvidia-gpu", *parts).read_bytes()


@pytest.fixture(scope="module")
def root() -> bytes:
    return _read("roots", "verifier_device_root.pem")


@pytest.fixture(scope="module")
def verifier(root: bytes) -> nvgpu.GpuVerifier:
    return nvgpu.GpuVerifier(roots=[root])


def _ev550() -> nvgpu.GpuEvidence:
    return nvgpu.GpuEvidence(
        _read("h100-drv550", "hopperAttestationReport.txt"),
        _read("h100-drv550", "hopperCertChain.txt"),
    )


def _ev545() -> nvgpu.GpuEvidence:
    return nvgpu.GpuEvidence(
        _read("h100-drv545-testrims", "attestationReport.txt"),
        _read("h100-drv545-testrims", "gpuAkCertChain.txt"),
    )


def _codes(res: object) -> set[str]:
    return {f.code for f in res.errors}  # type: ignore[attr-defined]


def test_parse_drv550() -> None:
    rep = nvgpu.parse_report(
        nvgpu.decode_report(_read("h100-drv550", "hopperAttestationReport.txt"))
    )
    assert len(nvgpu.decode_report(_read("h100-drv550", "hopperAttestationReport.txt"))) == 4117
    assert rep.request_nonce == NONCE_550
    assert rep.responder_nonce.hex().startswith("b4b8a06a")
    assert rep.slot == 0
    assert len(rep.blocks) == 64
    assert [b.index for b in rep.blocks] == list(range(1, 65))
    assert all(len(b.value) == 48 for b in rep.blocks)
    assert rep.driver_version == "550.90.07"
    assert rep.vbios_version == "96.00.9F.00.01"
    assert (rep.chip_sku, rep.project, rep.project_sku) == ("882", "1010", "0200")
    assert rep.fwid is not None and rep.fwid.hex() == FWID_550
    assert (
        rep.signed == nvgpu.decode_report(_read("h100-drv550", "hopperAttestationReport.txt"))[:-96]
    )


def test_drv550_genuine(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev550(), nonce=NONCE_550, at=AT)
    assert res.verified, res.errors
    c = res.claims
    assert res.platform == "nvidia-gpu"
    assert c["signature_verified"] and c["fwid_checked"] and c["nonce_checked"]
    assert c["fwid"] == c["certificate_fwid"] == FWID_550
    assert c["measurements_compared"] is False and c["rim"]["status"] == "not_compared"
    assert c["revocation"]["checked"] is False
    assert len(c["certificate"]["chain"]) == 5
    assert c["certificate"]["root"] == "NVIDIA Device Identity CA"


def test_drv545_genuine_without_fwid_tlv(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev545(), nonce=NONCE_545, at=AT)
    assert res.verified, res.errors
    assert res.claims["fwid_checked"] is False  # older opaque data: no FWID TLV
    assert res.claims["certificate_fwid"].startswith("80e48f4e")
    assert res.claims["certificate"]["leaf_serial"] == "50948C723FC935C7BD14B7C22833DFBE1DFD1145"
    assert (res.claims["driver_version"], res.claims["vbios_version"]) == (
        "545.00",
        "96.00.5E.00.01",
    )


def test_ppcie_eight_gpus(verifier: nvgpu.GpuVerifier) -> None:
    evs = nvgpu.load_evidence_json(_read("hgx-h100x8-ppcie", "gpu_evidence.json"))
    assert len(evs) == 8 and all(e.nonce == NONCE_PPCIE for e in evs)
    res = nvgpu.verify_devices(evs, nonce=NONCE_PPCIE, at=AT, verifier=verifier)
    assert res.verified, res.errors
    devs = res.claims["devices"]
    assert [d["certificate"]["leaf_serial"][:8] for d in devs] == [
        "72CA2723", "7FB26EF1", "5B967911", "51118F99",
        "58B103C1", "46AA4DC0", "6C6C2C29", "510312EA",
    ]  # fmt: skip
    for d in devs:
        assert d["driver_version"] == "590.12" and d["vbios_version"] == "96.00.A5.00.01"
        assert (d["project"], d["chip_sku"]) == ("G520", "885")
        assert d["fwid"].startswith("956ecf09") and d["fwid_checked"]
        assert len(d["switch_pdis"]) == 18


def test_ppcie_duplicate_device_refused(verifier: nvgpu.GpuVerifier) -> None:
    evs = nvgpu.load_evidence_json(_read("hgx-h100x8-ppcie", "gpu_evidence.json"))
    res = nvgpu.verify_devices(
        [evs[0], evs[1], evs[0]], nonce=NONCE_PPCIE, at=AT, verifier=verifier
    )
    assert _codes(res) == {"gpu.evidence.duplicate_device"}


def test_wrong_nonce(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev550(), nonce=NONCE_545, at=AT)
    assert _codes(res) == {"gpu.report.nonce_mismatch"}
    res = verifier.verify(_ev550(), nonce=NONCE_550[:16], at=AT)
    assert _codes(res) == {"gpu.report.nonce_mismatch"}


def test_no_nonce_is_said(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_ev550(), nonce=None, at=AT)
    assert res.verified and res.claims["nonce_checked"] is False


def _tampered(off: int) -> nvgpu.GpuEvidence:
    ev = _ev550()
    raw = bytearray(nvgpu.decode_report(ev.report))
    raw[off] ^= 0x01
    return nvgpu.GpuEvidence(bytes(raw), ev.cert_chain)


def test_flipped_request_nonce(verifier: nvgpu.GpuVerifier) -> None:
    ev = _tampered(4)
    assert _codes(verifier.verify(ev, nonce=NONCE_550, at=AT)) == {
        "gpu.report.nonce_mismatch",
        "gpu.report.signature_invalid",
    }
    # Even expecting the flipped nonce, the signature does not cover it.
    flipped = bytes([NONCE_550[0] ^ 1]) + NONCE_550[1:]
    assert _codes(verifier.verify(ev, nonce=flipped, at=AT)) == {"gpu.report.signature_invalid"}


def test_flipped_measurement(verifier: nvgpu.GpuVerifier) -> None:
    # Block 1's value starts after request (37), response header (8), block header (4) and
    # the DMTF header (3).
    res = verifier.verify(_tampered(REQUEST_LEN + 8 + 4 + 3 + 5), nonce=NONCE_550, at=AT)
    assert _codes(res) == {"gpu.report.signature_invalid"}


def test_flipped_signature(verifier: nvgpu.GpuVerifier) -> None:
    res = verifier.verify(_tampered(4117 - 10), nonce=NONCE_550, at=AT)
    assert _codes(res) == {"gpu.report.signature_invalid"}


def test_other_devices_chain(verifier: nvgpu.GpuVerifier) -> None:
    ev = nvgpu.GpuEvidence(_ev550().report, _ev545().cert_chain)
    assert _codes(verifier.verify(ev, nonce=NONCE_550, at=AT)) == {
        "gpu.report.signature_invalid",
        "gpu.report.fwid_mismatch",
    }


def test_partial_chain(verifier: nvgpu.GpuVerifier) -> None:
    certs = pki.pem_blocks(_ev550().cert_chain)
    for keep in ([0], [0, 1], [0, 2, 3, 4], [0, 1, 2], [0, 1, 3, 4]):
        pem = b"".join(pki.to_pem(certs[i]) for i in keep)
        res = verifier.verify(nvgpu.GpuEvidence(_ev550().report, pem), nonce=NONCE_550, at=AT)
        assert _codes(res) == {"gpu.chain.untrusted_root"}, keep
    # The root need not be sent: it is the trusted anchor.
    pem = b"".join(pki.to_pem(c) for c in certs[:4])
    res = verifier.verify(nvgpu.GpuEvidence(_ev550().report, pem), nonce=NONCE_550, at=AT)
    assert res.verified


def test_broken_chain_signature(verifier: nvgpu.GpuVerifier) -> None:
    certs = pki.pem_blocks(_ev550().cert_chain)
    bad = bytearray(certs[1])
    bad[-5] ^= 0x01  # inside the BROM certificate's signature value
    pem = pki.to_pem(certs[0]) + pki.to_pem(bytes(bad)) + b"".join(pki.to_pem(c) for c in certs[2:])
    res = verifier.verify(nvgpu.GpuEvidence(_ev550().report, pem), nonce=NONCE_550, at=AT)
    assert _codes(res) == {"gpu.chain.signature_invalid"}


def test_garbage_chain(verifier: nvgpu.GpuVerifier) -> None:
    for pem in (b"", b"not pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        res = verifier.verify(nvgpu.GpuEvidence(_ev550().report, pem), nonce=NONCE_550, at=AT)
        assert _codes(res) <= {"gpu.chain.invalid"} and not res.verified


def _other_root() -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NVIDIA Device Identity CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_wrong_root() -> None:
    v = nvgpu.GpuVerifier(roots=[_other_root()])
    assert _codes(v.verify(_ev550(), nonce=NONCE_550, at=AT)) == {"gpu.chain.untrusted_root"}


def test_trust_dir_pin(tmp_path: Path, root: bytes) -> None:
    d = tmp_path / "nvidia" / "roots"
    d.mkdir(parents=True)
    v = nvgpu.GpuVerifier(trust_dir=tmp_path)
    assert _codes(v.verify(_ev550(), nonce=NONCE_550, at=AT)) == {"gpu.chain.untrusted_root"}
    (d / "other.pem").write_bytes(_other_root())  # not pinned: ignored
    v = nvgpu.GpuVerifier(trust_dir=tmp_path)
    assert _codes(v.verify(_ev550(), nonce=NONCE_550, at=AT)) == {"gpu.chain.untrusted_root"}
    shutil.copyfile(shared("nvidia-gpu", "roots", "verifier_device_root.pem"), d / "nv.pem")
    v = nvgpu.GpuVerifier(trust_dir=tmp_path)
    res = v.verify(_ev550(), nonce=NONCE_550, at=AT)
    assert res.verified and res.claims["certificate"]["root_pinned"] == "nvidia-device-identity-ca"


def test_chain_cache_and_time(verifier: nvgpu.GpuVerifier) -> None:
    a = verifier.verify(_ev550(), nonce=NONCE_550, at=AT)
    b = verifier.verify(_ev550(), nonce=NONCE_550, at=AT)
    assert a.verified and b.verified
    before = datetime(2020, 1, 1, tzinfo=UTC)  # before the Device Identity CA's notBefore
    assert _codes(verifier.verify(_ev550(), nonce=NONCE_550, at=before)) == {
        "gpu.chain.not_yet_valid"
    }


def _raw() -> bytes:
    return nvgpu.decode_report(_read("h100-drv550", "hopperAttestationReport.txt"))


@pytest.mark.parametrize("cut", [0, 1, 36, 37, 40, 45, 100, 3000, 3565, 3600, 4020, 4116])
def test_truncated(cut: int) -> None:
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(_raw()[:cut])
    assert e.value.code == "gpu.format.truncated"


def test_trailing_and_oversized() -> None:
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(_raw() + b"\0")
    assert e.value.code == "gpu.format.trailing_bytes"
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(_raw() + bytes(MAX_REPORT))
    assert e.value.code == "gpu.format.too_large"


def test_header_fields() -> None:
    raw = bytearray(_raw())
    for off, code in (
        (0, "gpu.format.invalid"),
        (1, "gpu.format.invalid"),
        (38, "gpu.format.invalid"),
    ):
        bad = bytearray(raw)
        bad[off] ^= 0xFF
        with pytest.raises(ParseError) as e:
            nvgpu.parse_report(bytes(bad))
        assert e.value.code == code
    bad = bytearray(raw)
    bad[2] = 0  # no signature requested
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(bytes(bad))
    assert e.value.code == "gpu.format.invalid" and e.value.field == "request.param1"
    bad = bytearray(raw)
    bad[REQUEST_LEN + 8 + 1] = 2  # block 1 not in DMTF form
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(bytes(bad))
    assert e.value.code == "gpu.format.unsupported"
    bad = bytearray(raw)
    bad[REQUEST_LEN + 8 + 55] = 1  # block 2 claims index 1 again
    with pytest.raises(ParseError) as e:
        nvgpu.parse_report(bytes(bad))
    assert e.value.code == "gpu.format.invalid"


def test_report_hostile_input_never_raises(verifier: nvgpu.GpuVerifier) -> None:
    raw = _raw()
    for data in (b"", b"zz", raw[:50], raw * 2, bytes(5000)):
        res = verifier.verify(nvgpu.GpuEvidence(data, _ev550().cert_chain), nonce=NONCE_550, at=AT)
        assert not res.verified and all(f.code.startswith("gpu.format.") for f in res.errors)


def test_evidence_json_malformed() -> None:
    many = json.dumps([{"evidence": "", "certificate": ""}] * 17).encode()
    bad: list[bytes] = [b"", b"{}", b"[]", b"[1]", b'[{"evidence": 5}]', b'[{"evidence": "@@"}]']
    for doc in [*bad, b"[" * 100000, many]:
        with pytest.raises(ParseError) as e:
            nvgpu.load_evidence_json(doc)
        assert e.value.code in ("gpu.evidence.invalid", "gpu.evidence.too_large")
    ok = json.dumps(
        [{"evidence": base64.b64encode(b"x").decode(), "certificate": "", "nonce": "zz"}]
    ).encode()
    with pytest.raises(ParseError):
        nvgpu.load_evidence_json(ok)


def test_blocks_match_an_independent_decode() -> None:
    # The parser's fast path (uniform SHA-384 blocks) against a plain walk of DSP0274
    # Tables 46-47.
    raw = _raw()
    off, want = REQUEST_LEN + 8, []
    for _ in range(raw[REQUEST_LEN + 4]):
        size = int.from_bytes(raw[off + 2 : off + 4], "little")
        want.append((raw[off], raw[off + 4], raw[off + 7 : off + 4 + size]))
        off += 4 + size
    got = [(b.index, b.value_type, b.value) for b in nvgpu.parse_report(raw).blocks]
    assert got == want and len(got) == 64


def test_ppcie_topology(verifier: nvgpu.GpuVerifier) -> None:
    evs = nvgpu.load_evidence_json(_read("hgx-h100x8-ppcie", "gpu_evidence.json"))
    res = nvgpu.verify_devices(evs, nonce=NONCE_PPCIE, at=AT, verifier=verifier)
    topo = res.claims["topology"]
    assert topo["ppcie"] is True and topo["switch_count"] == 4
    assert "77e911d843b7533a" in topo["switch_pdis"]
    # One GPU whose switch PDIs differ (a GPU from another board): named, besides the
    # signature it breaks. (An all-zero PDI would be a disabled NVLink, which NVIDIA's
    # PPCIe verifier drops, so the foreign PDI is a non-zero one.)
    raw = bytearray(nvgpu.decode_report(evs[3].report))
    pdi = raw.find(bytes.fromhex("77e911d843b7533a"))
    raw[pdi : pdi + 8] = bytes.fromhex("0102030405060708")
    other = nvgpu.GpuEvidence(bytes(raw), evs[3].cert_chain)
    res = nvgpu.verify_devices([*evs[:3], other], nonce=NONCE_PPCIE, at=AT, verifier=verifier)
    assert _codes(res) == {"gpu.report.signature_invalid", "gpu.topology.mismatch"}


def test_mixed_mode_refused(verifier: nvgpu.GpuVerifier) -> None:
    evs = nvgpu.load_evidence_json(_read("hgx-h100x8-ppcie", "gpu_evidence.json"))
    res = nvgpu.verify_devices([evs[0], _ev550()], nonce=None, at=AT, verifier=verifier)
    assert _codes(res) == {"gpu.topology.mixed_mode"}
    single = nvgpu.verify_devices([_ev550()], nonce=NONCE_550, at=AT, verifier=verifier)
    assert single.verified and single.claims["topology"] == {"ppcie": False}
