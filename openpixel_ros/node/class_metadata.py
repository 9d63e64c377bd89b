"""The model's classes as ROS metadata: a read-only ``classes`` parameter and ``~/label_info``.

``classes`` (``ros2 param get /openpixel classes``) lists ``"<id>: <name> #rrggbb"``, one entry per
class id of ``~/label``, with the colour that ``~/color`` and ``~/overlay`` use. Where vision_msgs
is installed (any ROS install; not on PyPI), the same ids and names go out once as
``vision_msgs/LabelInfo`` on ``~/label_info``, transient-local so late subscribers receive it.
"""
from __future__ import annotations

from typing import Optional

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

CLASSES_PARAMETER = "classes"


def class_entries(contract) -> list:
    """``["0: road #804080", ...]`` for every class of the model."""
    colors = contract.color_table()
    return [f"{i}: {name} #{int(colors[i][0]):02x}{int(colors[i][1]):02x}{int(colors[i][2]):02x}"
            for i, name in enumerate(contract.classes)]


def declare_classes_parameter(node, contract) -> None:
    """Declare the read-only ``classes`` parameter from the loaded model (a params file cannot set it)."""
    if node.has_parameter(CLASSES_PARAMETER):  # a lifecycle node configured again: same model parameters
        return
    node.declare_parameter(CLASSES_PARAMETER, class_entries(contract), ParameterDescriptor(
        description="The model's classes, '<id>: <name> #rrggbb' (id = value in ~/label); set by the model.",
        read_only=True), ignore_override=True)


def publish_label_info(node, contract) -> Optional[object]:
    """Publish ``vision_msgs/LabelInfo`` once on a latched ``~/label_info``; None without vision_msgs
    (said once in the log: which output is off and how to get it)."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        node.get_logger().warning(f"vision_msgs is not installed: {node.resolve_topic_name('~/label_info')} "
                               "(vision_msgs/LabelInfo) is not published; install ros-$ROS_DISTRO-vision-msgs "
                               "for it (the 'classes' parameter lists the same ids and names)", once=True)
        return None
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = node.create_publisher(LabelInfo, "~/label_info", qos)
    msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(contract.classes)])
    msg.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(msg)
    return publisher
