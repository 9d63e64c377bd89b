"""Client side of the node's services: calls whose first answers must not be lost.

Until a server's answer writer has matched a new client's reader, rmw drops the server's answers
("failed to send response (timeout): client will not receive response"); under load that can take
seconds. An idempotent call is therefore resent until answered (:func:`call_until_answered`), and
a client about to make calls that must not be sent twice first sends a request that changes nothing
(for ``~/segment_at_points``: :func:`refused_at_once_request`) until it is answered.
"""
from __future__ import annotations

import time
from typing import Callable


def call_until_answered(client, request, spin_once: Callable[[float], None], timeout: float = 20.0,
                        resend_after: float = 5.0):
    """The answer of an idempotent call, sent again each ``resend_after`` s without one; None if none
    came within ``timeout`` s. ``spin_once(timeout_sec)`` spins the client's node (or its executor)."""
    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError(f"service {client.srv_name} never appeared")
    deadline = time.monotonic() + timeout
    while True:
        future = client.call_async(request)
        end = min(deadline, time.monotonic() + resend_after)
        while not future.done() and time.monotonic() < end:
            spin_once(0.05)
        if future.done():
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() >= deadline:
            return None


def refused_at_once_request():
    """A ``SegmentAtPoints`` request the node refuses before queueing or counting it (too many points)."""
    from geometry_msgs.msg import Point

    from ..interactive.prompts import MAX_POINTS
    from ..srv import SegmentAtPoints
    return SegmentAtPoints.Request(points=[Point(x=1.0, y=1.0)] * (MAX_POINTS + 1), labels=[1] * (MAX_POINTS + 1))
