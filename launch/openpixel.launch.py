"""Start openpixel_node (or its lifecycle variant), optionally with RViz.

    ros2 launch openpixel_ros openpixel.launch.py image:=/camera/image_raw namespace:=front \
        model_path:=/path/to/model.onnx engine:=tensorrt device:=cuda rviz:=true

model_path, engine and device override the params file when given (empty = the file's value).
The params file is keyed /**/openpixel and so applies under any namespace. use_lifecycle:=true starts
openpixel_lifecycle_node, which waits unconfigured for `ros2 lifecycle set <node> configure`.

Supervision: the node never outlives the launch. rviz:=true without rviz2 installed says so in one
line and starts the node without RViz. When the node exits, or RViz fails (exit code not 0), the
launch shuts down (closing RViz normally leaves the node running). The node also gets
OPENPIXEL_EXIT_WITH_PARENT=1, so it stops even if the launch process itself dies (SIGKILL, a crash).

Equivalent without launch (what the tests run):
    openpixel_node --ros-args --params-file config/openpixel.yaml -r image:=/camera/image_raw -r __ns:=/front
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration

# Launch arguments that, when not empty, override the params file's parameter of the same name.
PARAMETER_OVERRIDES = ("model_path", "engine", "device")


def _is_true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def _shutdown_when_exits(process, what: str, only_on_failure: bool = False):
    """Shut the whole launch down when ``process`` exits (or, only_on_failure, exits non-zero)."""
    def on_exit(event, context):
        if only_on_failure and event.returncode == 0:
            return None
        return [Shutdown(reason=f"{what} exited with code {event.returncode}")]
    return RegisterEventHandler(OnProcessExit(target_action=process, on_exit=on_exit))


def _actions(context):
    # Imported here, when the nodes are made: the arguments parse with `launch` alone.
    from launch_ros.actions import Node

    from openpixel_ros.node.supervision import package_missing

    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory("openpixel_ros")
    params_file = arg("params_file") or os.path.join(share, "config", "openpixel.yaml")
    overrides = {name: arg(name) for name in PARAMETER_OVERRIDES if arg(name)}
    parameters = [params_file] + ([overrides] if overrides else [])
    node = Node(
        package="openpixel_ros",
        executable="openpixel_lifecycle_node" if _is_true(arg("use_lifecycle")) else "openpixel_node",
        name="openpixel",
        namespace=arg("namespace"),
        parameters=parameters,
        # The compressed input follows: the node subscribes to <image>/compressed.
        remappings=[("image", arg("image"))],
        # Ends the node if this launch process dies without shutting it down (openpixel_ros.node.supervision).
        additional_env={"OPENPIXEL_EXIT_WITH_PARENT": "1"},
        output="screen",
    )
    actions = [node, _shutdown_when_exits(node, "openpixel node")]
    missing_rviz = package_missing("rviz2") if _is_true(arg("rviz")) else None
    if missing_rviz:
        # Checked before any process starts: a failing rviz2 action used to end the launch with
        # the node left running (PPID 1).
        actions.insert(0, LogInfo(msg=f"rviz:=true but {missing_rviz}: starting without RViz "
                                      "(install ros-$ROS_DISTRO-rviz2 for it)"))
    elif _is_true(arg("rviz")):
        # config/openpixel.rviz names its topics relative (image, openpixel/overlay, ...): RViz in
        # the node's namespace shows that node, and "image" follows the camera remapping.
        rviz_config = os.path.join(share, "config", "openpixel.rviz")
        rviz = Node(package="rviz2", executable="rviz2", name="rviz", namespace=arg("namespace"),
                    arguments=["-d", rviz_config], remappings=[("image", arg("image"))], output="screen")
        actions += [rviz, _shutdown_when_exits(rviz, "rviz2", only_on_failure=True)]
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameters YAML; empty = the package's config/openpixel.yaml"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="ONNX/TensorRT model or model name; empty = the params file's"),
        DeclareLaunchArgument("engine", default_value="", choices=["", "onnxruntime", "tensorrt"],
                              description="inference backend; empty = the params file's"),
        DeclareLaunchArgument("device", default_value="", description="cpu, cuda or cuda:N; empty = the params file's"),
        DeclareLaunchArgument("use_lifecycle", default_value="false", choices=["true", "false"],
                              description="start the managed (lifecycle) node"),
        DeclareLaunchArgument("rviz", default_value="false", choices=["true", "false"],
                              description="also start rviz2 with config/openpixel.rviz"),
        OpaqueFunction(function=_actions),
    ])
