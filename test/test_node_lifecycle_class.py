"""One lifecycle class for both executables, in-process: the plain node is configured and active
when its constructor returns (lifecycle publishers on, no lifecycle services); the managed one
waits unconfigured and each transition sets up or undoes its own part."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from onnx_models import linear_classifier
from openpixel_ros.node.openpixel_node import OpenPixelNode
from openpixel_ros.node.startup import StartupError

pytestmark = pytest.mark.ros  # rclpy nodes in this process
SUCCESS = TransitionCallbackReturn.SUCCESS


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "rgb.onnx"
    linear_classifier(path, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    return path


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _state(node) -> str:
    return node._state_machine.current_state[1]


def _services(node) -> set:
    return {service.srv_name.rsplit("/", 1)[-1] for service in node.services}


def _subscribed_topics(node) -> set:
    return {subscription.topic_name for subscription in node.subscriptions}


def test_the_plain_node_is_active_at_once_without_lifecycle_services(ros, model):
    node = OpenPixelNode(parameter_overrides=[Parameter("model_path", value=str(model))])
    try:
        assert _state(node) == "active"
        assert all(pub.is_activated for pub in node.outputs.publishers.values())
        services = _services(node)
        assert {"segment_at_points", "enable"} <= services
        assert not services & {"change_state", "get_state"}, services
        assert "/image" in _subscribed_topics(node)
    finally:
        node.destroy_node()


def test_a_plain_node_whose_configure_fails_raises_its_one_line(ros, tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(StartupError, match="not found"):
        OpenPixelNode(parameter_overrides=[Parameter("model_path", value=str(missing))])


def test_managed_transitions_set_up_and_undo_their_own_parts(ros, model):
    node = OpenPixelNode(managed=True, parameter_overrides=[Parameter("model_path", value=str(model))])
    try:
        assert _state(node) == "unconfigured" and node.segmentor is None
        assert "change_state" in _services(node)
        assert node.trigger_configure() == SUCCESS and _state(node) == "inactive"
        publishers = list(node.outputs.publishers.values())
        assert node.segmentor is not None and not any(pub.is_activated for pub in publishers)
        assert "/image" not in _subscribed_topics(node), "an inactive node must not hold the camera"
        for _ in range(2):
            assert node.trigger_activate() == SUCCESS
            assert all(pub.is_activated for pub in publishers) and "/image" in _subscribed_topics(node)
            assert "segment_at_points" in _services(node)
            assert node.trigger_deactivate() == SUCCESS
            assert not any(pub.is_activated for pub in publishers)
            assert "/image" not in _subscribed_topics(node)
            assert "segment_at_points" not in _services(node)
        assert node.trigger_cleanup() == SUCCESS and _state(node) == "unconfigured"
        assert node.segmentor is None and not (set(publishers) & set(node.publishers))
    finally:
        node.destroy_node()
