"""An image's size from its header, before anything is decoded: the decompression-bomb guard.

A PNG or JPEG of a few hundred kilobytes may declare an image of gigapixels; decoding it first
and looking afterwards took the node to 3-4 GB (an out-of-memory kill on an 8 GB Jetson). Here
the size is read from the PNG ``IHDR`` chunk or the JPEG ``SOFn`` segment, and a frame over the
pixel budget is refused with one line. The node (``max_image_pixels``), ``openpixel_bag`` and the
evaluation tools (``--max-image-pixels``) use the same rule.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

#: Default pixel budget: 8K (7680 x 4320), about 33 megapixels.
DEFAULT_MAX_PIXELS = 7680 * 4320

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}  # RSTn, TEM, SOI: no length field


class ImageTooLargeError(ValueError):
    """The image declares more pixels than the budget allows (one line, nothing decoded)."""


def compressed_image_size(data) -> Optional[Tuple[int, int]]:
    """``(width, height)`` declared by a PNG or JPEG payload's header; None when it is neither
    or the header is cut short. Reads only the header (for JPEG, the segments before the frame's)."""
    view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else memoryview(data)
    if bytes(view[:8]) == _PNG_SIGNATURE:
        if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
            return None
        return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    if bytes(view[:2]) != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(view):
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(view):
                return None
            return int.from_bytes(view[i + 7:i + 9], "big"), int.from_bytes(view[i + 5:i + 7], "big")
        if marker in (0xDA, 0xD9):  # scan data or end of image before any frame header
            return None
        i += 2 + int.from_bytes(view[i + 2:i + 4], "big")
    return None


def check_pixels(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Raise :class:`ImageTooLargeError` when ``width x height`` exceeds ``max_pixels``."""
    if int(width) * int(height) > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} ({width * height / 1e6:.1f} MP), over the pixel budget of "
            f"{max_pixels / 1e6:.1f} MP: refused before decoding")


def check_compressed(data, max_pixels: int, what: str = "compressed image") -> Tuple[int, int]:
    """The declared ``(width, height)`` of a PNG/JPEG payload, checked against the budget."""
    size = compressed_image_size(data)
    if size is None:
        raise ImageTooLargeError(f"corrupt or truncated {what}: no PNG IHDR or JPEG frame header found")
    if size[0] == 0 or size[1] == 0:
        raise ImageTooLargeError(f"{what} declares a zero size ({size[0]}x{size[1]})")
    check_pixels(size[0], size[1], max_pixels, what)
    return size


def check_image_file(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse an image file over the budget before a decoder sees it. PNG and JPEG by their
    headers; other formats by Pillow's lazy open (it reads the header only)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        size = compressed_image_size(head)
        if size is None and head[:2] == b"\xff\xd8":  # a JPEG whose frame header lies beyond 64 kB
            size = compressed_image_size(head + f.read())
    if size is None:
        import warnings

        from PIL import Image
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as image:
                    size = image.size
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(f"{path.name}: {' '.join(str(exc).split())}") from None
            except (OSError, SyntaxError, ValueError):
                return  # not an image Pillow knows: the loader says so
    check_pixels(size[0], size[1], max_pixels, path.name)
