"""``<output>/compressed``: the outputs as sensor_msgs/CompressedImage, for recording and Wi-Fi links.

``~/color/compressed`` and ``~/overlay/compressed`` are JPEG (``compressed.jpeg_quality``);
``~/label/compressed`` and ``~/mask/compressed`` are PNG, lossless, so class ids and the 0/255 mask
survive exactly (mono16 labels stay 16-bit). Each carries the raw output's header, and its
``format`` follows image_transport's compressed plugin (``"rgb8; jpeg compressed bgr8"``,
``"mono8; png compressed mono8"``), so ``image_transport republish`` and rqt decode it. A
compressed output is encoded only while something subscribes to it; docs/benchmarks.md has the
cost per frame.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage

from ..image_codec import encode_output_image
from .image_messages import array_to_image_msg, byte_array

#: output -> codec
CODECS = {"label": "png", "mask": "png", "color": "jpeg", "overlay": "jpeg"}


def format_field(encoding: str, codec: str) -> str:
    """image_transport's ``format``: ``<raw encoding>; <codec> compressed <encoding of the payload>``."""
    payload = "bgr8" if encoding == "rgb8" else encoding  # OpenCV writes colour as BGR
    return f"{encoding}; {codec} compressed {payload}"


class CompressedOutputs:
    def __init__(self, node, qos, jpeg_quality: int):
        self.jpeg_quality = jpeg_quality
        # Lifecycle publishers (the node's outputs): silent unless the node is active.
        self._publishers = {name: node.create_lifecycle_publisher(CompressedImage, f"~/{name}/compressed", qos)
                            for name in CODECS}

    def wanted(self) -> dict:
        """output -> whether its compressed topic has a subscriber."""
        return {name: pub.get_subscription_count() > 0 for name, pub in self._publishers.items()}

    def publish_with_raw(self, name: str, raw_publisher, image: np.ndarray, header, encoding: str = None) -> None:
        """The raw output on ``raw_publisher`` and its compressed twin, each only while subscribed."""
        if encoding is None:  # class ids: mono8, or mono16 beyond 256 classes
            encoding = "mono8" if image.dtype == np.uint8 else "mono16"
        if raw_publisher.get_subscription_count():
            raw_publisher.publish(array_to_image_msg(image, header, encoding))
        if self._publishers[name].get_subscription_count():
            self.publish(name, image, header, encoding)

    def publish(self, name: str, image: np.ndarray, header, encoding: str) -> None:
        codec = CODECS[name]
        msg = CompressedImage(format=format_field(encoding, codec))
        msg.header = header
        msg.data = byte_array(encode_output_image(image, codec, quality=self.jpeg_quality))
        self._publishers[name].publish(msg)

    def destroy(self, node) -> None:
        for pub in self._publishers.values():
            node.destroy_lifecycle_publisher(pub)
        self._publishers = {}
