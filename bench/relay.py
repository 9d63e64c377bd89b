"""Transport baseline for bench_node.py: /image in, a mono8 image of the same size out on
/openpixel/label with the same header. What any rclpy segmentation node pays before doing work.

    relay.py [--raw-cdr] [--compressed WxH]

--raw-cdr takes each message as its CDR bytes (rclpy ``raw=True``) and parses it by hand, as the
node does with ``transport.raw_cdr`` (node/image_cdr.py), instead of rclpy's deserialisation.
--compressed subscribes to /image/compressed (sensor_msgs/CompressedImage) and answers with a
WxH label, without decoding: the transport cost of compressed input alone.
"""
import argparse
import os
import struct
import sys

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

sys.path.insert(0, os.path.dirname(__file__) + "/..")
from openpixel_ros.node.image_cdr import CdrImage, _Reader  # noqa: E402
from openpixel_ros.node.image_messages import array_to_image_msg  # noqa: E402


class _CdrCompressedImage:
    """header, format and a zero-copy view of data, from CompressedImage CDR bytes (measurement only)."""

    def __init__(self, buffer):
        r = _Reader(buffer)
        r.need(8, "header.stamp")
        sec, nanosec = struct.unpack_from("<iI", buffer, r.pos)
        r.pos += 8
        self.header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=r.string("header.frame_id"))
        self.format = r.string("format")
        size = r.u32("data length")
        r.need(size, "data")
        self.data = np.frombuffer(buffer, np.uint8, count=size, offset=r.pos)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw-cdr", action="store_true")
    ap.add_argument("--compressed", default="", metavar="WxH")
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("openpixel")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, "/openpixel/label", qos)
    cache = {}

    def answer(header, height, width):
        key = (height, width)
        if key not in cache:
            cache[key] = np.zeros(key, np.uint8)
        pub.publish(array_to_image_msg(cache[key], header, "mono8"))

    if args.compressed:
        width, height = (int(v) for v in args.compressed.split("x"))
        if args.raw_cdr:
            node.create_subscription(CompressedImage, "/image/compressed",
                                     lambda data: answer(_CdrCompressedImage(data).header, height, width), qos,
                                     raw=True)
        else:
            node.create_subscription(CompressedImage, "/image/compressed",
                                     lambda msg: answer(msg.header, height, width), qos)
    elif args.raw_cdr:
        def on_raw(data):
            msg = CdrImage(data)
            answer(msg.header, msg.height, msg.width)
        node.create_subscription(Image, "/image", on_raw, qos, raw=True)
    else:
        node.create_subscription(Image, "/image", lambda msg: answer(msg.header, msg.height, msg.width), qos)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
