"""What the benchmark scripts print about the machine their figures come from: machines of
one kind differ from session to session, so every figure goes with its CPU."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``/proc/cpuinfo``), or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def describe() -> str:
    """``<model>, <n> cores, load <1-min>``: the line each benchmark prints first."""
    try:
        load = f", load {os.getloadavg()[0]:.2f}"
    except OSError:
        load = ""
    return f"{cpu_model()}, {os.cpu_count() or 0} cores{load}"
