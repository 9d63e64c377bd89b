"""Frame-sized buffers stay in the heap instead of being mapped and unmapped for every frame.

glibc serves allocations above its mmap threshold (128 KB, raised on the fly up to 32 MB) with
fresh ``mmap`` pages and returns them with ``munmap`` on free. A node receives, converts and
publishes several frame-sized buffers per frame (25 MB each at 4K); fresh pages cost a page fault
and a kernel zero-fill each, every frame. Measured in the node (bench_node.py's harness, time from
DDS reception to the subscription callback, raw CDR input): 8.3 -> 4.1 ms at 1080p and
36-43 -> 17-23 ms at 4K with the thresholds below; rclpy's deserialising path went 3.4 -> 4.0 and
22-25 -> 22-25 ms (unchanged within noise). Freed buffers are then reused; the heap keeps up to
``trim_mb`` of free memory before returning it to the system.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_frame_buffers(mmap_threshold_mb: int = 128, trim_mb: int = 512) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_mb << 20))
