"""Lighting adaptation in the node: state published, adapted image, conditioning input, parameters."""
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from onnx_models import linear_classifier
from openpixel_ros.adaptation import CONDITIONING_SIZE
from openpixel_ros.image_codec import decode_raw
from openpixel_ros.msg import AdaptationState
from openpixel_ros.node.image_messages import array_to_image_msg
from ros_helpers import running_node

rng = np.random.default_rng(5)
DAYLIGHT = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)  # mean 0.5, full histogram: score 0
DARK = (DAYLIGHT // 10).astype(np.uint8)                         # a tunnel: mean 0.05


@pytest.fixture(scope="module")
def node(ros_env, rcl, tmp_path_factory):
    # p = sigmoid(conditioning[0]): 0.5 (label 0) for a score of 0, above 0.5 (label 1) otherwise.
    path = tmp_path_factory.mktemp("cond") / "conditioned.onnx"
    linear_classifier(path, [[0.0, 0.0, 0.0]], [0.0], kind="probability", conditioning_size=CONDITIONING_SIZE)
    with running_node(ros_env, "-p", f"model_path:={path}", "-r", "__node:=openpixel_a",
                      "-p", "adaptation.smoothing:=1.0", probe="test_adaptation") as node:
        yield node


def _stream_until(probe, pub, frame, sec, topics, timeout=20):
    h = Header(frame_id="cam")
    h.stamp.sec = sec
    msg = array_to_image_msg(frame, h, "rgb8")
    ok = probe.spin_until(lambda: all(any(m.header.stamp.sec == sec for m in probe.received[t]) for t in topics),
                          timeout=timeout, every=lambda: pub.publish(msg))
    assert ok, f"no output with stamp {sec}"
    return {t: [m for m in probe.received[t] if m.header.stamp.sec == sec][-1] for t in topics}


def test_state_adapted_image_and_conditioning(node):
    proc, probe = node
    topics = ["/openpixel_a/adaptation", "/openpixel_a/adapted_image", "/openpixel_a/mask"]
    probe.subscribe(AdaptationState, topics[0])
    probe.subscribe(Image, topics[1])
    probe.subscribe(Image, topics[2])
    pub = probe.publisher(Image, "/image")

    day = _stream_until(probe, pub, DAYLIGHT, 1, topics)
    state = day[topics[0]]
    assert state.header.frame_id == "cam" and state.score == pytest.approx(0.0) and not state.active
    assert state.mean_luminance == pytest.approx(0.5, abs=0.02) and state.entropy > 0.95
    adapted = day[topics[1]]
    assert np.array_equal(decode_raw("rgb8", adapted.height, adapted.width, adapted.step, False, adapted.data),
                          DAYLIGHT), "a well-exposed frame must pass through untouched"
    mask = day[topics[2]]
    assert not decode_raw("mono8", mask.height, mask.width, mask.step, False, mask.data).any()

    # Several dark frames: the (unsmoothed) score rises and the correction switches on.
    for sec in range(10, 14):
        dark = _stream_until(probe, pub, DARK, sec, topics)
    state = dark[topics[0]]
    assert state.score > 0.3 and state.active and state.gain > 1.0
    adapted = dark[topics[1]]
    brightened = decode_raw("rgb8", adapted.height, adapted.width, adapted.step, False, adapted.data)
    assert brightened.mean() > 3 * DARK.mean()
    # The conditioning vector reached the model: its output now says "object" everywhere.
    mask = dark[topics[2]]
    assert decode_raw("mono8", mask.height, mask.width, mask.step, False, mask.data).all()
    assert proc.alive()


def _set(probe, **values):
    client = probe.node.create_client(SetParameters, "/openpixel_a/set_parameters")
    params = [Parameter(name=k.replace("__", "."), value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                                        double_value=v)) for k, v in values.items()]
    return probe.call(client, SetParameters.Request(parameters=params)).results[0]


def test_adaptation_parameters_are_validated_as_a_whole(node):
    _, probe = node
    res = _set(probe, adaptation__release_score=0.5)  # would exceed activation_score 0.15
    assert not res.successful and "release_score" in res.reason
    res = _set(probe, adaptation__max_gain=4.0)
    assert res.successful
