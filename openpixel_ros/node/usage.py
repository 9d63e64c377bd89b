"""``--help`` of the ROS executables: usage (topics, main parameters, an example), printed without starting ROS.

rcl has no --help of its own before ``--ros-args``: without this, ``openpixel_node --help``
started the node with its defaults.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

HELP_FLAGS = ("-h", "--help")

# The parameters a first run needs; the rest: docs/nodes.md or config/openpixel.yaml.
_MAIN_NODE_PARAMETERS = ("model_path", "engine", "device", "input_transport", "qos.reliability", "foreground_classes",
                         "max_rate_hz", "prompt_engine", "click.message_type", "compressed.jpeg_quality")


def help_requested(args: Optional[Sequence[str]] = None) -> bool:
    """``-h``/``--help`` among the program's own arguments (those before ``--ros-args``)."""
    args = list(sys.argv if args is None else args)
    own = args[:args.index("--ros-args")] if "--ros-args" in args else args
    return any(a in HELP_FLAGS for a in own[1:] if a) or (bool(own) and own[0] in HELP_FLAGS)


def segmentation_node_usage(program: str, lifecycle: bool = False) -> str:
    from .parameters import spec_by_name
    specs = spec_by_name()
    rows = []
    for name in _MAIN_NODE_PARAMETERS:
        spec = specs.get(name)
        if spec is None:
            continue
        description = spec.description.split(". ")[0].rstrip(".")
        rows.append(f"  {name:<26} default {spec.default!r}: {description}")
    lifecycle_text = ("\nManaged node: it starts unconfigured; `ros2 lifecycle set /openpixel configure`, then\n"
                      "`activate`, start it (`deactivate`, `cleanup`, `shutdown` undo it).\n") if lifecycle else ""
    return f"""usage: {program} [-h] [--ros-args --params-file FILE [-p NAME:=VALUE] [-r FROM:=TO] ...]

Camera segmentation: frames in, a label image, a mask, colour and overlay images out.
{lifecycle_text}
Subscribes:
  image                       sensor_msgs/Image (input_transport raw), or <image>/compressed
  camera_info                 sensor_msgs/CameraInfo beside the image (optional)
  ~/click, ~/click_negative   geometry_msgs/PointStamped (or Point: click.message_type point)
Publishes (each built only while subscribed):
  ~/label, ~/mask, ~/color, ~/overlay    sensor_msgs/Image; each also as <topic>/compressed
  ~/camera_info               the frame's camera_info with the outputs' header
  ~/adaptation, ~/adapted_image, ~/click_mask, ~/click_overlay, ~/label_info, /diagnostics
Services:
  ~/segment_at_points         openpixel_ros/srv/SegmentAtPoints (click-prompted segmentation)
  ~/enable                    std_srvs/SetBool (pause / resume)

Main parameters (all: config/openpixel.yaml, docs/nodes.md):
{chr(10).join(rows)}

Example:
  {program} --ros-args --params-file config/openpixel.yaml -r image:=/camera/image_raw \\
      -p model_path:=openpixel_road -r __ns:=/front
"""


def camera_publisher_usage(program: str) -> str:
    return f"""usage: {program} [-h] [--ros-args -p NAME:=VALUE ... -r image:=TOPIC]

A looping camera for demos, tests and benchmarks: publishes a video, an image folder or sample
photos, stamped with the current time.

Publishes:
  image                 sensor_msgs/Image (transport raw), or <image>/compressed (transport compressed)
  camera_info           sensor_msgs/CameraInfo beside the image, a nominal pinhole model (camera_info true)

Parameters:
  source                default 'auto': auto, samples, a video file or an image folder
  rate_hz               default 30.0
  width, height         default 0 (keep the source's size)
  encoding              default 'rgb8': raw encoding (rgb8, bgr8, mono8, yuv422, ...)
  transport             default 'raw': raw or compressed
  compressed_format     default 'jpeg': jpeg or png
  frame_id              default 'camera'
  max_frames            default 0 (never stop)
  reliability           default 'reliable': reliable or best_effort
  camera_info           default True

Example:
  {program} --ros-args -p source:=drive.mp4 -p rate_hz:=15.0 -r image:=/camera/image_raw
"""


def print_usage_if_requested(usage, args: Optional[Sequence[str]] = None) -> bool:
    """Print ``usage(program)`` and return True when -h/--help was given (the caller exits 0)."""
    if not help_requested(args):
        return False
    argv = list(sys.argv if args is None else args)
    program = (argv[0].rsplit("/", 1)[-1] if argv and argv[0] not in HELP_FLAGS else "") or "openpixel_node"
    print(usage(program), end="")
    return True
