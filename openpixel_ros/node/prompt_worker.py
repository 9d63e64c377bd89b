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

Stopping (lifecycle deactivate, cleanup, shutdown; node destruction): :meth:`PromptWorker.close`
with a reason answers every queued call at once with ``success=false`` and that reason, gives
the running call a bounded time to finish and answers it with the reason when it does not, all
before the service goes away; :func:`refuse_pending_requests` answers the requests still in the
service's own queue. A client is never left waiting.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Callable, Optional

from ..log_text import bounded


class PromptWorker:
    """One thread running queued jobs in order; at most ``capacity`` jobs wait."""

    def __init__(self, capacity: int, on_error: Callable[[str], None], name: str = "openpixel-prompts"):
        self.capacity = int(capacity)
        self._on_error = on_error
        self._jobs = collections.deque()  # (job, cancel or None)
        self._cond = threading.Condition()
        self._closed = False
        self._running = None  # (job, cancel) being run
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._jobs)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, job: Callable[[], None], cancel: Optional[Callable[[str], None]] = None) -> bool:
        """Queue ``job``; False (and counted as refused) when the queue is full or closed.
        ``cancel(reason)`` answers the job instead should the worker stop before it ends."""
        with self._cond:
            if self._closed or len(self._jobs) >= self.capacity:
                self.refused += 1
                return False
            self._jobs.append((job, cancel))
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
                self._running = self._jobs.popleft()
            try:
                self._running[0]()
            except Exception as exc:  # a job's own handler reports expected errors; this is the backstop
                self._on_error(bounded(f"prompt request failed: {type(exc).__name__}: {exc}"))
            finally:
                with self._cond:
                    self._running = None

    def close(self, timeout: float = 5.0, reason: Optional[str] = None) -> None:
        """Stop taking jobs. Without ``reason``: finish the queued ones, then stop. With one:
        answer every queued job with ``cancel(reason)`` now, wait up to ``timeout`` s for the
        running one, and answer it with ``cancel(reason)`` too when it is still running."""
        with self._cond:
            self._closed = True
            dropped = list(self._jobs) if reason is not None else []
            if reason is not None:
                self._jobs.clear()
            self._cond.notify_all()
        for _, cancel in dropped:
            _cancel(cancel, reason, self._on_error)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._cond:
            running = self._running
        if running is not None and reason is not None:
            _cancel(running[1], reason, self._on_error)  # its own answer, should it come, is not sent


def _cancel(cancel, reason: str, on_error) -> None:
    if cancel is None:
        return
    try:
        cancel(reason)
    except Exception as exc:  # the service may already be gone; nothing else to do
        on_error(bounded(f"prompt request not answered: {type(exc).__name__}: {exc}"))


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

    def __init__(self, compute: Callable[[], object], failure: Callable[[Exception], object],
                 refusal: Optional[Callable[[str], object]] = None):
        self.compute = compute
        self.failure = failure
        self.refusal = refusal  # reason -> a success=false response (when the worker stops first)
        self._header = None
        self._send: Optional[Callable] = None
        self._ready = threading.Event()
        self._answered = False
        self._lock = threading.Lock()

    def bind(self, send: Callable, header) -> None:
        self._send, self._header = send, header
        self._ready.set()

    def run(self) -> None:
        try:
            response = self.compute()
        except Exception as exc:
            response = self.failure(exc)
        self._answer(response)

    def cancel(self, reason: str) -> None:
        """Answer with ``refusal(reason)`` now, unless already answered; a later :meth:`run` sends nothing."""
        self._answer(self.refusal(reason))

    def _answer(self, response) -> None:
        # Exactly one answer per request: the computed one or the refusal. Sent under the lock, so
        # a cancel() returns only once an answer already under way has gone out: the service may
        # be destroyed right after (a slow prompt thread sending late lost its answer under load).
        with self._lock:
            if self._answered:
                return
            self._answered = True
            if self._ready.wait(timeout=10.0):  # set microseconds after the callback returned
                self._send(response, self._header)


def refuse_pending_requests(service, refusal: Callable[[], object]) -> int:
    """Answer the requests still waiting in ``service``'s queue (not yet taken by the executor)
    with ``refusal()``, right before the service is destroyed; the number answered."""
    answered = 0
    while True:
        with service.handle:
            taken = service.handle.service_take_request(service.srv_type.Request)
        if taken is None or taken[1] is None:
            return answered
        service.send_response(refusal(), taken[1])
        answered += 1


def record_answers(service) -> None:
    """Note when ``service`` last sent an answer, for :func:`let_answers_go_out`."""
    send_now = service.send_response
    service.last_answer_at = None

    def send(response, header):
        send_now(response, header)
        service.last_answer_at = time.monotonic()

    service.send_response = send


def defer_responses(service) -> None:
    """Make ``service`` accept a :class:`DeferredResponse` from its callback (sent later); its
    answers are recorded (:func:`record_answers`)."""
    record_answers(service)
    send = service.send_response

    def send_or_defer(response, header):
        if isinstance(response, DeferredResponse):
            response.bind(send, header)
        else:
            send(response, header)

    service.send_response = send_or_defer


def let_answers_go_out(service, delivery_s: float) -> None:
    """Before ``service`` is destroyed: wait until its last answer (:func:`record_answers`) was sent
    ``delivery_s`` ago.
    Destroying a service drops the answers its middleware writer has not delivered yet (measured:
    an answer sent 13 ms before deactivate never reached its client, 2 runs in 12 under load), and
    rclpy offers no acknowledgement to wait on for service answers."""
    sent = getattr(service, "last_answer_at", None)
    if sent is not None:
        time.sleep(max(0.0, sent + delivery_s - time.monotonic()))
