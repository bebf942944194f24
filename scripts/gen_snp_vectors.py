"""Regenerate ``vectors/sev-snp/``: a synthetic AMD hierarchy and SEV-SNP reports.

Deterministic: every key is derived from a fixed seed (``sealgate.testing.snp``), RSA-PSS
salts and ECDSA nonces are derived too, so running this again produces byte-identical files
(``--check`` verifies that without writing). Takes about a minute (pure-Python RSA-4096
prime searches).

    .venv/bin/python scripts/gen_snp_vectors.py [--out vectors/sev-snp] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from sealgate.pki import to_pem
from sealgate.testing import snp as s

ROOT = Path(__file__).resolve().parents[1]

VLEK_REPORT_DATA = hashlib.sha512(b"sealgate vlek report").digest()
NONCE_REPORT_DATA = hashlib.sha512(b"nonce || runtime key").digest()


def build() -> tuple[dict[str, bytes], dict[str, dict[str, object]], list[tuple[str, str]]]:
    """→ (files, expected claims per report, README rows)."""
    w = s.world()
    files: dict[str, bytes] = {}
    rows: list[tuple[str, str]] = []

    def add(name: str, data: bytes, what: str) -> None:
        files[name] = data
        rows.append((name, what))

    add(
        "ark-milan.pem", to_pem(w.milan.ark_der), "synthetic ARK-Milan (RSA-4096, self-signed, PSS)"
    )
    add("ask-milan.pem", to_pem(w.milan.ask_der), "synthetic ASK SEV-Milan, signed by ARK-Milan")
    assert w.milan.asvk_der is not None
    add("asvk-milan.pem", to_pem(w.milan.asvk_der), "synthetic ASVK SEV-VLEK-Milan")
    add("cert_chain-milan.pem", w.milan.cert_chain_pem(), "KDS cert_chain layout: ASK then ARK")
    add("vlek_cert_chain-milan.pem", w.milan.vlek_chain_pem(), "VLEK chain: ASVK then ARK")
    add("ark-genoa.pem", to_pem(w.genoa.ark_der), "synthetic ARK-Genoa (wrong-product tests)")
    add("cert_chain-genoa.pem", w.genoa.cert_chain_pem(), "Genoa ASK then ARK")
    add("ark-turin.pem", to_pem(w.turin.ark_der), "synthetic ARK-Turin")
    add("cert_chain-turin.pem", w.turin.cert_chain_pem(), "Turin ASK then ARK")
    add(
        "vcek-milan.der", w.vcek.der, "VCEK chip A, Milan TCB bl=4 tee=0 snp=22 ucode=213, serial 0"
    )
    add("vcek-milan-chip-b.der", w.vcek_chip_b.der, "VCEK of another chip (B), same TCB")
    add("vcek-milan-expired.der", w.vcek_expired.der, "VCEK chip A valid 2020..2021 only")
    add("vcek-milan-revoked.der", w.vcek_revoked.der, f"VCEK chip A, serial {s.REVOKED_SERIAL:#x}")
    add("vlek-milan.der", w.vlek.der, "VLEK (no hwID, cspId CN=sealgate-test-csp.example)")
    add(
        "vcek-turin.der",
        w.vcek_turin.der,
        "Turin VCEK: 8-byte hwID, fmcSPL=1 bl=3 tee=2 snp=5 uc=97",
    )
    add("crl-milan.der", w.crl, f"ARK-Milan CRL revoking serial {s.REVOKED_SERIAL:#x}")
    add("crl-milan-ask-revoked.der", w.crl_ask_revoked, "ARK-Milan CRL revoking the ASK")
    add("crl-milan-expired.der", w.crl_expired, "ARK-Milan CRL valid 2021..2022 only")

    expect: dict[str, dict[str, object]] = {}
    base = s.ReportFields()

    def report(name: str, ek: s.Endorsement, f: s.ReportFields, what: str, **kw: object) -> None:
        data = s.build_report(ek, f, **kw)  # type: ignore[arg-type]
        add(name, data, what)
        expect[name] = {
            "version": f.version,
            "measurement": f.measurement.hex(),
            "report_data": f.report_data.hex(),
            "vmpl": f.vmpl,
            "policy": f.policy,
        }

    report("report-v2.bin", w.vcek, replace(base, version=2), "v2, VCEK chip A (Milan)")
    report(
        "report-v3-vlek.bin",
        w.vlek,
        replace(base, version=3, vmpl=1, signing_key=1, report_data=VLEK_REPORT_DATA),
        "v3, VLEK-signed, VMPL 1",
    )
    report(
        "report-v5.bin",
        w.vcek,
        replace(base, report_data=NONCE_REPORT_DATA),
        "v5, VCEK chip A, report_data = SHA-512('nonce || runtime key')",
    )
    report(
        "report-v5-debug.bin",
        w.vcek,
        replace(base, policy=0xB0000, guest_svn=3, host_data=b"\x11" * 32),
        "v5, policy DEBUG allowed, guest_svn 3, host_data 11..",
    )
    report("report-turin-v5.bin", w.vcek_turin, base, "v5 Turin (fam 1Ah): Turin TCB layout")
    report("report-v5-expired-vcek.bin", w.vcek_expired, base, "v5 signed by vcek-milan-expired")
    report("report-v5-revoked-vcek.bin", w.vcek_revoked, base, "v5 signed by vcek-milan-revoked")
    report(
        "report-v5-tcb-mismatch.bin",
        w.vcek,
        base,
        "v5 validly signed by chip A's VCEK but REPORTED_TCB ucode 214 (VCEK says 213)",
        tcb=replace(s.MILAN_TCB, microcode=214),
    )
    # Malformed variants (signature over the unmodified bytes, then damaged).
    good = s.build_report(w.vcek, base)
    add("malformed-truncated.bin", good[:1000], "first 1000 bytes of a v5 report")
    add("malformed-trailing.bin", good + b"\x00", "v5 report plus one byte")
    add("malformed-empty.bin", b"", "empty file")
    add(
        "malformed-v4.bin",
        s.build_report(w.vcek, replace(base, version=4)),
        "version 4 (never emitted): unsupported",
    )
    add(
        "malformed-reserved.bin",
        s.build_report(w.vcek, replace(base, extra={0x1F8 + 0x20: b"\x01"})),
        "v5 with reserved byte 0x218 set (signed)",
    )
    add(
        "malformed-unsigned.bin",
        s.build_report(None, replace(base, signing_key=7), sign=False),
        "SIGNING_KEY = 7 (none), no signature",
    )
    return files, expect, rows


README_HEAD = """# Synthetic SEV-SNP vectors

Generated by `scripts/gen_snp_vectors.py` from fixed seeds (`sealgate.testing.snp`):
regeneration is byte-identical (`--check`). The "AMD" hierarchy is fake and **not pinned**:
verify with `--roots ark-<product>.pem`. Verification time: every file is valid at
2026-06-01T00:00:00Z (VCEK 2025..2032, VLEK 2025..2035, CRLs 2025..2035) except the
"expired" ones. `expected.json` lists the claims each signed report must verify to.

| file | what it is |
|---|---|
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "vectors" / "sev-snp")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk")
    args = ap.parse_args()
    files, expect, rows = build()
    files["expected.json"] = (json.dumps(expect, indent=2, sort_keys=True) + "\n").encode()
    readme = README_HEAD + "".join(f"| `{n}` | {w} |\n" for n, w in rows)
    readme += "| `expected.json` | expected claims per signed report |\n"
    files["README.md"] = readme.encode()
    if args.check:
        bad = [
            n
            for n, d in files.items()
            if not (args.out / n).is_file() or (args.out / n).read_bytes() != d
        ]
        for n in bad:
            print(f"differs: {n}", file=sys.stderr)
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n, d in files.items():
        (args.out / n).write_bytes(d)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
