"""Known answers for KDFa/KDFe (TPM 2.0 Part 1 §11.4.10.2-3).

The expected bytes are what the previous hand-written SP 800-108 / SP 800-56A loops produced
for the same inputs, so moving to cryptography's KBKDFHMAC / ConcatKDFHash is byte-identical;
the swtpm activation tests prove the same against a real TPM. A4 and E3 are longer than one
hash block, so the counter increments.
"""

from __future__ import annotations

import pytest
from sealgate.tpm.enroll import kdfa, kdfe

K32 = bytes(range(32))
K48 = bytes(range(48))

KDFA = [
    (
        ("sha256", K32, b"STORAGE", b"\x00\x0b" + bytes(range(100, 132)), b"", 128),
        "d98939313878365f823837e2ce0286ca",
    ),
    (
        ("sha256", K32, b"INTEGRITY", b"", b"", 256),
        "bacf689f634ece301e1f1b15b072d9c87db6a69585db42b1a0cb8f73ebe2692e",
    ),
    (
        ("sha384", K48, b"STORAGE", b"\x00\x0c" + bytes(48), b"", 256),
        "1c0986b644a86eac07e67c28826e43c4b754ea9b7c108c64363643c71bcb9f8f",
    ),
    (
        ("sha256", K32, b"XX", b"u", b"v", 520),
        "ba069c177898938cd9a00ec44d721336dc67923eb420ed504d830c1abb744471"
        "a79704d114cafaf1f902694130918d100997c5bc9704b51621e4e32b2800568a6b",
    ),
]

KDFE = [
    (
        ("sha256", K32, b"IDENTITY", b"\x01" * 32, b"\x02" * 32, 256),
        "46c1a8b985095523623fbee1f5d4b3df184a6991e5706b9bbee430d76b9b5909",
    ),
    (
        ("sha384", K48, b"IDENTITY", b"\x03" * 48, b"\x04" * 48, 384),
        "b5c2bd66d2723d4c79e09b2bad9c4a9aadacd3c4e35472d9cf276a59af7b099f"
        "529d0908d6eb18bcd98d64bd7160d278",
    ),
    (
        ("sha256", K32, b"IDENTITY", b"a", b"b", 600),
        "a0a558ae2a32c820f9b68aed73ad6a623d97a180572fd8b19d1db2223424b16f"
        "c57efb0e828c08e4df0300c9ff8f490b52e4d01b6b68faaed5027a2027fe6459"
        "4075d94c53857f54894f35",
    ),
]


@pytest.mark.parametrize(("args", "want"), KDFA)
def test_kdfa_known_answers(args: tuple[str, bytes, bytes, bytes, bytes, int], want: str) -> None:
    assert kdfa(*args).hex() == want


@pytest.mark.parametrize(("args", "want"), KDFE)
def test_kdfe_known_answers(args: tuple[str, bytes, bytes, bytes, bytes, int], want: str) -> None:
    assert kdfe(*args).hex() == want


@pytest.mark.parametrize("bits", [0, 12, -8])
def test_partial_bytes_refused(bits: int) -> None:
    with pytest.raises(ValueError, match="whole number of bytes"):
        kdfa("sha256", K32, b"STORAGE", b"", b"", bits)
    with pytest.raises(ValueError, match="whole number of bytes"):
        kdfe("sha256", K32, b"IDENTITY", b"", b"", bits)
