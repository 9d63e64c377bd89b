"""A click session: the clicks a user makes on one object, until a pause ends the session.

The node's ``~/click`` and ``~/click_negative`` topics feed one; every click is
answered with a mask from all the clicks of the session so far. A click after
more than ``timeout`` seconds of silence starts a new session. Thread-safe.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from .prompts import ClickPrompt

Click = tuple  # (x, y, label): frame pixel coordinates; label 1 = object, 0 = background


class ClickSession:
    """Accumulates ``(x, y, label)`` clicks; ``timeout`` seconds without one start a new session."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic):
        self.timeout = float(timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._clicks: list = []
        self._last_time: Optional[float] = None
        self._last_mask: Optional[tuple] = None  # (frame key, mask) of the session's last answer

    def add(self, x: float, y: float, label: int) -> list:
        """Record a click and return the session's clicks, this one last (a copy)."""
        now = self._clock()
        with self._lock:
            if self._last_time is None or now - self._last_time > self.timeout:
                self._clicks = []
                self._last_mask = None
            self._last_time = now
            self._clicks.append((float(x), float(y), int(label)))
            return list(self._clicks)

    def discard(self, click: Click) -> None:
        """Take back ``click`` if it is still the newest (an invalid click must not poison the session)."""
        with self._lock:
            if self._clicks and self._clicks[-1] == tuple(click):
                self._clicks.pop()

    def clear(self) -> None:
        """End the session: the next click starts a new one."""
        with self._lock:
            self._clicks = []
            self._last_time = None
            self._last_mask = None

    def remember(self, key, mask) -> None:
        """Keep the mask answered for the session's clicks on the frame ``key``."""
        with self._lock:
            self._last_mask = (key, mask)

    def previous_mask(self, key):
        """The session's last mask when it was made on the same frame ``key`` (the engine then
        refines it, and zooms in on the object), else None: a mask of another frame of a moving
        camera would mislead."""
        with self._lock:
            if self._clicks and self._last_mask is not None and self._last_mask[0] == key:
                return self._last_mask[1]
            return None

    @property
    def clicks(self) -> list:
        with self._lock:
            return list(self._clicks)

    @staticmethod
    def prompt(clicks, image_size, previous_mask=None) -> ClickPrompt:
        """The prompt for ``clicks`` on a frame of ``image_size`` (height, width)."""
        return ClickPrompt.from_lists([c[:2] for c in clicks], [c[2] for c in clicks], image_size=image_size,
                                      previous_mask=previous_mask if len(clicks) > 1 else None)
