"""A click publisher of the wrong message type is never matched by DDS, and nothing says so: this does.

rqt_image_view's mouse publishing sends ``geometry_msgs/Point``; most tools (RViz's "Publish
Point") send ``PointStamped``. The node subscribes with one type (``click.message_type``); a
publisher of the other type on the same topic is found through the ROS graph
(``get_publishers_info_by_topic``) and reported once, naming the parameter that fixes it.
"""
from __future__ import annotations

#: click.message_type value -> ROS type name
CLICK_TYPES = {"point_stamped": "geometry_msgs/msg/PointStamped", "point": "geometry_msgs/msg/Point"}


def wrong_type_message(topic: str, offered: str, expected_param: str) -> str | None:
    """The warning for a publisher of ``offered`` type on click ``topic``, or None when it matches."""
    expected = CLICK_TYPES[expected_param]
    if offered == expected:
        return None
    fix = next((value for value, name in CLICK_TYPES.items() if name == offered), None)
    remedy = f"set click.message_type: {fix}" if fix else \
        f"publish {expected} (or {', '.join(n for n in CLICK_TYPES.values() if n != expected)})"
    return (f"a {offered} publisher on {topic} is never received: this node subscribes with {expected} "
            f"(click.message_type: {expected_param}); {remedy}")


class ClickTypeWatch:
    """Checks the click topics' publishers (call :meth:`check` periodically); warns once per topic and type."""

    def __init__(self, node, subscriptions, message_type: str):
        self._node = node
        self._topics = [sub.topic_name for sub in subscriptions]
        self._message_type = message_type
        self._reported = set()

    def check(self) -> list:
        """New warnings (also logged)."""
        warnings = []
        for topic in self._topics:
            for info in self._node.get_publishers_info_by_topic(topic):
                key = (topic, info.topic_type)
                if key in self._reported:
                    continue
                self._reported.add(key)
                text = wrong_type_message(topic, info.topic_type, self._message_type)
                if text:
                    self._node.get_logger().warning(text)
                    warnings.append(text)
        return warnings
