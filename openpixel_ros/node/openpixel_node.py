"""openpixel_node: camera frames in, label image / mask / colour / overlay out.

Topics, services and parameters are documented in docs/nodes.md. This module wires ROS and
delegates: the engine is loaded by :func:`.startup.load_segmentor`, parameters are declared,
checked and applied from their table (:mod:`.parameters`), outputs are drawn by
:func:`~openpixel_ros.visualize.render_outputs`, click prompts are translated by
:mod:`.prompt_messages`, statistics and status come from :mod:`.diagnostics`.

Threading: the subscription callback only drops the message into a one-slot
mailbox (:class:`LatestFrameSlot`); a worker thread decodes and segments the
newest frame. A slow engine therefore drops frames (counted) rather than
queueing them, and latency stays bounded. Prompt requests (service, clicks) go
to a second worker through a bounded queue (:class:`PromptWorker`), so they
never stall frame intake and a burst is answered "busy" rather than lost.
"""
from __future__ import annotations

import itertools
import sys
import threading
import time

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool

from ..adaptation import AdaptationConfig
from ..engines import EngineError
from ..image_codec import ImageDecodeError
from ..interactive import ClickSession, PromptError
from ..latest_frame import LatestFrameSlot
from ..log_text import bounded, compact
from ..msg import AdaptationState
from ..segmentor import Segmentor
from ..srv import SegmentAtPoints
from ..visualize import OUTPUTS, render_outputs
from . import class_metadata, prompt_messages
from .camera_info import CameraInfoRelay
from .click_topics import ClickTypeWatch
from .compressed_outputs import CompressedOutputs
from .diagnostics import LOG_THROTTLE_S, NodeStats, StatusLimits, diagnostic_array, segmentation_status, status_name
from .image_cdr import CdrImage
from .image_messages import array_to_image_msg, camera_frame_to_rgb
from .parameters import declare_parameters, refuse_change, spec_by_name
from .prompt_worker import DeferredResponse, PromptWorker, defer_responses, refuse_pending_requests
from .runner import run_node
from .stage_log import StageLog
from .startup import StartupError, load_segmentor  # noqa: F401  (StartupError: lifecycle_node.py)
from .usage import segmentation_node_usage
from .worker_stage import WorkerStage

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                "best_available": ReliabilityPolicy.BEST_AVAILABLE}
# Every camera message gets the next number on receipt: the prompt engines' cache key for the frame.
# Process-wide, so a re-activated lifecycle node never reuses a key of an earlier frame.
_RECEIPT_NUMBERS = itertools.count(1)
# Stopping (deactivate, shutdown): how long the running prompt call may take before it is answered
# "node deactivating" instead.
_PROMPT_STOP_TIMEOUT_S = 2.0
# A prompt that cannot be answered for one of these is refused with its one-line reason.
_PROMPT_ERRORS = (PromptError, ImageDecodeError, EngineError, ValueError)


class OpenPixelNode(Node):
    def __init__(self, **kwargs):
        super().__init__("openpixel", **kwargs)
        self._specs = spec_by_name()
        declare_parameters(self, self._specs)
        # The lifecycle variant (lifecycle_node.py) runs these phases on configure and activate.
        self._configure()
        self._create_outputs()
        self._start_processing()

    def _param(self, name):
        return self.get_parameter(name).value

    def _configure(self) -> None:
        """Load the engine (StartupError on any fault) and take the run-time parameters' values."""
        p = self._param
        self.segmentor: Segmentor = load_segmentor(p, self._specs, self.get_logger().info)
        self._palette = self.segmentor.contract.color_table()
        self.overlay_alpha = float(p("overlay_alpha"))
        self.max_rate_hz = p("max_rate_hz")
        self.engine_delay_ms = p("debug.engine_delay_ms")
        self.limits = StatusLimits(p("input_timeout"), p("diagnostics.min_processed_ratio"),
                                   p("diagnostics.stuck_timeout"))
        self._max_pixels = p("max_image_pixels")
        self._parameters_callback = self.add_on_set_parameters_callback(self._on_set_parameters)
        class_metadata.declare_classes_parameter(self, self.segmentor.contract)

    def _create_outputs(self) -> None:
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._param("output_qos.depth"),
                             reliability=_RELIABILITY[self._param("output_qos.reliability")],
                             durability=DurabilityPolicy.VOLATILE)
        self.pub_label = self.create_publisher(Image, "~/label", out_qos)
        self.pub_mask = self.create_publisher(Image, "~/mask", out_qos)
        self.pub_color = self.create_publisher(Image, "~/color", out_qos)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_adaptation = self.create_publisher(AdaptationState, "~/adaptation", 10)
        self.pub_adapted = self.create_publisher(Image, "~/adapted_image", out_qos)
        self.pub_click_mask = self.create_publisher(Image, "~/click_mask", out_qos)
        self.pub_click_overlay = self.create_publisher(Image, "~/click_overlay", out_qos)
        self.compressed = CompressedOutputs(self, out_qos, self._param("compressed.jpeg_quality"))
        self._last_adaptation = None
        self.pub_label_info = class_metadata.publish_label_info(self, self.segmentor.contract)

    def _start_processing(self) -> None:
        """Subscribe to the camera and clicks, start the worker, diagnostics and services."""
        p = self._param
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p("qos.depth"),
                            reliability=_RELIABILITY[p("qos.reliability")], durability=DurabilityPolicy.VOLATILE)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        if p("input_transport") == "compressed":
            topic = self.resolve_topic_name("image") + "/compressed"
            self._sub = self.create_subscription(CompressedImage, topic, self._on_image, in_qos,
                                                 event_callbacks=events)
        elif p("transport.raw_cdr"):  # the CDR bytes, pixels viewed in place (node/image_cdr.py)
            self._sub = self.create_subscription(Image, "image", lambda data, info: self._on_image(
                CdrImage(data), info), in_qos, event_callbacks=events, raw=True)
        else:
            self._sub = self.create_subscription(Image, "image", self._on_image, in_qos, event_callbacks=events)

        self.stats = NodeStats()
        self._slot = LatestFrameSlot()
        self._enabled = True
        self._latest = None  # (newest camera message, kept undecoded for click prompts; its receipt number)
        self._stage = WorkerStage()
        self._stage_log = StageLog(self.get_logger())
        self._camera_info = CameraInfoRelay(self, self.resolve_topic_name("image"), self.pub_label.qos_profile)
        self._worker = threading.Thread(target=self._work_loop, name="openpixel-inference", daemon=True)
        self._worker.start()
        self.diagnostics_timer = self.create_timer(p("diagnostics_period"), self._publish_diagnostics)
        self._enable_srv = self.create_service(SetBool, "~/enable", self._on_enable)

        # -- click prompts: a service, and clicks from image views, answered by the prompt worker --
        self.click_session = ClickSession(p("click.session_timeout"))
        self.prompts = PromptWorker(p("click.queue_size"), on_error=self._report_error)
        # Keep every request until the callback has queued or refused it (microseconds each):
        # the default depth of 10 lost the rest of a burst without an answer.
        self._srv = self.create_service(SegmentAtPoints, "~/segment_at_points", self._on_segment_at_points,
                                        qos_profile=QoSProfile(history=HistoryPolicy.KEEP_ALL,
                                                               reliability=ReliabilityPolicy.RELIABLE))
        defer_responses(self._srv)
        # rqt_image_view's mouse publishing sends geometry_msgs/Point: click.message_type point.
        click_type = Point if p("click.message_type") == "point" else PointStamped
        self._click_subs = [
            self.create_subscription(click_type, "~/click", lambda m: self._queue_click(m, 1), 10),
            self.create_subscription(click_type, "~/click_negative", lambda m: self._queue_click(m, 0), 10)]
        self._click_type_watch = ClickTypeWatch(self, self._click_subs, p("click.message_type"))
        self._log_start(p)

    def _log_start(self, p) -> None:
        contract, eng = self.segmentor.contract, self.segmentor.semantic.engine
        transport = p("input_transport") + (" CDR" if p("input_transport") == "raw" and p("transport.raw_cdr") else "")
        self.get_logger().info(
            f"model {self.segmentor.model_path} ({contract.num_classes} classes: "
            f"{', '.join(contract.classes[:6])}{', ...' if contract.num_classes > 6 else ''}) on "
            f"{eng.backend}/{eng.device}; listening on {self._sub.topic_name} ({transport}, "
            f"{p('qos.reliability')}, depth {p('qos.depth')}); mask classes "
            f"{[contract.classes[i] for i in self.segmentor.foreground_ids]}")

    # -- parameters: checked and applied by their table (parameters.py) ------------------------
    def _adaptation_config(self, changes: dict) -> AdaptationConfig:
        """AdaptationConfig from the adaptation.* parameters, with ``changes`` applied; validated."""
        prefix = "adaptation."
        values = {name: self._param(name) for name in self._specs if name.startswith(prefix)}
        values.update({name: value for name, value in changes.items() if name.startswith(prefix)})
        return AdaptationConfig.from_dict({name[len(prefix):]: value for name, value in values.items()})

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self._specs}
        reason = refuse_change(self._specs, changes, self)
        if reason is None and any(name.startswith("adaptation.") for name in changes):
            try:  # the whole configuration must stay valid (e.g. release < activation score)
                self._adaptation_config(changes)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            return SetParametersResult(successful=False, reason=bounded(reason))
        for name, value in changes.items():  # all valid: apply
            self._specs[name].apply(self, value)
        return SetParametersResult(successful=True)

    def effective_parameter_values(self) -> dict:
        """Every run-time parameter as the running node applies it, read back from the objects
        that use it (not from the parameter store): a test checks each one follows a change."""
        return {name: spec.read_back(self) for name, spec in self._specs.items() if spec.read_back}

    # -- input ------------------------------------------------------------------------------
    def _on_image(self, msg, info) -> None:
        received = self.stats.frame_received(info, msg.header.frame_id)
        self._latest = (msg, next(_RECEIPT_NUMBERS))
        self._stage_log.debug("input", lambda: f"frame {_stamp_text(msg.header)} on {self._sub.topic_name}, "
                                               f"{'queued' if self._enabled else 'not queued (~/enable false)'}")
        if self._enabled:
            self._slot.put((msg, received))
        else:  # ~/enable false: frames are counted and kept for clicks, not segmented
            self.stats.drops.add("paused")

    def _on_enable(self, request, response):
        self._enabled = bool(request.data)
        response.success = True
        response.message = "processing resumed" if self._enabled else "processing paused (engine stays loaded)"
        self.get_logger().info(f"~/enable {request.data}: {response.message}")
        return response

    def _on_incompatible_qos(self, event) -> None:
        self.get_logger().warning(
            f"a publisher on {self._sub.topic_name} offers incompatible QoS (policy "
            f"{event.last_policy_kind}); set qos.reliability to best_effort or best_available",
            throttle_duration_sec=LOG_THROTTLE_S)

    def _report_error(self, text: str) -> None:
        line = self.stats.error(text)
        if line:  # each distinct error once per LOG_THROTTLE_S (and at most 10 lines in that time)
            self.get_logger().warning(line)

    # -- inference worker -------------------------------------------------------------------
    def _outputs_wanted(self) -> dict:
        """output -> subscribed, raw or (label, mask, color, overlay) compressed."""
        compressed = self.compressed.wanted()
        return {name: pub.get_subscription_count() > 0 or compressed.get(name, False) for name, pub in (
            ("label", self.pub_label), ("mask", self.pub_mask), ("color", self.pub_color),
            ("overlay", self.pub_overlay), ("adaptation", self.pub_adaptation), ("adapted", self.pub_adapted))}

    def _work_loop(self) -> None:
        last_start = 0.0
        drops = self.stats.drops
        while rclpy.ok() and not self._slot.closed:
            item = self._slot.take(timeout=0.5)
            if item is None:
                continue
            if self.max_rate_hz and time.monotonic() - last_start < 1.0 / self.max_rate_hz:
                drops.add("rate_limit")
                continue  # rate cap: this frame is skipped, the next one is waited for
            last_start = time.monotonic()
            try:
                self._process(*item)
            except (ImageDecodeError, ValueError) as exc:
                drops.add("decode_error")
                self._report_error(f"dropped frame from {self._sub.topic_name}: {exc}")
            except EngineError as exc:
                drops.add("engine_error")
                self._report_error(f"inference failed: {exc}")
            except Exception as exc:  # keep the node alive; the message says what happened
                if not rclpy.ok():
                    break
                drops.add("engine_error")
                self._report_error(f"unexpected error on frame: {type(exc).__name__}: {exc}")
            finally:
                self._stage.idle()

    def _process(self, msg, received: float) -> None:
        """Worker: one frame from decode to its published outputs."""
        wanted = self._outputs_wanted()
        if not any(wanted.values()):
            self.stats.drops.add("no_subscribers")
            return
        self._stage.enter("decode")
        t0 = time.perf_counter()
        rgb = camera_frame_to_rgb(msg, self._max_pixels)
        header = msg.header
        self._stage_log.debug("decode", lambda: f"frame {_stamp_text(header)}: {rgb.shape[1]}x{rgb.shape[0]} in "
                                                f"{(time.perf_counter() - t0) * 1e3:.2f} ms")
        images = [name for name in OUTPUTS if wanted[name]]
        if not images:  # only adaptation monitoring is subscribed: no inference
            self._stage.enter("adaptation")
            adapted, state, _ = self.segmentor.adapt(rgb)
            self._stage.enter("publish")
            self._publish_adaptation(header, adapted, state, wanted)
            return
        result = self.segmentor.segment(rgb, on_stage=self._stage.enter)
        if self.engine_delay_ms:
            time.sleep(self.engine_delay_ms / 1e3)
        self._stage.enter("publish")
        self._stage_log.debug("inference", lambda: f"frame {_stamp_text(header)}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result.timings.items()))
        t_publish = time.perf_counter()
        self._publish_adaptation(header, result.adapted, result.adaptation, wanted)
        publishers = {"label": self.pub_label, "mask": self.pub_mask, "color": self.pub_color,
                      "overlay": self.pub_overlay}
        for name, (image, encoding) in render_outputs(rgb, result.labels, result.mask, self._palette,
                                                      self.overlay_alpha, images).items():
            # raw and <output>/compressed, each while subscribed
            self.compressed.publish_with_raw(name, publishers[name], image, header, encoding)
        self._camera_info.publish_for(header)  # the outputs' camera model, same header
        self._stage_log.debug("publish", lambda: f"frame {_stamp_text(header)}: "
                                                 f"{', '.join(k for k, v in wanted.items() if v)} in "
                                                 f"{(time.perf_counter() - t_publish) * 1e3:.2f} ms")
        self.stats.frame_processed(received, result.timings.get("engine_ms", 0.0))

    def _publish_adaptation(self, header, adapted, state, wanted) -> None:
        if state is None:
            return
        self._last_adaptation = state
        if wanted["adaptation"]:
            msg = AdaptationState(header=header)
            for key, value in state.to_dict().items():
                setattr(msg, key, type(getattr(msg, key))(value))
            self.pub_adaptation.publish(msg)
        if wanted["adapted"] and adapted is not None:
            self.pub_adapted.publish(array_to_image_msg(np.ascontiguousarray(adapted), header, "rgb8"))

    # -- click prompts: ~/segment_at_points and ~/click, answered by the prompt worker ---------
    def _latest_frame(self):
        """(header, rgb, cache key) of the newest camera frame; the key lets repeated clicks on one
        frame reuse the prompt engine's cached features. The key is the frame's receive number, not
        its stamp: cameras that leave stamps at zero (or repeat them) would get an older frame's mask."""
        latest = self._latest
        if latest is None:
            raise ValueError(f"no camera frame has arrived on {self._sub.topic_name} yet")
        msg, number = latest
        return msg.header, camera_frame_to_rgb(msg, self._max_pixels), ("received", number)

    def _on_segment_at_points(self, request, response):
        """Executor thread: queue the request (answered by the prompt worker) or refuse it now."""
        reason = prompt_messages.too_many_points(request)  # refused before it can hold up the queue
        if reason is None:
            deferred = DeferredResponse(lambda: self._segment_at_points(request, response),
                                        failure=lambda exc: self._internal_error_response(response, exc),
                                        refusal=prompt_messages.refusal)
            if self.prompts.submit(deferred.run, cancel=deferred.cancel):
                return deferred
            reason = "node deactivating" if self.prompts.closed else f"busy: {self.prompts.queued} requests queued"
            self.get_logger().warning(f"segment_at_points refused: {reason}", throttle_duration_sec=LOG_THROTTLE_S)
        response.success, response.message = False, reason
        return response

    def _segment_at_points(self, request, response):
        """Prompt worker: the answer to one ~/segment_at_points request."""
        t0 = time.perf_counter()
        try:
            own_image = prompt_messages.request_image(request.image, self._max_pixels)
            header, rgb, key = (*own_image, None) if own_image else self._latest_frame()
            prompt = prompt_messages.request_prompt(request, rgb.shape[:2])
            result = self.segmentor.segment_clicks(rgb, prompt, multimask=request.multimask_output, key=key)
        except _PROMPT_ERRORS as exc:
            response.success, response.message = False, bounded(str(exc))
            self.get_logger().warning(f"segment_at_points refused: {response.message}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return response
        return prompt_messages.fill_response(response, result, header, request.multimask_output,
                                             self.segmentor.prompt_engine.name, (time.perf_counter() - t0) * 1e3)

    def _internal_error_response(self, response, exc: Exception):
        response.success = False
        response.message = bounded(f"internal error: {type(exc).__name__}: {exc}")
        self._report_error(f"segment_at_points: {response.message}")
        return response

    def _stop_prompts(self, reason: str) -> None:
        """Before the service goes away: every accepted call and every request still in the
        service's queue is answered (success=false, ``reason``); the running call gets
        _PROMPT_STOP_TIMEOUT_S to finish, else it is answered with ``reason`` too."""
        self.prompts.close(timeout=_PROMPT_STOP_TIMEOUT_S, reason=reason)
        try:
            refuse_pending_requests(self._srv, lambda: prompt_messages.refusal(reason))
        except Exception as exc:  # the context may already be shut down (a signal): nothing to answer on
            self.get_logger().debug(f"pending prompt requests not answered: {type(exc).__name__}")

    def _queue_click(self, msg, label: int) -> None:
        if not self.prompts.submit(lambda: self._on_click(msg, label)):
            self.stats.click_dropped()
            self.get_logger().warning(f"click dropped: {self.prompts.queued} prompt requests queued",
                                      throttle_duration_sec=LOG_THROTTLE_S)

    def _on_click(self, msg, label: int) -> None:
        """Prompt worker: one click on the latest frame, refining the session's object."""
        x, y = prompt_messages.click_point(msg)
        clicks = self.click_session.add(x, y, label)
        try:
            header, rgb, key = self._latest_frame()
            # On the same frame the session's last mask goes back in: the engine refines it (and
            # the openpixel engine zooms in on the object).
            prompt = ClickSession.prompt(clicks, rgb.shape[:2], self.click_session.previous_mask(key))
            result = self.segmentor.segment_clicks(rgb, prompt, key=key)
        except _PROMPT_ERRORS as exc:
            self.click_session.discard(clicks[-1])  # an invalid click must not poison the session
            self._report_error(f"click at ({compact(x)}, {compact(y)}): {exc}")
            return
        self.click_session.remember(key, result.mask != 0)
        self._stage_log.debug("click", lambda: f"({x:.0f}, {y:.0f}) label {label} on frame {_stamp_text(header)}: "
                                               f"{len(clicks)} clicks in the session, area {result.area} px")
        self.pub_click_mask.publish(array_to_image_msg(result.mask, header, "mono8"))
        if self.pub_click_overlay.get_subscription_count():
            self.pub_click_overlay.publish(array_to_image_msg(
                prompt_messages.click_overlay(rgb, result.mask, label, self.overlay_alpha), header, "rgb8"))

    # -- diagnostics ------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        self._click_type_watch.check()  # a wrong-type click publisher is said once
        values = self.stats.values(self._slot.dropped, self.prompts)
        engine = self.segmentor.semantic.engine
        values.update({"enabled": str(self._enabled), "model": str(self.segmentor.model_path),
                       "backend": engine.backend, "device": engine.device,
                       "classes": ", ".join(self.segmentor.contract.classes)})
        values.update(self._camera_info.diagnostics())
        if self._last_adaptation is not None:
            values["adaptation_score"] = f"{self._last_adaptation.score_smoothed:.3f}"
            values["adaptation_active"] = str(self._last_adaptation.active)
        slow = self.stats.slow_warning(self.limits, self.max_rate_hz, any(self._outputs_wanted().values()))
        status = segmentation_status(self.get_fully_qualified_name(), self.stats, values,
                                     topic=self._sub.topic_name, limits=self.limits, enabled=self._enabled,
                                     stuck=self._stage.stuck(self.limits.stuck_timeout), slow_warning=slow)
        self.pub_diagnostics.publish(diagnostic_array(status, self.get_clock().now().to_msg()))

    def destroy_node(self):
        # Also reached for a node whose __init__ failed half-way (rclpy's context cleanup).
        if getattr(self, "prompts", None) is not None and not self.prompts.closed:
            self._stop_prompts("node shutting down")  # answers the queued service calls first
        slot, worker = getattr(self, "_slot", None), getattr(self, "_worker", None)
        if slot is not None:
            slot.close()
        if worker is not None and worker.is_alive():
            worker.join(timeout=5.0)
        if getattr(self, "segmentor", None) is not None:
            self.segmentor.close()
        return super().destroy_node()


def diagnostics_status_name(node: Node) -> str:
    return status_name(node.get_fully_qualified_name())


def _stamp_text(header) -> str:
    return f"{header.stamp.sec}.{header.stamp.nanosec:09d}"


def main(args=None) -> int:
    # A corrupt frame is reported once, in our own bounded line; OpenCV's decoder warnings
    # would add an unthrottled line per frame.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    # Inference and prompt requests have their own worker threads; the executor's thread only
    # hands messages over.
    return run_node(OpenPixelNode, "openpixel", args, usage=segmentation_node_usage)


if __name__ == "__main__":
    sys.exit(main())
