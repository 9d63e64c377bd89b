"""camera_info beside the image, paired by stamp and republished with the outputs.

Projecting a mask into 3D, or fusing it with lidar, needs the camera model of the frame it came
from. Like image_proc, the node subscribes to ``camera_info`` in the image topic's namespace
(image_transport's convention: ``/cam/front/image_raw`` -> ``/cam/front/camera_info``, so a
remap of ``image`` moves it too), pairs each frame with the camera_info of the same stamp, and
publishes that as ``~/camera_info`` with the outputs' header. The labels are at the camera's
resolution whatever the model's input size, so the camera model needs no change. Frames with
no camera_info of their stamp are still processed; ``frames_without_camera_info`` counts them.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

#: camera_info messages kept for pairing (a few frames' worth: a frame is processed within a few
#: frame periods of its camera_info, or dropped)
KEEP = 30


def camera_info_topic(image_topic: str) -> str:
    """The camera_info topic beside a resolved image topic (image_transport's getCameraInfoTopic)."""
    parent = image_topic.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/camera_info"


class StampPairing:
    """The newest ``KEEP`` messages by stamp key; thread-safe (executor writes, the worker reads)."""

    def __init__(self, keep: int = KEEP):
        self._keep = keep
        self._by_stamp = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key, msg) -> None:
        with self._lock:
            self._by_stamp[key] = msg
            self._by_stamp.move_to_end(key)
            while len(self._by_stamp) > self._keep:
                self._by_stamp.popitem(last=False)

    def match(self, key) -> Optional[object]:
        with self._lock:
            return self._by_stamp.get(key)


def stamp_key(header) -> tuple:
    return header.stamp.sec, header.stamp.nanosec


class CameraInfoRelay:
    """Subscribes to the camera's camera_info and publishes ``~/camera_info`` for each processed frame."""

    def __init__(self, node, image_topic: str, out_qos: QoSProfile):
        self._node = node
        self.topic = camera_info_topic(image_topic)
        self._pairing = StampPairing()
        self._lock = threading.Lock()
        self.received = 0
        self.frames_without = 0
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_AVAILABLE,
                            durability=DurabilityPolicy.VOLATILE)
        self._sub = node.create_subscription(CameraInfo, self.topic, self._on_camera_info, in_qos)
        self.publisher = node.create_publisher(CameraInfo, "~/camera_info", out_qos)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._pairing.add(stamp_key(msg.header), msg)
        with self._lock:
            self.received += 1

    def publish_for(self, header) -> bool:
        """Publish the camera_info of this frame's stamp with ``header``; False (counted) if there is none."""
        info = self._pairing.match(stamp_key(header))
        if info is None:
            with self._lock:
                self.frames_without += 1
            return False
        if self.publisher.get_subscription_count():
            out = CameraInfo(header=header, height=info.height, width=info.width,
                             distortion_model=info.distortion_model, d=info.d, k=info.k, r=info.r, p=info.p,
                             binning_x=info.binning_x, binning_y=info.binning_y, roi=info.roi)
            self.publisher.publish(out)
        return True

    def diagnostics(self) -> dict:
        with self._lock:
            return {"camera_info_received": self.received, "frames_without_camera_info": self.frames_without}

    def close(self) -> None:
        self._node.destroy_subscription(self._sub)
        self._node.destroy_publisher(self.publisher)
