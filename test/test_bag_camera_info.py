"""openpixel_bag copies camera_info topics, so every output frame still has its camera model (by stamp)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from onnx_models import linear_classifier

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types


def _header(i):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=50 + i, nanosec=i), frame_id="cam")


def _camera_info(i, width):
    f = float(width)
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(i), height=6, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([f, 0, 3.5, 0, f, 2.5, 0, 0, 1.0]), r=np.eye(3).ravel(),
        p=np.array([f, 0, 3.5, 0, 0, f, 2.5, 0, 0, 0, 1.0, 0]),
        binning_x=0, binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                            do_rectify=False))


def test_camera_info_topics_are_copied(tmp_path):
    model = tmp_path / "rgb.onnx"
    linear_classifier(model, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    source = tmp_path / "drive"
    with Writer(source, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        info = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TYPESTORE)
        other = writer.add_connection("/other/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TYPESTORE)
        for i in range(4):
            rgb = np.zeros((6, 8, 3), np.uint8)
            rgb[..., i % 2] = 255
            msg = T["sensor_msgs/msg/Image"](header=_header(i), height=6, width=8, encoding="rgb8", is_bigendian=0,
                                             step=24, data=rgb.ravel())
            t = 1_000_000 * (i + 1)
            writer.write(info, t - 1, TYPESTORE.serialize_cdr(_camera_info(i, 8), "sensor_msgs/msg/CameraInfo"))
            writer.write(image, t, TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            writer.write(other, t, TYPESTORE.serialize_cdr(_camera_info(i, 16), "sensor_msgs/msg/CameraInfo"))
    out = tmp_path / "segmented"
    result = subprocess.run([str(Path(sys.executable).parent / "openpixel_bag"), str(source), str(out),
                             "--topic", "/cam/image_raw", "--model", str(model), "--outputs", "label"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    topics = {}
    with AnyReader([out], default_typestore=TYPESTORE) as reader:
        for connection, timestamp, raw in reader.messages():
            topics.setdefault(connection.topic, []).append((timestamp, reader.deserialize(raw, connection.msgtype)))
    assert set(topics) == {"/cam/image_raw", "/cam/camera_info", "/other/camera_info", "/openpixel/label"}
    infos = {m.header.stamp.sec: (t, m) for t, m in topics["/cam/camera_info"]}
    for _, label in topics["/openpixel/label"]:  # each label pairs by stamp with its camera model
        t, info = infos[label.header.stamp.sec]
        assert info.header.stamp.nanosec == label.header.stamp.nanosec and info.width == label.width
        assert t == 1_000_000 * (label.header.stamp.sec - 50 + 1) - 1  # the bag time is kept
    assert len(topics["/other/camera_info"]) == 4 and topics["/other/camera_info"][0][1].width == 16
