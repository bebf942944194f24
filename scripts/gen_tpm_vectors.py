"""Regenerate vectors/tpm: swtpm quotes (RSA and ECC AKs) with their event log, and
malformed variants derived from them, each with the code sealgate must answer.

    python scripts/gen_tpm_vectors.py [--out vectors/tpm]

The swtpm keys are random, so regenerating changes the good vectors' bytes; the malformed
cases are derived from them by fixed edits listed in malformed/manifest.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path

from sealgate.testing.eventlog import sample_boot_events
from sealgate.testing.swtpm import Swtpm, tools_available

SELECTION = "sha256:0,1,2,3,4,5,6,7,8,9"
NONCE = bytes(range(32))


def _set(data: bytes, off: int, value: bytes) -> bytes:
    return data[:off] + value + data[off + len(value) :]


def malformed(good: Path) -> list[dict[str, object]]:
    """(file, kind, code, exit) cases derived from one good quote set."""
    q = (good / "quote.msg").read_bytes()
    s = (good / "quote.sig").read_bytes()
    ak = (good / "ak.pub").read_bytes()
    log = (good / "eventlog.bin").read_bytes()
    cases: dict[str, tuple[str, bytes, str]] = {
        "quote-empty.bin": ("quote", b"", "tpm.format.truncated"),
        "quote-truncated.bin": ("quote", q[:-5], "tpm.format.truncated"),
        "quote-trailing.bin": ("quote", q + b"\x00", "tpm.format.trailing_bytes"),
        "quote-bad-magic.bin": ("quote", _set(q, 0, b"\xff\x54\x43\x48"), "tpm.format.invalid"),
        "quote-certify-type.bin": ("quote", _set(q, 4, b"\x80\x17"), "tpm.format.unsupported"),
        "quote-oversized-signer.bin": ("quote", _set(q, 6, b"\xff\xff"), "tpm.format.too_large"),
        "quote-bad-safe.bin": (
            "quote",
            _set(q, 8 + 34 + 2 + 32 + 16, b"\x07"),
            "tpm.format.invalid",
        ),
        "quote-huge.bin": ("quote", q + b"\x00" * 4096, "tpm.format.too_large"),
        "sig-truncated.bin": ("signature", s[:-1], "tpm.format.truncated"),
        "sig-hmac.bin": ("signature", _set(s, 0, b"\x00\x05"), "tpm.format.unsupported"),
        "sig-bad-hash.bin": ("signature", _set(s, 2, b"\x00\x12"), "tpm.format.unsupported"),
        "sig-trailing.bin": ("signature", s + b"\x00\x00", "tpm.format.trailing_bytes"),
        "ak-truncated.bin": ("ak", ak[:40], "tpm.format.truncated"),
        "ak-keyedhash.bin": ("ak", _set(ak, 2, b"\x00\x08"), "tpm.format.unsupported"),
        "ak-not-restricted.bin": (
            "ak",
            _set(ak, 6, struct.pack(">I", 0x00040072)),
            "tpm.ak.not_restricted_signing",
        ),
        "eventlog-truncated.bin": ("eventlog", log[: len(log) - 7], "tpm.format.truncated"),
        "eventlog-oversized-event.bin": (
            "eventlog",
            log
            + struct.pack("<IIIHI", 1, 8, 1, 0x000B, 0)
            + b"\x00" * 28
            + struct.pack("<I", 1 << 30),
            "tpm.format.too_large",
        ),
        "eventlog-undeclared-alg.bin": (
            "eventlog",
            log
            + struct.pack("<III", 1, 8, 1)
            + struct.pack("<H", 0x000C)
            + b"\x11" * 48
            + struct.pack("<I", 0),
            "tpm.format.invalid",
        ),
        "eventlog-bad-pcr-index.bin": (
            "eventlog",
            log
            + struct.pack("<III", 40, 8, 1)
            + struct.pack("<H", 0x000B)
            + b"\x11" * 32
            + struct.pack("<I", 0),
            "tpm.eventlog.invalid_pcr_index",
        ),
    }
    out = good.parent / "malformed"
    out.mkdir(exist_ok=True)
    manifest = []
    for name, (kind, data, code) in cases.items():
        (out / name).write_bytes(data)
        manifest.append({"file": name, "kind": kind, "code": code, "exit": 1})
    return manifest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "vectors" / "tpm"
    )
    args = ap.parse_args()
    if not tools_available():
        print("swtpm/tpm2-tools missing: run `make setup`", file=sys.stderr)
        return 2
    out: Path = args.out
    with tempfile.TemporaryDirectory() as tmp:
        with Swtpm(Path(tmp) / "tpm") as t:
            ek = t.create_ek("rsa")
            log, expected = t.replay_events(sample_boot_events())
            for kind in ("rsa", "ecc"):
                d = out / f"swtpm-{kind}"
                if d.exists():
                    shutil.rmtree(d)
                ak = t.create_ak(ek, kind)
                q = t.quote(ak, NONCE, SELECTION)
                t.write_quote(q, d)
                (d / "ak.pub").write_bytes(ak.public)
                (d / "eventlog.bin").write_bytes(log)
                (d / "nonce.hex").write_text(NONCE.hex() + "\n")
                (d / "expected_pcrs.json").write_text(
                    json.dumps(
                        {
                            b: {str(i): v.hex() for i, v in sorted(m.items())}
                            for b, m in expected.items()
                        },
                        indent=1,
                    )
                    + "\n"
                )
    manifest = malformed(out / "swtpm-rsa")
    (out / "malformed" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
