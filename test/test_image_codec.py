import cv2
import numpy as np
import pytest
from skimage import data

from openpixel_ros.image_codec import (SUPPORTED_ENCODINGS, ImageDecodeError, decode_compressed_rgb8, decode_raw,
                                       decode_raw_rgb8, encode_compressed, encode_raw)
from openpixel_ros.image_header import compressed_image_size
from image_bombs import jpeg_declaring, png_bomb

RGB = np.ascontiguousarray(data.astronaut()[::8, ::8])  # 64x64 real photo


def _decode_message(encoding, height, width, step, is_bigendian, buffer):
    """The node's normal path: a deserialised sensor_msgs/Image."""
    from openpixel_ros.node.image_messages import image_msg_to_rgb
    return image_msg_to_rgb(_image_msg(encoding, height, width, step, is_bigendian, buffer))


def _decode_cdr(encoding, height, width, step, is_bigendian, buffer):
    """The node's raw path (transport.raw_cdr): the same message as CDR bytes, parsed by hand."""
    from rclpy.serialization import serialize_message

    from openpixel_ros.node.image_cdr import CdrImage, cdr_image_to_rgb
    wire = serialize_message(_image_msg(encoding, height, width, step, is_bigendian, buffer))
    return cdr_image_to_rgb(CdrImage(wire))


def _image_msg(encoding, height, width, step, is_bigendian, buffer):
    from sensor_msgs.msg import Image

    from openpixel_ros.node.image_messages import byte_array
    return Image(encoding=encoding, height=height, width=width, step=step, is_bigendian=int(is_bigendian),
                 data=byte_array(bytes(buffer)))


# Every raw-image check runs on the codec's own function and on both of the node's input paths.
@pytest.fixture(params=["codec", "message", "cdr"])
def decode_rgb8(request):
    return {"codec": decode_raw_rgb8, "message": _decode_message, "cdr": _decode_cdr}[request.param]


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_round_trip(encoding, decode_rgb8):
    raw = encode_raw(RGB, encoding)
    out = decode_rgb8(encoding, 64, 64, raw.strides[0], False, raw.tobytes())
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    err = np.abs(out.astype(int) - RGB.astype(int))
    if encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3"):
        assert err.max() == 0
    elif "yuv" in encoding.lower() or "uy" in encoding.lower():
        assert err.mean() < 6  # 4:2:2 chroma subsampling on a real photo
    else:  # grey encodings: all three channels equal the luminance
        assert np.array_equal(out[..., 0], out[..., 1])


def test_rgb8_is_a_view_with_padding_honoured():
    padded = np.zeros((64, 64 * 3 + 7), np.uint8)
    padded[:, :192] = RGB.reshape(64, -1)
    buf = padded.tobytes()
    out = decode_raw_rgb8("rgb8", 64, 64, 199, False, buf)
    assert np.array_equal(out, RGB)
    assert not out.flags.writeable and np.shares_memory(out, np.frombuffer(buf, np.uint8))


def test_mono16_endianness_on_both_node_paths(decode_rgb8):
    values = (np.arange(64 * 64, dtype=np.uint16) * 13).reshape(64, 64)
    expected = decode_raw_rgb8("mono16", 64, 64, 128, False, values.astype("<u2").tobytes())
    assert np.array_equal(decode_rgb8("mono16", 64, 64, 128, True, values.astype(">u2").tobytes()), expected)
    assert np.array_equal(decode_rgb8("mono16", 64, 64, 128, False, values.astype("<u2").tobytes()), expected)
    padded = np.zeros((64, 129), np.uint8)  # odd step: copied row by row
    padded[:, :128] = values.astype("<u2").view(np.uint8).reshape(64, 128)
    assert np.array_equal(decode_rgb8("mono16", 64, 64, 129, False, padded.tobytes()), expected)


def test_mono16_endianness():
    values = (np.arange(64 * 64, dtype=np.uint16) * 13).reshape(64, 64)
    assert np.array_equal(decode_raw("mono16", 64, 64, 128, True, values.astype(">u2").tobytes()), values)
    assert np.array_equal(decode_raw("mono16", 64, 64, 128, False, values.astype("<u2").tobytes()), values)


@pytest.mark.parametrize("args, message", [
    (("32FC1", 4, 4, 16, False, bytes(64)), "unsupported encoding"),
    (("rgb8", 0, 4, 12, False, b""), "zero-size"),
    (("rgb8", 4, 4, 12, False, bytes(47)), "needs exactly 48"),
    (("rgb8", 4, 4, 12, False, bytes(49)), "needs exactly 48"),
    (("rgb8", 4, 4, 5, False, bytes(48)), "step 5 is smaller"),
    (("yuyv", 2, 3, 6, False, bytes(12)), "even width"),
])
def test_bad_buffers_raise_clear_errors(args, message, decode_rgb8):
    with pytest.raises(ImageDecodeError, match=message):
        decode_rgb8(*args)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "rgb8; jpeg compressed bgr8"])
def test_compressed(fmt):
    codec = "png" if "png" in fmt else "jpeg"
    out = decode_compressed_rgb8(fmt, encode_compressed(RGB, codec))
    tolerance = 0 if codec == "png" else 12
    assert np.abs(out.astype(int) - RGB.astype(int)).mean() <= tolerance


def test_corrupt_and_unknown_compressed():
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_compressed_rgb8("jpeg", encode_compressed(RGB, "jpeg")[:50])
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_compressed_rgb8("jpeg", b"")
    with pytest.raises(ImageDecodeError, match="unsupported compressed format"):
        decode_compressed_rgb8("tiff", b"II*\x00")
    bmp = cv2.imencode(".bmp", RGB)[1].tobytes()  # OpenCV reads BMP, but the node takes jpeg/png only
    with pytest.raises(ImageDecodeError, match="a BMP payload; supported: jpeg, png"):
        decode_compressed_rgb8("jpeg", bmp)
    with pytest.raises(ImageDecodeError, match="no JPEG or PNG signature"):
        decode_compressed_rgb8("png", b"\x00" * 100)


# -- decompression bombs (issue 17, fault 3) ---------------------------------------------------
def test_image_header_sizes_match_the_encoded_images():
    for fmt in ("jpeg", "png"):
        for h, w in ((7, 13), (48, 64), (480, 640)):
            assert compressed_image_size(encode_compressed(np.zeros((h, w, 3), np.uint8), fmt)) == (w, h)
    assert compressed_image_size(png_bomb(8000, 8000)) == (8000, 8000)
    assert compressed_image_size(jpeg_declaring(30000, 20000)) == (30000, 20000)
    assert compressed_image_size(b"\x89PNG\r\n\x1a\n") is None  # cut short
    assert compressed_image_size(b"\xff\xd8\xff\xe0\x00\x10JFIF") is None


@pytest.mark.parametrize("bomb, size", [(lambda: png_bomb(8000, 8000), "8000x8000 (64.0 MP)"),
                                        (lambda: jpeg_declaring(30000, 20000), "30000x20000 (600.0 MP)")])
def test_a_bomb_is_refused_from_its_header_without_decoding(bomb, size, monkeypatch):
    """A 64-MP PNG (60 kB) at an 8-MP budget: one line, and the decoder is never called."""
    data = bomb()
    assert len(data) < 200_000
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("the bomb reached the decoder"))
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed_rgb8("png", data, max_pixels=8_000_000)
    message = str(err.value)
    assert size in message and "8.0 MP" in message and "\n" not in message and len(message) <= 240


def test_frames_within_the_budget_still_decode():
    rgb = decode_compressed_rgb8("png", png_bomb(100, 80), max_pixels=8000)
    assert rgb.shape == (80, 100, 3) and not rgb.any()
    with pytest.raises(ImageDecodeError, match="100x80"):
        decode_compressed_rgb8("png", png_bomb(100, 80), max_pixels=7999)


def test_image_files_are_checked_before_loading(tmp_path):
    """The evaluation tools' loaders refuse a bomb label or image file in one line."""
    from openpixel_ros.eval.common import load_labels, load_rgb
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(4000, 3000))
    for load in (load_labels, load_rgb):
        with pytest.raises(ValueError, match=r"bomb.png is 4000x3000 \(12.0 MP\), over the pixel budget of 8.0 MP"):
            load(path, max_pixels=8_000_000)
    assert load_labels(path, max_pixels=12_000_000).shape == (3000, 4000)
