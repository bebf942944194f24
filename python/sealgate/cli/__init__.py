"""The ``sealgate`` command line.

Each command family lives in its own module and registers its sub-parser here. Exit codes
(README "CLI"): 0 verified, 1 evidence rejected, 2 usage error or unreadable input. No input
ever produces a traceback: unexpected exceptions are reported as ``cli.internal.error``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sealgate import __version__
from sealgate.cli import (
    collateral,
    eventlog,
    kek,
    service,
    trust,
    verify_azure,
    verify_nvgpu,
    verify_snp,
    verify_tdx,
    verify_tpm,
)
from sealgate.errors import SealgateError, UsageError

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit path: keep code 2
        self.print_usage(sys.stderr)
        print(f"sealgate: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sealgate", description="Attestation verifier and key broker.")
    p.add_argument("--version", action="version", version=f"sealgate {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    verify = sub.add_parser("verify", help="verify evidence offline and print claims as JSON")
    vsub = verify.add_subparsers(dest="platform", required=True, parser_class=_Parser)
    verify_tpm.register(vsub)
    verify_snp.register(vsub)
    verify_tdx.register(vsub)
    verify_azure.register(vsub)
    verify_nvgpu.register(vsub)

    ev = sub.add_parser("eventlog", help="event-log tools")
    esub = ev.add_subparsers(dest="eventlog_command", required=True, parser_class=_Parser)
    eventlog.register(esub)

    trust.register(sub)
    collateral.register(sub)
    service.register(sub)
    from sealgate.cli import storage as storage_cli

    storage_cli.register(sub)
    kek.register(sub)
    return p


def read_file(path: str, what: str, limit: int = 64 << 20) -> bytes:
    """Read an input file, mapping OS errors to a usage error (exit 2)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UsageError(
            "cli.input.unreadable", f"cannot read {what} {path!r}: {e.strerror}"
        ) from None
    if len(data) > limit:
        raise UsageError("cli.input.too_large", f"{what} {path!r} exceeds {limit} bytes")
    return data


def read_text(path: str, what: str, limit: int) -> str:
    """An operator document as text: UTF-8 or a usage error (never silently replaced)."""
    data = read_file(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(
            "cli.input.not_utf8", f"{what} {path!r} is not UTF-8 (byte {e.start})"
        ) from None


def emit(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UsageError as e:
        _json_error(args, e)
        _say(f"sealgate: {e.message}")
        return EXIT_USAGE
    except SealgateError as e:
        _json_error(args, e)
        _say(f"sealgate: {e.code}: {e.message}")
        return EXIT_REJECTED
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the CLI must never show a traceback
        # Last resort, for every command and also while arguments are handled: still one
        # JSON document with a code on stdout. Only the type: a message may hold secrets.
        err = SealgateError("cli.internal.error", f"internal error ({type(e).__name__})")
        _json_error(args, err, always=True)
        _say(f"sealgate: cli.internal.error: {type(e).__name__}")
        return EXIT_USAGE


def _say(line: str) -> None:
    with contextlib.suppress(Exception):
        print(line, file=sys.stderr)


def _json_error(args: argparse.Namespace | None, e: SealgateError, always: bool = False) -> None:
    """Commands with a JSON contract print exactly one document, also on failure; with
    ``always`` (an internal error) every command does."""
    doc: dict[str, Any] = {"errors": [{"code": e.code, "message": e.message}]}
    if getattr(args, "json_errors", False):
        doc = {
            "verified": False,
            "platform": getattr(args, "platform", None),
            "claims": {},
            "errors": doc["errors"],
        }
    elif not always:
        return
    # Best effort: stdout itself may be what failed (closed pipe, full disk).
    with contextlib.suppress(Exception):
        emit(doc)
        sys.stdout.flush()


def run() -> None:
    sys.exit(main())
