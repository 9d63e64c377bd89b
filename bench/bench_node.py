"""Node benchmarks across processes (issue: package): overhead, backlog, memory.

    .venv/bin/python bench/bench_node.py [--quick] [--model PATH] [--baseline-ref REF] [--rounds N]

1. Overhead: end-to-end latency (publish -> ~/label receipt, camera stamp based) minus the
   engine's own time, at 640x480, 1920x1080 and 3840x2160 rgb8. In the same run, interleaved
   round by round: a bare rclpy relay (bench/relay.py) with rclpy's deserialisation and with raw
   CDR bytes (the node's transport.raw_cdr), this tree's node with and without transport.raw_cdr,
   and, with --baseline-ref, the node as it was at that git revision (extracted to a temporary
   folder and run from there). The node reports its in-process engine median; the encoder alone
   is timed here as bench_default_model.py does (session.run of the logits, 2 threads).
   Targets: beyond the relay of the same transport, median <= 3 ms at 640x480, <= 6 ms at 1080p.
2. Post-processing (labels at the frame's size, mask, confidence) on the default model's real
   logits, this tree against --baseline-ref (each timed in its own process, rounds alternating).
3. Compressed transport: the relay on sensor_msgs/CompressedImage (1080p JPEG) with rclpy's
   deserialisation and with raw CDR bytes (does raw help compressed input?).
4. Backlog: a 30 Hz camera, engine slowed to 100 ms (debug.engine_delay_ms): p95 latency
   <= 250 ms and no growth between the first and the last 30 s of 2 minutes.
5. Memory: node RSS growth <= 20 MB over 5,000 frames (after a 300-frame warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, dds_safe_env, print_table, stop_node, write_results  # noqa: E402

ENV = dds_safe_env()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from openpixel_ros.frame_sources import iter_frames  # noqa: E402
from openpixel_ros.image_codec import encode_compressed  # noqa: E402
from openpixel_ros.node.image_messages import array_to_image_msg, byte_array  # noqa: E402
from openpixel_ros.segmentor import Segmentor  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, model: str, extra_params=(), relay=None, tree: Path = REPO, compressed: bool = False):
        """``relay``: None runs the node, else the relay's arguments (the transport baseline).
        ``tree``: the source tree the node runs from (a baseline revision's extracted copy)."""
        env = ENV
        if relay is not None:
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "relay.py"), *relay]
        else:
            # The entry point imports openpixel_ros from PYTHONPATH first: the tree under test.
            env = dict(ENV, PYTHONPATH=os.pathsep.join([str(tree), ENV.get("PYTHONPATH", "")]))
            cmd = [str(Path(sys.executable).parent / "openpixel_node"), "--ros-args", "--params-file",
                   str(tree / "config" / "openpixel.yaml"), "-p", "diagnostics_period:=0.5"]
            if model:
                cmd += ["-p", f"model_path:={model}"]
            for p in extra_params:
                cmd += ["-p", p]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.node = rclpy.create_node(f"bench_{int(time.time() * 1000) % 100000}")
        self.latencies = []
        self.diag = {}
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        if compressed:
            self.pub = self.node.create_publisher(CompressedImage, "/image/compressed", qos)
        else:
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


def encoder_alone(model, repeats=20) -> dict:
    """The engine alone as bench_default_model.py times it: ONNX Runtime's session.run of the logits
    only, 2 intra-op threads, back to back, on real frames' tensors; with ORT's default options
    (pool threads spin) and with spinning off, as the package's engine now runs."""
    import onnxruntime as ort
    seg = Segmentor(model or None)
    src = iter_frames("auto", loop=True, size=(640, 480))
    feeds = [seg.semantic.model_input.feeds(next(src))[0] for _ in range(4)]
    output, path = seg.contract.output.name, str(seg.model_path)
    seg.close()
    out = {}
    for name, spinning in (("spinning", "1"), ("no_spinning", "0")):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 2, 1, 3
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for f in feeds:
            session.run([output], f)
        samples = []
        for i in range(repeats):
            t0 = time.perf_counter()
            session.run([output], feeds[i % len(feeds)])
            samples.append((time.perf_counter() - t0) * 1e3)
        out[name] = samples
    return out


def round_trip(model, msgs, count, relay=None, extra=(), tree=REPO, compressed=False):
    """Publish-to-label latencies through the node (or the relay), and the node's engine median."""
    b = Bench(model, extra, relay=relay, tree=tree, compressed=compressed)
    try:
        b.stream(msgs, rate_hz=5.0, count=5)  # warm-up
        b.latencies.clear()
        b.stream(msgs, rate_hz=5.0, count=count)
        lat = [lt for _, lt in b.latencies]
        engine = float(b.diag.get("engine_median_ms", "nan"))
    finally:
        b.close()
    return lat, engine


SIZES = ((640, 480), (1920, 1080), (3840, 2160))


def node_variants(baseline: Path):
    """(name, round_trip keyword arguments): relays first, then the nodes."""
    out = [("relay", dict(relay=[])), ("relay_raw_cdr", dict(relay=["--raw-cdr"])),
           ("node", dict(extra=["transport.raw_cdr:=false"])),
           ("node_raw_cdr", dict(extra=["transport.raw_cdr:=true"]))]
    if baseline is not None:
        out.append(("baseline_node", dict(tree=baseline)))
    return out


def overhead(model, quick, baseline: Path, rounds: int, sizes=SIZES):
    count = 12 if quick else 30
    variants = node_variants(baseline)
    runs = {f"{w}x{h}": {name: {"lat": [], "engine": []} for name, _ in variants} for w, h in sizes}
    encoder = {"spinning": [], "no_spinning": []}
    frames = {}
    for w, h in sizes:
        src = iter_frames("auto", loop=True, size=(w, h))
        frames[f"{w}x{h}"] = [array_to_image_msg(next(src), None, "rgb8") for _ in range(4)]
    for r in range(rounds):
        for name, samples in encoder_alone(model).items():
            encoder[name] += samples
        for size, msgs in frames.items():
            # Rotate the order each round, so no variant always runs first or last.
            for name, kwargs in variants[r % len(variants):] + variants[:r % len(variants)]:
                lat, engine = round_trip(model, msgs, count, **kwargs)
                runs[size][name]["lat"] += lat
                runs[size][name]["engine"].append(engine)
                print(f"round {r} {size} {name}: e2e p50 {np.median(lat):.1f} ms, engine {engine:.1f} ms",
                      flush=True)
    results = []
    encoder_ms = float(np.median(encoder["spinning"]))  # bench_default_model.py's figure
    for size, by_name in runs.items():
        row = {"size": size, "frames_per_variant": len(by_name["relay"]["lat"]), "encoder_alone_median_ms": encoder_ms,
               "encoder_alone_no_spinning_median_ms": float(np.median(encoder["no_spinning"]))}
        for name, run in by_name.items():
            e2e = float(np.median(run["lat"]))
            entry = {"e2e_median_ms": e2e, "e2e_p95_ms": float(np.percentile(run["lat"], 95))}
            if "node" in name:
                engine = float(np.median(run["engine"]))
                relay = by_name["relay_raw_cdr" if name == "node_raw_cdr" else "relay"]
                entry.update(engine_median_ms=engine, overhead_median_ms=e2e - engine,
                             beyond_relay_ms=e2e - engine - float(np.median(relay["lat"])),
                             engine_vs_encoder_alone=engine / encoder_ms)
            row[name] = entry
        row["relay_raw_cdr_vs_relay"] = row["relay_raw_cdr"]["e2e_median_ms"] / row["relay"]["e2e_median_ms"]
        results.append(row)
    return results


def compressed_relay(quick, rounds: int):
    """Does raw CDR help CompressedImage input? The relay on 1080p JPEG, both ways, interleaved."""
    src = iter_frames("auto", loop=True, size=(1920, 1080))
    msgs = []
    for _ in range(4):
        msg = CompressedImage(format="jpeg")
        msg.data = byte_array(encode_compressed(next(src), "jpeg", 90))
        msgs.append(msg)
    lat = {"relay": [], "relay_raw_cdr": []}
    for r in range(rounds):
        for name, args in (("relay", []), ("relay_raw_cdr", ["--raw-cdr"]))[::1 if r % 2 == 0 else -1]:
            lat[name] += round_trip("", msgs, 12 if quick else 30, relay=["--compressed", "1920x1080", *args],
                                    compressed=True)[0]
    out = {name: float(np.median(v)) for name, v in lat.items()}
    out["jpeg_kb"] = round(float(np.mean([len(m.data) for m in msgs])) / 1024, 1)
    out["raw_vs_normal"] = out["relay_raw_cdr"] / out["relay"]
    return out


# -- post-processing, this tree against the baseline (each in its own process) --------------------
def postprocess_worker(out_dir: str, repeats: int) -> None:
    """Runs inside the tree under test (PYTHONPATH): times labels + mask + confidence on real logits
    and saves the labels for comparison."""
    from openpixel_ros.semantic import confidence
    from openpixel_ros.visualize import foreground_mask
    seg = Segmentor(None)
    sem = seg.semantic
    times = {}
    for w, h in SIZES:
        src = iter_frames("auto", loop=True, size=(w, h))
        logits = []
        for k in range(3):
            for _ in range(30):
                frame = next(src)
            out, placement, _ = sem.run_model(frame)
            logits.append((out, placement))
        samples = []
        for i in range(repeats):
            out, placement = logits[i % len(logits)]
            t0 = time.perf_counter()
            labels = sem.labels_from_output(out, placement, (h, w))
            foreground_mask(labels, sem.foreground_ids)
            confidence(out, sem.contract.output.kind)
            samples.append((time.perf_counter() - t0) * 1e3)
        times[f"{w}x{h}"] = samples
        np.savez_compressed(Path(out_dir) / f"{w}x{h}.npz",
                            *[sem.labels_from_output(o, p, (h, w)) for o, p in logits])
    seg.close()
    (Path(out_dir) / "times.json").write_text(json.dumps(times))


def postprocess(baseline: Path, quick: bool, rounds: int):
    trees = {"this": REPO} if baseline is None else {"baseline": baseline, "this": REPO}
    samples = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, tree in (list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]):
                out_dir = Path(tmp) / name
                out_dir.mkdir(exist_ok=True)
                env = dict(ENV, PYTHONPATH=os.pathsep.join([str(tree), ENV.get("PYTHONPATH", "")]))
                subprocess.run([sys.executable, __file__, "--postprocess-worker", str(out_dir),
                                "--repeats", str(10 if quick else 30)], env=env, check=True)
                for size, t in json.loads((out_dir / "times.json").read_text()).items():
                    samples[name].setdefault(size, []).extend(t)
        results = []
        for w, h in SIZES:
            size = f"{w}x{h}"
            row = {"size": size, **{f"{name}_median_ms": float(np.median(samples[name][size])) for name in trees}}
            if baseline is not None:
                a, b = (np.load(Path(tmp) / name / f"{size}.npz") for name in ("baseline", "this"))
                row["labels_differing"] = int(sum((a[k] != b[k]).sum() for k in a.files))
                row["labels_total"] = int(sum(a[k].size for k in a.files))
                row["speedup"] = row["baseline_median_ms"] / row["this_median_ms"]
            results.append(row)
    return results


def baseline_tree(ref: str, tmp: str) -> Path:
    """The repository at ``ref`` (e.g. the commit before a change), extracted into ``tmp``."""
    tree = Path(tmp) / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


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
    ap.add_argument("--only", choices=("overhead", "postprocess", "compressed", "backlog", "memory"))
    ap.add_argument("--baseline-ref", default="", help="git revision whose node and post-processing run "
                    "beside this tree's, interleaved (e.g. the commit before a change)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the comparisons")
    ap.add_argument("--sizes", default="", help="overhead frame sizes, e.g. 640x480,1920x1080 (default: all three)")
    ap.add_argument("--postprocess-worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=30, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.postprocess_worker:
        postprocess_worker(args.postprocess_worker, args.repeats)
        return 0
    sizes = tuple(tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")) if args.sizes else SIZES
    rclpy.init()
    out = {"model": args.model or "default", "quick": args.quick, "baseline_ref": args.baseline_ref,
           "rounds": args.rounds, "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = baseline_tree(args.baseline_ref, tmp) if args.baseline_ref else None
        try:
            if args.only in (None, "postprocess"):
                out["postprocess"] = postprocess(baseline, args.quick, args.rounds)
            if args.only in (None, "overhead"):
                out["overhead"] = overhead(args.model, args.quick, baseline, args.rounds, sizes)
            if args.only in (None, "compressed"):
                out["compressed"] = compressed_relay(args.quick, args.rounds)
            if args.only in (None, "backlog"):
                out["backlog"] = backlog(args.model, args.quick)
            if args.only in (None, "memory"):
                out["memory"] = memory(args.model, args.quick)
        finally:
            rclpy.try_shutdown()
    out["load_average_at_end"] = os.getloadavg()
    path = write_results("node" + ("_quick" if args.quick else "") + (f"_{args.only}" if args.only else ""), out)
    if "postprocess" in out:
        print_table("Post-processing (labels at the frame's size, mask, confidence), median ms",
                    ["size", "baseline", "this", "speedup", "labels differing"],
                    [[r["size"], f"{r.get('baseline_median_ms', float('nan')):.2f}", f"{r['this_median_ms']:.2f}",
                      f"{r.get('speedup', float('nan')):.1f}x",
                      f"{r.get('labels_differing', '-')} of {r.get('labels_total', '-')}"] for r in out["postprocess"]])
    if "overhead" in out:
        names = [n for n in ("baseline_node", "node", "node_raw_cdr") if n in out["overhead"][0]]
        print_table("Node overhead (e2e p50 minus the node's engine median) beyond a bare relay of the same "
                    "transport, ms", ["size", "relay", "relay raw", "raw/normal"] + [f"{n} beyond relay" for n in names]
                    + [f"{n} engine" for n in names] + ["encoder alone", "alone, no spin"],
                    [[r["size"], f"{r['relay']['e2e_median_ms']:.1f}", f"{r['relay_raw_cdr']['e2e_median_ms']:.1f}",
                      f"{r['relay_raw_cdr_vs_relay']:.2f}"] + [f"{r[n]['beyond_relay_ms']:.1f}" for n in names]
                     + [f"{r[n]['engine_median_ms']:.1f}" for n in names] + [f"{r['encoder_alone_median_ms']:.1f}",
                                                                                  f"{r['encoder_alone_no_spinning_median_ms']:.1f}"]
                     for r in out["overhead"]])
    if "compressed" in out:
        r = out["compressed"]
        print_table("Relay on CompressedImage (1080p JPEG), e2e p50 ms", ["jpeg KB", "normal", "raw CDR", "raw/normal"],
                    [[r["jpeg_kb"], f"{r['relay']:.2f}", f"{r['relay_raw_cdr']:.2f}", f"{r['raw_vs_normal']:.2f}"]])
    if "backlog" in out:
        r = out["backlog"]
        print_table("Backlog: 30 Hz camera, engine +100 ms",
                    ["p50", "p95", "p95 first", "p95 last", "dropped", "target"],
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
