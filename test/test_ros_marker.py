"""The `ros` marker (pytest.ini, test/conftest.py): `pytest -m "not ros"` must leave out every test that
starts ROS, so a test that starts ROS without the marker fails instead of slipping into the fast set."""
from __future__ import annotations

import subprocess
import sys

import pytest
import rclpy


def test_an_unmarked_test_cannot_start_ros():
    with pytest.raises(RuntimeError, match="must be marked `ros`"):
        rclpy.init()
    with pytest.raises(RuntimeError, match="must be marked `ros`"):
        rclpy.node.Node("unmarked")
    child = subprocess.run([sys.executable, "-c", "import rclpy; rclpy.init()"], capture_output=True, text=True,
                           timeout=120)
    assert child.returncode != 0 and "ROS_DOMAIN_ID is not an integral number" in child.stderr, child.stderr


def test_the_ros_fixtures_give_the_marker_and_ros_runs(request, rcl):
    assert request.node.get_closest_marker("ros") is not None
    node = rclpy.create_node("marked_probe")  # not refused
    node.destroy_node()
