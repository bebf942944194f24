"""``--at``: the one parser of verification times every ``verify`` command uses."""

from __future__ import annotations

from datetime import datetime

from sealgate.errors import UsageError


def parse_at(text: str) -> datetime:
    """An RFC 3339 time with its offset (``Z`` or ``±HH:MM``, RFC 3339 §5.6).

    A time without an offset is refused rather than guessed: validity windows, CRLs and
    collateral are compared against it, and a local-time reading would shift every verdict
    by the host's zone.
    """
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError("cli.usage.bad_time", f"--at {text!r} is not RFC 3339") from None
    if t.tzinfo is None:
        raise UsageError("cli.usage.bad_time", f"--at {text!r} needs a UTC offset or Z")
    return t
