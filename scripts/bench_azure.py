"""Azure CVM (SNP) verification throughput vs its floor, measured in the same run.

The evidence is what an Azure SNP CVM sends for each challenge: an HCL report whose runtime
data carries a fresh ``user-data`` (so its SHA-256, the SNP report's report_data and the
SNP signature are new every time; a verifier cannot cache any of them), and a vTPM quote
over 24 SHA-256 PCRs with a fresh nonce, signed RSASSA/SHA-256 by the runtime data's
HCLAkPub. Reports are signed by the project's synthetic AMD hierarchy
(``sealgate.testing.snp``), quotes by a software RSA-2048 AK (``sealgate.testing.softtpm``).

Prints evidence verified per second through the public API (``sealgate.azure.AzureVerifier``
reused, so the VCEK chain is cached after the first call) and the floor: one ECDSA
P-384/SHA-384 verify plus one RSASSA-PKCS1-v1_5 RSA-2048/SHA-256 verify, each with the
fastest library reachable from Python (pyca/cryptography or sealgate's Rust backend,
aws-lc-rs, which the verifier uses). Ratio = API time per evidence / floor time (target
<= 1.15).

    .venv/bin/python scripts/bench_azure.py [--seconds 3] [--items 16] [--breakdown]

``--breakdown`` also times the pieces (in the same interleaved batches): the one Rust call
``_core.verify_azure`` alone with the cached VCEK key, the chain-cache look-up, the SNP and
TPM claim dictionaries built alone, ``_core.verify_snp`` / ``_core.verify_tpm_quote``, and
what releasing and re-taking the GIL costs per call.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sealgate import _core, azure
from sealgate.testing.machine import cpu_model
from sealgate.testing.snp import VALID_AT, SyntheticNode
from sealgate.testing.softtpm import SoftAk


def rates(fns: dict[str, Callable[[int], None]], n_items: int, seconds: float) -> dict[str, float]:
    """Calls per second of each fn(i), i cycling through n_items; interleaved short batches,
    this thread's CPU time, the fastest batch (as scripts/bench_snp.py)."""
    best = dict.fromkeys(fns, float("inf"))
    deadline = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < deadline:
        for name, fn in fns.items():
            t0 = time.thread_time()
            for i in range(n_items):
                fn(i)
            best[name] = min(best[name], time.thread_time() - t0)
    return {name: n_items / t for name, t in best.items()}


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hcl_report(snp_report: bytes, runtime: bytes, total: int = 2600) -> bytes:
    """An HCL report as the paravisor writes it (layout: rust/formats/src/azure.rs)."""
    head = b"HCLA" + struct.pack("<IIII", 1, 1236 + len(runtime), 2, 0) + bytes(12)
    req = struct.pack("<IIIII", 20 + len(runtime), 1, 2, 1, len(runtime))
    body = head + snp_report + req + runtime
    return body + bytes(total - len(body))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0, help="time per measured function")
    ap.add_argument("--items", type=int, default=16, help="distinct evidence per batch")
    ap.add_argument("--breakdown", action="store_true", help="also time the pieces")
    args = ap.parse_args()

    node = SyntheticNode.load()
    ak = SoftAk("rsa", bits=2048)
    assert isinstance(ak.key, rsa.RSAPrivateKey)
    nums = ak.key.public_key().public_numbers()
    n = nums.n.to_bytes(256, "big")
    pcrs = {"sha256": {i: hashlib.sha256(bytes([i])).digest() for i in range(24)}}
    selection = [("sha256", list(range(24)))]
    evidence: list[azure.AzureEvidence] = []
    nonces: list[bytes] = []
    for _ in range(args.items):
        runtime = json.dumps(
            {
                "keys": [
                    {
                        "kid": "HCLAkPub",
                        "key_ops": ["sign"],
                        "kty": "RSA",
                        "e": "AQAB",
                        "n": b64u(n),
                    },
                    {
                        "kid": "HCLEkPub",
                        "key_ops": ["encrypt"],
                        "kty": "RSA",
                        "e": "AQAB",
                        "n": b64u(n),
                    },
                ],
                "vm-configuration": {
                    "console-enabled": False,
                    "secure-boot": True,
                    "tpm-enabled": True,
                    "vmUniqueId": "00000000-0000-0000-0000-000000000000",
                },
                "user-data": os.urandom(64).hex(),
            },
            separators=(",", ":"),
        ).encode()
        report = node.report(hashlib.sha256(runtime).digest() + bytes(32))
        nonce = os.urandom(32)
        attest, tpmt_sig = ak.quote(nonce, pcrs, selection)
        evidence.append(
            azure.AzureEvidence(
                hcl_report=hcl_report(report, runtime),
                quote=attest,
                signature=tpmt_sig[6:],  # the raw RSA signature, as the vTPM APIs give it
                pcrs=pcrs,
                vcek=node.vcek_der,
                cert_chain=node.cert_chain,
            )
        )
        nonces.append(nonce)
    verifier = azure.AzureVerifier(snp_roots=[node.ark_pem], trust_dir=Path("/nonexistent/x"))

    def api(i: int) -> None:
        res = verifier.verify(evidence[i], nonce=nonces[i], at=VALID_AT)
        if not res.verified:
            raise SystemExit(f"benchmark evidence rejected: {res.errors}")

    api(0)  # verifies and caches the chain

    # Floor, P-384: the SNP signature over the same reports.
    hcls = [azure.parse_hcl_report(e.hcl_report).hardware_report for e in evidence]
    pub = node.key.public_key()
    signed = [r[:0x2A0] for r in hcls]
    ders = [
        utils.encode_dss_signature(
            int.from_bytes(r[0x2A0:0x2E8], "little"), int.from_bytes(r[0x2E8:0x330], "little")
        )
        for r in hcls
    ]
    alg = ec.ECDSA(hashes.SHA384())
    key = _core.SnpKey.from_sec1(pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    parsed = [_core.SnpReport.parse(r) for r in hcls]

    def p384_pyca(i: int) -> None:
        pub.verify(ders[i], signed[i], alg)

    def p384_rust(i: int) -> None:
        if parsed[i].verify_signature(key) is not None:
            raise SystemExit("rust floor: signature rejected")

    # Floor, RSA-2048: the quote signature.
    rsa_pub = ak.key.public_key()
    msgs = [e.quote or b"" for e in evidence]
    sigs = [e.signature or b"" for e in evidence]
    tpm_key = _core.TpmPublic.from_rsa(n, b"\x01\x00\x01")
    tpmt = [azure.tpmt_signature(s, 256) for s in sigs]

    def rsa_pyca(i: int) -> None:
        rsa_pub.verify(sigs[i], msgs[i], padding.PKCS1v15(), hashes.SHA256())

    def rsa_rust(i: int) -> None:
        if not tpm_key.verify_signature(msgs[i], tpmt[i]):
            raise SystemExit("rust floor: RSA signature rejected")

    fns: dict[str, Callable[[int], None]] = {
        "p384_pyca": p384_pyca,
        "p384_rust": p384_rust,
        "rsa_pyca": rsa_pyca,
        "rsa_rust": rsa_rust,
        "api": api,
    }
    if args.breakdown:
        fns.update(breakdown(verifier, evidence, nonces, hcls, tpm_key, tpmt))
    r = rates(fns, len(evidence), args.seconds)
    p384 = max(
        ("pyca/cryptography", r["p384_pyca"]),
        ("rust/aws-lc-rs", r["p384_rust"]),
        key=lambda x: x[1],
    )
    rsa2k = max(
        ("pyca/cryptography", r["rsa_pyca"]), ("rust/aws-lc-rs", r["rsa_rust"]), key=lambda x: x[1]
    )
    floor_us = 1e6 / p384[1] + 1e6 / rsa2k[1]
    api_us = 1e6 / r["api"]
    print(f"cpu                                   : {cpu_model()}")
    print(f"P-384 verify, pyca/cryptography       : {1e6 / r['p384_pyca']:8.1f} us")
    print(f"P-384 verify, sealgate Rust           : {1e6 / r['p384_rust']:8.1f} us")
    print(f"RSA-2048 verify, pyca/cryptography    : {1e6 / r['rsa_pyca']:8.1f} us")
    print(f"RSA-2048 verify, sealgate Rust        : {1e6 / r['rsa_rust']:8.1f} us")
    print(f"floor (P-384 {p384[0]} + RSA {rsa2k[0]}) : {floor_us:8.1f} us")
    print(f"AzureVerifier.verify, chain cached    : {api_us:8.1f} us  ({r['api']:.0f} /s)")
    print(f"ratio (API time / floor time)         : {api_us / floor_us:8.3f}  (target <= 1.15)")
    if args.breakdown:
        us = {name: 1e6 / rate for name, rate in r.items()}
        print(f"  _core.verify_azure alone            : {us['rust_call']:8.1f} us")
        print(f"  Python around it (API - the call)   : {api_us - us['rust_call']:8.1f} us")
        print(f"  chain-cache look-up (cached_entry)  : {us['lookup']:8.1f} us")
        print(f"  _core.verify_snp (cached key)       : {us['verify_snp']:8.1f} us")
        print(f"  _core.verify_tpm_quote              : {us['verify_tpm']:8.1f} us")
        print(f"  SNP claims dict alone               : {us['snp_claims']:8.1f} us")
        print(f"  TPM claims dict alone               : {us['tpm_claims']:8.1f} us")
        gil = (us["gil_released"] - us["gil_held"]) * 1e3
        print(f"  GIL release + re-take per call      : {gil:8.0f} ns")
    return 0


def breakdown(
    verifier: azure.AzureVerifier,
    evidence: list[azure.AzureEvidence],
    nonces: list[bytes],
    hcls: list[bytes],
    tpm_key: _core.TpmPublic,
    tpmt: list[bytes],
) -> dict[str, Callable[[int], None]]:
    """The pieces of one verification, each a function of the evidence index."""
    ev0 = evidence[0]
    assert ev0.vcek is not None

    def lookup(i: int) -> None:
        assert ev0.vcek is not None
        verifier.snp.cached_entry(
            ev0.vcek,
            cert_chain=ev0.cert_chain,
            roots=verifier.snp_roots,
            at=VALID_AT,
            trust_dir=verifier.trust_dir,
            cache_dir=verifier.cache_dir,
        )

    entry = verifier.snp.cached_entry(
        ev0.vcek,
        cert_chain=ev0.cert_chain,
        roots=verifier.snp_roots,
        at=VALID_AT,
        trust_dir=verifier.trust_dir,
        cache_dir=verifier.cache_dir,
    )
    assert entry is not None, "the chain is not cached"
    key = entry.key

    def rust_call(i: int) -> None:
        e = evidence[i]
        _core.verify_azure(e.hcl_report, key, e.quote, e.signature, e.pcrs, nonces[i])

    def verify_snp(i: int) -> None:
        _core.verify_snp(key, hcls[i])

    msgs = [e.quote or b"" for e in evidence]

    def verify_tpm(i: int) -> None:
        _core.verify_tpm_quote(tpm_key, msgs[i], tpmt[i], evidence[i].pcrs or {}, nonces[i])

    reports = [_core.SnpReport.parse(h) for h in hcls]
    quotes = [
        _core.verify_tpm_quote(tpm_key, msgs[i], tpmt[i], evidence[i].pcrs or {}, nonces[i])
        for i in range(len(evidence))
    ]

    def snp_claims(i: int) -> None:
        reports[i].claims("Milan")

    def tpm_claims(i: int) -> None:
        quotes[i].claims()

    # ctypes releases the GIL around a CDLL call and keeps it for a PyDLL call: the
    # difference between the two is one release and re-take.
    released, held = ctypes.CDLL(None).getppid, ctypes.PyDLL(None).getppid

    def gil_released(i: int) -> None:
        released()

    def gil_held(i: int) -> None:
        held()

    return {
        "rust_call": rust_call,
        "lookup": lookup,
        "verify_snp": verify_snp,
        "verify_tpm": verify_tpm,
        "snp_claims": snp_claims,
        "tpm_claims": tpm_claims,
        "gil_released": gil_released,
        "gil_held": gil_held,
    }


if __name__ == "__main__":
    raise SystemExit(main())
