"""The node's /diagnostics: its statistics (:class:`NodeStats`) and the status built from them.

``NodeStats`` is plain Python (thread-safe counters, latency windows, drops by cause), written by
the executor thread, the inference worker and the prompt worker; :func:`segmentation_status`
turns a snapshot into the one ``DiagnosticStatus`` the node publishes while active, and
:func:`state_status` the one it publishes in any other lifecycle state (a supervisor tells
"inactive" from "dead"). docs/nodes.md lists every key (a test checks it).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ..log_text import DistinctLines, bounded
from .frame_drops import DROP_CAUSES, FrameDrops, SequenceGaps
from .rates import RateMeter, engine_ms_text, percentiles, processed_ratio_warning

# Each distinct error is logged once per this many seconds.
LOG_THROTTLE_S = 5.0
_WINDOW = 300  # frames in the latency and engine-time windows


@dataclass
class StatusLimits:
    """The run-time thresholds of the status (parameters input_timeout, diagnostics.*)."""
    input_timeout: float = 2.0
    min_processed_ratio: float = 0.5
    stuck_timeout: float = 10.0


class NodeStats:
    """Counters, latency windows and drops by cause of one active period of the node (thread-safe)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.drops = FrameDrops()
        self._sequence_gaps = SequenceGaps()
        self.received = 0  # every camera message, paused or not (the frame slot counts only those offered)
        self.processed = 0
        self.errors = 0
        self.last_error = ""
        self.clicks_dropped_busy = 0
        self.last_frame_time: Optional[float] = None
        self._latency_ms = deque(maxlen=_WINDOW)
        self._engine_ms = deque(maxlen=_WINDOW)
        self._distinct_errors = DistinctLines(LOG_THROTTLE_S)
        self.input_rate, self.processed_rate = RateMeter(clock=clock), RateMeter(clock=clock)

    def frame_received(self, info: dict, frame_id: str) -> float:
        """A camera message arrived (``info``: rclpy's message info); returns its receipt time."""
        now = self._clock()
        missed = self._sequence_gaps.observe_message(info, frame_id)
        if missed:
            self.drops.add("queue_overrun", missed)
        self.input_rate.tick()
        with self._lock:
            self.received += 1
            self.last_frame_time = now
        return now

    def frame_processed(self, received: float, engine_ms: float) -> None:
        """A frame's outputs went out; ``received`` is its :meth:`frame_received` time."""
        self.processed_rate.tick()
        with self._lock:
            self.processed += 1
            self._latency_ms.append((self._clock() - received) * 1e3)
            self._engine_ms.append(engine_ms)

    def click_dropped(self) -> None:
        with self._lock:
            self.clicks_dropped_busy += 1

    def error(self, text: str) -> Optional[str]:
        """Count an error; the bounded line to log, or None while the same line was logged lately."""
        text = bounded(text)
        with self._lock:
            self.errors += 1
            self.last_error = text
            return text if self._distinct_errors.admit(text) else None

    def seconds_since_frame(self) -> Optional[float]:
        with self._lock:
            return None if self.last_frame_time is None else self._clock() - self.last_frame_time

    def values(self, newest_frame_drops: int, prompts) -> dict:
        """The counters as diagnostics key/values; ``prompts``: the node's PromptWorker."""
        drops = self.drops.snapshot()
        drops["newest_frame"] = newest_frame_drops
        with self._lock:
            latency = percentiles(self._latency_ms)
            engine_p50, engine_p95 = percentiles(self._engine_ms)
            engine_median = float(np.median(self._engine_ms)) if self._engine_ms else 0.0
            return {
                "frames_received": self.received, "frames_processed": self.processed,
                "frames_dropped": sum(drops.values()),
                **{f"frames_dropped_{cause}": drops[cause] for cause in DROP_CAUSES},
                "prompt_requests_queued": prompts.queued, "prompt_requests_accepted": prompts.accepted,
                "prompt_requests_refused_busy": prompts.refused, "clicks_dropped_busy": self.clicks_dropped_busy,
                "queue_overrun_counting": "per frame_id, approximate with several publishers"
                if self._sequence_gaps.approximate else "per publisher",
                "errors": self.errors, "last_error": self.last_error,
                "latency_p50_ms": f"{latency[0]:.1f}", "latency_p95_ms": f"{latency[1]:.1f}",
                "engine_median_ms": engine_ms_text(engine_median),
                "input_rate_hz": f"{self.input_rate.rate_hz():.2f}",
                "processed_rate_hz": f"{self.processed_rate.rate_hz():.2f}",
                "engine_p50_ms": engine_ms_text(engine_p50), "engine_p95_ms": engine_ms_text(engine_p95),
            }

    def slow_warning(self, limits: StatusLimits, max_rate_hz: float, outputs_subscribed: bool) -> Optional[str]:
        return processed_ratio_warning(self.input_rate.rate_hz(), self.processed_rate.rate_hz(),
                                       limits.min_processed_ratio, max_rate_hz, outputs_subscribed)


def status_name(full_name: str) -> str:
    """``/front/openpixel: segmentation``: the fully qualified name tells two cameras' nodes apart
    (tools key on the status name), as diagnostic_updater puts the node's name in it."""
    return f"{full_name}: segmentation"


def segmentation_status(full_name: str, stats: NodeStats, values: dict, *, topic: str, limits: StatusLimits,
                        stuck: Optional[tuple], enabled: bool, slow_warning: Optional[str]) -> DiagnosticStatus:
    """The active node's status: the most urgent condition first, with every value of ``values``.

    ``stuck``: (stage, seconds) of a worker stuck on one frame, or None.
    """
    status = DiagnosticStatus(name=status_name(full_name), hardware_id=full_name)
    since = stats.seconds_since_frame()
    if stuck is not None:
        status.level, status.message = DiagnosticStatus.ERROR, \
            f"inference worker stuck in {stuck[0]} for {stuck[1]:.1f} s (diagnostics.stuck_timeout)"
    elif since is None:
        status.level, status.message = DiagnosticStatus.WARN, f"no frames yet on {topic}"
    elif since > limits.input_timeout:
        status.level, status.message = DiagnosticStatus.WARN, f"input stale: no frame on {topic} for {since:.1f} s"
    elif stats.last_error and stats.errors and stats.processed == 0:
        status.level, status.message = DiagnosticStatus.ERROR, stats.last_error
    elif not enabled:
        status.level, status.message = DiagnosticStatus.OK, "paused (~/enable false)"
    elif slow_warning:
        status.level, status.message = DiagnosticStatus.WARN, slow_warning
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status


def state_status(full_name: str, state: str, model: Optional[str] = None) -> DiagnosticStatus:
    """The status outside the active state: level OK, the lifecycle state as message."""
    status = DiagnosticStatus(name=status_name(full_name), hardware_id=full_name, level=DiagnosticStatus.OK,
                              message={"inactive": "inactive: not processing"}.get(state, state),
                              values=[KeyValue(key="lifecycle_state", value=state)])
    if model is not None:
        status.values.append(KeyValue(key="model", value=model))
    return status


def adaptation_values(state) -> dict:
    """The lighting adaptation's last state (an AdaptationState of the library), or nothing before one."""
    if state is None:
        return {}
    return {"adaptation_score": f"{state.score_smoothed:.3f}", "adaptation_active": str(state.active)}


def diagnostic_array(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    array_msg = DiagnosticArray(status=[status])
    array_msg.header.stamp = stamp
    return array_msg
