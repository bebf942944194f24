"""A software attestation key that produces TPM-shaped quotes (TPMT_PUBLIC, TPMS_ATTEST,
TPMT_SIGNATURE) without a TPM, for benchmarks, load tests and the scheme matrix where
swtpm's one-client socket or fixed key choices would be limiting. Same wire formats as a
real TPM (TPM 2.0 Part 2); never used by the verifier itself.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALG = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
SCHEME = {"rsassa": 0x0014, "rsapss": 0x0016, "ecdsa": 0x0018}
CURVES: dict[str, tuple[ec.EllipticCurve, int, int]] = {
    "P-256": (ec.SECP256R1(), 0x0003, 32),
    "P-384": (ec.SECP384R1(), 0x0004, 48),
}
HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - TPMs may sign with SHA-1; sealgate flags it weak
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
#: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign
AK_ATTRIBUTES = 0x00050072


class SoftAk:
    """An AK: RSA (2048-4096 bits, RSASSA or RSAPSS) or ECC (P-256/P-384, ECDSA), any hash."""

    def __init__(
        self,
        kind: str = "rsa",
        *,
        scheme: str | None = None,
        hash_alg: str = "sha256",
        bits: int = 2048,
        curve: str = "P-256",
        attributes: int = AK_ATTRIBUTES,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        self.kind = kind
        self.scheme = scheme or ("rsassa" if kind == "rsa" else "ecdsa")
        self.hash_alg = hash_alg
        head = struct.pack(">H", 0x0001 if kind == "rsa" else 0x0023)
        head += struct.pack(">HIH", 0x000B, attributes, 0)
        sch = struct.pack(">HHH", 0x0010, SCHEME[self.scheme], ALG[hash_alg])
        self.key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if kind == "rsa":
            self.key = (
                key if isinstance(key, rsa.RSAPrivateKey) else rsa.generate_private_key(65537, bits)
            )
            bits = self.key.key_size
            n = self.key.public_key().public_numbers().n.to_bytes(bits // 8, "big")
            self.public_area = (
                head + sch + struct.pack(">HI", bits, 0) + struct.pack(">H", len(n)) + n
            )
        else:
            crv, cid, size = CURVES[curve]
            self.key = (
                key if isinstance(key, ec.EllipticCurvePrivateKey) else ec.generate_private_key(crv)
            )
            nums = self.key.public_key().public_numbers()
            x, y = nums.x.to_bytes(size, "big"), nums.y.to_bytes(size, "big")
            self.public_area = (
                head
                + sch
                + struct.pack(">HH", cid, 0x0010)
                + struct.pack(">H", size)
                + x
                + struct.pack(">H", size)
                + y
            )
        self.name = struct.pack(">H", 0x000B) + hashlib.sha256(self.public_area).digest()
        self.clock = 1000

    @property
    def tpm2b_public(self) -> bytes:
        return struct.pack(">H", len(self.public_area)) + self.public_area

    def sign(self, message: bytes) -> bytes:
        """TPMT_SIGNATURE over `message` with this AK's scheme and hash."""
        h = HASHES[self.hash_alg]
        head = struct.pack(">HH", SCHEME[self.scheme], ALG[self.hash_alg])
        if isinstance(self.key, rsa.RSAPrivateKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if self.scheme == "rsassa"
                # TPM 2.0 Part 1 §B.7: PSS salt length = digest length.
                else padding.PSS(padding.MGF1(h), h.digest_size)
            )
            s = self.key.sign(message, pad, h)
            return head + struct.pack(">H", len(s)) + s
        size = (self.key.curve.key_size + 7) // 8
        r, ss = decode_dss_signature(self.key.sign(message, ec.ECDSA(h)))
        return (
            head
            + struct.pack(">H", size)
            + r.to_bytes(size, "big")
            + struct.pack(">H", size)
            + ss.to_bytes(size, "big")
        )

    def quote(
        self,
        nonce: bytes,
        pcrs: dict[str, dict[int, bytes]],
        selection: Sequence[tuple[str, Sequence[int]]],
    ) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) over `pcrs` restricted to `selection`; the
        pcrDigest uses the signing scheme's hash, as a TPM does."""
        self.clock += 1
        sel = struct.pack(">I", len(selection))
        h = hashlib.new(self.hash_alg)
        for bank, idx in selection:
            bitmap = bytearray(3)
            for i in idx:
                bitmap[i // 8] |= 1 << (i % 8)
            sel += struct.pack(">HB", ALG[bank], 3) + bytes(bitmap)
            for i in sorted(idx):
                h.update(pcrs[bank][i])
        digest = h.digest()
        attest = (
            struct.pack(">IH", 0xFF544347, 0x8018)
            + struct.pack(">H", len(self.name))
            + self.name
            + struct.pack(">H", len(nonce))
            + nonce
            + struct.pack(">QIIB", self.clock, 1, 0, 1)
            + struct.pack(">Q", 0x2019_1023_0016_3636)
            + sel
            + struct.pack(">H", len(digest))
            + digest
        )
        return attest, self.sign(attest)
