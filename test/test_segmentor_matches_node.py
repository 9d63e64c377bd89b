"""The Python API and the node run one code path: identical labels and masks on the same frame."""
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from skimage import data

from openpixel_ros import Segmentor
from openpixel_ros.default_model import default_model_path
from openpixel_ros.image_codec import decode_raw
from openpixel_ros.node.image_messages import array_to_image_msg
from ros_helpers import running_node


@pytest.fixture(scope="module")
def model():
    try:
        return default_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"default model not fetched: {exc}")


def test_segmentor_gives_the_node_s_result(ros_env, rcl, model):
    frame = np.ascontiguousarray(data.astronaut()[:, :, :3])
    expected = Segmentor().infer(frame)
    with running_node(ros_env, "-r", "__node:=openpixel_parity", probe="test_parity") as (_, probe):
        labels = probe.subscribe(Image, "/openpixel_parity/label")
        masks = probe.subscribe(Image, "/openpixel_parity/mask")
        pub = probe.publisher(Image, "/image")
        header = Header(frame_id="parity")
        header.stamp.sec = 7
        msg = array_to_image_msg(frame, header, "rgb8")
        assert probe.spin_until(lambda: labels and masks, timeout=20, every=lambda: pub.publish(msg))
    got = decode_raw("mono8", 512, 512, labels[0].step, False, labels[0].data)
    np.testing.assert_array_equal(got, expected.labels)
    np.testing.assert_array_equal(decode_raw("mono8", 512, 512, masks[0].step, False, masks[0].data), expected.mask)
    assert expected.mask.any()
