"""`make demo`: a software TPM node proves its boot state; sealgate verifies it offline.

Starts an isolated swtpm (own ports, state and EK CA), creates an EK and a restricted AK,
extends PCRs as firmware would while writing the matching TCG event log, quotes over a fresh
nonce, and verifies quote + log with sealgate. Then shows two rejections: a replayed quote
(different nonce) and a log that does not match the quote. Stops everything it started.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from sealgate import tpm
from sealgate.testing.eventlog import build_event_log, sample_boot_events
from sealgate.testing.swtpm import Swtpm, tools_available


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def main() -> int:
    if not tools_available():
        print("swtpm/tpm2-tools missing: run `make setup`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sealgate-demo-") as tmp, Swtpm(Path(tmp) / "tpm") as t:
        step(f"software TPM up on {t.tcti} with its own EK CA")
        ek = t.create_ek("rsa")
        ak = t.create_ak(ek, "rsa")
        print(f"    AK name {ak.name.hex()}")
        step("node boots: firmware extends PCRs 0-9 and writes the event log")
        log, _ = t.replay_events(sample_boot_events())
        print(f"    event log: {len(log)} bytes")
        nonce = os.urandom(32)
        step(f"verifier challenge nonce {nonce.hex()}")
        q = t.quote(ak, nonce, "sha256:0,1,2,3,4,5,6,7,8,9")
        step("sealgate verifies the quote, the AK, the nonce and the event-log replay")
        res = tpm.verify_quote(ak.public, q.message, q.signature, eventlog=log, nonce=nonce)
        doc = res.as_dict()
        claims = doc["claims"]
        shown = {
            k: claims[k]
            for k in (
                "nonce",
                "pcr_selection",
                "signature_scheme",
                "hash_alg",
                "ak_restricted",
                "reset_count",
            )
        }
        shown["pcrs"] = {"sha256": {i: claims["pcrs"]["sha256"][i] for i in ("0", "4", "9")}}
        print(
            json.dumps(
                {"verified": doc["verified"], "claims (excerpt)": shown, "errors": doc["errors"]},
                indent=2,
            )
        )
        if not res.verified:
            return 1
        step("a replayed quote against a new challenge is refused")
        res2 = tpm.verify_quote(
            ak.public, q.message, q.signature, eventlog=log, nonce=os.urandom(32)
        )
        print("    " + "; ".join(f"{e.code}" for e in res2.errors))
        step("a log claiming a different kernel command line is refused, naming the PCR")
        evil, _ = build_event_log(
            [*sample_boot_events(), *sample_boot_events(b"other-kernel")[-2:-1]]
        )
        quoted = tpm.load_pcrs(q.pcrs_file)  # the PCR values the node sent with its quote
        res3 = tpm.verify_quote(ak.public, q.message, q.signature, quoted, evil, nonce)
        for e in res3.errors:
            print(f"    {e.code}: {e.message[:96]}...")
        if res2.verified or res3.verified:
            return 1
        step("stopping the software TPM")
    print("demo complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
