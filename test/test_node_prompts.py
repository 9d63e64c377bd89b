"""The click-segmentation service and click topics of the node, across processes."""
import math

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from openpixel_ros.image_codec import decode_raw
from openpixel_ros.msg import Scribble
from openpixel_ros.node.image_messages import array_to_image_msg
from openpixel_ros.srv import SegmentAtPoints
from ros_helpers import running_node

H, W = 240, 320
A, B = (90, 120), (230, 120)  # centres of two discs (x, y)


def scene():
    """Two orange discs on a textured blue background."""
    rng = np.random.default_rng(3)
    img = np.zeros((H, W, 3), np.uint8)
    img[...] = (40, 60, 150)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    for c in (A, B):
        cv2.circle(img, c, 45, (230, 140, 40), -1)
    return img


@pytest.fixture(scope="module")
def node(ros_env, rcl):
    # The classical engine, named: these tests check masks that follow from its colour-edge and
    # connectivity rules on synthetic discs (a twin disc left out, a small disc's outline); the
    # default engine's own node test is test_the_default_engine_is_the_click_network.
    with running_node(ros_env, "-r", "__node:=openpixel_p", "-r", "image:=/cam/image",
                      "-p", "prompt_engine:=classical", probe="test_prompts") as (proc, probe):
        client = probe.node.create_client(SegmentAtPoints, "/openpixel_p/segment_at_points")
        assert client.wait_for_service(timeout_sec=20), "service never appeared"
        yield proc, probe, client


def call(probe, client, **fields):
    req = SegmentAtPoints.Request()
    for k, v in fields.items():
        setattr(req, k, v)
    answer = probe.call(client, req, timeout=30)  # a prompt changes nothing on the node: resent if lost
    assert answer is not None, "service call timed out"
    return answer


def image_msg(sec=11):
    h = Header(frame_id="optical")
    h.stamp.sec = sec
    return array_to_image_msg(scene(), h, "rgb8")


def mask_of(res):
    m = res.mask
    assert m.encoding == "mono8" and (m.width, m.height) == (W, H)
    return decode_raw("mono8", m.height, m.width, m.step, False, m.data)


def test_the_default_engine_is_the_click_network(ros_env, rcl):
    """Issue 21: the node started with the packaged params file (no prompt_engine given) answers
    clicks with the click network, openpixel, not classical; its engine names itself in the answer."""
    with running_node(ros_env, "-r", "__node:=openpixel_default", probe="test_default_engine") as (proc, probe):
        client = probe.node.create_client(SegmentAtPoints, "/openpixel_default/segment_at_points")
        assert client.wait_for_service(timeout_sec=20), "service never appeared"
        res = call(probe, client, image=image_msg(), points=[Point(x=float(A[0]), y=float(A[1]))], labels=[1])
        assert res.success, res.message
        assert res.message.startswith("openpixel: "), res.message
        mask = mask_of(res)
        assert mask[A[1], A[0]] == 255 and res.area == int((mask == 255).sum()) > 0
        assert proc.alive()


def test_positive_click_segments_the_disc(node):
    _, probe, client = node
    res = call(probe, client, image=image_msg(), points=[Point(x=float(A[0]), y=float(A[1]))], labels=[1])
    assert res.success, res.message
    mask = mask_of(res)
    assert res.mask.header.frame_id == "optical" and res.mask.header.stamp.sec == 11
    assert set(np.unique(mask)) <= {0, 255}
    truth = np.zeros((H, W), bool)
    cv2.circle(truth.view(np.uint8), A, 45, 1, -1)
    inside = mask[truth] == 255
    assert inside.mean() > 0.9
    assert res.area == int((mask == 255).sum()) and 0.0 <= res.score <= 1.0
    assert res.bbox.width > 0 and res.bbox.x_offset <= A[0] - 40


def test_negative_click_removes_the_clicked_region(node):
    _, probe, client = node
    box = RegionOfInterest(x_offset=30, y_offset=60, width=260, height=120)  # covers both discs
    first = call(probe, client, image=image_msg(), points=[], labels=[], box=box)
    assert first.success, first.message
    assert mask_of(first)[B[1], B[0]] == 255 and mask_of(first)[A[1], A[0]] == 255, "box alone: both discs"
    refined = call(probe, client, image=image_msg(), labels=[0], box=box,
                   points=[Point(x=float(B[0]), y=float(B[1]))], previous_mask=first.mask)
    assert refined.success, refined.message
    m = mask_of(refined)
    assert m[B[1], B[0]] == 0 and m[A[1], A[0]] == 255
    twin = np.zeros((H, W), bool)
    cv2.circle(twin.view(np.uint8), B, 30, 1, -1)
    assert (m[twin] == 0).mean() > 0.9


def test_multimask_returns_candidates(node):
    _, probe, client = node
    res = call(probe, client, image=image_msg(), points=[Point(x=float(A[0]), y=float(A[1]))], labels=[1],
               multimask_output=True)
    assert res.success and len(res.candidate_masks) >= 1
    assert len(res.candidate_scores) == len(res.candidate_masks)
    assert bytes(res.candidate_masks[0].data) == bytes(res.mask.data)


@pytest.mark.parametrize("fields, words", [
    (dict(points=[], labels=[]), "no points, no scribbles and no box"),
    (dict(points=[Point(x=500.0, y=10.0)], labels=[1]), "outside"),
    (dict(points=[Point(x=math.nan, y=10.0)], labels=[1]), "finite"),
    (dict(points=[Point(x=float("inf"), y=10.0)], labels=[1]), "finite"),
    (dict(points=[Point(x=5.0, y=5.0)], labels=[1, 0]), "labels"),
    (dict(points=[Point(x=5.0, y=5.0)], labels=[2]), "labels must be 1"),
])
def test_bad_requests_fail_cleanly(node, fields, words):
    proc, probe, client = node
    res = call(probe, client, image=image_msg(), **fields)
    assert not res.success and words in res.message.lower() and "\n" not in res.message
    assert proc.alive()


def scribble(points, label):
    return Scribble(points=[Point(x=float(x), y=float(y)) for x, y in points], label=label)


def disc(centre, radius):
    truth = np.zeros((H, W), bool)
    cv2.circle(truth.view(np.uint8), centre, radius, 1, -1)
    return truth


def test_scribble_alone_segments_the_disc(node):
    _, probe, client = node
    stroke = [(A[0] - 30, A[1] - 5), (A[0], A[1] + 10), (A[0] + 30, A[1])]
    res = call(probe, client, image=image_msg(), scribbles=[scribble(stroke, 1)])
    assert res.success, res.message
    mask = mask_of(res)
    assert (mask[disc(A, 45)] == 255).mean() > 0.9
    assert (mask[disc(B, 45)] == 0).all()  # the twin disc is not connected to the stroke
    assert res.area == int((mask == 255).sum())
    # A background stroke through the twin disc, with a box around both: only A is left.
    box = RegionOfInterest(x_offset=30, y_offset=60, width=260, height=120)
    res = call(probe, client, image=image_msg(), box=box,
               scribbles=[scribble([(B[0] - 20, B[1]), (B[0] + 20, B[1])], 0)])
    assert res.success, res.message
    mask = mask_of(res)
    assert (mask[disc(A, 40)] == 255).mean() > 0.9 and (mask[disc(B, 30)] == 0).mean() > 0.9


@pytest.mark.parametrize("scribbles, words", [
    ([scribble([(10, 10)], 1), scribble([], 1)], "scribble 1 is empty"),
    ([scribble([(10, 10), (math.nan, 20)], 1)], "scribble 0 point 1 (nan, 20.0) has a non-finite coordinate"),
    ([scribble([(10, 10), (20, float("inf"))], 0)], "scribble 0 point 1 (20.0, inf) has a non-finite coordinate"),
    ([scribble([(10, 10), (W + 5, 20)], 1)], f"scribble 0 point 1 ({W + 5}.0, 20.0) is outside the {W}x{H} image"),
    ([scribble([(10, 10)], 2)], "scribble 0 label is 2; labels must be 1 (object) or 0 (background)"),
    ([scribble([(1, 1)] * 10001, 1)], "the scribbles hold more than 10000 points"),
])
def test_bad_scribbles_fail_cleanly_and_the_node_goes_on(node, scribbles, words):
    proc, probe, client = node
    res = call(probe, client, image=image_msg(), points=[Point(x=float(A[0]), y=float(A[1]))], labels=[1],
               scribbles=scribbles)
    assert not res.success and words in res.message and "\n" not in res.message, res.message
    assert proc.alive()
    good = call(probe, client, image=image_msg(), scribbles=[scribble([(A[0] - 20, A[1]), (A[0] + 20, A[1])], 1)])
    assert good.success and mask_of(good)[A[1], A[0]] == 255, good.message


def test_unsupported_encoding_and_missing_frame(node):
    proc, probe, client = node
    bad = Image(height=4, width=4, encoding="32FC1", step=16)
    bad.data = array_to_image_msg(np.zeros((4, 16), np.uint8), None, "mono8").data
    res = call(probe, client, image=bad, points=[Point(x=1.0, y=1.0)], labels=[1])
    assert not res.success and "unsupported encoding" in res.message
    # No image in the request and no camera frame yet.
    res = call(probe, client, points=[Point(x=1.0, y=1.0)], labels=[1])
    assert not res.success and "no camera frame" in res.message
    assert proc.alive()


def test_latest_frame_and_click_topic(node):
    _, probe, client = node
    pub = probe.publisher(Image, "/cam/image")
    frame = image_msg(sec=42)
    masks = probe.subscribe(Image, "/openpixel_p/click_mask")
    overlays = probe.subscribe(Image, "/openpixel_p/click_overlay")
    # Service on the latest camera frame (empty request image).
    for _ in range(5):
        pub.publish(frame)
        probe.spin_until(lambda: False, timeout=0.1)
    res = call(probe, client, points=[Point(x=float(B[0]), y=float(B[1]))], labels=[1])
    assert res.success, res.message
    assert res.mask.header.stamp.sec == 42 and mask_of(res)[B[1], B[0]] == 255
    # A click from an image view segments the latest frame.
    clicks = probe.node.create_publisher(PointStamped, "/openpixel_p/click", 10)
    click = PointStamped(point=Point(x=float(A[0]), y=float(A[1])))
    assert probe.spin_until(lambda: masks and overlays, timeout=20, every=lambda: clicks.publish(click),
                            period=2.0)
    o = overlays[0]
    assert o.header.stamp.sec == 42 and o.encoding == "rgb8" and (o.width, o.height) == (W, H)
    m = masks[0]
    assert m.header.stamp.sec == 42 and m.encoding == "mono8"
    assert decode_raw("mono8", m.height, m.width, m.step, False, m.data)[A[1], A[0]] == 255


def _iou(mask, truth) -> float:
    got = mask == 255
    return (got & truth).sum() / max(1, (got | truth).sum())


def test_repeated_stamps_never_answer_on_an_older_frame(node):
    """Two different frames, both stamped 0 with frame_id 'cam' (a simple driver): a click on the
    second must segment the second frame's object, through the service and through ~/click. The
    answer is polled because the frame and the request travel separately; a stale answer never ends."""
    _, probe, client = node
    pub = probe.publisher(Image, "/cam/image")
    clicks = probe.publisher(PointStamped, "/openpixel_p/click")
    masks = probe.subscribe(Image, "/openpixel_p/click_mask")
    big = scene()  # a disc of radius 45 at A
    small = np.full((H, W, 3), (40, 60, 150), np.uint8)
    cv2.circle(small, A, 20, (240, 220, 30), -1)  # a smaller, yellow disc at A
    frames = [(big, disc(A, 45)), (small, disc(A, 20))]
    header = Header(frame_id="cam")  # stamp 0

    def publish(rgb):
        for _ in range(3):
            pub.publish(array_to_image_msg(rgb, header, "rgb8"))
            probe.spin_until(lambda: False, timeout=0.1)

    point = Point(x=float(A[0]), y=float(A[1]))
    for rgb, truth in frames + frames:  # big, small, and back
        publish(rgb)
        best = 0.0
        for _ in range(20):
            res = call(probe, client, points=[point], labels=[1])
            assert res.success, res.message
            best = _iou(mask_of(res), truth)
            if best > 0.8:
                break
        assert best > 0.8, f"service answered on another frame: IoU {best:.2f} with this frame's object"
    for rgb, truth in frames:
        publish(rgb)
        masks.clear()
        got = []

        def click_matches():
            if masks:
                m = masks.pop()
                got.append(_iou(decode_raw("mono8", m.height, m.width, m.step, False, m.data), truth))
            return bool(got) and got[-1] > 0.8
        assert probe.spin_until(click_matches, timeout=30, every=lambda: clicks.publish(PointStamped(point=point)),
                                period=1.0), f"~/click answered on another frame: IoUs {got}"


def test_too_many_points_are_refused_at_once_and_the_next_call_is_answered(node):
    """Issue 17: one call with 1,000,000 points took 13.7 s and held up every call behind it.
    Points are bounded like scribbles: more than 1,000 are refused in one line."""
    proc, probe, client = node
    many = [Point(x=float(10 + i % 200), y=float(10 + i // 200)) for i in range(1001)]  # all inside
    res = call(probe, client, image=image_msg(), points=many, labels=[1] * len(many))
    assert not res.success and res.message == "1001 points; a prompt holds at most 1000", res.message
    res = call(probe, client, image=image_msg(), points=[Point(x=float(A[0]), y=float(A[1]))], labels=[1])
    assert res.success, res.message
    assert proc.alive()
