"""package.xml, the launch file and CMake agree with the package (no ROS launch here to run them)."""
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


def test_launch_file_declares_the_documented_arguments_and_runs_the_entry_point():
    tree = ast.parse((REPO / "launch" / "openpixel.launch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    declared = {c.args[0].value for c in calls if c.func.id == "DeclareLaunchArgument"}
    assert declared == {"image", "params_file", "namespace"}
    node = next(c for c in calls if c.func.id == "Node")
    kwargs = {k.arg: k.value for k in node.keywords}
    assert kwargs["package"].value == "openpixel_ros" and kwargs["executable"].value == "openpixel_node"
    assert kwargs["name"].value == "openpixel"  # the node name config/openpixel.yaml is keyed by


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
