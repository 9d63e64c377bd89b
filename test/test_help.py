"""``--help`` on every executable prints usage (topics, main parameters, an example) and exits 0
without starting ROS (it used to start openpixel_node with its defaults)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openpixel_ros.node.usage import help_requested
from ros_helpers import REPO

SCRIPTS = dict(re.findall(r'"(\w+) = ([\w.]+:\w+)"', (REPO / "setup.py").read_text()))
ROS_NODES = ("openpixel_node", "openpixel_lifecycle_node", "camera_publisher")


def test_help_is_the_programs_own_argument():
    assert help_requested(["openpixel_node", "--help"]) and help_requested(["openpixel_node", "-h"])
    assert help_requested(["--help"])
    assert not help_requested(["openpixel_node", "--ros-args", "--help"])  # rcl's, not ours
    assert not help_requested(["openpixel_node", "--ros-args", "-p", "model_path:=x"])


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_executable_prints_usage_and_exits_0(ros_env, script, flag):
    env = dict(ros_env)
    # rclpy.init fails outright with this domain id (one FATAL line, exit 1): --help must not get that far.
    env["ROS_DOMAIN_ID"] = "not_a_number"
    t0 = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).parent / script), flag], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.lower().startswith("usage:"), result.stdout
    assert time.monotonic() - t0 < 60
    if script in ROS_NODES:
        out = result.stdout
        assert "Publishes" in out and "Example:" in out and f"{script} --ros-args" in out
        assert "FATAL" not in result.stderr and "listening on" not in out
    if script in ("openpixel_node", "openpixel_lifecycle_node"):
        assert all(topic in result.stdout for topic in ("image", "~/label", "~/mask", "~/camera_info",
                                                        "/diagnostics", "~/segment_at_points"))
        assert "model_path" in result.stdout and "engine" in result.stdout
    if script == "openpixel_lifecycle_node":
        assert "ros2 lifecycle set" in result.stdout
