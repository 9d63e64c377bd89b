"""ClickSession: clicks accumulate into one session until a pause; invalid clicks are taken back."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from openpixel_ros.interactive import ClickPrompt, ClickSession, PromptError


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def test_clicks_accumulate_within_the_timeout(clock):
    session = ClickSession(timeout=2.0, clock=clock)
    assert session.add(10, 20, 1) == [(10.0, 20.0, 1)]
    clock.now += 1.5
    assert session.add(30, 40, 0) == [(10.0, 20.0, 1), (30.0, 40.0, 0)]
    clock.now += 2.0  # exactly the timeout: still the same session
    assert len(session.add(50, 60, 1)) == 3
    assert session.clicks == [(10.0, 20.0, 1), (30.0, 40.0, 0), (50.0, 60.0, 1)]


def test_a_pause_longer_than_the_timeout_starts_a_new_session(clock):
    session = ClickSession(timeout=2.0, clock=clock)
    session.add(10, 20, 1)
    session.add(11, 21, 1)
    clock.now += 2.01
    assert session.add(5, 5, 0) == [(5.0, 5.0, 0)]
    session.timeout = 10.0  # the node's click.session_timeout parameter changes it at run time
    clock.now += 5.0
    assert len(session.add(6, 6, 1)) == 2


def test_clear_and_discard(clock):
    session = ClickSession(timeout=2.0, clock=clock)
    session.add(1, 2, 1)
    bad = session.add(-5, 2, 1)[-1]
    session.discard(bad)
    assert session.clicks == [(1.0, 2.0, 1)]
    session.discard(bad)  # no longer the newest: nothing happens
    assert session.clicks == [(1.0, 2.0, 1)]
    session.clear()
    assert session.clicks == []
    assert session.add(3, 4, 0) == [(3.0, 4.0, 0)]


def test_the_returned_clicks_are_a_copy(clock):
    session = ClickSession(timeout=2.0, clock=clock)
    clicks = session.add(1, 2, 1)
    clicks.append((9, 9, 0))
    assert session.clicks == [(1.0, 2.0, 1)]


def test_prompt_from_the_session_checks_the_clicks(clock):
    session = ClickSession(timeout=2.0, clock=clock)
    clicks = session.add(100, 50, 1)
    prompt = ClickSession.prompt(clicks + [(10, 10, 0)], (120, 200))
    assert isinstance(prompt, ClickPrompt)
    assert prompt.positive_points.tolist() == [[100.0, 50.0]] and prompt.negative_points.tolist() == [[10.0, 10.0]]
    with pytest.raises(PromptError):
        ClickSession.prompt(session.add(500, 50, 1), (120, 200))  # outside the frame


def test_concurrent_clicks_are_all_kept():
    session = ClickSession(timeout=60.0)

    def click(i):
        for j in range(100):
            session.add(i, j, 1)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(session.clicks) == 400


def test_the_last_mask_is_offered_back_only_on_the_same_frame(clock):
    session = ClickSession(timeout=2.0, clock=clock)
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:4] = True
    session.add(2, 1, 1)
    session.remember("frame-1", mask)
    session.add(3, 2, 1)
    assert session.previous_mask("frame-1") is mask
    assert session.previous_mask("frame-2") is None  # a moving camera: another frame, no mask
    prompt = ClickSession.prompt(session.clicks, (4, 6), session.previous_mask("frame-1"))
    assert prompt.previous_mask is not None and prompt.previous_mask.sum() == 4
    clock.now += 3.0  # a pause: a new session forgets the mask
    session.add(1, 1, 1)
    assert session.previous_mask("frame-1") is None
    session.remember("frame-1", mask)
    session.clear()
    assert session.previous_mask("frame-1") is None
    assert ClickSession.prompt([(1, 1, 1)], (4, 6), mask).previous_mask is None  # a first click has none
