"""The CMake install (what `colcon build` runs) gives a package that starts from its install prefix.

Builds CMakeLists.txt with OPENPIXEL_INSTALL_PYTHON=ON against the venv's ROS wheels into a
temporary prefix, checks the tree, then runs the *installed* lib/openpixel_ros/openpixel_node with
the installed params file (found through the ament index) and sees ~/label. The build folder is
kept under build/ so that later runs rebuild incrementally.

The package is built from a copy of its files, as in a colcon workspace (src/openpixel_ros): CMake
refuses exported include paths inside the source folder, which the venv (<repo>/.venv) would be.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image

from onnx_models import linear_classifier
from openpixel_ros.node.image_messages import array_to_image_msg
from ros_helpers import REPO, running_process

VENV = Path(sys.prefix)
WORK_DIR = REPO / "build" / "install_layout_test"


def _executables() -> list:
    import re
    cmake = (REPO / "CMakeLists.txt").read_text()
    return re.findall(r'^\s*"(\w+)=[\w.]+:\w+"\s*$', cmake, re.M)


def _sync_package_source(target: Path) -> Path:
    """Copy the files git would ship (tracked, and untracked but not ignored) to ``target``;
    unchanged files keep their timestamps, so the build stays incremental."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    wanted = {rel for rel in listed if rel and (REPO / rel).is_file()}
    for rel in wanted:
        src, dst = REPO / rel, target / rel
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for path in sorted(target.rglob("*"), reverse=True):  # files deleted from the checkout
        if path.is_file() and path.relative_to(target).as_posix() not in wanted:
            path.unlink()
    return target


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    if shutil.which("cmake") is None or shutil.which("git") is None:
        pytest.skip("cmake or git not on PATH")
    prefix = tmp_path_factory.mktemp("install")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    # One build folder per checkout: a second suite run in the same checkout (another domain id) waits
    # here rather than reconfiguring it for its own prefix halfway through this one's install.
    with open(WORK_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_and_install(prefix)
    return prefix


def _build_and_install(prefix: Path) -> None:
    source = _sync_package_source(WORK_DIR / "src" / "openpixel_ros")
    build_dir = WORK_DIR / "build"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CMAKE_PREFIX_PATH", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "PYTHONPATH")}
    env["AMENT_PREFIX_PATH"] = str(VENV)
    steps = [
        ["cmake", "-S", str(source), "-B", str(build_dir), f"-DCMAKE_INSTALL_PREFIX={prefix}",
         f"-DCMAKE_PREFIX_PATH={VENV}", f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}",
         "-DOPENPIXEL_INSTALL_PYTHON=ON", "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)],
        ["cmake", "--install", str(build_dir)],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(step)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _site_packages(prefix: Path) -> Path:
    rel = Path(sysconfig.get_paths()["purelib"]).relative_to(VENV)
    return prefix / rel


def _installed_env(prefix: Path, ros_env: dict) -> dict:
    """What sourcing the prefix's setup script gives: the ament index, Python path and libraries."""
    env = dict(ros_env)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), str(VENV)])
    env["PYTHONPATH"] = str(_site_packages(prefix))
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(prefix / "lib"), env.get("LD_LIBRARY_PATH", "")])
    return env


@pytest.mark.slow
def test_install_tree_holds_share_executables_python_and_models(prefix):
    share = prefix / "share" / "openpixel_ros"
    for rel in ("package.xml", "config/openpixel.yaml", "config/openpixel.rviz", "config/fastdds_shm.xml",
                "launch/openpixel.launch.py", "launch/multi_camera.launch.py"):
        assert (share / rel).is_file(), f"share/openpixel_ros/{rel} not installed"
        assert not (share / rel).is_symlink()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "openpixel_ros").is_file()
    executables = _executables()
    assert "openpixel_node" in executables and "openpixel_bag" in executables
    for name in executables:
        exe = prefix / "lib" / "openpixel_ros" / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"lib/openpixel_ros/{name} missing or not executable"
    package = _site_packages(prefix) / "openpixel_ros"
    for rel in ("__init__.py", "node/openpixel_node.py", "bag.py", "msg/__init__.py", "srv/__init__.py"):
        assert (package / rel).is_file(), f"{rel} not installed"
    # Every model file the package carries is installed beside the code that resolves it.
    shipped = sorted(p.relative_to(REPO / "openpixel_ros") for p in (REPO / "openpixel_ros" / "models").glob("*")
                     if p.suffix in (".onnx", ".json", ".md")) if (REPO / "openpixel_ros" / "models").is_dir() else []
    for rel in shipped:
        assert (package / rel).is_file(), f"model file {rel} not installed"


def test_installed_node_starts_with_the_installed_params_file(prefix, ros_env, rcl, tmp_path):
    env = _installed_env(prefix, ros_env)
    # The share directory and the Python package both come from the prefix, not the source tree.
    where = subprocess.run(
        [str(VENV / "bin" / "python"), "-c",
         "from ament_index_python.packages import get_package_share_directory as g; import openpixel_ros.node; "
         "print(g('openpixel_ros')); print(openpixel_ros.node.__file__)"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    share, module = where.stdout.split()
    assert Path(share) == prefix / "share" / "openpixel_ros"
    assert Path(module).is_relative_to(prefix), module

    model = tmp_path / "rgb.onnx"
    linear_classifier(model, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    cmd = [str(prefix / "lib" / "openpixel_ros" / "openpixel_node"), "--ros-args",
           "--params-file", str(Path(share) / "config" / "openpixel.yaml"),
           "-p", f"model_path:={model}", "-r", "image:=/installed/image"]
    with running_process(cmd, env, probe="test_installed") as (proc, probe):
        labels = probe.subscribe(Image, "/openpixel/label")
        pub = probe.node.create_publisher(Image, "/installed/image", 10)
        rgb = np.zeros((4, 6, 3), np.uint8)
        rgb[:, 3:, 1] = 255
        msg = array_to_image_msg(rgb, None, "rgb8")
        assert probe.spin_until(lambda: labels, timeout=30, every=lambda: pub.publish(msg)), proc.stop()
        assert labels[0].width == 6 and labels[0].height == 4
