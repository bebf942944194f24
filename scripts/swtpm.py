"""Start an isolated swtpm, make EK/AK, extend PCRs with a synthetic event log, and quote.

    python scripts/swtpm.py OUTDIR [--nonce HEX] [--ak rsa|ecc] [--selection SEL]

Writes quote.msg, quote.sig, quote.pcrs, ak.pub (TPM2B_PUBLIC), ek-cert.der, ca-root.pem,
ca-intermediate.pem and eventlog.bin into OUTDIR, then stops the TPM. The same steps are
available to tests as the `swtpm` pytest fixture (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sealgate.testing.eventlog import sample_boot_events
from sealgate.testing.swtpm import Swtpm, tools_available


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--nonce", default=os.urandom(32).hex())
    ap.add_argument("--ak", choices=["rsa", "ecc"], default="rsa")
    ap.add_argument("--selection", default="sha256:0,1,2,3,4,5,6,7,8,9")
    args = ap.parse_args()
    if not tools_available():
        print("swtpm/tpm2-tools missing: run `make setup`", file=sys.stderr)
        return 2
    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    with Swtpm(out / "tpm") as tpm:
        ek = tpm.create_ek("rsa")
        ak = tpm.create_ak(ek, args.ak)
        log, _ = tpm.replay_events(sample_boot_events())
        q = tpm.quote(ak, bytes.fromhex(args.nonce), args.selection)
        tpm.write_quote(q, out)
        (out / "ak.pub").write_bytes(ak.public)
        (out / "eventlog.bin").write_bytes(log)
        (out / "ek-cert.der").write_bytes(tpm.ek_certificate("rsa"))
        root, inter = tpm.ca_certificates()
        (out / "ca-root.pem").write_bytes(root)
        (out / "ca-intermediate.pem").write_bytes(inter)
    print(f"wrote quote over nonce {args.nonce} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
