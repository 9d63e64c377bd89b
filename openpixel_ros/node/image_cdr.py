"""``sensor_msgs/Image`` read straight from its serialised CDR bytes (``transport.raw_cdr``).

rclpy turns every received Image into a Python message, copying ``data`` into an ``array.array``
inside the executor's take. :class:`CdrImage` takes the bytes instead (``raw=True``), parses the
few header fields by hand and views ``data`` in place: a zero-copy, read-only numpy array over the
received ``bytes``. A bare relay's round trip took 0.43-0.55x as long this way (640x480 to 4K,
``bench/bench_node.py``; docs/benchmarks.md also says what it did not yet gain inside the node).

Only little-endian plain CDR (encapsulation ``00 01``, what Fast DDS and Cyclone DDS send for ROS 2
messages) is read. Anything else, or a buffer too short for the lengths it declares, becomes a
frame that fails to decode with a one-line reason, like any other bad frame; the node's normal
path (``transport.raw_cdr: false``) serves middleware whose wire format differs.

Layout (XCDR1, offsets aligned relative to the byte after the 4-byte encapsulation):
``int32 sec, uint32 nanosec, string frame_id, uint32 height, uint32 width, string encoding,
uint8 is_bigendian, uint32 step, sequence<uint8> data`` (a string is a uint32 length that
counts its NUL, then the bytes and the NUL).
"""
from __future__ import annotations

import struct

import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from ..image_codec import ImageDecodeError, decode_raw_rgb8

_LITTLE_ENDIAN_CDR = b"\x00\x01"
_ENCAPSULATION = 4
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_TWO_U32 = struct.Struct("<II")


class _Reader:
    """Little-endian CDR primitives over ``buffer``, with bounds checks."""

    def __init__(self, buffer):
        self.buffer = buffer
        self.pos = _ENCAPSULATION

    def align4(self) -> None:
        self.pos += -(self.pos - _ENCAPSULATION) % 4

    def need(self, size: int, what: str) -> None:
        if size < 0 or self.pos + size > len(self.buffer):
            raise ImageDecodeError(f"malformed CDR Image: {what} needs {size} bytes at offset {self.pos}, "
                                   f"the message has {len(self.buffer)}")

    def u32(self, what: str) -> int:
        self.align4()
        self.need(4, what)
        value = _U32.unpack_from(self.buffer, self.pos)[0]
        self.pos += 4
        return value

    def string(self, what: str) -> str:
        length = self.u32(what)
        self.need(length, what)
        raw = bytes(self.buffer[self.pos:self.pos + length])
        self.pos += length
        return raw.rstrip(b"\x00").decode("utf-8", errors="replace")


class CdrImage:
    """The fields of a ``sensor_msgs/Image`` read from CDR bytes; ``data`` is a read-only numpy
    view of the pixel bytes (no copy). ``header`` is a real ``std_msgs/Header`` so that outputs
    can carry it on. A malformed buffer keeps its reason in ``error`` (raised by :func:`cdr_image_to_rgb`)."""

    __slots__ = ("header", "height", "width", "encoding", "is_bigendian", "step", "data", "error")

    def __init__(self, buffer):
        self.header = Header()
        self.height = self.width = self.step = self.is_bigendian = 0
        self.encoding = ""
        self.data = np.empty(0, np.uint8)
        self.error = None
        try:
            self._parse(buffer)
        except ImageDecodeError as exc:
            self.error = exc

    def _parse(self, buffer) -> None:
        head = bytes(buffer[:2])
        if head != _LITTLE_ENDIAN_CDR:
            kind = "big-endian CDR" if head == b"\x00\x00" else f"encapsulation {head.hex(' ') or 'none'}"
            raise ImageDecodeError(f"raw CDR input reads only little-endian CDR (00 01), this Image is {kind}; "
                                   f"set transport.raw_cdr false for this middleware")
        r = _Reader(buffer)
        r.need(_STAMP.size, "header.stamp")
        sec, nanosec = _STAMP.unpack_from(buffer, r.pos)
        r.pos += _STAMP.size
        self.header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=r.string("header.frame_id"))
        r.align4()
        r.need(_TWO_U32.size, "height and width")
        self.height, self.width = _TWO_U32.unpack_from(buffer, r.pos)
        r.pos += _TWO_U32.size
        self.encoding = r.string("encoding")
        r.need(1, "is_bigendian")
        self.is_bigendian = buffer[r.pos]
        r.pos += 1
        self.step = r.u32("step")
        size = r.u32("data length")
        r.need(size, "data")
        self.data = np.frombuffer(buffer, np.uint8, count=size, offset=r.pos)
        self.data.flags.writeable = False  # a view of the middleware's bytes: never written


def cdr_image_to_rgb(msg: CdrImage) -> np.ndarray:
    """:func:`~openpixel_ros.node.image_messages.image_msg_to_rgb` for a :class:`CdrImage`: the same
    checks and error messages (raises ImageDecodeError)."""
    if msg.error is not None:
        raise msg.error
    return decode_raw_rgb8(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
