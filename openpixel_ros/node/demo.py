"""The demo: a camera process and the segmentation node, measured from a third process.

    openpixel_demo [--duration 20] [--source auto] [--model PATH] [--out out/demo]

Starts ``camera_publisher`` and ``openpixel_node`` as separate processes, listens
to the node's outputs, prints frames per second, end-to-end latency (camera stamp
to ``~/label`` receipt) and dropped frames, saves a few overlay PNGs and a short
rosbag2 (.mcap) of the outputs, then stops everything and exits.

DDS safety: every process it starts has ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, the
shared-memory-only Fast DDS profile config/fastdds_shm.xml, and a ROS_DOMAIN_ID of its
own (random unless --domain-id is given), so nothing leaves this machine and nothing
crosses another ROS graph.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _executable(name: str) -> list:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"openpixel_node": "openpixel_ros.node.openpixel_node",
              "camera_publisher": "openpixel_ros.node.camera_publisher"}[name]
    return [sys.executable, "-m", module]


def dds_safe_env(domain_id=None) -> dict:
    """This process's environment, confined to localhost discovery on a private domain."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    # Shared-memory-only transport: fast for camera-sized messages, and nothing leaves the host.
    profile = REPO / "config" / "fastdds_shm.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(1, 100))
    return dict(os.environ, PYTHONUNBUFFERED="1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="openpixel_demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of streaming")
    ap.add_argument("--source", default="auto", help="auto, samples, a video file or an image folder")
    ap.add_argument("--rate", type=float, default=25.0, help="camera rate in Hz")
    ap.add_argument("--model", default="", help="model file (default: the package's default model)")
    ap.add_argument("--params-file", default=str(REPO / "config" / "openpixel.yaml"))
    ap.add_argument("--out", default="out/demo", help="folder for overlay PNGs, the .mcap and summary.json")
    ap.add_argument("--pngs", type=int, default=4, help="overlay PNGs to save")
    ap.add_argument("--domain-id", type=int, default=None)
    args = ap.parse_args(argv)

    env = dds_safe_env(args.domain_id)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag_path = out / "outputs_bag"
    if bag_path.exists():
        shutil.rmtree(bag_path)

    import numpy as np
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image

    from ..default_model import resolve_model
    from ..image_codec import decode_raw
    from ..model_contract import load_contract

    class_names = list(load_contract(resolve_model(args.model or None)).classes)
    class_pixels = np.zeros(max(len(class_names), 1), np.int64)

    node_cmd = _executable("openpixel_node") + ["--ros-args", "--params-file", args.params_file]
    if args.model:
        node_cmd += ["-p", f"model_path:={args.model}"]
    camera_cmd = _executable("camera_publisher") + ["--ros-args", "-p", f"source:={args.source}",
                                                    "-p", f"rate_hz:={args.rate}"]
    print(f"[demo] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, discovery LOCALHOST; output in {out}/")
    procs = [subprocess.Popen(node_cmd, env=env), subprocess.Popen(camera_cmd, env=env)]

    rclpy.init()
    node = rclpy.create_node("openpixel_demo_monitor")
    typestore = get_typestore(Stores.ROS2_KILTED)
    writer = Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    connections = {}
    latencies, overlays_saved, counts = [], 0, {}
    diag = {}
    first_label = None
    png_every = max(1, int(args.rate * args.duration / max(args.pngs, 1) / 2))

    def record(topic, msg):
        if topic not in connections:
            connections[topic] = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=typestore)
        writer.write(connections[topic], time.time_ns(), serialize_message(msg))

    def on_label(msg):
        nonlocal first_label
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        latencies.append((now - stamp) / 1e6)
        counts["label"] = counts.get("label", 0) + 1
        first_label = first_label or time.monotonic()
        record("/openpixel/label", msg)
        labels = decode_raw(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
        class_pixels[:] += np.bincount(labels.ravel(), minlength=len(class_pixels))[:len(class_pixels)]

    def on_overlay(msg):
        nonlocal overlays_saved
        counts["overlay"] = counts.get("overlay", 0) + 1
        record("/openpixel/overlay", msg)
        if overlays_saved < args.pngs and counts["overlay"] % png_every == 1:
            import cv2
            rgb = decode_raw(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
            cv2.imwrite(str(out / f"overlay_{overlays_saved:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            overlays_saved += 1

    def on_mask(msg):
        counts["mask"] = counts.get("mask", 0) + 1
        record("/openpixel/mask", msg)

    def on_diag(msg):
        for status in msg.status:
            if status.name.endswith("segmentation"):
                diag.update({kv.key: kv.value for kv in status.values})
                diag["message"] = status.message

    node.create_subscription(Image, "/openpixel/label", on_label, 10)
    node.create_subscription(Image, "/openpixel/overlay", on_overlay, 10)
    node.create_subscription(Image, "/openpixel/mask", on_mask, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    rc = 0
    start = time.monotonic()
    deadline = start + args.duration + 30.0  # start-up allowance: model load, discovery
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if first_label and time.monotonic() - first_label >= args.duration:
                break
            if any(p.poll() is not None for p in procs):
                print("[demo] a child process exited early", file=sys.stderr)
                rc = 1
                break
        # One more diagnostics message so the drop counters are current.
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        writer.close()
        node.destroy_node()
        rclpy.try_shutdown()

    elapsed = (time.monotonic() - first_label) if first_label else 0.0
    n = counts.get("label", 0)
    summary = {
        "frames_segmented": n,
        "fps": n / elapsed if elapsed > 0 else 0.0,
        "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_ms_p95": float(np.percentile(latencies, 95)) if latencies else None,
        "frames_received_by_node": int(diag.get("frames_received", 0)),
        "frames_dropped_by_node": int(diag.get("frames_dropped", 0)),
        "engine_median_ms": float(diag.get("engine_median_ms", 0.0)),
        "overlay_pngs": overlays_saved,
        "bag": str(bag_path),
        "source": args.source,
        "class_share": ({name: round(float(c) / total, 5) for name, c in zip(class_names, class_pixels)}
                        if (total := int(class_pixels.sum())) else {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("[demo] ------------------------------------------------")
    print(f"[demo] segmented frames : {n} in {elapsed:.1f} s  ({summary['fps']:.1f} fps)")
    if latencies:
        print(f"[demo] latency (ms)     : p50 {summary['latency_ms_p50']:.1f}   p95 {summary['latency_ms_p95']:.1f}"
              f"   (engine median {summary['engine_median_ms']:.1f})")
    print(f"[demo] node dropped     : {summary['frames_dropped_by_node']} of "
          f"{summary['frames_received_by_node']} received (newest-frame policy)")
    if summary["class_share"]:
        shares = sorted(summary["class_share"].items(), key=lambda kv: -kv[1])
        print("[demo] class share      : " + ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares
                                                        if share >= 0.0005))
    print(f"[demo] wrote {overlays_saved} overlay PNGs and {bag_path}/ (.mcap) in {out}/")
    if n == 0:
        print("[demo] no output received: check the node's log above", file=sys.stderr)
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
