"""Regenerate vectors/tdx/ (synthetic TDX quotes + collateral from a fake Intel hierarchy).

Deterministic: keys derive from a fixed seed and ECDSA signatures are RFC 6979, so running
this twice gives byte-identical files (``--check`` verifies that the tree is current).
Each file's expected outcome is in vectors/tdx/expected.json and the README.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import Any

from sealgate.testing.tdx import FakeIntel, Platform

OUT = Path(__file__).resolve().parents[1] / "vectors" / "tdx"
RD = bytes(range(64))


def build() -> dict[str, tuple[bytes, dict[str, Any]]]:
    intel = FakeIntel()
    files: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def add(name: str, data: bytes, **expect: Any) -> None:
        files[name] = (data, expect)

    add("roots/fake_intel_root.pem", intel.root_pem, what="fake Intel SGX Root CA (test only)")
    add("collateral/collateral.json", intel.collateral_json(), what="dcap-qvl JSON collateral")
    add("collateral/tcb_info.json", intel.pcs_tcb_info(), what="PCS TCB info body")
    add("collateral/qe_identity.json", intel.pcs_qe_identity(), what="PCS TD_QE identity body")
    add("collateral/tcb_signing_chain.pem", intel.tcb_signing_chain, what="TCB signing chain")
    add("collateral/pck_crl.der", intel.pck_crl(), what="PCK CRL (revokes serial 0xdead)")
    add("collateral/root_crl.der", intel.root_crl(), what="Root CA CRL (empty)")
    other = FakeIntel(seed=b"other-fmspc")
    add(
        "collateral/collateral_other_fmspc.json",
        intel.collateral_json(fmspc=bytes.fromhex("00b06f000000")),
        what="same signer, FMSPC 00B06F000000",
    )
    add("roots/other_root.pem", other.root_pem, what="an unrelated fake root")

    ok = {"verified": True, "tcb_status": "UpToDate", "errors": []}
    add("quotes/v4.bin", intel.quote(RD), **ok)
    add("quotes/v5_tdx10.bin", intel.quote(RD, version=5, body_type=2), **ok)
    add("quotes/v5_tdx15.bin", intel.quote(RD, version=5, body_type=3), **ok)
    add("quotes/v4_trailing.bin", intel.quote(RD, trailing=bytes(70)), trailing_bytes=70, **ok)
    add(
        "quotes/v4_swhardening.bin",
        intel.quote(RD, platform=Platform(pcesvn=10)),
        verified=True,
        tcb_status="SWHardeningNeeded",
        advisory_ids=["INTEL-SA-00615"],
        errors=[],
    )
    add(
        "quotes/v4_outofdate.bin",
        intel.quote(RD, platform=Platform(components=(1,) * 16, pcesvn=10)),
        verified=True,
        tcb_status="OutOfDate",
        advisory_ids=["INTEL-SA-00837", "INTEL-SA-00615"],
        errors=[],
    )
    add(
        "quotes/v4_module_outofdate.bin",
        intel.quote(RD, tee_tcb_svn=bytes([2, 1]) + bytes(14)),
        verified=True,
        tcb_status="OutOfDate",
        advisory_ids=["INTEL-SA-01010"],
        errors=[],
    )
    add(
        "quotes/v4_qe_outofdate.bin",
        intel.quote(RD, qe_isv_svn=2),
        verified=True,
        tcb_status="OutOfDate",
        qe_status="OutOfDate",
        errors=[],
    )
    add(
        "quotes/v4_debug.bin",
        intel.quote(RD, td_attributes=bytes.fromhex("0100001000000000")),
        verified=True,
        debug=True,
        errors=[],
    )
    add(
        "quotes/v4_revoked_tcb.bin",
        intel.quote(RD, platform=Platform(components=(0,) * 16, pcesvn=5)),
        verified=False,
        errors=["tdx.tcb.revoked"],
    )
    add(
        "quotes/v4_no_matching_level.bin",
        intel.quote(RD, platform=Platform(pcesvn=4)),
        verified=False,
        errors=["tdx.tcb.no_matching_level"],
    )
    add(
        "quotes/v4_revoked_pck.bin",
        intel.quote(RD, platform=Platform(serial=0xDEAD)),
        verified=False,
        errors=["tdx.pck.revoked"],
    )
    add(
        "quotes/v4_bad_binding.bin",
        intel.quote(RD, corrupt_binding=True),
        verified=False,
        errors=["tdx.qe.binding_mismatch"],
    )
    add(
        "quotes/v4_other_root.bin",
        other.quote(RD),
        verified=False,
        errors=["tdx.pck.chain_invalid"],
    )

    good = intel.quote(RD)
    bad_sig = bytearray(good)
    bad_sig[48 + 540] ^= 1  # report_data
    add(
        "quotes/v4_body_flipped.bin",
        bytes(bad_sig),
        verified=False,
        errors=["tdx.quote.signature_invalid"],
    )

    # --- malformed: parse errors ---
    sig_at = 48 + 584
    add("malformed/truncated_header.bin", good[:20], errors=["tdx.format.truncated"])
    add("malformed/truncated_sigdata.bin", good[:-100], errors=["tdx.format.truncated"])
    v3 = bytearray(good)
    v3[0] = 3
    add("malformed/version3.bin", bytes(v3), errors=["tdx.format.unsupported"])
    sgx = bytearray(good)
    sgx[4:8] = b"\x00\x00\x00\x00"
    add("malformed/tee_type_sgx.bin", bytes(sgx), errors=["tdx.format.unsupported"])
    huge = bytearray(good)
    huge[sig_at : sig_at + 4] = struct.pack("<I", 0xFFFFFFF0)
    add("malformed/sig_len_huge.bin", bytes(huge), errors=["tdx.format.too_large"])
    v5 = bytearray(intel.quote(RD, version=5, body_type=2))
    v5[50:54] = struct.pack("<I", 648)
    add("malformed/v5_body_size_mismatch.bin", bytes(v5), errors=["tdx.format.invalid"])
    cert5 = bytearray(good)
    cert5[sig_at + 4 + 128 : sig_at + 4 + 130] = struct.pack("<H", 5)
    add("malformed/cert_type5_outer.bin", bytes(cert5), errors=["tdx.format.unsupported"])
    inner_extra = bytearray(good)
    (n,) = struct.unpack_from("<I", inner_extra, sig_at)
    inner_extra[sig_at : sig_at + 4] = struct.pack("<I", n + 1)
    inner_extra += b"\x00"
    add(
        "malformed/sigdata_extra_byte.bin", bytes(inner_extra), errors=["tdx.format.trailing_bytes"]
    )
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if files differ from a rebuild")
    args = ap.parse_args()
    files = build()
    expected = {name: meta for name, (_, meta) in sorted(files.items())}
    files["expected.json"] = ((json.dumps(expected, indent=1, sort_keys=True) + "\n").encode(), {})
    stale = []
    for name, (data, _) in files.items():
        p = OUT / name
        if args.check:
            if not p.is_file() or p.read_bytes() != data:
                stale.append(name)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if stale:
        print("stale vectors: " + ", ".join(stale), file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(files)} files in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
