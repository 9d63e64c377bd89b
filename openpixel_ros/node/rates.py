"""Rates and latency percentiles for the node's diagnostics (plain Python: no ROS, unit-testable)."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds (thread-safe).

    With fewer than two events in the window the rate is 0: one event has no interval.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._times = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            now = self._clock()
            self._times.append(now)
            self._expire(now)

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate_hz(self) -> float:
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._times) < 2:
                return 0.0
            # Events over the span they cover, or over the window once the stream has stopped.
            span = max(self._times[-1] - self._times[0], 1e-9)
            rate = (len(self._times) - 1) / span
            silence = now - self._times[-1]
            if silence > 1.0 / rate:  # no event when one was due: the stream slowed or stopped
                rate = (len(self._times) - 1) / (span + silence)
            return rate


def percentiles(values, qs=(50, 95)) -> tuple:
    """Percentiles of ``values`` (0.0 each when empty)."""
    values = list(values)
    if not values:
        return tuple(0.0 for _ in qs)
    return tuple(float(v) for v in np.percentile(values, qs))


def engine_ms_text(value: float) -> str:
    """An engine time for diagnostics, to the microsecond: a tiny model's 0.04 ms must not read 0.0."""
    return f"{value:.3f}"


def processed_ratio_warning(input_hz: float, processed_hz: float, min_ratio: float,
                            max_rate_hz: float = 0.0, outputs_subscribed: bool = True) -> Optional[str]:
    """A WARN message when the node processes fewer than ``min_ratio`` of the frames it should.

    The frames it should process: the input rate, capped by ``max_rate_hz``; none while no
    output is subscribed (frames are then skipped on purpose).
    """
    if min_ratio <= 0 or not outputs_subscribed or input_hz <= 0:
        return None
    expected = min(input_hz, max_rate_hz) if max_rate_hz > 0 else input_hz
    if processed_hz >= min_ratio * expected:
        return None
    return (f"processing {processed_hz:.1f} Hz of {input_hz:.1f} Hz input ({processed_hz / expected:.0%} of "
            f"{expected:.1f} Hz expected, below diagnostics.min_processed_ratio {min_ratio:g}): the engine is too "
            f"slow for this camera; lower the rate, the resolution or use a faster engine/device")
