"""openpixel_node: camera frames in, label image / mask / colour / overlay out (docs/nodes.md).

The node wires ROS and delegates: the engine is loaded by :func:`.startup.load_segmentor`;
parameters are declared, checked and applied from their table (:mod:`.parameters`); the newest
frame is taken by the inference thread (:mod:`.frame_worker`) and drawn by
:func:`~openpixel_ros.visualize.render_outputs`; click prompts are answered by :mod:`.click_prompts`
(translated by :mod:`.prompt_messages`); statistics and status come from :mod:`.diagnostics`.
"""
from __future__ import annotations

import itertools
import sys
import time
from typing import Optional

import cv2
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool

from ..log_text import bounded
from ..segmentor import Segmentor
from ..visualize import OUTPUTS, render_outputs
from . import class_metadata
from .camera_info import CameraInfoRelay
from .click_prompts import ANSWER_DELIVERY_S, ClickPrompts
from .diagnostics import (LOG_THROTTLE_S, NodeStats, StatusLimits, adaptation_values, diagnostic_array,
                          segmentation_status, state_status)
from .frame_worker import FrameWorker
from .image_cdr import CdrImage
from .image_messages import camera_frame_to_rgb
from .outputs import NodeOutputs
from .parameters import refuse_change, spec_by_name
from .prompt_worker import let_answers_go_out, record_answers
from .runner import run_node
from .stage_log import StageLog
from .startup import StartupError, declare_parameters, load_segmentor, startup_summary
from .usage import segmentation_node_usage

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                "best_available": ReliabilityPolicy.BEST_AVAILABLE}
# Every camera message gets the next number on receipt: the prompt engines' cache key for the frame.
# Process-wide, so a re-activated node never reuses a key of an earlier frame.
_RECEIPT_NUMBERS = itertools.count(1)


class OpenPixelNode(LifecycleNode):
    """One lifecycle node; each transition holds its own set-up, and the reverse one its undo.

    configure: the engine and the output (lifecycle) publishers; activate: camera, clicks, worker,
    services. ``managed=False`` (openpixel_node): configured and activated here, before any frame
    can arrive, without lifecycle services, so the plain node looks as it always did.
    ``managed=True`` (openpixel_lifecycle_node): waits unconfigured for ``ros2 lifecycle set``.
    """

    def __init__(self, managed: bool = False, **kwargs):
        self.segmentor: Optional[Segmentor] = None
        self._active = False
        super().__init__("openpixel", enable_communication_interface=managed, **kwargs)
        self._managed, self._specs = managed, spec_by_name()
        declare_parameters(self, self._specs)
        self._parameters_callback = self._configure_failure = None
        # /diagnostics from start to end, in every state: a supervisor tells "inactive" from "dead".
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diagnostics_timer = self.create_timer(self._param("diagnostics_period"), self._publish_diagnostics)
        name = self.get_fully_qualified_name()
        if managed:
            self.get_logger().info(f"lifecycle node {name} is unconfigured: `ros2 lifecycle set {name} configure`, "
                                   f"then `activate`, to start segmenting")
        elif self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise self._configure_failure  # the runner logs it as the one FATAL line
        elif self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise StartupError("activate failed")

    # -- transitions ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # a bad model or parameter: unconfigured, the process lives on
            self._release_engine()
            self._configure_failure = exc
            if self._managed:
                self.get_logger().error(f"configure failed: {exc if isinstance(exc, StartupError) else repr(exc)}")
            return TransitionCallbackReturn.FAILURE
        if self._managed:
            self.get_logger().info(f"configured: model {self.segmentor.model_path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the output publishers first: no output of a first frame is lost
        self._start_processing()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing("node deactivating")
        self.get_logger().info("deactivated: camera released, worker stopped; the engine stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.outputs.destroy()
        self._release_engine()
        self.get_logger().info("cleaned up: engine freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._undo_all("node deactivating")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} failed: back to unconfigured")
        self._undo_all("node deactivating")
        return TransitionCallbackReturn.SUCCESS

    def _undo_all(self, reason: str) -> None:
        if self._active:
            self._stop_processing(reason)
        if self.segmentor is not None:
            self.outputs.destroy()
            self._release_engine()

    def destroy_node(self):
        # Also reached for a node whose __init__ failed half-way (rclpy's context cleanup).
        if self._active:
            self._stop_processing("node shutting down")  # answers the queued service calls first
        if self.segmentor is not None:
            self._release_engine()
        return super().destroy_node()

    # -- configure / cleanup ----------------------------------------------------------------
    def _param(self, name):
        return self.get_parameter(name).value

    def _configure(self) -> None:
        """Load the engine (StartupError on any fault), take the run-time parameters, create the outputs."""
        p = self._param
        self.segmentor = load_segmentor(p, self._specs, self.get_logger().info)
        self._palette = self.segmentor.contract.color_table()
        self.overlay_alpha, self.max_rate_hz = float(p("overlay_alpha")), p("max_rate_hz")
        self.engine_delay_ms, self.max_pixels = p("debug.engine_delay_ms"), p("max_image_pixels")
        self.limits = StatusLimits(p("input_timeout"), p("diagnostics.min_processed_ratio"),
                                   p("diagnostics.stuck_timeout"))
        self.diagnostics_timer.timer_period_ns = int(p("diagnostics_period") * 1e9)  # may have changed meanwhile
        class_metadata.declare_classes_parameter(self, self.segmentor.contract)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p("output_qos.depth"),
                             reliability=_RELIABILITY[p("output_qos.reliability")],
                             durability=DurabilityPolicy.VOLATILE)
        self.outputs = NodeOutputs(self, out_qos, p("compressed.jpeg_quality"), self.segmentor.contract)
        self._last_adaptation = None
        self._parameters_callback = self.add_on_set_parameters_callback(self._on_set_parameters)

    def _release_engine(self) -> None:
        if self._parameters_callback is not None:
            self.remove_on_set_parameters_callback(self._parameters_callback)
            self._parameters_callback = None
        if self.segmentor is not None:
            self.segmentor.close()
            self.segmentor = None

    # -- activate / deactivate --------------------------------------------------------------
    def _start_processing(self) -> None:
        """Subscribe to the camera and clicks, start the inference worker and the services."""
        p = self._param
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p("qos.depth"),
                            reliability=_RELIABILITY[p("qos.reliability")], durability=DurabilityPolicy.VOLATILE)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        if p("input_transport") == "compressed":
            self._sub = self.create_subscription(CompressedImage, self.resolve_topic_name("image") + "/compressed",
                                                 self._on_image, in_qos, event_callbacks=events)
        elif p("transport.raw_cdr"):  # the CDR bytes, pixels viewed in place (node/image_cdr.py)
            self._sub = self.create_subscription(Image, "image", lambda data, info: self._on_image(
                CdrImage(data), info), in_qos, event_callbacks=events, raw=True)
        else:
            self._sub = self.create_subscription(Image, "image", self._on_image, in_qos, event_callbacks=events)
        self.stats, self.stage_log = NodeStats(), StageLog(self.get_logger())
        self._enabled = True
        self._latest = None  # (newest camera message, kept undecoded for click prompts; its receipt number)
        self._camera_info = CameraInfoRelay(self, self.resolve_topic_name("image"), self.outputs.qos)
        self._frames = FrameWorker(self._process, self.stats.drops, self.report_error, self._sub.topic_name,
                                   lambda: self.max_rate_hz, running=rclpy.ok)
        self._enable_srv = self.create_service(SetBool, "~/enable", self._on_enable)
        record_answers(self._enable_srv)
        self.click_prompts = ClickPrompts(self, p)
        self._active = True
        self.get_logger().info(startup_summary(self.segmentor, p, self._sub.topic_name))

    def _stop_processing(self, reason: str) -> None:
        """Undo :meth:`_start_processing`; every prompt call accepted or waiting is answered (``reason``)."""
        self._active = False
        self.destroy_subscription(self._sub)
        self.click_prompts.close(reason)
        let_answers_go_out(self._enable_srv, ANSWER_DELIVERY_S)
        self.destroy_service(self._enable_srv)
        self._frames.close()
        self._camera_info.close()
        self._latest = self.click_prompts = None

    # -- parameters: checked and applied by their table (parameters.py) ----------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self._specs}
        reason = refuse_change(self._specs, changes, self, self._param)
        if reason is not None:
            return SetParametersResult(successful=False, reason=bounded(reason))
        for name, value in changes.items():  # all valid: apply
            self._specs[name].apply(self, value)
        return SetParametersResult(successful=True)

    def effective_parameter_values(self) -> dict:
        """Every run-time parameter as the running node applies it, read back from the objects
        that use it (not from the parameter store): a test checks each one follows a change."""
        return {name: spec.read_back(self) for name, spec in self._specs.items() if spec.read_back}

    # -- frames -----------------------------------------------------------------------------
    def _on_image(self, msg, info) -> None:
        received = self.stats.frame_received(info, msg.header.frame_id)
        self._latest = (msg, next(_RECEIPT_NUMBERS))
        self.stage_log.debug("input", lambda: f"frame {_stamp_text(msg.header)} on {self._sub.topic_name}, "
                                              f"{'queued' if self._enabled else 'not queued (~/enable false)'}")
        if self._enabled:
            self._frames.offer((msg, received))
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

    def report_error(self, text: str) -> None:
        line = self.stats.error(text)
        if line:  # each distinct error once per LOG_THROTTLE_S (and at most 10 lines in that time)
            self.get_logger().warning(line)

    def latest_frame(self):
        """(header, rgb, cache key) of the newest camera frame; the key lets repeated clicks on one
        frame reuse the prompt engine's cached features. The key is the frame's receive number, not
        its stamp: cameras that leave stamps at zero (or repeat them) would get an older frame's mask."""
        latest = self._latest
        if latest is None:
            raise ValueError(f"no camera frame has arrived on {self._sub.topic_name} yet")
        msg, number = latest
        return msg.header, camera_frame_to_rgb(msg, self.max_pixels), ("received", number)

    def _process(self, msg, received: float) -> None:
        """Inference thread: one frame from decode to its published outputs."""
        wanted, stage = self.outputs.wanted(), self._frames.stage
        if not any(wanted.values()):
            self.stats.drops.add("no_subscribers")
            return
        stage.enter("decode")
        t0 = time.perf_counter()
        rgb, header = camera_frame_to_rgb(msg, self.max_pixels), msg.header
        self.stage_log.debug("decode", lambda: f"frame {_stamp_text(header)}: {rgb.shape[1]}x{rgb.shape[0]} in "
                                               f"{(time.perf_counter() - t0) * 1e3:.2f} ms")
        images = [name for name in OUTPUTS if wanted[name]]
        if not images:  # only adaptation monitoring is subscribed: no inference
            stage.enter("adaptation")
            adapted, state, _ = self.segmentor.adapt(rgb)
            stage.enter("publish")
            self._publish_adaptation(header, adapted, state, wanted)
            return
        result = self.segmentor.segment(rgb, on_stage=stage.enter)
        if self.engine_delay_ms:
            time.sleep(self.engine_delay_ms / 1e3)
        stage.enter("publish")
        self.stage_log.debug("inference", lambda: f"frame {_stamp_text(header)}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result.timings.items()))
        t_publish = time.perf_counter()
        self._publish_adaptation(header, result.adapted, result.adaptation, wanted)
        self.outputs.publish_images(render_outputs(rgb, result.labels, result.mask, self._palette,
                                                   self.overlay_alpha, images), header)
        self._camera_info.publish_for(header)  # the outputs' camera model, same header
        self.stage_log.debug("publish", lambda: f"frame {_stamp_text(header)}: "
                                                f"{', '.join(k for k, v in wanted.items() if v)} in "
                                                f"{(time.perf_counter() - t_publish) * 1e3:.2f} ms")
        self.stats.frame_processed(received, result.timings.get("engine_ms", 0.0))

    def _publish_adaptation(self, header, adapted, state, wanted) -> None:
        if state is not None:
            self._last_adaptation = state
            self.outputs.publish_adaptation(header, adapted, state, wanted)

    # -- diagnostics ------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        if self._active:
            status = self._segmentation_status(name)
        else:  # the state, so a monitor sees "inactive", not silence
            status = state_status(name, self._state_machine.current_state[1],
                                  None if self.segmentor is None else str(self.segmentor.model_path))
        self._pub_diagnostics.publish(diagnostic_array(status, self.get_clock().now().to_msg()))

    def _segmentation_status(self, name: str):
        self.click_prompts.type_watch.check()  # a wrong-type click publisher is said once
        values = self.stats.values(self._frames.slot.dropped, self.click_prompts.worker)
        engine = self.segmentor.semantic.engine
        values.update({"enabled": str(self._enabled), "model": str(self.segmentor.model_path),
                       "backend": engine.backend, "device": engine.device,
                       "classes": ", ".join(self.segmentor.contract.classes)},
                      **self._camera_info.diagnostics(), **adaptation_values(self._last_adaptation))
        slow = self.stats.slow_warning(self.limits, self.max_rate_hz, any(self.outputs.wanted().values()))
        return segmentation_status(name, self.stats, values, topic=self._sub.topic_name, limits=self.limits,
                                   enabled=self._enabled, stuck=self._frames.stage.stuck(self.limits.stuck_timeout),
                                   slow_warning=slow)


def _stamp_text(header) -> str:
    return f"{header.stamp.sec}.{header.stamp.nanosec:09d}"


def main(args=None, managed: bool = False) -> int:
    """openpixel_node (configured and active at start), or with ``managed`` openpixel_lifecycle_node."""
    # A corrupt frame is reported once, in our own bounded line; OpenCV's decoder warnings
    # would add an unthrottled line per frame.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    # Inference and prompt requests have their own worker threads; the executor's thread only
    # hands messages over.
    return run_node(lambda: OpenPixelNode(managed=managed), "openpixel", args,
                    usage=lambda program: segmentation_node_usage(program, lifecycle=managed))


if __name__ == "__main__":
    sys.exit(main())
