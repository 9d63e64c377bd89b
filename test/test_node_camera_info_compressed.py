"""camera_info beside the image, paired by stamp and republished; compressed outputs, only while subscribed."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from onnx_models import linear_classifier
from openpixel_ros.image_codec import decode_raw, encode_output_image
from openpixel_ros.node.camera_info import StampPairing, camera_info_topic
from openpixel_ros.node.camera_publisher import nominal_camera_info
from openpixel_ros.node.compressed_outputs import format_field
from openpixel_ros.node.image_messages import array_to_image_msg
from ros_helpers import running_node
from test_node import BIAS, CLASSES, WEIGHTS, make_frame

H, W = 48, 64


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "linear.onnx"
    linear_classifier(path, WEIGHTS, BIAS, classes=CLASSES)
    return path


def test_camera_info_topic_is_beside_the_image():
    assert camera_info_topic("/front/camera/image_raw") == "/front/camera/camera_info"
    assert camera_info_topic("/image") == "/camera_info"


def test_pairing_keeps_the_newest_by_stamp():
    pairing = StampPairing(keep=3)
    for i in range(5):
        pairing.add((i, 0), f"info {i}")
    assert pairing.match((4, 0)) == "info 4" and pairing.match((2, 0)) == "info 2"
    assert pairing.match((1, 0)) is None and pairing.match((9, 0)) is None


def test_output_encodings_are_lossless_where_they_must_be():
    labels16 = (np.arange(H * W, dtype=np.uint16).reshape(H, W) % 300)
    back = cv2.imdecode(np.frombuffer(encode_output_image(labels16, "png"), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, labels16)  # class ids above 255 survive
    rgb = make_frame(H, W)
    back = cv2.imdecode(np.frombuffer(encode_output_image(rgb, "jpeg", quality=95), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(back[..., ::-1].astype(int) - rgb).mean() < 4  # RGB in, BGR payload, as the format says
    assert format_field("rgb8", "jpeg") == "rgb8; jpeg compressed bgr8"
    assert format_field("mono16", "png") == "mono16; png compressed mono16"
    with pytest.raises(ValueError):
        encode_output_image(labels16, "jpeg")


def _header(sec):
    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = sec, 77
    return h


def test_camera_info_is_paired_and_compressed_outputs_follow_subscriptions(ros_env, rcl, model):
    with running_node(ros_env, "-p", f"model_path:={model}", "-p", "adaptation.enabled:=false",
                      "-p", "diagnostics_period:=0.2", "-p", "compressed.jpeg_quality:=95",
                      "-r", "__ns:=/ci", "-r", "image:=/ci/cam/image_raw", probe="test_camera_info") as (proc, probe):
        diagnostics = probe.subscribe(DiagnosticArray, "/diagnostics")
        infos = probe.subscribe(CameraInfo, "/ci/openpixel/camera_info")
        compressed = {name: probe.subscribe(CompressedImage, f"/ci/openpixel/{name}/compressed")
                      for name in ("label", "mask", "color", "overlay")}
        camera = probe.node.create_publisher(Image, "/ci/cam/image_raw", 10)
        camera_info = probe.node.create_publisher(CameraInfo, "/ci/cam/camera_info", 10)
        assert probe.wait_for_subscriber(camera) and probe.wait_for_subscriber(camera_info), \
            "the node did not subscribe to camera_info beside the image"
        rgb = make_frame(H, W)

        def send(sec, with_info=True):
            msg = array_to_image_msg(rgb, _header(sec), "rgb8")
            if with_info:  # the driver publishes camera_info first, as most do
                camera_info.publish(nominal_camera_info(_header(sec), W, H))
            camera.publish(msg)

        # Only compressed outputs are subscribed: the node still segments.
        got_all = lambda: infos and all(compressed.values())  # noqa: E731
        stamp = [100]

        def next_frame():
            stamp[0] += 1
            send(stamp[0])
        assert probe.spin_until(got_all, timeout=60, every=next_frame), proc.stop()
        info = infos[-1]
        assert (info.header.stamp.nanosec, info.header.frame_id) == (77, "cam_optical")
        assert (info.width, info.height) == (W, H)
        expected = nominal_camera_info(_header(0), W, H)
        assert list(info.k) == pytest.approx(list(expected.k)) and info.distortion_model == "plumb_bob"

        # Each compressed output has a raw twin's header and content.
        for name in compressed:
            compressed[name].clear()
        raw = {name: probe.subscribe(Image, f"/ci/openpixel/{name}") for name in ("label", "color")}
        probe.spin_until(lambda: False, timeout=1.0)  # discovery of the raw subscriptions
        assert probe.spin_until(lambda: all(raw.values()) and all(compressed.values()), timeout=30,
                                every=next_frame)
        probe.spin_until(lambda: False, timeout=0.5)
        by_stamp = lambda msgs: {m.header.stamp.sec: m for m in msgs}  # noqa: E731
        common = set(by_stamp(raw["label"])) & set(by_stamp(compressed["label"]))
        assert common
        sec = max(common)
        raw_label, packed = by_stamp(raw["label"])[sec], by_stamp(compressed["label"])[sec]
        assert packed.format == "mono8; png compressed mono8" and packed.header.frame_id == "cam_optical"
        label = decode_raw(raw_label.encoding, raw_label.height, raw_label.width, raw_label.step, False,
                           raw_label.data)
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(bytes(packed.data), np.uint8),
                                                   cv2.IMREAD_UNCHANGED), label)
        mask = compressed["mask"][-1]
        assert set(np.unique(cv2.imdecode(np.frombuffer(bytes(mask.data), np.uint8), cv2.IMREAD_UNCHANGED))) <= {0, 255}
        color_stamps = set(by_stamp(raw["color"])) & set(by_stamp(compressed["color"]))
        sec = max(color_stamps)
        raw_color, packed = by_stamp(raw["color"])[sec], by_stamp(compressed["color"])[sec]
        assert packed.format == "rgb8; jpeg compressed bgr8"
        jpeg = cv2.imdecode(np.frombuffer(bytes(packed.data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        color = decode_raw("rgb8", raw_color.height, raw_color.width, raw_color.step, False, raw_color.data)
        assert np.abs(jpeg.astype(int) - color).mean() < 6

        # Frames without a camera_info of their stamp: processed, counted, no ~/camera_info.
        def counters():
            values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}
            return int(values.get("frames_without_camera_info", -1)), int(values.get("frames_processed", 0))
        before_missing, _ = counters()
        first_bare = stamp[0] + 1
        n_before = len(compressed["label"])

        def send_bare():
            stamp[0] += 1
            send(stamp[0], with_info=False)
        assert probe.spin_until(lambda: counters()[0] >= before_missing + 3, timeout=30, every=send_bare), \
            counters()
        assert len(compressed["label"]) > n_before  # still processed
        assert not [i for i in infos if i.header.stamp.sec >= first_bare]
