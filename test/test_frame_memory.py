"""node/frame_memory.py: frame-sized buffers are reused from the heap, not faulted in afresh."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from openpixel_ros.node.frame_memory import keep_frame_buffers
if sys.argv[1] == "tuned":
    assert keep_frame_buffers()
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    frame = np.ones(48 << 20, np.uint8)  # a frame-sized buffer, every page written
    del frame
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_frame_buffers_are_reused_instead_of_faulted_in_every_time():
    def median_faults(mode):
        run = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(run.stdout.strip())
    fresh, reused = median_faults("default"), median_faults("tuned")
    # Default: mmap, fault in (and zero) every page, munmap, for every frame (fewer faults with
    # transparent huge pages, but each zeroes 2 MB). Tuned: the same heap memory again.
    assert fresh > 100
    assert reused * 10 < fresh
