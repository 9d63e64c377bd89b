"""openpixel_lifecycle_node: openpixel_node as a managed (lifecycle) node.

Same parameters, topics and services as openpixel_node, driven through lifecycle_msgs
(`ros2 lifecycle set /openpixel configure`, then `activate`):

- configure: validate the parameters and load the engine; create the output publishers.
  A bad model (or any invalid parameter) fails the transition with one ERROR line, and the node
  stays unconfigured.
- activate: subscribe to the camera and clicks, start the inference worker, diagnostics and
  the services (~/segment_at_points, ~/enable).
- deactivate: release the camera subscription and stop the worker (the engine stays loaded).
  Every prompt call already accepted or still waiting is answered first (success=false,
  "node deactivating"); the running one has 2 s to finish, else it gets that answer too.
- cleanup: free the engine and the publishers. shutdown: as deactivate + cleanup.

/diagnostics carries a status in every state: while active the node's own (rates, drops, ...);
otherwise one that names the state ("unconfigured", "inactive: not processing", "finalized"),
under the same status name, every diagnostics_period seconds. At start it logs one line saying
it waits for configure.
"""
from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .openpixel_node import OpenPixelNode, StartupError, diagnostics_status_name
from .parameters import declare_parameters, spec_by_name
from .runner import run_node
from .usage import segmentation_node_usage

_OUTPUT_PUBLISHERS = ("pub_label", "pub_mask", "pub_color", "pub_overlay", "pub_diagnostics", "pub_adaptation",
                      "pub_adapted", "pub_click_mask", "pub_click_overlay", "pub_label_info")


class OpenPixelLifecycleNode(OpenPixelNode, LifecycleNode):
    def __init__(self, **kwargs):
        # Not OpenPixelNode.__init__ (which configures and activates at once): only the parameters.
        LifecycleNode.__init__(self, "openpixel", **kwargs)
        self._specs = spec_by_name()
        declare_parameters(self, self._specs)
        self.segmentor = None
        self._processing = False
        # Outside the active state the node's own diagnostics timer does not exist: this one says
        # which state the node is in (a monitor sees "inactive", not silence).
        self._state_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._state_timer = self.create_timer(self.get_parameter("diagnostics_period").value,
                                              self._publish_state_diagnostics)
        name = self.get_fully_qualified_name()
        self.get_logger().info(f"lifecycle node {name} is unconfigured: `ros2 lifecycle set {name} configure`, "
                               f"then `activate`, to start segmenting")

    # -- transitions --------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except StartupError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._release_engine()
            return TransitionCallbackReturn.FAILURE
        self._create_outputs()
        self.get_logger().info(f"configured: model {self.segmentor.model_path}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start_processing()
        self._processing = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.get_logger().info("deactivated: camera released, worker stopped; the engine stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_outputs()
        self._release_engine()
        self.get_logger().info("cleaned up: engine freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._destroy_outputs()
        self._release_engine()
        return TransitionCallbackReturn.SUCCESS

    # -- diagnostics outside the active state ---------------------------------------------
    def _publish_state_diagnostics(self) -> None:
        if self._processing:
            return  # active: the node's own diagnostics report
        state = self._state_machine.current_state[1]
        if state == "active":  # between on_activate's start and its end
            return
        message = {"inactive": "inactive: not processing"}.get(state, state)
        status = DiagnosticStatus(name=diagnostics_status_name(self), hardware_id=self.get_fully_qualified_name(),
                                  level=DiagnosticStatus.OK, message=message,
                                  values=[KeyValue(key="lifecycle_state", value=state)])
        if self.segmentor is not None:
            status.values.append(KeyValue(key="model", value=str(self.segmentor.model_path)))
        array_msg = DiagnosticArray(status=[status])
        array_msg.header.stamp = self.get_clock().now().to_msg()
        self._state_diagnostics.publish(array_msg)

    # -- the phases' undo -----------------------------------------------------------------
    def _stop_processing(self) -> None:
        if not self._processing:
            return
        self._processing = False
        self.destroy_subscription(self._sub)
        for sub in self._click_subs:
            self.destroy_subscription(sub)
        self.destroy_timer(self.diagnostics_timer)
        self._stop_prompts("node deactivating")  # every accepted or waiting call answered, before the service goes
        self.destroy_service(self._srv)
        self.destroy_service(self._enable_srv)
        self._slot.close()
        self._worker.join(timeout=10.0)
        self._camera_info.close()
        self._latest = None

    def _destroy_outputs(self) -> None:
        if getattr(self, "compressed", None) is not None:
            self.compressed.destroy(self)
            self.compressed = None
        for name in _OUTPUT_PUBLISHERS:
            publisher = getattr(self, name, None)
            if publisher is not None:
                self.destroy_publisher(publisher)
                setattr(self, name, None)

    def _release_engine(self) -> None:
        callback = getattr(self, "_parameters_callback", None)
        if callback is not None:
            self.remove_on_set_parameters_callback(callback)
            self._parameters_callback = None
        if self.segmentor is not None:
            self.segmentor.close()
            self.segmentor = None


def main(args=None) -> int:
    return run_node(OpenPixelLifecycleNode, "openpixel", args,
                    usage=lambda program: segmentation_node_usage(program, lifecycle=True))


if __name__ == "__main__":
    sys.exit(main())
