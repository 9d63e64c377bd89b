"""No orphan node: what can be tested without `launch` and `launch_ros` (absent on the development venv).

What runs here:
- the node's own guard (OPENPIXEL_EXIT_WITH_PARENT=1, as the launch file sets it): a real node
  process whose parent is SIGKILLed stops; without the variable it runs on as an orphan (the old
  behaviour, checked too so the test can tell them apart);
- the rviz2 check the launch file makes before starting anything, against real ament indexes;
- the launch file's structure: every process it starts is supervised (OnProcessExit -> Shutdown)
  and carries the guard, and the rviz2 node is only made when rviz2 is found.
What does not run here: a real `ros2 launch` with rviz:=true (test_launch.py runs the launch files
where launch_ros is installed).
"""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time

import pytest

from onnx_models import linear_classifier
from openpixel_ros.node.supervision import EXIT_WITH_PARENT_ENV, exit_with_parent_requested, package_missing
from ros_helpers import REPO, node_command

# A stand-in for the launch process: starts the node, prints its pid, waits to be killed.
PARENT = """
import subprocess, sys, time
node = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
print(node.pid, flush=True)
time.sleep(3600)
"""


def _state(pid: int) -> str:
    """The process's state letter, '' when it is gone (a zombie, Z, has exited too)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(line.split()[1] for line in f if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return ""


def _alive(pid: int) -> bool:
    return _state(pid) not in ("", "Z", "X")


def _wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _start_under_parent(model, log, env):
    cmd = node_command("-p", f"model_path:={model}", "-r", "image:=/supervision/image")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log), *cmd], env=env, stdout=subprocess.PIPE,
                              text=True)
    node_pid = int(parent.stdout.readline())
    # Started (and so its guard armed) once it logs where it listens.
    assert _wait(lambda: "listening on" in log.read_text(), 120), log.read_text()
    return parent, node_pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("guarded", [True, False])
def test_node_stops_when_its_parent_is_killed_only_with_the_guard(ros_env, tmp_path, guarded):
    model = tmp_path / "rgb.onnx"
    linear_classifier(model, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    env = dict(ros_env)
    env.pop(EXIT_WITH_PARENT_ENV, None)
    if guarded:
        env[EXIT_WITH_PARENT_ENV] = "1"
    log = tmp_path / "node.log"
    log.write_text("")
    parent, node_pid = _start_under_parent(model, log, env)
    try:
        parent.kill()  # SIGKILL: the launch process dies without stopping its children
        parent.wait(timeout=10)
        if guarded:
            assert _wait(lambda: not _alive(node_pid), 30), f"orphan node still running\n{log.read_text()}"
            assert "Traceback" not in log.read_text()
        else:
            time.sleep(3)
            assert _alive(node_pid), "without the guard the node was expected to run on (old behaviour)"
    finally:
        if _alive(node_pid):
            os.kill(node_pid, signal.SIGKILL)


def test_exit_with_parent_is_opt_in():
    assert exit_with_parent_requested({EXIT_WITH_PARENT_ENV: "1"})
    assert exit_with_parent_requested({EXIT_WITH_PARENT_ENV: "true"})
    assert not exit_with_parent_requested({})
    assert not exit_with_parent_requested({EXIT_WITH_PARENT_ENV: "0"})


def test_rviz2_check_reads_the_ament_index(tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages"
    marker.mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert package_missing("rviz2") == "package 'rviz2' not found"
    (marker / "rviz2").write_text("")
    assert package_missing("rviz2") is None


def _launch_calls():
    tree = ast.parse((REPO / "launch" / "openpixel.launch.py").read_text())
    return tree, [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]


def test_launch_file_supervises_every_process_and_checks_rviz2_first():
    tree, calls = _launch_calls()
    # Every Node(...) is assigned to a name that is handed to _shutdown_when_exits.
    node_names = [n.targets[0].id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", "") == "Node"]
    supervised = [c.args[0].id for c in calls if c.func.id == "_shutdown_when_exits"]
    assert sorted(node_names) == sorted(supervised) == ["node", "rviz"]
    handler = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "_shutdown_when_exits")
    names = {n.id for n in ast.walk(handler) if isinstance(n, ast.Name)}
    assert {"RegisterEventHandler", "OnProcessExit", "Shutdown"} <= names
    # The openpixel node carries the guard.
    node_call = next(c for c in calls if c.func.id == "Node"
                     and any(k.arg == "package" and k.value.value == "openpixel_ros" for k in c.keywords))
    env = next(k.value for k in node_call.keywords if k.arg == "additional_env")
    assert ast.literal_eval(env) == {EXIT_WITH_PARENT_ENV: "1"}
    # rviz2 is looked up before the rviz Node is made, and that Node sits in the branch where it was found.
    check = next(c for c in calls if c.func.id == "package_missing")
    rviz_call = next(c for c in calls if c.func.id == "Node"
                     and any(k.arg == "package" and k.value.value == "rviz2" for k in c.keywords))
    assert check.args[0].value == "rviz2" and check.lineno < rviz_call.lineno
    branch = next(n for n in ast.walk(tree) if isinstance(n, ast.If) and any(
        isinstance(c, ast.Name) and c.id == "missing_rviz" for c in ast.walk(n.test)))
    assert rviz_call not in list(ast.walk(ast.Module(body=branch.body, type_ignores=[])))
    assert any(c.func.id == "LogInfo" for c in ast.walk(ast.Module(body=branch.body, type_ignores=[]))
               if isinstance(c, ast.Call) and isinstance(c.func, ast.Name))
