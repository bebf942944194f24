"""``sealgate eventlog replay``."""

from __future__ import annotations

import argparse
from typing import Any

from sealgate import _core
from sealgate.tpm import pcrs_to_json


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay an event log and print the resulting registers")
    p.add_argument("file", help="event log file")
    p.add_argument(
        "--format",
        choices=["tcg", "ccel"],
        default="tcg",
        help="tcg: TPM PC Client log → {bank: {pcr: hex}}; "
        "ccel: TDX CC event log → {rtmr0..rtmr3: hex}",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sealgate.cli import EXIT_OK, emit, read_file

    data = read_file(args.file, "event log")
    if args.format == "ccel":
        emit({f"rtmr{i}": v.hex() for i, v in enumerate(_core.replay_ccel(data))})
        return EXIT_OK
    emit(pcrs_to_json(_core.replay_event_log(data)))
    return EXIT_OK
