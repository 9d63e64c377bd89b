"""openpixel_node: camera frames in, label image / mask / colour / overlay out.

Topics, services and parameters are documented in docs/nodes.md.

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
from collections import deque

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_srvs.srv import SetBool

from ..adaptation import AdaptationConfig
from ..engines import EngineError
from ..image_codec import ImageDecodeError, decode_raw
from ..image_header import check_pixels
from ..interactive import ClickPrompt, ClickSession, PromptError
from ..interactive.prompts import MAX_POINTS
from ..latest_frame import LatestFrameSlot
from ..log_text import DistinctLines, bounded, compact
from ..model_contract import ContractError
from ..msg import AdaptationState
from ..segmentor import Segmentor
from ..srv import SegmentAtPoints
from ..visualize import colorize, overlay
from .image_cdr import CdrImage, cdr_image_to_rgb
from .image_messages import array_to_image_msg, compressed_msg_to_rgb, image_msg_to_rgb
from . import class_metadata
from .camera_info import CameraInfoRelay
from .click_topics import ClickTypeWatch
from .compressed_outputs import CompressedOutputs
from .frame_drops import DROP_CAUSES, FrameDrops, SequenceGaps
from .parameters import same_type, spec_by_name
from .prompt_worker import DeferredResponse, PromptWorker, defer_responses, refuse_pending_requests
from .rates import RateMeter, engine_ms_text, percentiles, processed_ratio_warning
from .runner import run_node
from .stage_log import StageLog
from .usage import segmentation_node_usage
from .startup import StartupError
from .worker_stage import WorkerStage

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                "best_available": ReliabilityPolicy.BEST_AVAILABLE}
_LOG_THROTTLE_S = 5.0
# Every camera message gets the next number on receipt: the prompt engines' cache key for the frame.
# Process-wide, so a re-activated lifecycle node never reuses a key of an earlier frame.
_RECEIPT_NUMBERS = itertools.count(1)
# Stopping (deactivate, shutdown): how long the running prompt call may take before it is answered
# "node deactivating" instead.
_PROMPT_STOP_TIMEOUT_S = 2.0
# Click overlay colours (background, clicked object): green after a positive click, orange after a negative one.
_CLICK_PALETTES = {1: np.array([(0, 0, 0), (0, 255, 0)], np.uint8), 0: np.array([(0, 0, 0), (255, 128, 0)], np.uint8)}


class OpenPixelNode(Node):
    def __init__(self, **kwargs):
        super().__init__("openpixel", **kwargs)
        self._declare_parameters()
        # The lifecycle variant (lifecycle_node.py) runs these phases on configure and activate.
        self._configure()
        self._create_outputs()
        self._start_processing()

    def _declare_parameters(self) -> None:
        self._specs = spec_by_name()
        for spec in self._specs.values():
            try:
                self.declare_parameter(spec.name, spec.default, spec.descriptor())
            except ParameterException:  # an override of the wrong type (overlay_alpha:=abc) or range
                given = self._parameter_overrides[spec.name].value
                if same_type(given, spec.default) and spec.validate(given):
                    raise StartupError(spec.validate(given)) from None
                if isinstance(spec.default, float) and isinstance(given, int) and not isinstance(given, bool):
                    raise StartupError(f"{spec.name} must be a double: write {given}.0, not {given}") from None
                raise StartupError(f"{spec.name} must be {spec.type_name} (default {spec.default!r}), "
                                   f"got {compact(given)}") from None

    def _configure(self) -> None:
        """Validate the parameters and load the engine (raises StartupError)."""
        errors = [e for e in (spec.validate(self.get_parameter(spec.name).value) for spec in self._specs.values())
                  if e]
        if errors:
            raise StartupError("invalid parameters: " + "; ".join(errors))
        p = self._param
        try:
            adaptation = self._adaptation_config({})
        except ValueError as exc:
            raise StartupError(str(exc)) from None

        model_path = p("model_path") or None
        engine_options = {}
        if p("engine") == "tensorrt":
            if p("device") == "cpu":
                raise StartupError("engine tensorrt needs device cuda or cuda:N (or use engine: onnxruntime)")
            engine_options = dict(
                precision=p("tensorrt.precision"), calib_images=p("tensorrt.calib_images") or None,
                min_shape=p("tensorrt.min_shape") or None, opt_shape=p("tensorrt.opt_shape") or None,
                max_shape=p("tensorrt.max_shape") or None, workspace_mb=p("tensorrt.workspace_mb"),
                log=self.get_logger().info)  # an engine build takes minutes: say so
        try:
            self.segmentor = Segmentor(model_path, engine=p("engine"), device=p("device"), threads=p("threads"),
                                       label_upsampling=p("label_upsampling"), prompt_engine=p("prompt_engine"),
                                       prompt_model=p("prompt_model") or None, adaptation=adaptation,
                                       prompt_options=dict(zoom_in=p("click.zoom_in"),
                                                           refine=p("click.boundary_refinement"))
                                       if p("prompt_engine") == "openpixel" else None,
                                       **engine_options)
            self.segmentor.prompt_engine  # load a prompt model now: a bad path fails start-up, not a click
        except (EngineError, ContractError, PromptError, FileNotFoundError) as exc:
            raise StartupError(str(exc)) from None
        contract = self.segmentor.contract
        try:
            self.segmentor.set_foreground_classes([c for c in p("foreground_classes") if c != ""])
        except ContractError as exc:
            raise StartupError(f"foreground_classes: {exc}") from None
        self._palette = contract.color_table()
        self._alpha = float(p("overlay_alpha"))
        self._min_period = 1.0 / p("max_rate_hz") if p("max_rate_hz") > 0 else 0.0
        self._engine_delay = p("debug.engine_delay_ms") / 1e3
        self._input_timeout = p("input_timeout")
        self._min_processed_ratio = p("diagnostics.min_processed_ratio")
        self._stuck_timeout = p("diagnostics.stuck_timeout")
        self._max_pixels = p("max_image_pixels")
        self._parameters_callback = self.add_on_set_parameters_callback(self._on_set_parameters)
        class_metadata.declare_classes_parameter(self, contract)

    def _create_outputs(self) -> None:
        p = self._param
        contract = self.segmentor.contract
        # -- outputs --
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p("output_qos.depth"),
                             reliability=_RELIABILITY[p("output_qos.reliability")],
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
        self._compressed = CompressedOutputs(self, out_qos, p("compressed.jpeg_quality"))
        self._last_adaptation = None
        self.pub_label_info = class_metadata.publish_label_info(self, contract)

    def _start_processing(self) -> None:
        """Subscribe to the camera and clicks, start the worker, diagnostics and services."""
        p = self._param
        contract = self.segmentor.contract
        # -- input --
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p("qos.depth"),
                            reliability=_RELIABILITY[p("qos.reliability")], durability=DurabilityPolicy.VOLATILE)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._transport = p("input_transport")
        if self._transport == "compressed":
            topic = self.resolve_topic_name("image") + "/compressed"
            self._sub = self.create_subscription(CompressedImage, topic, self._on_image, in_qos,
                                                 event_callbacks=events)
        elif p("transport.raw_cdr"):  # the CDR bytes, pixels viewed in place (node/image_cdr.py)
            self._sub = self.create_subscription(Image, "image", lambda data, info: self._on_image(
                CdrImage(data), info), in_qos, event_callbacks=events, raw=True)
        else:
            self._sub = self.create_subscription(Image, "image", self._on_image, in_qos, event_callbacks=events)

        # -- state --
        self._slot = LatestFrameSlot()
        self._drops = FrameDrops()
        self._sequence_gaps = SequenceGaps()
        self._stats_lock = threading.Lock()
        self._received = 0  # every camera message, paused or not (the slot counts only those offered)
        self._processed = 0
        self._errors = 0
        self._distinct_errors = DistinctLines(_LOG_THROTTLE_S)
        self._last_error = ""
        self._last_frame_time = None
        self._latency_ms = deque(maxlen=300)
        self._engine_ms = deque(maxlen=300)
        self._input_rate, self._processed_rate = RateMeter(), RateMeter()
        self._enabled = True
        self._latest = None  # (newest camera message, kept undecoded for click prompts; its receipt number)
        self._stage = WorkerStage()
        self._stage_log = StageLog(self.get_logger())
        self._camera_info = CameraInfoRelay(self, self.resolve_topic_name("image"), self.pub_label.qos_profile)
        self._worker = threading.Thread(target=self._work_loop, name="openpixel-inference", daemon=True)
        self._worker.start()
        self._diagnostics_timer = self.create_timer(p("diagnostics_period"), self._publish_diagnostics)
        self._enable_srv = self.create_service(SetBool, "~/enable", self._on_enable)

        # -- click prompts: a service, and clicks from image views, answered by the prompt worker --
        self._click_session = ClickSession(p("click.session_timeout"))
        self._prompts = PromptWorker(p("click.queue_size"), on_error=self._report_error)
        self._clicks_dropped_busy = 0
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

        eng = self.segmentor.semantic.engine
        self.get_logger().info(
            f"model {self.segmentor.model_path} ({contract.num_classes} classes: "
            f"{', '.join(contract.classes[:6])}{', ...' if contract.num_classes > 6 else ''}) on "
            f"{eng.backend}/{eng.device}; listening on {self._sub.topic_name} ({self._transport}"
            f"{' CDR' if self._transport == 'raw' and p('transport.raw_cdr') else ''}, "
            f"{p('qos.reliability')}, depth {p('qos.depth')}); mask classes "
            f"{[contract.classes[i] for i in self.segmentor.foreground_ids]}")

    # -- parameters -------------------------------------------------------------------
    def _param(self, name):
        return self.get_parameter(name).value

    def _adaptation_config(self, changes: dict):
        """AdaptationConfig from the adaptation.* parameters, with ``changes`` applied; validated."""
        prefix = "adaptation."
        values = {name[len(prefix):]: self.get_parameter(name).value
                  for name in self._specs if name.startswith(prefix)}
        values.update({name[len(prefix):]: value for name, value in changes.items() if name.startswith(prefix)})
        return AdaptationConfig.from_dict(values)

    def _on_set_parameters(self, params) -> SetParametersResult:
        adaptation_changes = {p.name: p.value for p in params if p.name.startswith("adaptation.")}
        new_adaptation = None
        if adaptation_changes:
            try:  # the whole configuration must stay valid (e.g. release < activation score)
                new_adaptation = self._adaptation_config(adaptation_changes)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=bounded(str(exc)))
        for param in params:
            spec = self._specs.get(param.name)
            if spec is None:
                continue
            if spec.read_only:
                return SetParametersResult(successful=False, reason=f"{param.name} is fixed at start-up")
            error = spec.validate(param.value)
            if error:
                return SetParametersResult(successful=False, reason=bounded(error))
            if param.name == "foreground_classes":
                try:
                    self.segmentor.contract.class_ids([c for c in param.value if c != ""])
                except ContractError as exc:
                    return SetParametersResult(successful=False, reason=bounded(str(exc)))
        if new_adaptation is not None:  # all valid: apply
            self.segmentor.set_adaptation(new_adaptation)
        for param in params:
            if param.name == "foreground_classes":
                self.segmentor.set_foreground_classes([c for c in param.value if c != ""])
            elif param.name == "overlay_alpha":
                self._alpha = float(param.value)
            elif param.name == "label_upsampling":
                self.segmentor.semantic.label_upsampling = param.value
            elif param.name == "max_rate_hz":
                self._min_period = 1.0 / param.value if param.value > 0 else 0.0
            elif param.name == "debug.engine_delay_ms":
                self._engine_delay = param.value / 1e3
            elif param.name == "input_timeout":
                self._input_timeout = param.value
            elif param.name == "diagnostics.min_processed_ratio":
                self._min_processed_ratio = param.value
            elif param.name == "diagnostics.stuck_timeout":
                self._stuck_timeout = param.value
            elif param.name == "click.session_timeout":
                self._click_session.timeout = param.value
            elif param.name == "click.queue_size":
                self._prompts.capacity = param.value
            elif param.name == "compressed.jpeg_quality":
                self._compressed.jpeg_quality = param.value
            elif param.name == "diagnostics_period":
                self._diagnostics_timer.timer_period_ns = int(param.value * 1e9)
        return SetParametersResult(successful=True)

    def effective_parameter_values(self) -> dict:
        """Every run-time parameter as the running node applies it, read back from the objects
        that use it (not from the parameter store): a test checks each one follows a change."""
        adapter = self.segmentor.adapter
        config = adapter.config if adapter is not None else None
        values = {
            "foreground_classes": list(self.segmentor.foreground_ids),
            "overlay_alpha": self._alpha,
            "label_upsampling": self.segmentor.semantic.label_upsampling,
            "max_rate_hz": 1.0 / self._min_period if self._min_period else 0.0,
            "click.queue_size": self._prompts.capacity,
            "click.session_timeout": self._click_session.timeout,
            "diagnostics_period": self._diagnostics_timer.timer_period_ns / 1e9,
            "input_timeout": self._input_timeout,
            "diagnostics.min_processed_ratio": self._min_processed_ratio,
            "diagnostics.stuck_timeout": self._stuck_timeout,
            "debug.engine_delay_ms": self._engine_delay * 1e3,
            "compressed.jpeg_quality": self._compressed.jpeg_quality,
        }
        for name in self._specs:
            if name.startswith("adaptation.") and config is not None:
                values[name] = getattr(config, name[len("adaptation."):])
        return values

    # -- input ------------------------------------------------------------------------
    def _on_image(self, msg, info) -> None:
        now = time.monotonic()
        self._last_frame_time = now
        self._latest = (msg, next(_RECEIPT_NUMBERS))
        missed = self._sequence_gaps.observe_message(info, msg.header.frame_id)
        if missed:
            self._drops.add("queue_overrun", missed)
        self._input_rate.tick()
        self._received += 1
        self._stage_log.debug("input", lambda: f"frame {_stamp_text(msg.header)} on {self._sub.topic_name}, "
                                               f"{'queued' if self._enabled else 'not queued (~/enable false)'}")
        if self._enabled:
            self._slot.put((msg, now))
        else:  # ~/enable false: frames are counted and kept for clicks, not segmented
            self._drops.add("paused")

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
            throttle_duration_sec=_LOG_THROTTLE_S)

    def _decode(self, msg) -> np.ndarray:
        if self._transport == "compressed":
            return compressed_msg_to_rgb(msg, self._max_pixels)  # the header's size checked first
        if isinstance(msg, CdrImage) and msg.error is not None:
            raise msg.error  # a malformed CDR buffer: its own one-line reason
        check_pixels(msg.width, msg.height, self._max_pixels, f"{compact(msg.encoding)} frame")
        if isinstance(msg, CdrImage):
            return cdr_image_to_rgb(msg)
        return image_msg_to_rgb(msg)

    def _report_error(self, text: str) -> None:
        text = bounded(text)
        with self._stats_lock:
            self._errors += 1
            self._last_error = text
            log = self._distinct_errors.admit(text)
        if log:  # each distinct error once per _LOG_THROTTLE_S (and at most 10 lines in that time)
            self.get_logger().warning(text)

    # -- inference worker -------------------------------------------------------------
    def _outputs_wanted(self) -> dict:
        """output -> subscribed, raw or (label, mask, color, overlay) compressed."""
        compressed = self._compressed.wanted()
        return {name: pub.get_subscription_count() > 0 or compressed.get(name, False) for name, pub in (
            ("label", self.pub_label), ("mask", self.pub_mask), ("color", self.pub_color),
            ("overlay", self.pub_overlay), ("adaptation", self.pub_adaptation), ("adapted", self.pub_adapted))}

    def _work_loop(self) -> None:
        last_start = 0.0
        while rclpy.ok() and not self._slot.closed:
            item = self._slot.take(timeout=0.5)
            if item is None:
                continue
            if self._min_period and time.monotonic() - last_start < self._min_period:
                self._drops.add("rate_limit")
                continue  # rate cap: this frame is skipped, the next one is waited for
            last_start = time.monotonic()
            msg, received = item
            try:
                self._process(msg, received)
            except (ImageDecodeError, ValueError) as exc:
                self._drops.add("decode_error")
                self._report_error(f"dropped frame from {self._sub.topic_name}: {exc}")
            except EngineError as exc:
                self._drops.add("engine_error")
                self._report_error(f"inference failed: {exc}")
            except Exception as exc:  # keep the node alive; the message says what happened
                if not rclpy.ok():
                    break
                self._drops.add("engine_error")
                self._report_error(f"unexpected error on frame: {type(exc).__name__}: {exc}")
            finally:
                self._stage.idle()

    def _process(self, msg, received: float) -> None:
        wanted = self._outputs_wanted()
        if not any(wanted.values()):
            self._drops.add("no_subscribers")
            return
        self._stage.enter("decode")
        t0 = time.perf_counter()
        rgb = self._decode(msg)
        header = msg.header
        self._stage_log.debug("decode", lambda: f"frame {_stamp_text(header)}: {rgb.shape[1]}x{rgb.shape[0]} in "
                                                f"{(time.perf_counter() - t0) * 1e3:.2f} ms")
        if not any(wanted[k] for k in ("label", "mask", "color", "overlay")):
            # Only adaptation monitoring is subscribed: no inference.
            self._stage.enter("adaptation")
            adapted, state, _ = self.segmentor.adapt(rgb)
            self._stage.enter("publish")
            self._publish_adaptation(header, adapted, state, wanted)
            return
        result = self.segmentor.segment(rgb, on_stage=self._stage.enter)
        if self._engine_delay:
            time.sleep(self._engine_delay)
        self._stage.enter("publish")
        self._stage_log.debug("inference", lambda: f"frame {_stamp_text(header)}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result.timings.items()))
        t_publish = time.perf_counter()
        self._publish_adaptation(header, result.adapted, result.adaptation, wanted)
        publish = self._compressed.publish_with_raw  # raw and <output>/compressed, each while subscribed
        if wanted["label"]:
            publish("label", self.pub_label, result.labels, header)
        if wanted["mask"]:
            publish("mask", self.pub_mask, result.mask, header, "mono8")
        if wanted["color"] or wanted["overlay"]:
            color = colorize(result.labels, self._palette)
            if wanted["color"]:
                publish("color", self.pub_color, color, header, "rgb8")
            if wanted["overlay"]:
                publish("overlay", self.pub_overlay, overlay(rgb, color, self._alpha, result.labels), header, "rgb8")
        self._camera_info.publish_for(header)  # the outputs' camera model, same header
        self._stage_log.debug("publish", lambda: f"frame {_stamp_text(header)}: "
                                                 f"{', '.join(k for k, v in wanted.items() if v)} in "
                                                 f"{(time.perf_counter() - t_publish) * 1e3:.2f} ms")
        with self._stats_lock:
            self._processed += 1
            self._processed_rate.tick()
            self._latency_ms.append((time.monotonic() - received) * 1e3)
            self._engine_ms.append(result.timings.get("engine_ms", 0.0))

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

    # -- click prompts ----------------------------------------------------------------
    def _latest_frame(self):
        """(header, rgb, cache key) of the newest camera frame; the key lets repeated clicks on one
        frame reuse the prompt engine's cached features. The key is the frame's receive number, not
        its stamp: cameras that leave stamps at zero (or repeat them) would get an older frame's mask."""
        latest = self._latest
        if latest is None:
            raise ValueError(f"no camera frame has arrived on {self._sub.topic_name} yet")
        msg, number = latest
        return msg.header, self._decode(msg), ("received", number)

    def _frame_for_prompt(self, image: Image):
        """(header, rgb, cache key) of the request's image, or of the latest camera frame."""
        if image.width and image.height:
            check_pixels(image.width, image.height, self._max_pixels, "request image")
            return image.header, image_msg_to_rgb(image), None
        return self._latest_frame()

    def _on_segment_at_points(self, request, response):
        """Executor thread: queue the request (answered by the prompt worker) or refuse it now."""
        if len(request.points) > MAX_POINTS:  # refused before it can hold up the queue
            response.success = False
            response.message = f"{len(request.points)} points; a prompt holds at most {MAX_POINTS}"
            return response
        deferred = DeferredResponse(lambda: self._segment_at_points(request, response),
                                    failure=lambda exc: self._internal_error_response(response, exc),
                                    refusal=_refusal)
        if not self._prompts.submit(deferred.run, cancel=deferred.cancel):
            response.success = False
            response.message = "node deactivating" if self._prompts.closed else \
                f"busy: {self._prompts.queued} requests queued"
            self.get_logger().warning(f"segment_at_points refused: {response.message}",
                                   throttle_duration_sec=_LOG_THROTTLE_S)
            return response
        return deferred

    def _stop_prompts(self, reason: str) -> None:
        """Before the service goes away: every accepted call and every request still in the
        service's queue is answered (success=false, ``reason``); the running call gets
        _PROMPT_STOP_TIMEOUT_S to finish, else it is answered with ``reason`` too."""
        self._prompts.close(timeout=_PROMPT_STOP_TIMEOUT_S, reason=reason)
        try:
            refuse_pending_requests(self._srv, lambda: _refusal(reason))
        except Exception as exc:  # the context may already be shut down (a signal): nothing to answer on
            self.get_logger().debug(f"pending prompt requests not answered: {type(exc).__name__}")

    def _internal_error_response(self, response, exc: Exception):
        response.success = False
        response.message = bounded(f"internal error: {type(exc).__name__}: {exc}")
        self._report_error(f"segment_at_points: {response.message}")
        return response

    def _queue_click(self, msg: PointStamped, label: int) -> None:
        if not self._prompts.submit(lambda: self._on_click(msg, label)):
            with self._stats_lock:
                self._clicks_dropped_busy += 1
            self.get_logger().warning(f"click dropped: {self._prompts.queued} prompt requests queued",
                                   throttle_duration_sec=_LOG_THROTTLE_S)

    def _segment_at_points(self, request, response):
        """Prompt worker: the answer to one ~/segment_at_points request."""
        t0 = time.perf_counter()
        try:
            header, rgb, key = self._frame_for_prompt(request.image)
            box = None
            if request.box.width and request.box.height:
                b = request.box
                box = (b.x_offset, b.y_offset, b.x_offset + b.width, b.y_offset + b.height)
            previous = None
            if request.previous_mask.width and request.previous_mask.height:
                pm = request.previous_mask
                if pm.encoding != "mono8":
                    raise ValueError(f"previous_mask must be mono8, got {pm.encoding!r}")
                previous = decode_raw("mono8", pm.height, pm.width, pm.step, False, pm.data) > 127
            prompt = ClickPrompt.from_lists([(p.x, p.y) for p in request.points], list(request.labels), box=box,
                                            previous_mask=previous, image_size=rgb.shape[:2],
                                            scribbles=[[(p.x, p.y) for p in s.points] for s in request.scribbles],
                                            scribble_labels=[s.label for s in request.scribbles])
            result = self.segmentor.segment_clicks(rgb, prompt, multimask=request.multimask_output, key=key)
        except (PromptError, ImageDecodeError, EngineError, ValueError) as exc:
            response.success, response.message = False, bounded(str(exc))
            self.get_logger().warning(f"segment_at_points refused: {response.message}",
                                   throttle_duration_sec=_LOG_THROTTLE_S)
            return response
        response.success = True
        response.mask = array_to_image_msg(result.mask, header, "mono8")
        response.score = float(result.score)
        response.area = int(np.count_nonzero(result.mask))
        response.bbox = _bbox(result.mask)
        if request.multimask_output:
            response.candidate_masks = [array_to_image_msg(m, header, "mono8") for m, _ in result.candidates]
            response.candidate_scores = [float(sc) for _, sc in result.candidates]
        # Timings in a fixed format: bench/bench_service.py reads them.
        response.message = (f"{self.segmentor.prompt_engine.name}: area {response.area} px, score "
                            f"{response.score:.2f}, engine {result.timings.get('total_ms', 0.0):.2f} ms, "
                            f"service {(time.perf_counter() - t0) * 1e3:.2f} ms")
        return response

    def _on_click(self, msg, label: int) -> None:
        msg = getattr(msg, "point", msg)  # PointStamped or Point (click.message_type)
        clicks = self._click_session.add(msg.x, msg.y, label)
        try:
            header, rgb, key = self._latest_frame()
            # On the same frame the session's last mask goes back in: the engine refines it (and
            # the openpixel engine zooms in on the object).
            prompt = ClickSession.prompt(clicks, rgb.shape[:2], self._click_session.previous_mask(key))
            result = self.segmentor.segment_clicks(rgb, prompt, key=key)
        except (PromptError, ImageDecodeError, EngineError, ValueError) as exc:
            self._click_session.discard(clicks[-1])  # an invalid click must not poison the session
            self._report_error(f"click at ({compact(msg.x)}, {compact(msg.y)}): {exc}")
            return
        self._click_session.remember(key, result.mask != 0)
        self._stage_log.debug("click", lambda: f"({msg.x:.0f}, {msg.y:.0f}) label {label} on frame "
                                               f"{_stamp_text(header)}: {len(clicks)} clicks in the session, "
                                               f"area {int(np.count_nonzero(result.mask))} px")
        self.pub_click_mask.publish(array_to_image_msg(result.mask, header, "mono8"))
        if self.pub_click_overlay.get_subscription_count():
            selected = result.mask // 255
            color = colorize(selected, _CLICK_PALETTES[label])
            self.pub_click_overlay.publish(array_to_image_msg(
                overlay(rgb, color, self._alpha, selected), header, "rgb8"))

    # -- diagnostics ------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        self._click_type_watch.check()  # a wrong-type click publisher is said once
        with self._stats_lock:
            latency = np.percentile(self._latency_ms, [50, 95]) if self._latency_ms else (0.0, 0.0)
            engine = float(np.median(self._engine_ms)) if self._engine_ms else 0.0
            drops = self._drops.snapshot()
            drops["newest_frame"] = self._slot.dropped
            values = {
                "frames_received": self._received, "frames_processed": self._processed,
                "frames_dropped": sum(drops.values()),
                **{f"frames_dropped_{cause}": drops[cause] for cause in DROP_CAUSES},
                "prompt_requests_queued": self._prompts.queued, "prompt_requests_accepted": self._prompts.accepted,
                "prompt_requests_refused_busy": self._prompts.refused, "clicks_dropped_busy": self._clicks_dropped_busy,
                "queue_overrun_counting": "per frame_id, approximate with several publishers"
                if self._sequence_gaps.approximate else "per publisher",
                "errors": self._errors, "last_error": self._last_error,
                "latency_p50_ms": f"{latency[0]:.1f}", "latency_p95_ms": f"{latency[1]:.1f}",
                "engine_median_ms": engine_ms_text(engine),
            }
        values.update(self._operator_values())
        values.update(self._camera_info.diagnostics())
        if self._last_adaptation is not None:
            values["adaptation_score"] = f"{self._last_adaptation.score_smoothed:.3f}"
            values["adaptation_active"] = str(self._last_adaptation.active)
        status = DiagnosticStatus(name=diagnostics_status_name(self), hardware_id=self.get_fully_qualified_name())
        since = None if self._last_frame_time is None else time.monotonic() - self._last_frame_time
        stuck = self._stage.stuck(self._stuck_timeout)
        if stuck is not None:
            status.level, status.message = DiagnosticStatus.ERROR, \
                f"inference worker stuck in {stuck[0]} for {stuck[1]:.1f} s (diagnostics.stuck_timeout)"
        elif since is None:
            status.level, status.message = DiagnosticStatus.WARN, f"no frames yet on {self._sub.topic_name}"
        elif since > self._input_timeout:
            status.level, status.message = DiagnosticStatus.WARN, \
                f"input stale: no frame on {self._sub.topic_name} for {since:.1f} s"
        elif self._last_error and values["errors"] and values["frames_processed"] == 0:
            status.level, status.message = DiagnosticStatus.ERROR, self._last_error
        elif not self._enabled:
            status.level, status.message = DiagnosticStatus.OK, "paused (~/enable false)"
        elif self._slow_warning:
            status.level, status.message = DiagnosticStatus.WARN, self._slow_warning
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array_msg = DiagnosticArray(status=[status])
        array_msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array_msg)

    def _operator_values(self) -> dict:
        """What an operator asks first: rates, engine latency percentiles, model/backend/device."""
        input_hz, processed_hz = self._input_rate.rate_hz(), self._processed_rate.rate_hz()
        with self._stats_lock:
            engine_p50, engine_p95 = percentiles(self._engine_ms)
        engine = self.segmentor.semantic.engine
        self._slow_warning = processed_ratio_warning(
            input_hz, processed_hz, self._min_processed_ratio, 1.0 / self._min_period if self._min_period else 0.0,
            any(self._outputs_wanted().values()))
        return {"input_rate_hz": f"{input_hz:.2f}", "processed_rate_hz": f"{processed_hz:.2f}",
                "engine_p50_ms": engine_ms_text(engine_p50), "engine_p95_ms": engine_ms_text(engine_p95),
                "enabled": str(self._enabled), "model": str(self.segmentor.model_path),
                "backend": engine.backend, "device": engine.device,
                "classes": ", ".join(self.segmentor.contract.classes)}

    def destroy_node(self):
        # Also reached for a node whose __init__ failed half-way (rclpy's context cleanup).
        if getattr(self, "_prompts", None) is not None and not self._prompts.closed:
            self._stop_prompts("node shutting down")  # answers the queued service calls first
        slot, worker = getattr(self, "_slot", None), getattr(self, "_worker", None)
        if slot is not None:
            slot.close()
        if worker is not None and worker.is_alive():
            worker.join(timeout=5.0)
        if getattr(self, "segmentor", None) is not None:
            self.segmentor.close()
        return super().destroy_node()


def _refusal(reason: str) -> SegmentAtPoints.Response:
    return SegmentAtPoints.Response(success=False, message=reason)


def diagnostics_status_name(node: Node) -> str:
    """``/front/openpixel: segmentation``: the fully qualified name tells two cameras' nodes apart
    (tools key on the status name), as diagnostic_updater puts the node's name in it."""
    return f"{node.get_fully_qualified_name()}: segmentation"


def _stamp_text(header) -> str:
    return f"{header.stamp.sec}.{header.stamp.nanosec:09d}"


def _bbox(mask: np.ndarray) -> RegionOfInterest:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return RegionOfInterest()
    return RegionOfInterest(x_offset=int(xs.min()), y_offset=int(ys.min()), width=int(xs.max() - xs.min() + 1),
                            height=int(ys.max() - ys.min() + 1))


def main(args=None) -> int:
    # A corrupt frame is reported once, in our own bounded line; OpenCV's decoder warnings
    # would add an unthrottled line per frame.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    # Inference and prompt requests have their own worker threads; the executor's thread only
    # hands messages over.
    return run_node(OpenPixelNode, "openpixel", args, usage=segmentation_node_usage)


if __name__ == "__main__":
    sys.exit(main())
