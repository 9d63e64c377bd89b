"""The node's outputs: lifecycle publishers (silent unless the node is active), created on configure
and destroyed on cleanup, and what goes out on them for a frame, an adaptation state or a click.

Each image output is built only while something subscribes to it (raw or ``<topic>/compressed``).
"""
from __future__ import annotations

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from ..msg import AdaptationState
from ..visualize import OUTPUTS
from . import class_metadata
from .compressed_outputs import CompressedOutputs
from .image_messages import array_to_image_msg

# output -> topic of the sensor_msgs/Image outputs (OUTPUTS also go out as <topic>/compressed)
IMAGE_TOPICS = (("label", "~/label"), ("mask", "~/mask"), ("color", "~/color"), ("overlay", "~/overlay"),
                ("adapted", "~/adapted_image"), ("click_mask", "~/click_mask"), ("click_overlay", "~/click_overlay"))


class NodeOutputs:
    def __init__(self, node, qos: QoSProfile, jpeg_quality: int, contract):
        self._node = node
        self.publishers = {name: node.create_lifecycle_publisher(Image, topic, qos) for name, topic in IMAGE_TOPICS}
        self.publishers["adaptation"] = node.create_lifecycle_publisher(AdaptationState, "~/adaptation", 10)
        self.compressed = CompressedOutputs(node, qos, jpeg_quality)
        # The configured model's classes, latched and published once: a plain publisher (valid while configured).
        self._label_info = class_metadata.publish_label_info(node, contract)

    def destroy(self) -> None:
        for publisher in self.publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self.compressed.destroy(self._node)
        if self._label_info is not None:
            self._node.destroy_publisher(self._label_info)

    @property
    def qos(self) -> QoSProfile:
        return self.publishers["label"].qos_profile

    def wanted(self) -> dict:
        """output -> subscribed, raw or (label, mask, color, overlay) compressed."""
        compressed = self.compressed.wanted()
        return {name: self.publishers[name].get_subscription_count() > 0 or compressed.get(name, False)
                for name in (*OUTPUTS, "adaptation", "adapted")}

    def publish_images(self, images: dict, header) -> None:
        """``render_outputs``' {output: (image, encoding)}: raw and <output>/compressed, each while subscribed."""
        for name, (image, encoding) in images.items():
            self.compressed.publish_with_raw(name, self.publishers[name], image, header, encoding)

    def publish_adaptation(self, header, adapted, state, wanted: dict) -> None:
        if wanted["adaptation"]:
            msg = AdaptationState(header=header)
            for key, value in state.to_dict().items():
                setattr(msg, key, type(getattr(msg, key))(value))
            self.publishers["adaptation"].publish(msg)
        if wanted["adapted"] and adapted is not None:
            self.publishers["adapted"].publish(array_to_image_msg(np.ascontiguousarray(adapted), header, "rgb8"))

    def publish_click(self, mask: np.ndarray, header, overlay) -> None:
        """The click mask, and the click overlay (``overlay()`` builds it) while subscribed."""
        self.publishers["click_mask"].publish(array_to_image_msg(mask, header, "mono8"))
        if self.publishers["click_overlay"].get_subscription_count():
            self.publishers["click_overlay"].publish(array_to_image_msg(overlay(), header, "rgb8"))
