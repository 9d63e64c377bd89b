"""The package's import graph: ROS only under node/, and no import circle.

Walks every module's imports with ast (top-level and function-level alike, since a lazy
import is still a dependency), resolving relative imports to module names.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "openpixel_ros"
ROS_ROOTS = {"rclpy", "rosidl_runtime_py", "rosbag2_py", "launch", "launch_ros", "cv_bridge", "message_filters",
             "tf2_ros", "ament_index_python"}
# Interface packages: <name>.msg / <name>.srv / <name>.action, including this package's generated ones.
INTERFACE_SUFFIXES = (".msg", ".srv", ".action")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set:
    """Every module ``path`` imports (``from X import y`` yields X and X.y: y may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def package_modules() -> dict:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_ros(module: str) -> bool:
    root = module.split(".")[0]
    return root in ROS_ROOTS or any(suffix in f".{module}." for suffix in (s + "." for s in INTERFACE_SUFFIXES)) \
        or module.endswith(INTERFACE_SUFFIXES)


def test_the_walk_sees_ros_imports_in_node():
    node = imports_of(PACKAGE / "node" / "openpixel_node.py")
    assert {"rclpy", "sensor_msgs.msg"} <= node and is_ros("sensor_msgs.msg") and is_ros("openpixel_ros.msg")
    assert "openpixel_ros.segmentor" in node  # relative imports resolve
    assert not is_ros("openpixel_ros.model_contract") and not is_ros("numpy")


def test_no_module_outside_node_imports_ros():
    offenders = []
    for name, path in package_modules().items():
        if name == "openpixel_ros.node" or name.startswith("openpixel_ros.node."):
            continue
        offenders += [f"{name} imports {m}" for m in sorted(imports_of(path)) if is_ros(m)]
    assert not offenders, "ROS outside openpixel_ros/node/: " + "; ".join(offenders)


def test_the_import_graph_has_no_circle():
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in imports_of(path):
            # An import of a.b.c also runs a/__init__ and a/b/__init__.
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = sorted(e for e in edges if e in modules and e != name
                             and not name.startswith(e + "."))  # a module's own packages are not a circle
    circles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
