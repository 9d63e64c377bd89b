"""Start openpixel_node.

    ros2 launch openpixel_ros openpixel.launch.py image:=/camera/image_raw \
        params_file:=/path/to/openpixel.yaml namespace:=front

Equivalent without launch (what the tests run):
    openpixel_node --ros-args --params-file config/openpixel.yaml -r image:=/camera/image_raw -r __ns:=/front
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("openpixel_ros"), "config", "openpixel.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="parameters YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        Node(
            package="openpixel_ros",
            executable="openpixel_node",
            name="openpixel",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            # The compressed input follows: the node subscribes to <image>/compressed.
            remappings=[("image", LaunchConfiguration("image"))],
            output="screen",
        ),
    ])
