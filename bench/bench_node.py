"""Node benchmarks across processes (issue: package): overhead, backlog, memory.

    .venv/bin/python bench/bench_node.py [--quick] [--model PATH]

1. Overhead: end-to-end latency (publish -> ~/label receipt, camera stamp based) minus the
   engine's own time, at 640x480 and 1920x1080 rgb8. The engine alone is timed in the same
   run on the same frames (baseline), and the node reports its in-process engine median too.
   Targets: median <= 3 ms at 640x480, <= 10 ms at 1920x1080.
2. Backlog: a 30 Hz camera, engine slowed to 100 ms (debug.engine_delay_ms): p95 latency
   <= 250 ms and no growth between the first and the last 30 s of 2 minutes.
3. Memory: node RSS growth <= 20 MB over 5,000 frames (after a 300-frame warm-up).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, dds_safe_env, print_table, stop_node, write_results  # noqa: E402

ENV = dds_safe_env()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from openpixel_ros.frame_sources import iter_frames  # noqa: E402
from openpixel_ros.node.image_messages import array_to_image_msg  # noqa: E402
from openpixel_ros.segmentor import Segmentor  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, model: str, extra_params=(), relay: bool = False):
        if relay:  # the transport baseline instead of the node
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "relay.py")]
        else:
            cmd = [str(Path(sys.executable).parent / "openpixel_node"), "--ros-args", "--params-file",
                   str(REPO / "config" / "openpixel.yaml"), "-p", "diagnostics_period:=0.5"]
            if model:
                cmd += ["-p", f"model_path:={model}"]
            for p in extra_params:
                cmd += ["-p", p]
        self.proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.node = rclpy.create_node(f"bench_{int(time.time() * 1000) % 100000}")
        self.latencies = []
        self.diag = {}
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "/image", qos)
        self.node.create_subscription(Image, "/openpixel/label", self._on_label, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        end = time.monotonic() + 60
        while time.monotonic() < end and (self.pub.get_subscription_count() == 0 or
                                          self.node.count_publishers("/openpixel/label") == 0):
            rclpy.spin_once(self.node, timeout_sec=0.1)

    def _on_label(self, msg):
        now = self.node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.latencies.append((time.monotonic(), (now - stamp) / 1e6))

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.endswith("segmentation"):
                self.diag = {kv.key: kv.value for kv in s.values}

    def stream(self, frames, rate_hz: float, count: int = 0, seconds: float = 0.0):
        """Publish frames at ``rate_hz`` (stamped at publish time) for ``count`` frames or ``seconds``."""
        period = 1.0 / rate_hz
        start = time.monotonic()
        sent = 0
        next_t = start
        while (count and sent < count) or (seconds and time.monotonic() - start < seconds):
            now = time.monotonic()
            if now >= next_t:
                msg = frames[sent % len(frames)]
                msg.header.stamp = self.node.get_clock().now().to_msg()
                self.pub.publish(msg)
                sent += 1
                next_t += period
                if next_t < now:
                    next_t = now + period
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.002, next_t - time.monotonic())))
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return sent

    def close(self):
        self.node.destroy_node()
        stop_node(self.proc)


def frames_at(width, height, n=8):
    src = iter_frames("auto", loop=True, size=(width, height))
    return [array_to_image_msg(next(src), None, "rgb8") for _ in range(n)]


def engine_alone(model, frames_rgb, repeats=40):
    seg = Segmentor(model or None, threads=0)
    for f in frames_rgb[:3]:
        seg.segment(f)
    times = {"engine_ms": [], "pipeline_ms": []}
    for i in range(repeats):
        t0 = time.perf_counter()
        r = seg.segment(frames_rgb[i % len(frames_rgb)])
        times["pipeline_ms"].append((time.perf_counter() - t0) * 1e3)
        times["engine_ms"].append(r.timings["engine_ms"])
    seg.close()
    return {k: float(np.median(v)) for k, v in times.items()}


def round_trip(model, msgs, count, relay=False):
    """Median/p95 publish-to-label latency through the node (or the relay baseline)."""
    b = Bench(model, relay=relay)
    try:
        b.stream(msgs, rate_hz=5.0, count=5)  # warm-up
        b.latencies.clear()
        b.stream(msgs, rate_hz=5.0, count=count)
        lat = np.array([lt for _, lt in b.latencies])
        engine = float(b.diag.get("engine_median_ms", "nan"))
    finally:
        b.close()
    return lat, engine


def overhead(model, quick):
    results = []
    count = 20 if quick else 60
    for (w, h) in ((640, 480), (1920, 1080)):
        src = iter_frames("auto", loop=True, size=(w, h))
        rgbs = [next(src) for _ in range(8)]
        msgs = [array_to_image_msg(f, None, "rgb8") for f in rgbs]
        alone = engine_alone(model, rgbs, repeats=15 if quick else 40)
        relay_lat, _ = round_trip(model, msgs, count, relay=True)
        lat, node_engine = round_trip(model, msgs, count)
        e2e, relay = float(np.median(lat)), float(np.median(relay_lat))
        results.append({
            "size": f"{w}x{h}", "frames": int(lat.size), "e2e_median_ms": e2e,
            "e2e_p95_ms": float(np.percentile(lat, 95)), "engine_alone_median_ms": alone["engine_ms"],
            "pipeline_alone_median_ms": alone["pipeline_ms"], "node_engine_median_ms": node_engine,
            "overhead_median_ms": e2e - node_engine,
            "transport_baseline_median_ms": relay,
            "overhead_beyond_transport_ms": e2e - node_engine - relay,
            "target_ms": 3.0 if w == 640 else 10.0,
        })
    return results


def backlog(model, quick):
    seconds = 30 if quick else 120
    src = iter_frames("auto", loop=True, size=(640, 480))
    msgs = [array_to_image_msg(next(src), None, "rgb8") for _ in range(8)]
    b = Bench(model, ["debug.engine_delay_ms:=100.0"])
    try:
        b.stream(msgs, rate_hz=30.0, count=10)
        b.latencies.clear()
        t0 = time.monotonic()
        sent = b.stream(msgs, rate_hz=30.0, seconds=seconds)
        diag = dict(b.diag)
    finally:
        b.close()
    t = np.array([tt - t0 for tt, _ in b.latencies])
    lat = np.array([lt for _, lt in b.latencies])
    window = min(30.0, seconds / 4)
    first = lat[t < window]
    last = lat[t > t.max() - window]
    return {"seconds": seconds, "camera_hz": 30, "engine_delay_ms": 100, "frames_sent": sent,
            "outputs": int(lat.size), "dropped_by_node": int(diag.get("frames_dropped", 0)),
            "p50_ms": float(np.median(lat)), "p95_ms": float(np.percentile(lat, 95)),
            "p95_first_window_ms": float(np.percentile(first, 95)),
            "p95_last_window_ms": float(np.percentile(last, 95)), "window_s": window, "target_p95_ms": 250.0}


def memory(model, quick):
    frames = 1000 if quick else 5000
    src = iter_frames("auto", loop=True, size=(320, 240))
    msgs = [array_to_image_msg(next(src), None, "rgb8") for _ in range(8)]
    b = Bench(model)
    try:
        b.stream(msgs, rate_hz=60.0, count=300)
        start_rss = rss_mb(b.proc.pid)
        processed0 = int(b.diag.get("frames_processed", 0))
        samples = []
        sent = 0
        while sent < frames:
            sent += b.stream(msgs, rate_hz=60.0, count=min(500, frames - sent))
            samples.append(rss_mb(b.proc.pid))
        processed = int(b.diag.get("frames_processed", 0)) - processed0
    finally:
        b.close()
    return {"frames_sent": frames, "frames_processed": processed, "rss_start_mb": start_rss,
            "rss_end_mb": samples[-1], "rss_growth_mb": samples[-1] - start_rss, "rss_samples_mb": samples,
            "target_growth_mb": 20.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="model (default: the package's default model)")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    ap.add_argument("--only", choices=("overhead", "backlog", "memory"))
    args = ap.parse_args(argv)
    rclpy.init()
    out = {"model": args.model or "default", "quick": args.quick}
    try:
        if args.only in (None, "overhead"):
            out["overhead"] = overhead(args.model, args.quick)
        if args.only in (None, "backlog"):
            out["backlog"] = backlog(args.model, args.quick)
        if args.only in (None, "memory"):
            out["memory"] = memory(args.model, args.quick)
    finally:
        rclpy.try_shutdown()
    path = write_results("node" + ("_quick" if args.quick else ""), out)
    if "overhead" in out:
        print_table("Node overhead (e2e latency minus engine time), ms; baseline: a bare rclpy relay",
                    ["size", "e2e p50", "engine (node)", "engine alone", "overhead p50", "relay p50",
                     "beyond relay", "target"],
                    [[r["size"], f"{r['e2e_median_ms']:.1f}", f"{r['node_engine_median_ms']:.1f}",
                      f"{r['engine_alone_median_ms']:.1f}", f"{r['overhead_median_ms']:.1f}",
                      f"{r['transport_baseline_median_ms']:.1f}", f"{r['overhead_beyond_transport_ms']:.1f}",
                      f"<= {r['target_ms']}"] for r in out["overhead"]])
    if "backlog" in out:
        r = out["backlog"]
        print_table("Backlog: 30 Hz camera, engine +100 ms", ["p50", "p95", "p95 first", "p95 last", "dropped", "target"],
                    [[f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p95_first_window_ms']:.0f}",
                      f"{r['p95_last_window_ms']:.0f}", f"{r['dropped_by_node']}/{r['frames_sent']}", "p95 <= 250"]])
    if "memory" in out:
        r = out["memory"]
        print_table("Memory", ["frames", "RSS start MB", "RSS end MB", "growth MB", "target"],
                    [[r["frames_processed"], f"{r['rss_start_mb']:.1f}", f"{r['rss_end_mb']:.1f}",
                      f"{r['rss_growth_mb']:.1f}", "<= 20"]])
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
