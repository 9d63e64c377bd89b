"""Prompt requests (service calls, clicks) off the executor thread, in a bounded queue.

Why: a prompt engine takes up to hundreds of milliseconds. Run on the single-threaded
executor, it stalls frame intake (frames overwritten unseen in the subscription queue) and
the service's own request queue overflows in a burst, so clients wait forever. Here the
executor only enqueues (microseconds) and a worker thread does the work; a request beyond
the queue's capacity is refused at once instead of being lost.

Services: rclpy sends a service response right after the callback returns. The callback
returns a :class:`DeferredResponse`; :func:`defer_responses` routes the executor's
``send_response`` for it to the worker, which answers with the request's header when done.
(A coroutine callback would also defer, but rclpy's executor polls pending coroutines
without waiting, which spins one core for as long as a request is in the queue.)
"""
from __future__ import annotations

import collections
import os
import threading
from typing import Callable, Optional

from ..log_text import bounded


class PromptWorker:
    """One thread running queued jobs in order; at most ``capacity`` jobs wait."""

    def __init__(self, capacity: int, on_error: Callable[[str], None], name: str = "openpixel-prompts"):
        self.capacity = int(capacity)
        self._on_error = on_error
        self._jobs = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (and counted as refused) when the queue is full or closed."""
        with self._cond:
            if self._closed or len(self._jobs) >= self.capacity:
                self.refused += 1
                return False
            self._jobs.append(job)
            self.accepted += 1
            self._cond.notify()
            return True

    def _run(self) -> None:
        _lower_thread_priority()
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed and not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception as exc:  # a job's own handler reports expected errors; this is the backstop
                self._on_error(bounded(f"prompt request failed: {type(exc).__name__}: {exc}"))

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs (so every accepted service call is answered), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def _lower_thread_priority(increment: int = 10) -> None:
    """Let the frame worker win the CPU over prompt work (Linux: nice applies per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + increment)
    except (AttributeError, OSError):
        pass


class DeferredResponse:
    """Returned by a service callback whose answer a worker computes later.

    ``compute()`` builds the response (on the worker); it is sent with the request's header,
    which the executor hands over right after the callback returns. Should ``compute`` raise,
    ``failure(exc)`` builds the answer instead: an accepted request is always answered.
    """

    def __init__(self, compute: Callable[[], object], failure: Callable[[Exception], object]):
        self.compute = compute
        self.failure = failure
        self._header = None
        self._send: Optional[Callable] = None
        self._ready = threading.Event()

    def bind(self, send: Callable, header) -> None:
        self._send, self._header = send, header
        self._ready.set()

    def run(self) -> None:
        try:
            response = self.compute()
        except Exception as exc:
            response = self.failure(exc)
        if self._ready.wait(timeout=10.0):  # set microseconds after the callback returned
            self._send(response, self._header)


def defer_responses(service) -> None:
    """Make ``service`` accept a :class:`DeferredResponse` from its callback (sent later)."""
    send = service.send_response

    def send_or_defer(response, header):
        if isinstance(response, DeferredResponse):
            response.bind(send, header)
        else:
            send(response, header)

    service.send_response = send_or_defer
