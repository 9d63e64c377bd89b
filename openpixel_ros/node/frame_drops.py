"""Frames that never became outputs, counted by cause (reported in /diagnostics)."""
from __future__ import annotations

import threading

#: cause -> what it means (docs/nodes.md lists the same)
DROP_CAUSES = {
    "newest_frame": "replaced in the one-frame mailbox by a newer frame before the worker took it",
    "queue_overrun": "published but never delivered to the node (subscription queue overrun or transport "
                     "loss), from gaps in each publisher's sequence numbers",
    "paused": "received while ~/enable is false: kept for clicks, not segmented",
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
    """Missed messages from gaps in publication sequence numbers, per publisher.

    Each publisher numbers its own messages, so numbers are tracked per publisher GID (rclpy's
    message info ``publisher_gid``): several cameras on one topic, even with one frame id, neither
    invent losses nor hide them. Where the middleware gives no GID, numbers are tracked per
    ``header.frame_id`` instead, and :attr:`approximate` says so (several publishers with one
    frame id then interleave). A number that goes backwards (a restarted publisher) starts over
    instead of counting a gap.
    """

    def __init__(self, max_keys: int = 64):
        self._last = {}
        self._max_keys = max_keys
        self.approximate = False

    def observe_message(self, info: dict, frame_id: str) -> int:
        """:meth:`observe` keyed by the message info's publisher GID, else by ``frame_id``."""
        gid = info.get("publisher_gid")
        data = gid.get("data") if isinstance(gid, dict) else None
        if data:
            key = bytes(data)
        else:
            key = ("frame_id", frame_id)
            self.approximate = True
        return self.observe(key, info.get("publication_sequence_number"))

    def observe(self, key, sequence) -> int:
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
