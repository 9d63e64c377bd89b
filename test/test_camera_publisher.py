"""camera_publisher in its own process: its topics follow remaps and namespaces as image_transport's do."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sensor_msgs.msg import CompressedImage, Image

from ros_helpers import running_process

CAMERA = str(Path(sys.executable).parent / "camera_publisher")


def _camera(ros_env, *ros_args, probe):
    return running_process([CAMERA, "--ros-args", "-p", "source:=samples", "-p", "width:=64", "-p", "height:=48",
                            "-p", "rate_hz:=20.0", *ros_args], ros_env, probe)


@pytest.mark.parametrize("ros_args, topic", [
    (("-r", "image:=/front/cam"), "/front/cam/compressed"),       # a remap of the base topic
    (("-r", "__ns:=/rear"), "/rear/image/compressed"),            # a namespace
])
def test_compressed_topic_follows_the_image_remap(ros_env, rcl, ros_args, topic):
    with _camera(ros_env, "-p", "transport:=compressed", *ros_args, probe="test_camera_compressed") as (proc, probe):
        got = probe.subscribe(CompressedImage, topic)
        assert probe.spin_until(lambda: got, timeout=30), proc.stop()
        assert got[0].format == "jpeg" and bytes(got[0].data[:3]) == b"\xff\xd8\xff"


def test_raw_topic_follows_the_image_remap(ros_env, rcl):
    with _camera(ros_env, "-r", "image:=/front/raw", probe="test_camera_raw") as (proc, probe):
        got = probe.subscribe(Image, "/front/raw")
        assert probe.spin_until(lambda: got, timeout=30), proc.stop()
        assert (got[0].width, got[0].height, got[0].encoding) == (64, 48, "rgb8")
