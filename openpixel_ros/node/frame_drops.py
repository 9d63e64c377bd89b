"""Frames that never became outputs, counted by cause (reported in /diagnostics)."""
from __future__ import annotations

import threading

#: cause -> what it means (docs/nodes.md lists the same)
DROP_CAUSES = {
    "newest_frame": "replaced in the one-frame mailbox by a newer frame before the worker took it",
    "queue_overrun": "published but never delivered to the node (subscription queue overrun or transport "
                     "loss), from gaps in the publisher's sequence numbers",
    "decode_error": "the message could not be decoded (bad encoding, step, size or compressed data)",
    "engine_error": "the engine failed on the frame",
    "no_subscribers": "nothing subscribed to any output",
    "rate_limit": "skipped to keep under max_rate_hz",
}

# rmw's RMW_MESSAGE_INFO_SEQUENCE_NUMBER_UNSUPPORTED is UINT64_MAX; rclpy may also give None.
_SEQUENCE_UNSUPPORTED = 2 ** 63


class FrameDrops:
    """Thread-safe counters, one per cause in :data:`DROP_CAUSES`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(DROP_CAUSES, 0)

    def add(self, cause: str, count: int = 1) -> None:
        with self._lock:
            self._counts[cause] += count

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._counts)


class SequenceGaps:
    """Missed messages from gaps in publication sequence numbers.

    rclpy's message info carries the publisher's sequence number but not the publisher, so
    numbers are tracked per ``header.frame_id`` (one camera, one frame id); a number that goes
    backwards (a second publisher with the same frame id, a restarted camera) starts over
    instead of counting a gap.
    """

    def __init__(self, max_keys: int = 64):
        self._last = {}
        self._max_keys = max_keys

    def observe(self, key: str, sequence) -> int:
        """Record ``sequence`` for ``key``; the number of messages missed just before it."""
        if sequence is None or sequence <= 0 or sequence >= _SEQUENCE_UNSUPPORTED:
            return 0
        last = self._last.get(key)
        if last is None and len(self._last) >= self._max_keys:
            self._last.clear()  # bounded memory when frame ids keep changing
        self._last[key] = sequence
        if last is None or sequence <= last:
            return 0
        return sequence - last - 1
