"""Every ``verify`` command reads ``--at`` the same way: RFC 3339 with an offset, and a time
without one is refused (exit 2, ``cli.usage.bad_time``), never guessed as UTC or local."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sealgate.cli import main
from sealgate.cli.times import parse_at
from sealgate.errors import UsageError

from tests.vectors import project


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-19T10:00:34Z", datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)),
        ("2025-07-19T10:00:34+00:00", datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)),
        (
            "2025-07-19T12:00:34+02:00",
            datetime(2025, 7, 19, 12, 0, 34, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_offsets_accepted(text: str, expected: datetime) -> None:
    assert parse_at(text) == expected


@pytest.mark.parametrize("text", ["2025-07-19T10:00:34", "2025-07-19", "yesterday", ""])
def test_without_offset_refused(text: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_at(text)
    assert e.value.code == "cli.usage.bad_time"


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "snp", "--report", str(project("sev-snp", "report-v5.bin"))],
        ["verify", "tdx", "--quote", str(project("tdx", "quotes", "v4.bin"))],
    ],
)
def test_verify_commands_refuse_zoneless_at(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--at", "2025-07-19T10:00:34"]) == 2
    assert "cli.usage.bad_time" in capsys.readouterr().out
