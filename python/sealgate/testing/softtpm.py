"""A software attestation key that produces TPM-shaped quotes (TPMT_PUBLIC, TPMS_ATTEST,
TPMT_SIGNATURE) without a TPM, for benchmarks and load tests where swtpm's one-client socket
would be the bottleneck. Same wire formats as a real TPM (TPM 2.0 Part 2); never used by the
verifier itself.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALG = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
#: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign
AK_ATTRIBUTES = 0x00050072


class SoftAk:
    """RSA-2048 (RSASSA-SHA256) or ECC P-256 (ECDSA-SHA256) attestation key."""

    def __init__(self, kind: str = "rsa", attributes: int = AK_ATTRIBUTES) -> None:
        self.kind = kind
        self.key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if kind == "rsa":
            self.key = rsa.generate_private_key(65537, 2048)
            n = self.key.public_key().public_numbers().n.to_bytes(256, "big")
            parms = struct.pack(">HHHHI", 0x0010, 0x0014, 0x000B, 2048, 0) + struct.pack(">H", 256)
            self.public_area = struct.pack(">HHIH", 0x0001, 0x000B, attributes, 0) + parms + n
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            nums = self.key.public_key().public_numbers()
            x, y = nums.x.to_bytes(32, "big"), nums.y.to_bytes(32, "big")
            parms = struct.pack(">HHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010)
            self.public_area = (
                struct.pack(">HHIH", 0x0023, 0x000B, attributes, 0)
                + parms
                + struct.pack(">H", 32)
                + x
                + struct.pack(">H", 32)
                + y
            )
        self.name = struct.pack(">H", 0x000B) + hashlib.sha256(self.public_area).digest()
        self.clock = 1000

    @property
    def tpm2b_public(self) -> bytes:
        return struct.pack(">H", len(self.public_area)) + self.public_area

    def quote(
        self,
        nonce: bytes,
        pcrs: dict[str, dict[int, bytes]],
        selection: Sequence[tuple[str, Sequence[int]]],
    ) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) over `pcrs` restricted to `selection`."""
        self.clock += 1
        sel = struct.pack(">I", len(selection))
        h = hashlib.sha256()
        for bank, idx in selection:
            bitmap = bytearray(3)
            for i in idx:
                bitmap[i // 8] |= 1 << (i % 8)
            sel += struct.pack(">HB", ALG[bank], 3) + bytes(bitmap)
            for i in sorted(idx):
                h.update(pcrs[bank][i])
        signer = struct.pack(">H", len(self.name)) + self.name
        attest = (
            struct.pack(">IH", 0xFF544347, 0x8018)
            + signer
            + struct.pack(">H", len(nonce))
            + nonce
            + struct.pack(">QIIB", self.clock, 1, 0, 1)
            + struct.pack(">Q", 0x2019_1023_0016_3636)
            + sel
            + struct.pack(">H", 32)
            + h.digest()
        )
        if isinstance(self.key, rsa.RSAPrivateKey):
            s = self.key.sign(attest, padding.PKCS1v15(), hashes.SHA256())
            sig = struct.pack(">HHH", 0x0014, 0x000B, len(s)) + s
        else:
            r, ss = decode_dss_signature(self.key.sign(attest, ec.ECDSA(hashes.SHA256())))
            sig = (
                struct.pack(">HHH", 0x0018, 0x000B, 32)
                + r.to_bytes(32, "big")
                + struct.pack(">H", 32)
                + ss.to_bytes(32, "big")
            )
        return attest, sig
