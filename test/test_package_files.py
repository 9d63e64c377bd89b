"""package.xml, the launch files, the RViz file and CMake agree with the package (test_launch.py runs
the launch files where `launch` is installed)."""
import ast
import re
from pathlib import Path

from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_with_real_dependencies():
    pkg = parse_package(str(REPO / "package.xml"))
    pkg.validate()
    assert pkg.package_format == 3 and pkg.name == "openpixel_ros"
    assert pkg.get_build_type() == "ament_cmake"
    deps = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs",
            "rosidl_default_generators", "rosidl_default_runtime", "ament_cmake_python"} <= deps
    assert "rosidl_interface_packages" in {g.name for g in pkg.member_of_groups}


LAUNCH_ARGUMENTS = {"image", "namespace", "params_file", "model_path", "engine", "device", "use_lifecycle", "rviz"}


def _calls(path):
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]


def test_launch_file_declares_the_documented_arguments_and_runs_the_entry_points():
    calls = _calls(REPO / "launch" / "openpixel.launch.py")
    declared = {c.args[0].value for c in calls if c.func.id == "DeclareLaunchArgument"}
    assert declared == LAUNCH_ARGUMENTS
    nodes = [c for c in calls if c.func.id == "Node"]
    kwargs = {k.arg: k.value for k in nodes[0].keywords}
    assert kwargs["package"].value == "openpixel_ros" and kwargs["name"].value == "openpixel"
    executable = ast.unparse(kwargs["executable"])
    assert "openpixel_lifecycle_node" in executable and "openpixel_node" in executable
    rviz = {k.arg: k.value for k in nodes[1].keywords}
    assert rviz["package"].value == "rviz2" and rviz["executable"].value == "rviz2"
    documented = (REPO / "launch" / "openpixel.launch.py").read_text().split('"""')[1]
    assert "rviz:=true" in documented and "namespace:=front" in documented


def test_multi_camera_launch_includes_the_single_launch_per_namespace():
    source = (REPO / "launch" / "multi_camera.launch.py").read_text()
    tree = ast.parse(source)
    cameras = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", "") == "CAMERAS")
    assert len({c.value for c in cameras.elts}) == 2
    assert '"openpixel.launch.py"' in source and "GroupAction" in source and '"namespace": camera' in source


def test_rviz_config_shows_camera_and_outputs():
    import yaml
    config = yaml.safe_load((REPO / "config" / "openpixel.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    assert all(d["Class"] == "rviz_default_plugins/Image" for d in displays)
    topics = {d["Topic"]["Value"] for d in displays}
    # Relative names: the launch file starts rviz2 in the node's namespace and remaps "image".
    assert topics == {"image", "openpixel/overlay", "openpixel/color", "openpixel/click_overlay"}
    assert {d["Topic"]["Reliability Policy"] for d in displays} == {"Best Effort"}


def test_every_console_script_is_a_ros2_run_executable():
    setup = (REPO / "setup.py").read_text()
    scripts = dict(re.findall(r'"(\w+) = ([\w.]+:\w+)"', setup))
    cmake = (REPO / "CMakeLists.txt").read_text()
    executables = dict(re.findall(r'^\s*"(\w+)=([\w.]+:\w+)"\s*$', cmake, re.M))
    assert scripts == executables and "openpixel_node" in scripts


def test_the_node_and_the_python_api_never_import_torch():
    import subprocess
    import sys
    code = ("import sys, openpixel_ros.node.openpixel_node, openpixel_ros.interactive.openpixel_engine; "
            "from openpixel_ros import Segmentor; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
