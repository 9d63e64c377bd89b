"""Bounded soak of the node (issue: reliability): RSS and label latency over time.

    .venv/bin/python bench/bench_soak.py [--minutes 3] [--rate 30] [--call-every-s 5]

A camera (640x480 rgb8) streams to the node (default model) for ``--minutes``; every
``--call-every-s`` seconds a ``~/segment_at_points`` call exercises the prompt worker. Every
5 s the node's RSS, the label latency (camera stamp -> receipt) and the node's counters are
sampled. Writes bench/results/soak.json (the whole series) and prints the first and the last
minute side by side. Target: RSS growth <= 5 MB over 10 minutes, no latency drift.
Not part of ``make test``: it runs for minutes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reliability import Session, start_node  # noqa: E402  (sets up the DDS-safe environment)
from common import REPO, await_answers, print_table, write_results  # noqa: E402

import rclpy  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402

from openpixel_ros.srv import SegmentAtPoints  # noqa: E402

SAMPLE_S = 5.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summarize(samples, t0, t1) -> dict:
    window = [s for s in samples if t0 <= s["t_s"] < t1]
    lat = np.concatenate([s["latencies_ms"] for s in window]) if window else np.array([np.nan])
    return {"from_s": t0, "to_s": t1, "rss_mean_mb": round(float(np.mean([s["rss_mb"] for s in window])), 2),
            "labels": int(lat.size), "latency_p50_ms": round(float(np.median(lat)), 1),
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1),
            "calls_answered": sum(s["calls_answered"] for s in window)}


def _compact_sample(sample: dict) -> dict:
    """One sample for the JSON: latency as count/p50/p95 instead of every value."""
    lat = sample["latencies_ms"]
    out = {k: v for k, v in sample.items() if k != "latencies_ms"}
    out["labels"] = len(lat)
    out["latency_p50_ms"] = round(float(np.median(lat)), 1) if lat else None
    out["latency_p95_ms"] = round(float(np.percentile(lat, 95)), 1) if lat else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    ap.add_argument("--call-every-s", type=float, default=5.0, help="one service call this often (0: none)")
    ap.add_argument("--warmup-s", type=float, default=20.0, help="streamed before the first sample")
    args = ap.parse_args(argv)
    if args.minutes < 2:
        ap.error("--minutes must be >= 2 (the first and the last minute are compared)")
    rclpy.init()
    name = "openpixel_soak"
    proc = start_node(REPO, name)
    session = Session(name, clients=1)
    samples = []
    try:
        await_answers(lambda t: session.executor.spin_once(timeout_sec=t), session.services[0])
        session.run(seconds=args.warmup_s, rate_hz=args.rate)
        request = SegmentAtPoints.Request(points=[Point(x=320.0, y=240.0)], labels=[1])
        start = time.monotonic()
        next_call = start
        pending = []
        while time.monotonic() - start < args.minutes * 60:
            session.labels.clear()
            answered = 0
            window_end = time.monotonic() + SAMPLE_S
            while time.monotonic() < window_end:
                if args.call_every_s and time.monotonic() >= next_call:
                    pending.append(session.services[0].call_async(request))
                    next_call += args.call_every_s
                session.run(seconds=min(0.2, max(0.0, window_end - time.monotonic())), rate_hz=args.rate)
                answered += sum(f.done() for f in pending)
                pending = [f for f in pending if not f.done()]
            samples.append({"t_s": round(time.monotonic() - start, 1), "rss_mb": round(rss_mb(proc.pid), 2),
                            "latencies_ms": [round(lt, 2) for _, lt in session.labels],
                            "calls_answered": answered,
                            "frames_processed": int(session.diag.get("frames_processed", 0)),
                            "frames_dropped": int(session.diag.get("frames_dropped", 0))})
        diag = dict(session.diag)
    finally:
        session.close()
        proc.send_signal(__import__("signal").SIGINT)
        proc.wait(timeout=15)
        rclpy.try_shutdown()
    duration = samples[-1]["t_s"]
    first, last = summarize(samples, 0, 60), summarize(samples, duration - 60, duration + 1)
    out = {"minutes": args.minutes, "camera": f"640x480 rgb8 at {args.rate:g} Hz",
           "call_every_s": args.call_every_s, "first_minute": first, "last_minute": last,
           "rss_growth_mb": round(last["rss_mean_mb"] - first["rss_mean_mb"], 2),
           "rss_min_mb": min(s["rss_mb"] for s in samples), "rss_max_mb": max(s["rss_mb"] for s in samples),
           "frames_sent": session.sent, "node_diagnostics": diag,
           "target_growth_mb_per_10_min": 5.0,
           "samples": [_compact_sample(s) for s in samples]}
    path = write_results("soak", out)
    print_table(f"Soak {args.minutes:g} min, camera 640x480 at {args.rate:g} Hz, a call every {args.call_every_s:g} s",
                ["", "RSS MB", "labels", "latency p50 ms", "latency p95 ms", "calls answered"],
                [[label, w["rss_mean_mb"], w["labels"], w["latency_p50_ms"], w["latency_p95_ms"], w["calls_answered"]]
                 for label, w in (("first minute", first), ("last minute", last))])
    print(f"RSS growth {out['rss_growth_mb']:+.2f} MB (min {out['rss_min_mb']}, max {out['rss_max_mb']}); "
          f"target <= 5 MB over 10 min")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
