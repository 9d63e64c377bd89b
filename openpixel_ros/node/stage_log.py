"""Debug lines, one per processing stage, rate-limited: ``--ros-args --log-level openpixel:=debug``.

Stages: ``input`` (a frame arrived), ``decode``, ``inference``, ``publish``, ``click``. Each stage
logs at most once per ``period_s`` seconds, and its text is only built when debug is enabled
(the per-frame cost at the default INFO level is one level check).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from rclpy.logging import LoggingSeverity

DEFAULT_PERIOD_S = 1.0


class StageLog:
    def __init__(self, logger, period_s: float = DEFAULT_PERIOD_S, clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._period_s = period_s
        self._clock = clock
        self._last = {}
        self._lock = threading.Lock()

    def debug(self, stage: str, text: Callable[[], str]) -> bool:
        """Log ``stage: text()`` at debug level unless the stage logged within the period; True if logged."""
        if not self._logger.is_enabled_for(LoggingSeverity.DEBUG):
            return False
        now = self._clock()
        with self._lock:
            if now - self._last.get(stage, -1e18) < self._period_s:
                return False
            self._last[stage] = now
        self._logger.debug(f"{stage}: {text()}")
        return True
