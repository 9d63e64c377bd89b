"""Service round trip across processes (issue: click prompts).

    .venv/bin/python bench/bench_service.py [--quick]

Calls ~/segment_at_points of a node in its own process with a 640x480 frame, (a) carried
in the request and (b) taken from the node's latest camera frame, and reports the median
round trip minus the engine's own time (which the node reports in the response).
Target: <= 5 ms median beyond engine time. The engine is the SAM-format stand-in pair
of bench_prompt_engines.py (a cached embedding: each click runs only the small decoder),
so the engine time is small and steady and the overhead is measured precisely; the
packaged OpenPixel click model and the classical engine (no weights) are timed too.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, await_answers, dds_safe_env, print_table, stop_node, write_results  # noqa: E402

ENV = dds_safe_env()

import rclpy  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from bench_prompt_engines import build_stand_in  # noqa: E402
from openpixel_ros.frame_sources import iter_frames  # noqa: E402
from openpixel_ros.node.image_messages import array_to_image_msg  # noqa: E402
from openpixel_ros.srv import SegmentAtPoints  # noqa: E402

_ENGINE_MS = re.compile(r"engine ([0-9.]+) ms, service ([0-9.]+) ms")


def measure(engine: str, model: str, calls: int) -> dict:
    cmd = [str(Path(sys.executable).parent / "openpixel_node"), "--ros-args", "--params-file",
           str(REPO / "config" / "openpixel.yaml"), "-p", f"prompt_engine:={engine}"]
    if model:
        cmd += ["-p", f"prompt_model:={model}"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    node = rclpy.create_node(f"bench_service_{engine}")
    try:
        client = node.create_client(SegmentAtPoints, "/openpixel/segment_at_points")
        await_answers(lambda t: rclpy.spin_once(node, timeout_sec=t), client)  # a timed call must not hang
        pub = node.create_publisher(Image, "/image", 1)
        frame = next(iter_frames("auto", size=(640, 480)))
        image = array_to_image_msg(frame, None, "rgb8")
        image.header.frame_id = "camera"
        results = {}
        for mode in ("image_in_request", "latest_frame"):
            if mode == "latest_frame":
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    pub.publish(image)
                    rclpy.spin_once(node, timeout_sec=0.05)
            rows = []
            for i in range(calls + 3):
                req = SegmentAtPoints.Request()
                if mode == "image_in_request":
                    req.image = image
                req.points = [Point(x=320.0 + (i % 5) * 7, y=240.0)]
                req.labels = [1]
                t0 = time.perf_counter()
                future = client.call_async(req)
                while not future.done():
                    rclpy.spin_once(node, timeout_sec=0.01)
                rtt = (time.perf_counter() - t0) * 1e3
                res = future.result()
                m = _ENGINE_MS.search(res.message)
                if not res.success or not m:
                    raise RuntimeError(f"call failed: {res.message}")
                if i >= 3:  # warm-up: first calls build caches
                    rows.append((rtt, float(m.group(1)), float(m.group(2))))
            rtt, eng, svc = (np.array(c) for c in zip(*rows))
            results[mode] = {"calls": len(rows), "round_trip_median_ms": float(np.median(rtt)),
                             "engine_median_ms": float(np.median(eng)),
                             "service_handler_median_ms": float(np.median(svc)),
                             "beyond_engine_median_ms": float(np.median(rtt - eng)), "target_ms": 5.0}
        return results
    finally:
        node.destroy_node()
        stop_node(proc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    calls = 10 if args.quick else 40
    rclpy.init()
    out = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            encoder = build_stand_in(Path(tmp))
            out["sam_stand_in"] = measure("sam", str(encoder), calls)
        out["openpixel"] = measure("openpixel", "", calls)  # the packaged click model
        out["classical"] = measure("classical", "", max(5, calls // 4))
    finally:
        rclpy.try_shutdown()
    path = write_results("service" + ("_quick" if args.quick else ""), out)
    rows = [[eng, mode, f"{r['round_trip_median_ms']:.1f}", f"{r['engine_median_ms']:.1f}",
             f"{r['beyond_engine_median_ms']:.1f}", "<= 5"]
            for eng, modes in out.items() for mode, r in modes.items()]
    print_table("~/segment_at_points round trip at 640x480 (ms, medians)",
                ["engine", "image", "round trip", "engine", "beyond engine", "target"], rows)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
