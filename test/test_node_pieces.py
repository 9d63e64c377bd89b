"""The node's parts that need no ROS graph: output rendering, prompt messages, statistics and
status, the parameter table's apply/read-back steps. Messages are built and read here; no node
or process is started."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import RegionOfInterest

from openpixel_ros.interactive import PromptError
from openpixel_ros.interactive.base import PromptResult
from openpixel_ros.interactive.prompts import MAX_POINTS
from openpixel_ros.node import prompt_messages
from openpixel_ros.node.diagnostics import NodeStats, StatusLimits, segmentation_status, state_status
from openpixel_ros.node.frame_drops import DROP_CAUSES
from openpixel_ros.node.image_messages import array_to_image_msg
from openpixel_ros.node.parameters import all_parameters, refuse_change, spec_by_name
from openpixel_ros.segmentor import SegmentationResult
from openpixel_ros.srv import SegmentAtPoints
from openpixel_ros.visualize import OUTPUTS, colorize, overlay, render_outputs

PALETTE = np.array([(0, 0, 0), (255, 0, 0), (0, 0, 255)], np.uint8)


def _frame():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[1:3, 2:5] = 1
    labels[0, 0] = 2
    mask = (labels == 1).view(np.uint8) * np.uint8(255)
    return rgb, labels, mask


# -- render_outputs -----------------------------------------------------------------------------
def test_render_outputs_builds_only_what_is_wanted():
    rgb, labels, mask = _frame()
    assert render_outputs(rgb, labels, mask, PALETTE, 0.5, []) == {}
    only_mask = render_outputs(rgb, labels, mask, PALETTE, 0.5, ["mask"])
    assert list(only_mask) == ["mask"] and only_mask["mask"][1] == "mono8"
    assert only_mask["mask"][0] is mask


def test_render_outputs_gives_the_four_images_in_order_with_encodings():
    rgb, labels, mask = _frame()
    images = render_outputs(rgb, labels, mask, PALETTE, 0.25, reversed(OUTPUTS))
    assert list(images) == list(OUTPUTS)
    assert [encoding for _, encoding in images.values()] == ["mono8", "mono8", "rgb8", "rgb8"]
    color = colorize(labels, PALETTE)
    np.testing.assert_array_equal(images["color"][0], color)
    np.testing.assert_array_equal(images["overlay"][0], overlay(rgb, color, 0.25, labels))
    # background keeps the frame, the object is tinted
    assert (images["overlay"][0][0, 5] == 100).all() and (images["overlay"][0][1, 2] != 100).any()


def test_render_outputs_labels_beyond_256_classes_are_mono16():
    rgb, labels, mask = _frame()
    images = render_outputs(rgb, labels.astype(np.uint16) + 300, mask, PALETTE, 0.5, ["label", "color"])
    assert images["label"][1] == "mono16" and images["label"][0].dtype == np.uint16
    assert not images["color"][0].any()  # ids beyond the palette render black


# -- prompt messages ----------------------------------------------------------------------------
def _request(points=((2.0, 1.0),), labels=(1,)):
    return SegmentAtPoints.Request(points=[Point(x=x, y=y) for x, y in points], labels=list(labels))


def test_request_prompt_carries_points_box_and_previous_mask():
    request = _request(points=((2.0, 1.0), (4.0, 2.0)), labels=(1, 0))
    request.box = RegionOfInterest(x_offset=1, y_offset=1, width=3, height=2)
    previous = np.zeros((4, 6), np.uint8)
    previous[1, 1] = 255
    request.previous_mask = array_to_image_msg(previous, None, "mono8")
    prompt = prompt_messages.request_prompt(request, (4, 6))
    np.testing.assert_array_equal(prompt.points, [[2.0, 1.0], [4.0, 2.0]])
    np.testing.assert_array_equal(prompt.labels, [1, 0])
    np.testing.assert_array_equal(prompt.box, [1, 1, 4, 3])
    assert prompt.previous_mask.dtype == bool and prompt.previous_mask.sum() == 1 and prompt.previous_mask[1, 1]


def test_request_prompt_refuses_bad_input_with_a_reason():
    request = _request()
    request.previous_mask = array_to_image_msg(np.zeros((4, 6, 3), np.uint8), None, "rgb8")
    with pytest.raises(ValueError, match="previous_mask must be mono8"):
        prompt_messages.request_prompt(request, (4, 6))
    with pytest.raises(PromptError):
        prompt_messages.request_prompt(_request(points=((50.0, 1.0),)), (4, 6))  # outside the frame
    many = _request(points=[(1.0, 1.0)] * (MAX_POINTS + 1), labels=[1] * (MAX_POINTS + 1))
    assert str(MAX_POINTS) in prompt_messages.too_many_points(many)
    assert prompt_messages.too_many_points(_request()) is None


def test_request_image_is_the_requests_own_or_none():
    assert prompt_messages.request_image(_request().image, 10_000) is None
    rgb = np.zeros((4, 6, 3), np.uint8)
    header, decoded = prompt_messages.request_image(array_to_image_msg(rgb, None, "rgb8"), 10_000)
    assert decoded.shape == (4, 6, 3)
    with pytest.raises(ValueError):
        prompt_messages.request_image(array_to_image_msg(rgb, None, "rgb8"), 20)  # more pixels than allowed


def test_response_takes_area_and_bbox_from_the_prompt_result():
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    engine = PromptResult(masks=[mask, ~mask], scores=[0.9, 0.2], timings={"total_ms": 3.0})
    result = SegmentationResult(labels=None, mask=mask.view(np.uint8) * np.uint8(255), score=0.9,
                                timings=engine.timings, bbox=engine.bbox, area=engine.area,
                                candidates=[(m.view(np.uint8) * np.uint8(255), s)
                                            for m, s in zip(engine.masks, engine.scores)])
    response = prompt_messages.fill_response(SegmentAtPoints.Response(), result, None, True, "classical", 4.5)
    assert response.success and response.area == 8
    assert (response.bbox.x_offset, response.bbox.y_offset, response.bbox.width, response.bbox.height) == (2, 1, 4, 2)
    assert response.mask.encoding == "mono8" and (response.mask.width, response.mask.height) == (7, 5)
    assert len(response.candidate_masks) == 2 and response.candidate_scores == pytest.approx([0.9, 0.2])
    assert response.message == "classical: area 8 px, score 0.90, engine 3.00 ms, service 4.50 ms"
    empty = prompt_messages.bbox_roi(PromptResult(masks=[np.zeros((3, 3), bool)], scores=[0.0]).bbox)
    assert (empty.width, empty.height) == (0, 0)


def test_click_point_and_overlay():
    assert prompt_messages.click_point(PointStamped(point=Point(x=3.0, y=4.0))) == (3.0, 4.0)
    assert prompt_messages.click_point(Point(x=1.5, y=2.5)) == (1.5, 2.5)
    rgb, _, mask = _frame()
    positive = prompt_messages.click_overlay(rgb, mask, 1, 1.0)
    negative = prompt_messages.click_overlay(rgb, mask, 0, 1.0)
    assert tuple(positive[1, 2]) == (0, 255, 0) and tuple(negative[1, 2]) == (255, 128, 0)
    assert (positive[0, 0] == 100).all()  # outside the object the frame is untouched
    refused = prompt_messages.refusal("node deactivating")
    assert not refused.success and refused.message == "node deactivating"


# -- NodeStats and the status -------------------------------------------------------------------
class _Prompts:
    queued, accepted, refused = 1, 5, 2


def _stats():
    now = [100.0]
    return NodeStats(clock=lambda: now[0]), now


def test_node_stats_counts_frames_drops_and_latency():
    stats, now = _stats()
    info = {"publisher_gid": {"data": [1] * 16}, "publication_sequence_number": 1}
    received = stats.frame_received(info, "cam")
    now[0] += 0.040
    stats.frame_processed(received, engine_ms=12.5)
    stats.frame_received({**info, "publication_sequence_number": 4}, "cam")  # 2 and 3 never arrived
    stats.drops.add("rate_limit")
    stats.click_dropped()
    values = stats.values(newest_frame_drops=3, prompts=_Prompts)
    assert values["frames_received"] == 2 and values["frames_processed"] == 1
    assert values["frames_dropped_queue_overrun"] == 2 and values["frames_dropped_newest_frame"] == 3
    assert values["frames_dropped_rate_limit"] == 1 and values["frames_dropped"] == 6
    assert {f"frames_dropped_{cause}" for cause in DROP_CAUSES} <= set(values)
    assert values["latency_p50_ms"] == "40.0" and values["engine_median_ms"] == "12.500"
    assert values["clicks_dropped_busy"] == 1 and values["prompt_requests_accepted"] == 5
    assert values["queue_overrun_counting"] == "per publisher"


def test_node_stats_logs_each_distinct_error_once_but_counts_every_one():
    stats, _ = _stats()
    assert stats.error("decode failed") == "decode failed"
    assert stats.error("decode failed") is None  # counted, not logged again
    assert stats.errors == 2 and stats.last_error == "decode failed"


def _status(stats, **kw):
    args = dict(topic="/cam", limits=StatusLimits(input_timeout=2.0), stuck=None, enabled=True, slow_warning=None)
    args.update(kw)
    return segmentation_status("/front/openpixel", stats, stats.values(0, _Prompts), **args)


def test_status_says_the_most_urgent_condition():
    stats, now = _stats()
    status = _status(stats)
    assert status.name == "/front/openpixel: segmentation" and status.hardware_id == "/front/openpixel"
    assert (status.level, status.message) == (DiagnosticStatus.WARN, "no frames yet on /cam")
    received = stats.frame_received({}, "cam")
    stats.frame_processed(received, 1.0)
    assert (_status(stats).level, _status(stats).message) == (DiagnosticStatus.OK, "running")
    assert _status(stats, enabled=False).message == "paused (~/enable false)"
    assert _status(stats, slow_warning="too slow").message == "too slow"
    assert _status(stats, stuck=("inference", 12.0)).message.startswith("inference worker stuck in inference")
    now[0] += 3.0
    assert _status(stats).message == "input stale: no frame on /cam for 3.0 s"
    assert {kv.key for kv in _status(stats).values} >= {"frames_received", "errors", "latency_p95_ms"}


def test_status_reports_errors_before_any_frame_was_processed():
    stats, _ = _stats()
    stats.frame_received({}, "cam")
    stats.error("decode failed: bad step")
    status = _status(stats)
    assert (status.level, status.message) == (DiagnosticStatus.ERROR, "decode failed: bad step")


def test_state_status_names_the_state():
    status = state_status("/openpixel", "inactive", model="m.onnx")
    assert (status.level, status.message) == (DiagnosticStatus.OK, "inactive: not processing")
    assert {kv.key: kv.value for kv in status.values} == {"lifecycle_state": "inactive", "model": "m.onnx"}
    assert state_status("/openpixel", "unconfigured").message == "unconfigured"


# -- the parameter table ------------------------------------------------------------------------
def test_every_run_time_parameter_carries_apply_and_read_back():
    for spec in all_parameters():
        if spec.read_only:
            assert spec.apply is None and spec.read_back is None, spec.name
        else:
            assert spec.apply is not None and spec.read_back is not None, spec.name


class _Holder:
    pass


def test_apply_and_read_back_go_through_the_objects_that_use_the_value():
    specs = spec_by_name()
    node = _Holder()
    node.click_prompts, node.limits = _Holder(), StatusLimits()
    node.click_prompts.worker = _Holder()
    node.diagnostics_timer = _Holder()
    specs["click.queue_size"].apply(node, 12)
    specs["input_timeout"].apply(node, 4.5)
    specs["diagnostics_period"].apply(node, 0.25)
    assert node.click_prompts.worker.capacity == 12 and node.limits.input_timeout == 4.5
    assert node.diagnostics_timer.timer_period_ns == 250_000_000
    assert specs["diagnostics_period"].read_back(node) == 0.25
    node.click_prompts = None  # inactive: the worker is created from the parameter on activate
    specs["click.queue_size"].apply(node, 3)
    assert specs["click.queue_size"].read_back(node) is None


def test_refuse_change_checks_each_value_and_the_adaptation_config_as_a_whole():
    specs = spec_by_name()
    node, current = _Holder(), (lambda name: specs[name].default)
    assert refuse_change(specs, {"overlay_alpha": 0.3, "use_sim_time": True}, node, current) is None
    assert "overlay_alpha must be <= 1.0" in refuse_change(specs, {"overlay_alpha": 2.0}, node, current)
    assert "fixed at start-up" in refuse_change(specs, {"engine": "tensorrt"}, node, current)
    # each value in its range, but the pair is not: release must stay below activation
    activation = specs["adaptation.activation_score"].default
    assert "release_score < activation_score" in refuse_change(
        specs, {"adaptation.release_score": min(1.0, activation + 0.1)}, node, current)
    assert refuse_change(specs, {"adaptation.release_score": activation - 0.05}, node, current) is None
