"""Build TCG crypto-agile event logs (TCG PC Client PFP rev 1.05, §10) in pure Python.

Used to give swtpm nodes an event log whose replay equals the PCRs they extend, and to make
malformed logs for tests.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ALG_IDS = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
EV_NO_ACTION = 0x3
EV_POST_CODE = 0x1
EV_SEPARATOR = 0x4
EV_ACTION = 0x5
EV_EFI_ACTION = 0x80000007
EV_IPL = 0xD


@dataclass(frozen=True)
class LogEvent:
    pcr: int
    event_type: int
    data: bytes


def digests_for(data: bytes, banks: Sequence[str]) -> dict[str, bytes]:
    return {b: hashlib.new(b, data).digest() for b in banks}


def build_event_log(
    events: Iterable[LogEvent],
    banks: Sequence[str] = ("sha1", "sha256"),
    startup_locality: int | None = None,
) -> tuple[bytes, dict[str, dict[int, bytes]]]:
    """Return (log bytes, expected replay {bank: {pcr: value}}).

    Each event's digest in every bank is the bank hash of its data, as firmware does for
    most event types.
    """
    spec = b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks))
    for b in banks:
        spec += struct.pack("<HH", ALG_IDS[b], hashlib.new(b).digest_size)
    spec += b"\x00"
    out = bytearray(struct.pack("<II", 0, EV_NO_ACTION) + b"\x00" * 20)
    out += struct.pack("<I", len(spec)) + spec

    expected: dict[str, dict[int, bytes]] = {b: {} for b in banks}

    def entry(pcr: int, etype: int, digests: dict[str, bytes], data: bytes) -> bytes:
        e = struct.pack("<III", pcr, etype, len(banks))
        for b in banks:
            e += struct.pack("<H", ALG_IDS[b]) + digests[b]
        return e + struct.pack("<I", len(data)) + data

    if startup_locality is not None:
        data = b"StartupLocality\x00" + bytes([startup_locality])
        zero = {b: b"\x00" * hashlib.new(b).digest_size for b in banks}
        out += entry(0, EV_NO_ACTION, zero, data)
    for ev in events:
        d = digests_for(ev.data, banks)
        out += entry(ev.pcr, ev.event_type, d, ev.data)
        if ev.event_type == EV_NO_ACTION:
            continue
        for b in banks:
            size = hashlib.new(b).digest_size
            init = b"\x00" * size
            if ev.pcr == 0 and startup_locality is not None:
                init = b"\x00" * (size - 1) + bytes([startup_locality])
            cur = expected[b].get(ev.pcr, init)
            expected[b][ev.pcr] = hashlib.new(b, cur + d[b]).digest()
    return bytes(out), {b: v for b, v in expected.items() if v}


def sample_boot_events(tag: bytes = b"golden") -> list[LogEvent]:
    """A small, plausible boot sequence: firmware, separators, bootloader, kernel."""
    evs = [LogEvent(0, EV_POST_CODE, b"sealgate-firmware-" + tag)]
    evs += [LogEvent(i, EV_SEPARATOR, b"\x00\x00\x00\x00") for i in range(8)]
    evs.append(LogEvent(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"))
    evs.append(LogEvent(4, EV_IPL, b"bootloader:" + tag))
    evs.append(LogEvent(8, EV_IPL, b"kernel_cmdline: console=ttyS0 " + tag))
    evs.append(LogEvent(9, EV_IPL, b"initrd:" + tag))
    return evs
