"""sensor_msgs image messages <-> numpy arrays (the thin ROS half of image_codec)."""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ..image_codec import decode_compressed_rgb8, decode_raw_rgb8
from ..image_header import DEFAULT_MAX_PIXELS, check_pixels
from ..log_text import compact
from .image_cdr import CdrImage, cdr_image_to_rgb

_ENCODING_FOR = {(np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint16), 1): "mono16",
                 (np.dtype(np.uint8), 3): "rgb8"}


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """Any supported ``sensor_msgs/Image`` to an RGB uint8 array (raises ImageDecodeError)."""
    return decode_raw_rgb8(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


def compressed_msg_to_rgb(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return decode_compressed_rgb8(msg.format, msg.data, max_pixels)


def camera_frame_to_rgb(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A camera message (CompressedImage, Image or its CDR bytes) to RGB uint8; its declared size is
    checked against ``max_pixels`` before decoding (raises ImageDecodeError or ValueError)."""
    if isinstance(msg, CompressedImage):
        return compressed_msg_to_rgb(msg, max_pixels)  # the PNG/JPEG header's size checked first
    if isinstance(msg, CdrImage) and msg.error is not None:
        raise msg.error  # a malformed CDR buffer: its own one-line reason
    check_pixels(msg.width, msg.height, max_pixels, f"{compact(msg.encoding)} frame")
    if isinstance(msg, CdrImage):
        return cdr_image_to_rgb(msg)
    return image_msg_to_rgb(msg)


def array_to_image_msg(image: np.ndarray, header, encoding: str = None) -> Image:
    """Wrap an HxW (mono8/mono16) or HxWx3 (rgb8) array; the header is copied by reference."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    if encoding is None:
        encoding = _ENCODING_FOR[(image.dtype, channels)]
    image = np.ascontiguousarray(image)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = image.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0 if image.dtype.byteorder in ("=", "<", "|") else 1
    msg.step = image.strides[0]
    msg.data = byte_array(memoryview(image).cast("B"))
    return msg


def byte_array(buffer) -> array.array:
    """A uint8[] field value. Messages accept array.array('B') without the per-element
    type check that a bytes value triggers (seconds for a 1080p frame)."""
    data = array.array("B")
    data.frombytes(buffer)
    return data
