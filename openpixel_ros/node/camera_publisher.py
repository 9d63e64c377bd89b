"""camera_publisher: a looping camera for demos, tests and benchmarks.

Publishes ``image`` (sensor_msgs/Image in any supported encoding) or
``<image>/compressed`` (jpeg/png) from a video, an image folder or sample photos,
stamping each frame with the current time so subscribers can measure latency.
As image_transport does, the compressed topic follows a remap of ``image``:
``-r image:=/cam/front`` publishes ``/cam/front/compressed``. With ``camera_info`` true it also
publishes ``camera_info`` beside the image (``/cam/camera_info`` for ``/cam/front``, image_transport's
convention) with each frame's header: a nominal pinhole model (60 degree horizontal field of view,
no distortion) of the published size, so the camera_info path can be exercised without a real camera.
"""
from __future__ import annotations

import sys

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..frame_sources import iter_frames
from ..image_codec import SUPPORTED_ENCODINGS, encode_compressed, encode_raw
from .camera_info import camera_info_topic
from .image_messages import array_to_image_msg, byte_array
from .runner import run_node
from .usage import camera_publisher_usage


class CameraPublisher(Node):
    def __init__(self, **kwargs):
        super().__init__("camera", **kwargs)
        d = self.declare_parameter
        d("source", "auto", ParameterDescriptor(description="auto, samples, a video file or an image folder"))
        d("rate_hz", 30.0, ParameterDescriptor(description="publish rate"))
        d("width", 0, ParameterDescriptor(description="resize to this width (0 = keep)"))
        d("height", 0, ParameterDescriptor(description="resize to this height (0 = keep)"))
        d("encoding", "rgb8", ParameterDescriptor(description="raw encoding: " + ", ".join(SUPPORTED_ENCODINGS)))
        d("transport", "raw", ParameterDescriptor(description="raw or compressed"))
        d("compressed_format", "jpeg", ParameterDescriptor(description="jpeg or png"))
        d("frame_id", "camera", ParameterDescriptor(description="header.frame_id"))
        d("max_frames", 0, ParameterDescriptor(description="stop after this many frames (0 = never)"))
        d("reliability", "reliable", ParameterDescriptor(description="reliable or best_effort"))
        d("camera_info", True, ParameterDescriptor(description="also publish a nominal camera_info beside the image"))
        g = lambda n: self.get_parameter(n).value  # noqa: E731
        w, h = g("width"), g("height")
        self._frames = iter_frames(g("source"), loop=True, size=(w, h) if w and h else None)
        self._encoding = g("encoding")
        if self._encoding not in SUPPORTED_ENCODINGS:
            raise ValueError(f"unsupported encoding {self._encoding!r}")
        self._transport = g("transport")
        self._format = g("compressed_format")
        self._frame_id = g("frame_id")
        self._max_frames = g("max_frames")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.BEST_EFFORT if g("reliability") == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        if self._transport == "compressed":
            # The base topic's remap applies (image_transport's naming): <image>/compressed.
            self._pub = self.create_publisher(CompressedImage, self.resolve_topic_name("image") + "/compressed", qos)
        else:
            self._pub = self.create_publisher(Image, "image", qos)
        self._info_pub = self.create_publisher(CameraInfo, camera_info_topic(self.resolve_topic_name("image")), qos) \
            if g("camera_info") else None
        self.published = 0
        self.create_timer(1.0 / g("rate_hz"), self._tick)
        self.get_logger().info(f"publishing {g('source')} on {self._pub.topic_name} at {g('rate_hz')} Hz "
                               f"({self._transport}, {self._encoding if self._transport == 'raw' else self._format})")

    def _tick(self) -> None:
        if self._max_frames and self.published >= self._max_frames:
            raise SystemExit(0)
        rgb = next(self._frames)
        stamp = self.get_clock().now().to_msg()
        if self._transport == "compressed":
            msg = CompressedImage(format=self._format)
            msg.header.stamp, msg.header.frame_id = stamp, self._frame_id
            msg.data = byte_array(encode_compressed(rgb, self._format))
        else:
            msg = array_to_image_msg(encode_raw(rgb, self._encoding), None, self._encoding)
            msg.header.stamp, msg.header.frame_id = stamp, self._frame_id
        self._pub.publish(msg)
        if self._info_pub is not None:
            self._info_pub.publish(nominal_camera_info(msg.header, rgb.shape[1], rgb.shape[0]))
        self.published += 1


def nominal_camera_info(header, width: int, height: int, hfov_deg: float = 60.0) -> CameraInfo:
    """A distortion-free pinhole model of a ``width`` x ``height`` image with this horizontal field of view."""
    import math
    f = width / 2.0 / math.tan(math.radians(hfov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def main(args=None) -> int:
    return run_node(CameraPublisher, "camera", args, usage=camera_publisher_usage)


if __name__ == "__main__":
    sys.exit(main())
