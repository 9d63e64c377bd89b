"""The one ``main()`` body of the package's nodes: start rclpy, build the node, spin, shut down."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import rclpy
import rclpy.executors
from rclpy.node import Node

from .frame_memory import keep_frame_buffers
from .startup import create_node_or_report
from .supervision import exit_with_parent, exit_with_parent_requested
from .usage import print_usage_if_requested


def run_node(make_node: Callable[[], Node], logger_name: str, args: Sequence[str] = None,
             usage: Optional[Callable[[str], str]] = None) -> int:
    """Spin the node ``make_node()`` builds until shutdown; 0 on a clean exit.

    Any start-up fault (a bad params file, a wrong parameter type, a missing model, ...) is
    logged as one FATAL line and returns 1 (:func:`~.startup.create_node_or_report`).
    ``SystemExit`` raised by a callback (e.g. a camera's ``max_frames``) ends spinning like
    Ctrl-C does.
    ``-h``/``--help`` before ``--ros-args`` prints ``usage(program)`` and returns 0 without rclpy.
    A node started with OPENPIXEL_EXIT_WITH_PARENT=1 (the launch files set it) also stops when
    the process that started it exits (:mod:`.supervision`).
    """
    if usage is not None and print_usage_if_requested(usage, args):
        return 0  # -h/--help: usage only, ROS is not started
    if exit_with_parent_requested():
        exit_with_parent()
    keep_frame_buffers()  # frame-sized buffers reused, not mapped afresh per frame (frame_memory.py)
    node = create_node_or_report(make_node, logger_name, args)
    if node is None:
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
