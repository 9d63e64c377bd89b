"""A node started by a launch file never outlives it (and what the launch files check first).

launch stops its processes on a clean shutdown, but not when the launch process itself dies
(an exception in an action, SIGKILL, an OOM kill): the node then runs on with PPID 1. The launch
files set ``OPENPIXEL_EXIT_WITH_PARENT=1`` in the node's environment; the node then asks the
kernel (``prctl(PR_SET_PDEATHSIG)``) for a SIGINT when its parent exits and shuts down as on
Ctrl-C. Off by default: a node started by hand from a shell that then closes keeps running as
before. Linux only; elsewhere it is a no-op.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

#: Set to 1 (launch files do) to end the node when the process that started it exits.
EXIT_WITH_PARENT_ENV = "OPENPIXEL_EXIT_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def exit_with_parent_requested(environ=None) -> bool:
    value = (os.environ if environ is None else environ).get(EXIT_WITH_PARENT_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def exit_with_parent(sig: int = signal.SIGINT) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits; True when armed.

    A parent that dies between ``getppid`` and ``prctl`` is caught too (``sig`` is raised at
    once); one that died earlier still is not seen (a launch run as PID 1 looks the same).
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # orphaned while arming
        os.kill(os.getpid(), sig)
    return True


def package_missing(name: str):
    """None when ROS package ``name`` is installed (ament index), else the reason in one line.

    openpixel.launch.py asks this for rviz2 before starting anything.
    """
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix(name)
        return None
    except PackageNotFoundError:
        return f"package '{name}' not found"
