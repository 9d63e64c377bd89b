"""Click prompts of the active node: ``~/segment_at_points`` and ``~/click``/``~/click_negative``,
answered in arrival order by one prompt worker (:class:`PromptWorker`), so they never stall frame
intake and a burst is answered "busy" rather than lost.

Created when the node activates, closed when it deactivates (every accepted or waiting call is
answered first). Messages are translated by :mod:`.prompt_messages`; the frames, the engine and
the click outputs are the node's (:class:`.openpixel_node.OpenPixelNode`).
"""
from __future__ import annotations

import time

from geometry_msgs.msg import Point, PointStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..engines import EngineError
from ..image_codec import ImageDecodeError
from ..interactive import ClickSession, PromptError
from ..log_text import bounded, compact
from ..srv import SegmentAtPoints
from . import prompt_messages
from .click_topics import ClickTypeWatch
from .diagnostics import LOG_THROTTLE_S
from .prompt_worker import (DeferredResponse, PromptWorker, defer_responses, let_answers_go_out,
                            refuse_pending_requests)

# Stopping (deactivate, shutdown): how long the running prompt call may take before it is answered
# with the stop reason ("node deactivating") instead.
STOP_TIMEOUT_S = 2.0
# ... and how long the last answer gets to reach its client before the service is destroyed.
ANSWER_DELIVERY_S = 1.0
# A prompt that fails with one of these is refused with its one-line reason (anything else: internal error).
_PROMPT_ERRORS = (PromptError, ImageDecodeError, EngineError, ValueError)


class ClickPrompts:
    def __init__(self, node, param):
        self._node = node
        self.session = ClickSession(param("click.session_timeout"))
        self.worker = PromptWorker(param("click.queue_size"), on_error=node.report_error)
        # Keep every request until the callback has queued or refused it (microseconds each):
        # the default depth of 10 lost the rest of a burst without an answer.
        self._srv = node.create_service(SegmentAtPoints, "~/segment_at_points", self._on_segment_at_points,
                                        qos_profile=QoSProfile(history=HistoryPolicy.KEEP_ALL,
                                                               reliability=ReliabilityPolicy.RELIABLE))
        defer_responses(self._srv)
        # rqt_image_view's mouse publishing sends geometry_msgs/Point: click.message_type point.
        click_type = Point if param("click.message_type") == "point" else PointStamped
        self._click_subs = [
            node.create_subscription(click_type, "~/click", lambda m: self._queue_click(m, 1), 10),
            node.create_subscription(click_type, "~/click_negative", lambda m: self._queue_click(m, 0), 10)]
        self.type_watch = ClickTypeWatch(node, self._click_subs, param("click.message_type"))

    def close(self, reason: str) -> None:
        """Before the service goes away: every accepted call and every request still in the
        service's queue is answered (success=false, ``reason``); the running call gets
        STOP_TIMEOUT_S to finish, else it is answered with ``reason`` too."""
        for subscription in self._click_subs:
            self._node.destroy_subscription(subscription)
        self.worker.close(timeout=STOP_TIMEOUT_S, reason=reason)
        try:
            refuse_pending_requests(self._srv, lambda: prompt_messages.refusal(reason))
        except Exception as exc:  # the context may already be shut down (a signal): nothing to answer on
            self._node.get_logger().debug(f"pending prompt requests not answered: {type(exc).__name__}")
        let_answers_go_out(self._srv, ANSWER_DELIVERY_S)
        self._node.destroy_service(self._srv)

    # -- ~/segment_at_points ------------------------------------------------------------------
    def _on_segment_at_points(self, request, response):
        """Executor thread: queue the request (answered by the prompt worker) or refuse it now."""
        reason = prompt_messages.too_many_points(request)  # refused before it can hold up the queue
        if reason is None:
            deferred = DeferredResponse(lambda: self._segment_at_points(request, response),
                                        failure=lambda exc: self._internal_error_response(response, exc),
                                        refusal=prompt_messages.refusal)
            if self.worker.submit(deferred.run, cancel=deferred.cancel):
                return deferred
            reason = "node deactivating" if self.worker.closed else f"busy: {self.worker.queued} requests queued"
            self._node.get_logger().warning(f"segment_at_points refused: {reason}",
                                            throttle_duration_sec=LOG_THROTTLE_S)
        response.success, response.message = False, reason
        return response

    def _segment_at_points(self, request, response):
        """Prompt worker: the answer to one request, on its own image or the latest camera frame."""
        node, t0 = self._node, time.perf_counter()
        try:
            own_image = prompt_messages.request_image(request.image, node.max_pixels)
            header, rgb, key = (*own_image, None) if own_image else node.latest_frame()
            prompt = prompt_messages.request_prompt(request, rgb.shape[:2])
            result = node.segmentor.segment_clicks(rgb, prompt, multimask=request.multimask_output, key=key)
        except _PROMPT_ERRORS as exc:
            response.success, response.message = False, bounded(str(exc))
            node.get_logger().warning(f"segment_at_points refused: {response.message}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return response
        return prompt_messages.fill_response(response, result, header, request.multimask_output,
                                             node.segmentor.prompt_engine.name, (time.perf_counter() - t0) * 1e3)

    def _internal_error_response(self, response, exc: Exception):
        response.success = False
        response.message = bounded(f"internal error: {type(exc).__name__}: {exc}")
        self._node.report_error(f"segment_at_points: {response.message}")
        return response

    # -- ~/click, ~/click_negative ------------------------------------------------------------
    def _queue_click(self, msg, label: int) -> None:
        if not self.worker.submit(lambda: self._on_click(msg, label)):
            self._node.stats.click_dropped()
            self._node.get_logger().warning(f"click dropped: {self.worker.queued} prompt requests queued",
                                            throttle_duration_sec=LOG_THROTTLE_S)

    def _on_click(self, msg, label: int) -> None:
        """Prompt worker: one click on the latest frame, refining the session's object."""
        node = self._node
        x, y = prompt_messages.click_point(msg)
        clicks = self.session.add(x, y, label)
        try:
            header, rgb, key = node.latest_frame()
            # On the same frame the session's last mask goes back in: the engine refines it (and
            # the openpixel engine zooms in on the object).
            prompt = ClickSession.prompt(clicks, rgb.shape[:2], self.session.previous_mask(key))
            result = node.segmentor.segment_clicks(rgb, prompt, key=key)
        except _PROMPT_ERRORS as exc:
            self.session.discard(clicks[-1])  # an invalid click must not poison the session
            node.report_error(f"click at ({compact(x)}, {compact(y)}): {exc}")
            return
        self.session.remember(key, result.mask != 0)
        node.stage_log.debug("click", lambda: f"({x:.0f}, {y:.0f}) label {label} on frame {header.stamp.sec}."
                                              f"{header.stamp.nanosec:09d}: {len(clicks)} clicks in the session, "
                                              f"area {result.area} px")
        node.outputs.publish_click(result.mask, header, lambda: prompt_messages.click_overlay(
            rgb, result.mask, label, node.overlay_alpha))
