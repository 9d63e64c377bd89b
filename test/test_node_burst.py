"""A burst of concurrent ~/segment_at_points calls while frames stream: every call is answered
(a result or a clear "busy"), the label stream keeps going, and every frame is accounted for."""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from openpixel_ros.node.image_messages import array_to_image_msg
from openpixel_ros.node.service_calls import refused_at_once_request
from openpixel_ros.srv import SegmentAtPoints
from ros_helpers import running_node
from test_node import make_frame, model  # noqa: F401 (model: fixture)

CALLS, CLIENTS, QUEUE = 100, 5, 8
H, W = 120, 160


def _diag(messages):
    values = [{kv.key: kv.value for kv in s.values} for d in messages for s in d.status
              if s.name.endswith("segmentation")]
    return values[-1] if values else {}


@contextmanager
def _client_nodes(count):
    clients = [rclpy.create_node(f"burst_client_{i}") for i in range(count)]
    try:
        yield clients
    finally:
        for c in clients:
            c.destroy_node()


def test_burst_of_service_calls_is_answered_and_frames_keep_flowing(ros_env, rcl, model):  # noqa: F811 (fixture)
    with running_node(ros_env, "-p", f"model_path:={model}", "-r", "__node:=openpixel_burst",
                      "-r", "image:=/burst_cam/image",
                      "-p", "adaptation.enabled:=false", "-p", "diagnostics_period:=0.2",
                      "-p", f"click.queue_size:={QUEUE}", probe="test_burst") as (proc, probe), \
            _client_nodes(CLIENTS) as clients:
        labels = probe.subscribe(Image, "/openpixel_burst/label")
        diagnostics = probe.subscribe(DiagnosticArray, "/diagnostics")
        pub = probe.node.create_publisher(Image, "/burst_cam/image", 10)
        # A client's own response queue (default depth 10) drops answers that arrive faster than it
        # takes them: a client with many calls in flight needs a deeper one (docs/nodes.md).
        deep = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        services = [c.create_client(SegmentAtPoints, "/openpixel_burst/segment_at_points", qos_profile=deep)
                    for c in clients]
        # Answers must reach each client before the counted burst (none may be resent): first a request
        # the node refuses before queueing it (too many points), until it is answered.
        for c, s in zip(clients, services):
            assert not probe.await_answers(s, refused_at_once_request(), node=c).success
        assert probe.wait_for_subscriber(pub)
        frame = make_frame(H, W)
        sent = [0]

        def publish_frame():
            header = Header(frame_id="burst_cam")
            header.stamp.sec, header.stamp.nanosec = 1000 + sent[0], 0
            pub.publish(array_to_image_msg(frame, header))
            sent[0] += 1

        assert probe.spin_until(lambda: labels, timeout=20, every=publish_frame, period=1 / 30)
        executor = rclpy.executors.SingleThreadedExecutor()
        for c in clients:
            executor.add_node(c)

        def spin_all(condition, timeout):
            end = time.monotonic() + timeout
            next_frame = 0.0
            while time.monotonic() < end and not condition():
                if time.monotonic() >= next_frame:
                    publish_frame()
                    next_frame = time.monotonic() + 1 / 30
                executor.spin_once(timeout_sec=0.005)
                rclpy.spin_once(probe.node, timeout_sec=0.0)
            return condition()

        labels_before = len(labels)
        request = SegmentAtPoints.Request(points=[Point(x=20.0, y=20.0)], labels=[1])  # latest camera frame
        futures = [services[i % CLIENTS].call_async(request) for i in range(CALLS)]
        assert spin_all(lambda: all(f.done() for f in futures), timeout=60), \
            f"{sum(not f.done() for f in futures)} of {CALLS} calls never answered"
        labels_during = len(labels) - labels_before
        results = [f.result() for f in futures]
        ok = [r for r in results if r.success]
        busy = [r for r in results if not r.success]
        for r in busy:
            assert r.message.startswith("busy: ") and r.message.endswith(" requests queued"), r.message
        for r in ok:
            assert (r.mask.width, r.mask.height) == (W, H) and r.area > 0, r.message
        assert ok, "no call got a result"
        assert labels_during >= 5, f"only {labels_during} labels while the burst was served"

        # Stop the camera; then every received frame is processed or dropped with a cause.
        last = sent[0]
        assert probe.spin_until(lambda: any(m.header.stamp.sec == 1000 + last - 1 for m in labels) or
                                int(_diag(diagnostics).get("frames_received", -1)) >= last, timeout=10)
        seen = len(diagnostics)
        probe.spin_until(lambda: len(diagnostics) > seen + 2, timeout=5)
        diag = _diag(diagnostics)
        causes = {k[len("frames_dropped_"):]: int(v) for k, v in diag.items() if k.startswith("frames_dropped_")}
        received, processed = int(diag["frames_received"]), int(diag["frames_processed"])
        assert received + causes["queue_overrun"] <= sent[0]
        assert received == processed + sum(v for k, v in causes.items() if k != "queue_overrun"), diag
        assert int(diag["frames_dropped"]) == sum(causes.values())
        assert int(diag["prompt_requests_accepted"]) + int(diag["prompt_requests_refused_busy"]) == CALLS
        assert int(diag["prompt_requests_refused_busy"]) == len(busy)
        print(f"burst: {len(ok)} results, {len(busy)} busy, {labels_during} labels meanwhile; {diag}")
        assert proc.alive()
    log = proc.stop()
    assert "Traceback" not in log, log


def test_every_published_frame_is_received_or_counted_as_overrun(ros_env, rcl, model):  # noqa: F811 (fixture)
    """Frames overwritten in the subscription queue (depth 1) before the node took them are
    counted from gaps in the publisher's sequence numbers: received + overrun == published."""
    with _counting_node(ros_env, model, "openpixel_overrun") as (probe, labels, diagnostics):
        pub = probe.publisher(Image, "/openpixel_overrun_cam/image")
        msg = array_to_image_msg(np.zeros((480, 640, 3), np.uint8), Header(frame_id="overrun_cam"))
        assert probe.spin_until(lambda: labels, timeout=20, every=lambda: pub.publish(msg), period=0.5)
        probe.spin_until(lambda: False, timeout=1.0)
        seen = _diag(diagnostics)
        base_received = int(seen["frames_received"]) + int(seen["frames_dropped_queue_overrun"])
        for _ in range(300):  # back to back: faster than the node's executor takes them
            pub.publish(msg)
        probe.spin_until(lambda: False, timeout=1.5)
        pub.publish(msg)  # a last frame after a pause shows the gap before it
        probe.spin_until(lambda: False, timeout=1.5)
        diag = _diag(diagnostics)
        received, overrun = int(diag["frames_received"]), int(diag["frames_dropped_queue_overrun"])
        print(f"overrun: 301 published, {received + overrun - base_received} accounted, {overrun} overrun")
        assert received + overrun - base_received == 301, diag
        assert overrun > 0, "the burst never overran the queue: the test proves nothing"


def _accounted(diag) -> int:
    return int(diag["frames_received"]) + int(diag["frames_dropped_queue_overrun"])


@contextmanager
def _counting_node(ros_env, model, name):  # noqa: F811
    """A node ``name`` on /``name``_cam/image, diagnostics every 0.2 s; its labels and diagnostics recorded."""
    with running_node(ros_env, "-p", f"model_path:={model}", "-r", f"__node:={name}",
                      "-r", f"image:=/{name}_cam/image", "-p", "adaptation.enabled:=false",
                      "-p", "diagnostics_period:=0.2", probe=f"test_{name}") as (_, probe):
        yield probe, probe.subscribe(Image, f"/{name}/label"), probe.subscribe(DiagnosticArray, "/diagnostics")


def test_two_publishers_with_one_frame_id_are_counted_per_publisher(ros_env, rcl, model):  # noqa: F811
    """Issue 17: sequence gaps were tracked per frame_id, so two cameras on one topic (same
    frame_id, different message counts) made the node report losses that never happened."""
    with _counting_node(ros_env, model, "openpixel_two_pubs") as (probe, labels, diagnostics):
        first = probe.node.create_publisher(Image, "/openpixel_two_pubs_cam/image", 10)
        second = probe.node.create_publisher(Image, "/openpixel_two_pubs_cam/image", 10)
        msg = array_to_image_msg(make_frame(48, 64), Header(frame_id="same_camera"))
        assert probe.wait_for_subscriber(first) and probe.wait_for_subscriber(second)
        assert probe.spin_until(lambda: labels, timeout=20, every=lambda: (first.publish(msg), second.publish(msg)),
                                period=0.5)
        for _ in range(40):  # the first camera runs ahead: its numbers reach the 40s
            first.publish(msg)
            probe.spin_until(lambda: False, timeout=0.02)
        second.publish(msg)  # (a publisher's first frames seen set its count: none may be lost after them)
        probe.spin_until(lambda: False, timeout=1.0)
        base = _accounted(_diag(diagnostics))
        for _ in range(40):  # now both, interleaved: 41.. and 1..
            first.publish(msg)
            second.publish(msg)
            probe.spin_until(lambda: False, timeout=0.03)
        probe.spin_until(lambda: False, timeout=1.0)
        for pub in (first, second):  # a last frame from each, after a pause, shows any gap before it
            pub.publish(msg)
            probe.spin_until(lambda: False, timeout=1.0)
        diag = _diag(diagnostics)
        assert _accounted(diag) - base == 82, diag  # exactly what was published: no phantom losses
        assert diag["queue_overrun_counting"] == "per publisher"


def test_frames_are_counted_while_paused(ros_env, rcl, model):  # noqa: F811
    """docs/nodes.md: with ~/enable false frames are still counted (frames_received stopped)."""
    from std_srvs.srv import SetBool
    with _counting_node(ros_env, model, "openpixel_paused") as (probe, labels, diagnostics):
        pub = probe.publisher(Image, "/openpixel_paused_cam/image")
        msg = array_to_image_msg(make_frame(48, 64), Header(frame_id="cam"))
        assert probe.spin_until(lambda: labels, timeout=20, every=lambda: pub.publish(msg), period=0.5)
        enable = probe.node.create_client(SetBool, "/openpixel_paused/enable")
        assert enable.wait_for_service(timeout_sec=10)
        answer = probe.call(enable, SetBool.Request(data=False))  # idempotent: resent if lost
        assert answer is not None and answer.success
        probe.spin_until(lambda: False, timeout=1.0)
        before = _diag(diagnostics)
        for _ in range(20):
            pub.publish(msg)
            probe.spin_until(lambda: False, timeout=0.05)
        probe.spin_until(lambda: False, timeout=1.5)
        after = _diag(diagnostics)
        received = int(after["frames_received"]) - int(before["frames_received"])
        paused = int(after["frames_dropped_paused"]) - int(before["frames_dropped_paused"])
        overrun = int(after["frames_dropped_queue_overrun"]) - int(before["frames_dropped_queue_overrun"])
        assert received + overrun == 20 and paused == received > 0, (before, after)
        assert int(after["frames_processed"]) == int(before["frames_processed"]), "a paused node segmented"
