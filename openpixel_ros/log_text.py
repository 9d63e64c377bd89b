"""Bounded text for log lines, diagnostics and service messages.

A user-supplied value (a click at x = 1e300, a 10 kB string parameter) must not turn one log
line into hundreds of characters: numbers are written compactly and long text is cut.
"""
from __future__ import annotations

import math

MAX_LINE = 240  # characters of one log line / diagnostics value / service message
MAX_VALUE = 60  # characters of one quoted value inside such a line


def compact(value, limit: int = MAX_VALUE) -> str:
    """A short, unambiguous rendering of ``value``: floats as ``%.6g``, everything cut at ``limit``."""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.6g}" if math.isfinite(value) else str(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(compact(v, limit) for v in value[:8]) + (", ..." if len(value) > 8 else "") + "]"
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return bounded(text, limit)


def bounded(text: str, limit: int = MAX_LINE) -> str:
    """The first line of ``text``, cut to ``limit`` characters (an ellipsis marks the cut)."""
    lines = str(text).splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."
