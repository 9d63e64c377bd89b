"""The package's import graph: ROS only under node/, no import circle, and the floors.

The torch network (``model/``) is imported by training and export only; ``training/`` and
``eval/`` import only the layers named below them (never each other), and both share
``inference/`` from below.

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


# -- floors ------------------------------------------------------------------------------
def layer_of(module: str) -> str:
    """The package's top-level room a module lives in: ``openpixel_ros.training.train`` -> ``training``,
    ``openpixel_ros.model_io`` -> ``model_io`` (the package itself: "")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "openpixel_ros" else ""


def layers_imported(path: Path) -> dict:
    """``{layer: [imported module, ...]}`` of the package's other layers that ``path`` imports."""
    own = layer_of(module_name(path))
    found = {}
    for target in sorted(imports_of(path)):
        layer = layer_of(target)
        if target.startswith("openpixel_ros.") and layer and layer != own:
            found.setdefault(layer, []).append(target)
    return found


#: The rooms that may import the torch network: it is trained and exported, never run by the node.
MODEL_USERS = {"model", "training", "export"}
#: Leaf modules that import nothing of the package's above them.
FOUNDATION = {"errors", "paths", "image_header", "log_text", "model_contract"}
#: What each lower floor may import, by name; anything else is an import running back up.
ALLOWED_BELOW = {
    "inference": FOUNDATION,
    "training": FOUNDATION | {"inference", "model", "adaptation", "lighting_shifts"},
    "eval": FOUNDATION | {"inference", "interactive", "semantic", "engines", "model_io", "adaptation",
                          "lighting_shifts", "default_model", "visualize"},
}


def test_the_floor_walk_sees_the_shared_floor():
    # Not vacuous: the rooms checked below do import inference/ and model/.
    assert "inference" in layers_imported(PACKAGE / "training" / "train.py")
    assert "model" in layers_imported(PACKAGE / "training" / "train.py")
    assert "inference" in layers_imported(PACKAGE / "eval" / "click_protocol.py")
    assert "inference" in layers_imported(PACKAGE / "interactive" / "openpixel_engine.py")
    assert layer_of("openpixel_ros.model.openpixel") == "model" and layer_of("openpixel_ros") == ""


def test_nothing_under_model_is_imported_by_run_time_modules():
    offenders = []
    for name, path in package_modules().items():
        if layer_of(name) in MODEL_USERS:
            continue
        offenders += [f"{name} imports {m}" for m in layers_imported(path).get("model", [])]
    assert not offenders, "the torch-only model/ imported outside training and export: " + "; ".join(offenders)


def test_training_eval_and_inference_import_only_downward():
    offenders = []
    for name, path in package_modules().items():
        allowed = ALLOWED_BELOW.get(layer_of(name))
        if allowed is None:
            continue
        for layer, targets in layers_imported(path).items():
            if layer not in allowed:
                offenders += [f"{name} imports {t}" for t in targets]
    assert not offenders, "imports running back up: " + "; ".join(offenders)


def test_interactive_imports_neither_training_nor_evaluation():
    offenders = []
    for name, path in package_modules().items():
        if layer_of(name) != "interactive":
            continue
        for layer, targets in layers_imported(path).items():
            if layer in {"training", "eval", "model", "export"}:
                offenders += [f"{name} imports {t}" for t in targets]
    assert not offenders, "interactive/ reaching up: " + "; ".join(offenders)
