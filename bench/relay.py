"""Transport baseline for bench_node.py: /image in, a mono8 image of the same size out on
/openpixel/label with the same header. What any rclpy segmentation node pays before doing work."""
import sys

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

sys.path.insert(0, __import__("os").path.dirname(__file__) + "/..")
from openpixel_ros.node.image_messages import array_to_image_msg  # noqa: E402


def main():
    rclpy.init()
    node = rclpy.create_node("openpixel")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, "/openpixel/label", qos)
    cache = {}

    def on_image(msg):
        key = (msg.height, msg.width)
        if key not in cache:
            cache[key] = np.zeros(key, np.uint8)
        pub.publish(array_to_image_msg(cache[key], msg.header, "mono8"))

    node.create_subscription(Image, "/image", on_image, qos)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
