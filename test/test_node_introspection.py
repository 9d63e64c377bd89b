"""What the node says about itself: debug lines per stage, a wrong-type click publisher, a missing vision_msgs."""
from __future__ import annotations

import importlib.util
import re
import time

import numpy as np
import pytest
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import Image

from onnx_models import linear_classifier
from openpixel_ros.node.click_topics import wrong_type_message
from openpixel_ros.node.image_messages import array_to_image_msg
from openpixel_ros.node.stage_log import StageLog
from ros_helpers import running_node

STAGES = ("input", "decode", "inference", "publish", "click")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "rgb.onnx"
    linear_classifier(path, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    return path


def test_wrong_type_message_names_the_fixing_parameter():
    text = wrong_type_message("/a/click", "geometry_msgs/msg/Point", "point_stamped")
    assert "set click.message_type: point" in text and "/a/click" in text
    text = wrong_type_message("/a/click", "geometry_msgs/msg/PointStamped", "point")
    assert "set click.message_type: point_stamped" in text
    assert wrong_type_message("/a/click", "geometry_msgs/msg/Point", "point") is None
    assert "publish geometry_msgs/msg/PointStamped" in wrong_type_message("/a/click", "std_msgs/msg/String",
                                                                          "point_stamped")


class _Logger:
    def __init__(self, enabled):
        self.enabled, self.lines = enabled, []

    def is_enabled_for(self, severity):
        return self.enabled

    def debug(self, text):
        self.lines.append(text)


def test_stage_log_is_rate_limited_per_stage_and_free_when_off():
    now = [0.0]
    logger = _Logger(True)
    log = StageLog(logger, period_s=1.0, clock=lambda: now[0])
    for _ in range(10):
        log.debug("decode", lambda: "x")
        log.debug("publish", lambda: "y")
        now[0] += 0.25
    assert logger.lines == ["decode: x", "publish: y"] * 3  # at 0, 1.0 and 2.0 s
    quiet = _Logger(False)
    built = []
    assert not StageLog(quiet).debug("decode", lambda: built.append(1) or "x")
    assert not built and not quiet.lines


def test_debug_lines_per_stage_and_wrong_click_type_warning(ros_env, rcl, model):
    # Expects PointStamped clicks (the default); a Point publisher appears on ~/click.
    with running_node(ros_env, "-p", f"model_path:={model}", "-p", "diagnostics_period:=0.2",
                      "-r", "image:=/intro/image", "--log-level", "openpixel:=debug",
                      probe="test_introspection") as (proc, probe):
        labels = probe.subscribe(Image, "/openpixel/label")
        masks = probe.subscribe(Image, "/openpixel/click_mask")
        camera = probe.node.create_publisher(Image, "/intro/image", 10)
        wrong = probe.node.create_publisher(Point, "/openpixel/click", 10)
        right = probe.node.create_publisher(PointStamped, "/openpixel/click_negative", 10)
        frame = array_to_image_msg(np.full((8, 12, 3), (0, 255, 0), np.uint8), None, "rgb8")
        assert probe.spin_until(lambda: labels, timeout=60, every=lambda: camera.publish(frame)), proc.stop()
        t0 = time.monotonic()
        probe.spin_until(lambda: False, timeout=3.0,
                         every=lambda: (camera.publish(frame), wrong.publish(Point(x=1.0, y=1.0))), period=0.05)
        assert probe.spin_until(lambda: masks, timeout=20,
                                every=lambda: right.publish(PointStamped(point=Point(x=2.0, y=2.0)))), proc.stop()
        seconds = time.monotonic() - t0
    log = proc.stop()
    for stage in STAGES:
        lines = [line for line in log.splitlines() if "[DEBUG]" in line and f"]: {stage}: " in line]
        assert lines, f"no debug line for stage {stage}:\n{log}"
        # At most one per second per stage (while ~60 frames a second went through the first stages).
        assert len(lines) <= seconds + 8, (stage, len(lines), seconds)
    warnings = [line for line in log.splitlines() if "publisher on /openpixel/click is never received" in line]
    assert len(warnings) == 1, log  # once, though the publisher stayed
    assert "geometry_msgs/msg/Point" in warnings[0] and "set click.message_type: point" in warnings[0]
    assert not [line for line in log.splitlines() if "/openpixel/click_negative is never received" in line]
    if importlib.util.find_spec("vision_msgs") is None:
        missing = [line for line in log.splitlines() if "vision_msgs is not installed" in line]
        assert len(missing) == 1 and "/openpixel/label_info" in missing[0] and "vision-msgs" in missing[0], log
    assert re.search(r"inference: frame \d+\.\d{9}: .*engine_ms", log), log


def test_no_deprecated_warn_calls():
    """rclpy's deprecated ``Logger.warn`` wraps ``warning`` in a decorator, so rclpy takes the decorator
    for the caller: every ``.warn(..., throttle_duration_sec=5)`` in the process shared one throttle (a
    bad frame's warning silenced a refused service call's for 5 s), and a ``.warn`` with other filters
    raised ValueError. ``.warning`` keeps one throttle per call site."""
    from ros_helpers import REPO
    offenders = [f"{path.relative_to(REPO)}:{number}" for path in (REPO / "openpixel_ros").rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"get_logger\(\)\.warn\(|logger\.warn\(", line)]
    assert not offenders, offenders
