"""Shared benchmark plumbing: DDS-safe environment, JSON output, a printed table."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared"


def dds_safe_env() -> dict:
    """Confine this process and its children to localhost discovery on a private domain."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    return dict(os.environ, PYTHONUNBUFFERED="1")


def await_answers(spin_once, client, timeout: float = 60.0, resend_after: float = 3.0) -> None:
    """Return once answers reach ``client`` (a ``SegmentAtPoints`` client; ``spin_once(timeout_sec)``
    spins its node): a timed or counted call sent before could hang or go missing
    (``openpixel_ros.node.service_calls``)."""
    from openpixel_ros.node.service_calls import call_until_answered, refused_at_once_request
    if call_until_answered(client, refused_at_once_request(), spin_once, timeout, resend_after) is None:
        raise RuntimeError(f"no answer from {client.srv_name} within {timeout} s")


def machine() -> dict:
    import platform
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": sys.version.split()[0]}


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def time_ms(fn, repeats: int, warmup: int = 3) -> dict:
    """Median and 90th percentile of ``fn()`` wall time in milliseconds, after ``warmup`` calls."""
    return time_interleaved({"fn": fn}, repeats, warmup)["fn"]


def time_interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict:
    """``time_ms`` for several callables, one call of each in turn per repeat, so that a load which
    comes and goes (a training run, another process) weighs on every one of them alike."""
    import time

    import numpy as np
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": round(float(np.median(s)), 4), "p90_ms": round(float(np.percentile(s, 90)), 4),
                   "repeats": repeats} for name, s in samples.items()}


def print_table(title: str, header: list, rows: list) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def stop_node(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a node process as Ctrl-C would (SIGINT), killing it if it has not exited in ``timeout`` s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
