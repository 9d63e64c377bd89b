"""Bounded text for log lines, diagnostics and service messages.

A user-supplied value (a click at x = 1e300, a 10 kB string parameter) must not turn one log
line into hundreds of characters: numbers are written compactly and long text is cut.
"""
from __future__ import annotations

import math
import time

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


class DistinctLines:
    """Rate limit for repeated errors that keeps one line per distinct error.

    :meth:`admit` says whether to log ``text``: yes when the same text was not logged in the last
    ``period`` seconds, and fewer than ``max_per_period`` lines were logged in the current period
    (so a flood of ever-different errors stays bounded too). A plain per-call-site throttle would
    hide a second, different error behind the first.
    """

    def __init__(self, period: float = 5.0, max_per_period: int = 10, clock=time.monotonic):
        self.period, self.max_per_period, self._clock = period, max_per_period, clock
        self._last = {}  # text -> when it was last logged
        self._window_start, self._window_count = -math.inf, 0

    def admit(self, text: str) -> bool:
        now = self._clock()
        if now - self._window_start >= self.period:
            self._window_start, self._window_count = now, 0
            self._last = {t: when for t, when in self._last.items() if now - when < self.period}
        if now - self._last.get(text, -math.inf) < self.period or self._window_count >= self.max_per_period:
            return False
        self._last[text] = now
        self._window_count += 1
        return True
