"""Which stage the inference worker is in, and since when: diagnostics name a stuck stage.

A worker that never returns from one call (an OpenCV filter on a huge frame, a hung GPU driver)
produces nothing and raises nothing; the rates alone only say "too slow". The worker records
each stage it enters, and diagnostics report ERROR once one stage has lasted beyond a bound.
"""
from __future__ import annotations

import time
from typing import Optional

#: The stages of one frame, in order.
STAGES = ("decode", "adaptation", "inference", "publish")


class WorkerStage:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._current: Optional[tuple] = None  # (stage, entered at); one tuple, so reads need no lock

    def enter(self, stage: str) -> None:
        self._current = (stage, self._clock())

    def idle(self) -> None:
        self._current = None

    def stuck(self, bound_s: float) -> Optional[tuple]:
        """``(stage, seconds in it)`` when the worker has been in one stage longer than ``bound_s``."""
        current = self._current
        if current is None:
            return None
        elapsed = self._clock() - current[1]
        return (current[0], elapsed) if elapsed > bound_s else None
