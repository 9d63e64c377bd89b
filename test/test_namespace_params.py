"""The shipped params file applies under a namespace (a plain "openpixel:" key silently did not)."""
from __future__ import annotations

import numpy as np
import yaml
from rcl_interfaces.srv import GetParameters
from sensor_msgs.msg import Image

from onnx_models import linear_classifier
from openpixel_ros.image_codec import decode_raw
from openpixel_ros.node.image_messages import array_to_image_msg
from openpixel_ros.node.parameters import PARAMS_FILE_NODE_KEY, spec_by_name
from ros_helpers import REPO, running_node

WEIGHTS = [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0], [-2.0, -2.0, 4.0]]
BIAS = [0.0, 0.0, 0.0]
OVERLAY_ALPHA = 0.25  # not the default: the test must see the file's value, not the built-in one


def test_params_file_applies_under_a_namespace(tmp_path, ros_env, rcl):
    assert spec_by_name()["overlay_alpha"].default != OVERLAY_ALPHA
    model = tmp_path / "rgb.onnx"
    linear_classifier(model, WEIGHTS, BIAS, classes=["red", "green", "blue"])
    # The shipped file, with two values changed: its key is what is under test.
    config = yaml.safe_load((REPO / "config" / "openpixel.yaml").read_text())
    assert list(config) == [PARAMS_FILE_NODE_KEY]
    params = config[PARAMS_FILE_NODE_KEY]["ros__parameters"]
    params.update(model_path=str(model), overlay_alpha=OVERLAY_ALPHA)
    params_file = tmp_path / "front.yaml"
    params_file.write_text(yaml.safe_dump(config))

    with running_node(ros_env, "-r", "__ns:=/front", "-r", "image:=/front/camera/image",
                      params_file=params_file, probe="test_namespace") as (proc, probe):
        client = probe.node.create_client(GetParameters, "/front/openpixel/get_parameters")
        answer = probe.call(client, GetParameters.Request(names=["overlay_alpha", "model_path"]))
        assert answer is not None, "no answer from /front/openpixel"
        alpha, model_path = answer.values
        assert alpha.double_value == OVERLAY_ALPHA
        assert model_path.string_value == str(model)

        # The file's model is the one that runs: labels only from its three classes, on /front/openpixel.
        labels = probe.subscribe(Image, "/front/openpixel/label")
        pub = probe.node.create_publisher(Image, "/front/camera/image", 10)
        rgb = np.zeros((8, 12, 3), np.uint8)
        rgb[:, :4, 0] = rgb[:, 4:8, 1] = rgb[:, 8:, 2] = 255
        msg = array_to_image_msg(rgb, None, "rgb8")
        assert probe.spin_until(lambda: labels, timeout=20, every=lambda: pub.publish(msg)), proc.stop()
        got = decode_raw(labels[0].encoding, labels[0].height, labels[0].width, labels[0].step, False,
                         labels[0].data)
        np.testing.assert_array_equal(got[0], [0] * 4 + [1] * 4 + [2] * 4)
