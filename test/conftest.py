"""Shared fixtures. Importing this module makes the test process DDS-safe before rclpy starts."""
from __future__ import annotations

import os
import random
import sys
from contextlib import contextmanager
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

import rclpy  # noqa: E402 (after the DDS settings above)
import rclpy.node  # noqa: E402

# Tests that start ROS carry the `ros` marker (pytest.ini), so that `pytest -m "not ros"` runs the
# plain-library tests alone. A test that uses one of these fixtures gets it here; a module that starts
# ROS without them says `pytestmark = pytest.mark.ros`.
ROS_FIXTURES = {"ros_env", "rcl"}
# While an unmarked test sets up and runs, ROS is refused: in this process with a clear error, in a
# child process through a domain id that makes its rclpy.init fail ("ROS_DOMAIN_ID is not an integral
# number"). So a test that starts ROS cannot stay unmarked.
UNMARKED_DOMAIN_ID = "test_not_marked_ros"


def pytest_collection_modifyitems(items):
    for item in items:
        if ROS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ros)


def _refuse_ros(*args, **kwargs):
    raise RuntimeError("a test that starts ROS must be marked `ros`: use the ros_env or rcl fixture, "
                       "or put `pytestmark = pytest.mark.ros` in its module")


@contextmanager
def _ros_only_if_marked(item):
    if item.get_closest_marker("ros") is not None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rclpy, "init", _refuse_ros)
        patch.setattr(rclpy.node.Node, "__init__", _refuse_ros)
        patch.setenv("ROS_DOMAIN_ID", UNMARKED_DOMAIN_ID)
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _ros_only_if_marked(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _ros_only_if_marked(item):
        return (yield)


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
    rclpy.init()
    yield
    rclpy.try_shutdown()
