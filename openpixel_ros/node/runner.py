"""The one ``main()`` body of the package's nodes: start rclpy, build the node, spin, shut down."""
from __future__ import annotations

from typing import Callable, Sequence, Tuple, Type

import rclpy
import rclpy.executors
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], logger_name: str, startup_errors: Tuple[Type[BaseException], ...],
             args: Sequence[str] = None) -> int:
    """Spin the node ``make_node()`` builds until shutdown; 0 on a clean exit.

    A start-up error of one of the ``startup_errors`` types is logged as one FATAL line
    and returns 1. ``SystemExit`` raised by a callback (e.g. a camera's ``max_frames``)
    ends spinning like Ctrl-C does.
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except startup_errors as exc:
        rclpy.logging.get_logger(logger_name).fatal(str(exc))
        rclpy.try_shutdown()
        return 1
    # Single-threaded: rclpy's MultiThreadedExecutor added 3-9 ms per frame here (bench_node.py,
    # 640x480 and 1080p). The segmentation node runs inference on its own worker thread anyway.
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, SystemExit, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
