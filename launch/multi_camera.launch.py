"""Two cameras, two segmentation nodes: /front/openpixel and /rear/openpixel, one params file.

    ros2 launch openpixel_ros multi_camera.launch.py \
        front_image:=/front/camera/image_raw rear_image:=/rear/camera/image_raw

Each node is openpixel.launch.py in its own namespace; the params file (keyed /**/openpixel) applies to
both. Per-camera values go in a second file keyed by the full name, e.g. `/front/openpixel:`.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

CAMERAS = ("front", "rear")
# Passed unchanged to both nodes; empty = openpixel.launch.py's default.
SHARED_ARGUMENTS = (("params_file", "", "parameters YAML; empty = the package's config/openpixel.yaml"),
                    ("model_path", "", "model for both nodes; empty = the params file's"),
                    ("engine", "", "inference backend; empty = the params file's"),
                    ("device", "", "cpu, cuda or cuda:N; empty = the params file's"),
                    ("use_lifecycle", "false", "start managed (lifecycle) nodes"))


def generate_launch_description():
    single = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openpixel.launch.py")
    arguments = [DeclareLaunchArgument(f"{camera}_image", default_value=f"/{camera}/camera/image_raw",
                                       description=f"{camera} camera image topic") for camera in CAMERAS]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=description)
                  for name, default, description in SHARED_ARGUMENTS]
    groups = []
    for camera in CAMERAS:
        launch_arguments = {"namespace": camera, "image": LaunchConfiguration(f"{camera}_image")}
        launch_arguments.update({name: LaunchConfiguration(name) for name, _, _ in SHARED_ARGUMENTS})
        # A scoped group: each include's arguments stay its own.
        groups.append(GroupAction([IncludeLaunchDescription(
            PythonLaunchDescriptionSource(single), launch_arguments=launch_arguments.items())]))
    return LaunchDescription(arguments + groups)
