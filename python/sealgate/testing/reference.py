"""A small pure-Python reference for TPM quote checks and event-log replay.

Written independently of the Rust core (struct + hashlib + pyca/cryptography) so tests can
use it as an oracle and the benchmark (scripts/bench_tpm.py) as its baseline. It is deliberately
straightforward, not fast, and does no more validation than the comparison needs.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HASH_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
CRYPTO_HASH: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - TPM SHA-1 banks are verified, then flagged weak
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
PcrMap = dict[str, dict[int, bytes]]


def replay(log: bytes) -> PcrMap:
    """Replay a TCG event log (legacy SHA-1 or crypto-agile) into {bank: {pcr: value}}."""
    off = 0
    pcr, etype = struct.unpack_from("<II", log, off)
    off += 8 + 20
    (size,) = struct.unpack_from("<I", log, off)
    off += 4
    first = log[off : off + size]
    off += size
    sizes: dict[int, int] = {}
    agile = etype == 3 and first[:16] == b"Spec ID Event03\x00"
    if agile:
        (n,) = struct.unpack_from("<I", first, 24)
        for i in range(n):
            alg, dsize = struct.unpack_from("<HH", first, 28 + 4 * i)
            sizes[alg] = dsize
    banks = [HASH_NAMES[a] for a in sizes if a in HASH_NAMES] if agile else ["sha1"]
    locality: int | None = None
    pcrs: PcrMap = {b: {} for b in banks}
    events: list[tuple[int, int, dict[str, bytes], bytes]] = []
    if not agile:
        events.append((pcr, etype, {"sha1": log[8:28]}, first))
    while off < len(log):
        rest = log[off:]
        if rest.count(0) == len(rest) or rest.count(0xFF) == len(rest):
            break
        pcr, etype = struct.unpack_from("<II", log, off)
        off += 8
        digests: dict[str, bytes] = {}
        if agile:
            (count,) = struct.unpack_from("<I", log, off)
            off += 4
            for _ in range(count):
                (alg,) = struct.unpack_from("<H", log, off)
                off += 2
                dsize = sizes[alg]
                if alg in HASH_NAMES:
                    digests[HASH_NAMES[alg]] = log[off : off + dsize]
                off += dsize
        else:
            digests["sha1"] = log[off : off + 20]
            off += 20
        (size,) = struct.unpack_from("<I", log, off)
        off += 4
        data = log[off : off + size]
        off += size
        events.append((pcr, etype, digests, data))
    for pcr, etype, _, data in events:
        if etype == 3 and pcr == 0 and data[:16] == b"StartupLocality\x00":
            locality = data[16]
    for pcr, etype, digests, _ in events:
        if etype == 3 or pcr == 0xFFFFFFFF:
            continue
        for b in banks:
            size = hashlib.new(b).digest_size
            init = b"\x00" * size
            if pcr == 0 and locality is not None:
                init = b"\x00" * (size - 1) + bytes([locality])
            cur = pcrs[b].get(pcr, init)
            pcrs[b][pcr] = hashlib.new(b, cur + digests[b]).digest()
    return {b: v for b, v in pcrs.items() if v}


def _tpm2b(buf: bytes, off: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from(">H", buf, off)
    return buf[off + 2 : off + 2 + n], off + 2 + n


def parse_quote(msg: bytes) -> tuple[bytes, list[tuple[str, list[int]]], bytes]:
    """(extraData, selection, pcrDigest) of a TPMS_ATTEST quote."""
    magic, typ = struct.unpack_from(">IH", msg, 0)
    if magic != 0xFF544347 or typ != 0x8018:
        raise ValueError("not a quote")
    _, off = _tpm2b(msg, 6)
    extra, off = _tpm2b(msg, off)
    off += 17 + 8
    (count,) = struct.unpack_from(">I", msg, off)
    off += 4
    sel: list[tuple[str, list[int]]] = []
    for _ in range(count):
        alg, n = struct.unpack_from(">HB", msg, off)
        bitmap = msg[off + 3 : off + 3 + n]
        off += 3 + n
        idx = [i * 8 + b for i, byte in enumerate(bitmap) for b in range(8) if byte >> b & 1]
        sel.append((HASH_NAMES[alg], idx))
    digest, off = _tpm2b(msg, off)
    return extra, sel, digest


def verify_quote(
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    msg: bytes,
    sig: bytes,
    pcrs: PcrMap,
    nonce: bytes | None,
) -> bool:
    """Signature, nonce and pcrDigest — the same checks as the Rust core, in Python."""
    alg, halg = struct.unpack_from(">HH", sig, 0)
    hname = HASH_NAMES[halg]
    h = CRYPTO_HASH[hname]
    try:
        if alg in (0x0014, 0x0016):
            s, _ = _tpm2b(sig, 4)
            assert isinstance(key, rsa.RSAPublicKey)
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg == 0x0014
                else padding.PSS(padding.MGF1(h), padding.PSS.AUTO)
            )
            key.verify(s, msg, pad, h)
        elif alg == 0x0018:
            r, off = _tpm2b(sig, 4)
            s, _ = _tpm2b(sig, off)
            assert isinstance(key, ec.EllipticCurvePublicKey)
            der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            key.verify(der, msg, ec.ECDSA(h))
        else:
            return False
    except InvalidSignature:
        return False
    extra, sel, digest = parse_quote(msg)
    if nonce is not None and extra != nonce:
        return False
    hh = hashlib.new(hname)
    for bank, idx in sel:
        for i in idx:
            hh.update(pcrs[bank][i])
    return hh.digest() == digest
