"""Shared fixtures. Importing this module makes the test process DDS-safe before rclpy starts."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))

# DDS safety: discovery stays on this machine, and each test run gets its own domain so parallel
# runs (or a demo left running) never cross-talk. Set before any rclpy.init().
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_shm.xml")  # shared memory only
os.environ.pop("ROS_LOCALHOST_ONLY", None)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
if "OPENPIXEL_TEST_DOMAIN_ID" not in os.environ:
    os.environ["OPENPIXEL_TEST_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ["ROS_DOMAIN_ID"] = os.environ["OPENPIXEL_TEST_DOMAIN_ID"]


def shared_path(*parts) -> Path:
    """A path under ../shared, skipping the test when the data is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared ({path} absent)")
    return path


@pytest.fixture(scope="session")
def ros_env() -> dict:
    """Environment for child processes that use ROS: same DDS-safe settings as this process."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def rcl():
    """rclpy initialised for one test module's in-process probes (shut down after it)."""
    import rclpy
    rclpy.init()
    yield
    rclpy.try_shutdown()
