"""Reading Prometheus text exposition in tests: a sample matches by name, label set and value,
whatever the order of its labels (the format gives that order no meaning, and
prometheus_client writes label names sorted)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]], float]


def samples(text: str) -> set[Sample]:
    return {
        (s.name, frozenset(s.labels.items()), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def has_sample(text: str, line: str) -> bool:
    """Whether ``text`` holds the one sample written on ``line`` (e.g. ``a{b="c"} 1``)."""
    (want,) = samples(line + "\n")
    return want in samples(text)
