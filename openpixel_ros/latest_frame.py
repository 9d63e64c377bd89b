"""A one-slot mailbox between a subscription callback and an inference worker.

The callback never blocks and never queues: a new frame replaces an unclaimed
one, which is counted as dropped. So when the engine is slower than the camera,
latency stays at about one engine period instead of growing without bound.
"""
from __future__ import annotations

import threading
from typing import Any, Optional


class LatestFrameSlot:
    def __init__(self):
        self._cond = threading.Condition()
        self._item: Optional[Any] = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Any) -> None:
        """Offer the newest frame; replaces (and counts as dropped) an unclaimed one."""
        with self._cond:
            self.received += 1
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: Optional[float] = None) -> Optional[Any]:
        """Wait for a frame and claim it; None on timeout or after :meth:`close`."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
