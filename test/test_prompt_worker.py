"""The pieces behind 'no lost call, no silent drop, bounded lines': prompt queue, sequence gaps, log text."""
import threading
import time

from openpixel_ros.log_text import MAX_LINE, bounded, compact
from openpixel_ros.node.frame_drops import SequenceGaps
from openpixel_ros.node.prompt_worker import DeferredResponse, PromptWorker


def test_queue_refuses_beyond_capacity_and_runs_every_accepted_job():
    errors, done = [], []
    release = threading.Event()
    worker = PromptWorker(2, on_error=errors.append)
    started = threading.Event()
    assert worker.submit(lambda: (started.set(), release.wait(5)))  # occupies the worker
    assert started.wait(5)
    assert worker.submit(lambda: done.append(1)) and worker.submit(lambda: done.append(2))
    assert not worker.submit(lambda: done.append(3))  # two already waiting
    assert (worker.queued, worker.accepted, worker.refused) == (2, 3, 1)
    worker.submit(lambda: 1 / 0)  # refused too: still full
    release.set()
    worker.close()
    assert done == [1, 2] and worker.queued == 0 and not errors


def test_a_failing_job_is_reported_and_the_worker_goes_on():
    errors, done = [], []
    worker = PromptWorker(4, on_error=errors.append)
    worker.submit(lambda: 1 / 0)
    worker.submit(lambda: done.append("after"))
    worker.close()
    assert done == ["after"] and len(errors) == 1 and "ZeroDivisionError" in errors[0]


def test_deferred_response_is_sent_with_the_header_even_when_compute_fails():
    sent = []
    ok = DeferredResponse(lambda: "answer", failure=lambda exc: f"failed: {exc}")
    bad = DeferredResponse(lambda: 1 / 0, failure=lambda exc: "failed")
    for deferred, header in ((ok, "h1"), (bad, "h2")):
        runner = threading.Thread(target=deferred.run)
        runner.start()  # the worker may start before the executor hands over the header
        deferred.bind(lambda response, h: sent.append((response, h)), header)
        runner.join(5)
    assert sent == [("answer", "h1"), ("failed", "h2")]


def test_sequence_gaps_count_missed_messages_per_frame_id():
    gaps = SequenceGaps()
    assert [gaps.observe("cam", s) for s in (5, 6, 9, 10)] == [0, 0, 2, 0]
    assert gaps.observe("other", 100) == 0 and gaps.observe("cam", 12) == 1
    assert gaps.observe("cam", 3) == 0  # restarted camera: starts over, no gap
    assert gaps.observe("cam", None) == 0 and gaps.observe("cam", 2 ** 64 - 1) == 0  # unsupported by the rmw


def test_log_text_is_bounded():
    assert compact(1e300) == "1e+300" and compact(float("nan")) == "nan" and compact(0.5) == "0.5"
    assert len(compact("x" * 5000)) <= 60 and len(compact(list(range(100)))) <= 60
    line = bounded("a" * 10_000 + "\nsecond line")
    assert len(line) == MAX_LINE and line.endswith("...") and "second" not in line


def test_closing_with_a_reason_answers_queued_and_overdue_calls_exactly_once():
    """Issue 17: deactivate left queued calls unanswered. close(reason=...) answers each queued call
    with the reason at once, and the running one when it overruns the bound; its late result is
    not sent a second time."""
    sent, errors = [], []
    release, started = threading.Event(), threading.Event()
    worker = PromptWorker(8, on_error=errors.append)
    calls = []
    for i in range(5):
        compute = (lambda: (started.set(), release.wait(10), "slow answer")[2]) if i == 0 else \
            (lambda i=i: f"answer {i}")
        deferred = DeferredResponse(compute, failure=lambda exc: "failed", refusal=lambda reason: f"refused: {reason}")
        deferred.bind(lambda response, header: sent.append((header, response)), f"h{i}")
        assert worker.submit(deferred.run, cancel=deferred.cancel)
        calls.append(deferred)
    assert started.wait(5)  # the first call is running, four wait
    worker.close(timeout=0.2, reason="node deactivating")
    assert sorted(sent) == [(f"h{i}", "refused: node deactivating") for i in range(5)]
    assert not worker.submit(lambda: None) and worker.closed
    release.set()  # the overdue call ends later: its answer was already given
    worker._thread.join(5)
    assert len(sent) == 5 and not errors


def test_sequence_gaps_are_tracked_per_publisher_gid():
    gaps = SequenceGaps()
    a, b = ({"publisher_gid": {"data": bytes([i] * 16)}} for i in (1, 2))
    seen = [gaps.observe_message({**pub, "publication_sequence_number": s}, "cam")
            for pub, s in ((a, 40), (b, 1), (a, 41), (b, 2), (a, 43), (b, 3))]
    assert seen == [0, 0, 0, 0, 1, 0] and not gaps.approximate
    assert gaps.observe_message({"publication_sequence_number": 7}, "cam") == 0 and gaps.approximate


def test_cancel_returns_only_after_an_answer_under_way_has_been_sent():
    """The node destroys the service right after closing the worker. A computed answer whose send
    had begun (the worker thread preempted in it, under load) went out after that and was lost:
    the test_lifecycle deactivate case failed 1 of 8 calls unanswered. cancel() now waits for it."""
    sent, sending = [], threading.Event()

    def slow_send(response, header):
        sending.set()
        time.sleep(0.3)  # the prompt thread preempted mid-send
        sent.append(response)

    deferred = DeferredResponse(lambda: "computed", failure=lambda exc: "failed", refusal=lambda r: f"refused: {r}")
    deferred.bind(slow_send, "h")
    runner = threading.Thread(target=deferred.run)
    runner.start()
    assert sending.wait(5)
    deferred.cancel("node deactivating")  # what PromptWorker.close does to the running call
    assert sent == ["computed"], "cancel returned before the answer under way was sent"
    runner.join(5)
    assert sent == ["computed"]
