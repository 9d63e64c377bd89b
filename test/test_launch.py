"""The launch files with the real `launch` (parse) and `launch_ros` (run).

launch_ros is not usable from PyPI (it imports composition_interfaces, which is not there), so on
the development venv the run test skips; on a ROS install it runs.
test_package_files.py checks the files' structure without them.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# Not just "launch": the repo's launch/ folder is importable as a namespace package of that name.
pytest.importorskip("launch.launch_description_sources", reason="`launch` is not installed (ros2/launch)")

from launch.launch_description_sources import get_launch_description_from_python_launch_file  # noqa: E402

from ros_helpers import REPO, NodeProcess, Probe  # noqa: E402

SINGLE = REPO / "launch" / "openpixel.launch.py"
MULTI = REPO / "launch" / "multi_camera.launch.py"

RUN_LAUNCH = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]]))
sys.exit(service.run())
"""


def test_launch_files_parse_with_their_arguments():
    single = {a.name for a in get_launch_description_from_python_launch_file(str(SINGLE)).get_launch_arguments()}
    assert single == {"image", "namespace", "params_file", "model_path", "engine", "device", "use_lifecycle", "rviz"}
    multi = {a.name for a in get_launch_description_from_python_launch_file(str(MULTI)).get_launch_arguments()}
    assert {"front_image", "rear_image", "params_file", "model_path"} <= multi


@pytest.fixture()
def ament_env(ros_env):
    env = dict(ros_env)
    # make setup installs share/openpixel_ros and lib/openpixel_ros into the venv prefix.
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (sys.prefix, env.get("AMENT_PREFIX_PATH")) if p)
    return env


def test_multi_camera_launch_runs_two_namespaced_nodes(ament_env, tmp_path):
    pytest.importorskip("launch_ros", reason="`launch_ros` is not installed (its PyPI wheel needs "
                        "composition_interfaces, which is not on PyPI)")
    import rclpy
    from sensor_msgs.msg import Image

    from onnx_models import linear_classifier
    from openpixel_ros.node.image_messages import array_to_image_msg

    model = tmp_path / "rgb.onnx"
    linear_classifier(model, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    proc = NodeProcess([sys.executable, "-c", RUN_LAUNCH, str(MULTI), f"model_path:={model}",
                        "front_image:=/front/cam", "rear_image:=/rear/cam"], ament_env)
    rclpy.init()
    probe = Probe("test_launch")
    try:
        got = {cam: probe.subscribe(Image, f"/{cam}/openpixel/label") for cam in ("front", "rear")}
        pubs = {cam: probe.node.create_publisher(Image, f"/{cam}/cam", 10) for cam in ("front", "rear")}
        msg = array_to_image_msg(np.zeros((4, 6, 3), np.uint8), None, "rgb8")
        assert probe.spin_until(lambda: all(got.values()), timeout=60,
                                every=lambda: [p.publish(msg) for p in pubs.values()]), proc.stop()
    finally:
        probe.destroy()
        rclpy.try_shutdown()
        print(proc.stop())
