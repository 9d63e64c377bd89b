"""Walk the parameter table: every float refuses NaN/inf, start-up parameters refuse changes, and
every run-time parameter really changes what the running node does (read back from the objects
that use it). A new parameter cannot skip this: the walk covers the whole table."""
from __future__ import annotations

import math

import pytest
import rclpy
from rclpy.parameter import Parameter

from onnx_models import linear_classifier
from openpixel_ros.node.openpixel_node import OpenPixelNode
from openpixel_ros.node.parameters import all_parameters
from test_node import BIAS, CLASSES, WEIGHTS

pytestmark = pytest.mark.ros  # an rclpy node in this process (its own rclpy.init)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "linear.onnx"
    linear_classifier(path, WEIGHTS, BIAS, classes=CLASSES)
    rclpy.init()
    node = OpenPixelNode(parameter_overrides=[Parameter("model_path", value=str(path))])
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def _set(node, name, value):
    return node.set_parameters([Parameter(name, value=value)])[0]


def _candidates(spec):
    """Valid-looking values other than the default, most natural first."""
    d = spec.default
    if isinstance(d, bool):
        return [not d]
    if spec.choices:
        return [c for c in spec.choices if c != d]
    if isinstance(d, list):
        return [["red", "white"]]
    if isinstance(d, str):
        return [v for v in ("naive", "adaptive") if v != d]
    if isinstance(d, int):
        return [v for v in (d + 1, d - 1, d * 2) if (spec.min is None or v >= spec.min) and
                (spec.max is None or v <= spec.max)]
    low = spec.min if spec.min is not None else d - 1.0
    high = spec.max if spec.max is not None else d + 1.0
    values = [d * 0.9, d * 1.1, d + 0.01, d - 0.01, (low + high) / 2, high]
    return [v for v in values if v != d and low <= v <= high]


def _expected_effective(name, value):
    if name == "foreground_classes":
        return [CLASSES.index(c) for c in value]
    return value


@pytest.mark.parametrize("spec", all_parameters(), ids=lambda s: s.name)
def test_every_parameter_is_validated_and_applied(node, spec):
    before = node.get_parameter(spec.name).value
    if isinstance(spec.default, float):
        for bad in (math.nan, math.inf, -math.inf):
            result = _set(node, spec.name, bad)
            assert not result.successful, f"{spec.name} accepted {bad}"
        assert node.get_parameter(spec.name).value == before
    if spec.read_only:
        result = _set(node, spec.name, (_candidates(spec) or [spec.default])[0])
        assert not result.successful and "read-only" in result.reason, spec.name
        return
    effective = node.effective_parameter_values()
    assert spec.name in effective, f"run-time parameter {spec.name} is never applied by the node"
    for value in _candidates(spec):
        if _set(node, spec.name, value).successful:
            break
    else:
        pytest.fail(f"{spec.name}: no new value accepted from {_candidates(spec)}")
    got = node.effective_parameter_values()[spec.name]
    want = _expected_effective(spec.name, value)
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9), spec.name
    else:
        assert got == want, spec.name
    assert _set(node, spec.name, before).successful  # back, so later entries start from the defaults
