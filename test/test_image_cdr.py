"""transport.raw_cdr: sensor_msgs/Image parsed by hand from the bytes rclpy serialises, against
rclpy's own deserialisation (the node's normal path)."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from skimage import data

from openpixel_ros.image_codec import SUPPORTED_ENCODINGS, ImageDecodeError, encode_raw
from openpixel_ros.node.image_cdr import CdrImage, cdr_image_to_rgb
from openpixel_ros.node.image_messages import array_to_image_msg, byte_array, image_msg_to_rgb

RGB = np.ascontiguousarray(data.astronaut()[::8, ::8])


def _msg(encoding="rgb8", frame_id="camera_front", sec=1_700_000_123, nanosec=456_789_012, padding=0,
         big=False):
    raw = encode_raw(RGB, encoding)
    if big and raw.dtype == np.uint16:
        raw = raw.astype(">u2")
    rows = raw.reshape(raw.shape[0], -1).view(np.uint8)
    padded = np.zeros((rows.shape[0], rows.shape[1] + padding), np.uint8)
    padded[:, :rows.shape[1]] = rows
    msg = Image(height=raw.shape[0], width=raw.shape[1], encoding=encoding, step=padded.shape[1],
                is_bigendian=int(big), data=byte_array(padded.tobytes()))
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame_id, sec, nanosec
    return msg


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("padding", [0, 1, 3, 6])
def test_fields_and_pixels_equal_rclpy_deserialisation(encoding, padding):
    big = encoding in ("mono16", "16UC1") and padding % 2 == 0
    wire = serialize_message(_msg(encoding, padding=padding, big=big))
    normal = deserialize_message(wire, Image)
    cdr = CdrImage(wire)
    assert cdr.error is None
    assert cdr.header == normal.header
    for field in ("height", "width", "encoding", "is_bigendian", "step"):
        assert getattr(cdr, field) == getattr(normal, field), field
    assert cdr.data.tobytes() == bytes(normal.data)
    np.testing.assert_array_equal(cdr_image_to_rgb(cdr), image_msg_to_rgb(normal))


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "kamera_vorn_äöü", "x" * 301])
def test_header_strings_of_every_alignment(frame_id):
    """frame_id's length decides the padding before height/width: every remainder mod 4."""
    wire = serialize_message(_msg(frame_id=frame_id, sec=-5, nanosec=999_999_999))
    cdr = CdrImage(wire)
    assert cdr.header.frame_id == frame_id and cdr.header.stamp.sec == -5
    assert cdr.header.stamp.nanosec == 999_999_999
    np.testing.assert_array_equal(cdr_image_to_rgb(cdr), RGB)


def test_pixels_are_a_read_only_view_of_the_received_bytes():
    wire = serialize_message(array_to_image_msg(RGB, None, "rgb8"))
    rgb = cdr_image_to_rgb(CdrImage(wire))
    assert np.shares_memory(rgb, np.frombuffer(wire, np.uint8))
    assert not rgb.flags.writeable
    with pytest.raises(ValueError):
        rgb[0, 0, 0] = 1


def test_other_encapsulations_are_refused_with_one_line():
    wire = bytearray(serialize_message(_msg()))
    wire[1] = 0x00  # CDR big-endian
    with pytest.raises(ImageDecodeError, match="little-endian CDR.*big-endian CDR.*transport.raw_cdr false"):
        cdr_image_to_rgb(CdrImage(bytes(wire)))
    wire[1] = 0x07  # XCDR2 little-endian
    with pytest.raises(ImageDecodeError, match="encapsulation 00 07"):
        cdr_image_to_rgb(CdrImage(bytes(wire)))
    with pytest.raises(ImageDecodeError, match="encapsulation none"):
        cdr_image_to_rgb(CdrImage(b""))


def test_every_truncation_is_a_clear_decode_error():
    """A short buffer never raises anything but ImageDecodeError (the node counts it as a bad frame)."""
    wire = serialize_message(_msg(frame_id="cam"))
    cut_points = list(range(2, 64)) + [len(wire) - 1]
    for cut in cut_points:
        with pytest.raises(ImageDecodeError) as info:
            cdr_image_to_rgb(CdrImage(wire[:cut]))
        assert "\n" not in str(info.value)
    # A declared data length beyond the buffer
    with pytest.raises(ImageDecodeError, match="malformed CDR Image: data needs"):
        cdr_image_to_rgb(CdrImage(wire[:-10]))
