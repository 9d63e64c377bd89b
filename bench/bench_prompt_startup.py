"""Start-up cost of each click engine: what the node pays at configure, and at the first click.

    .venv/bin/python bench/bench_prompt_startup.py [--repeats 5] [--engines classical openpixel]

Each run is a fresh Python process (so memory and first-use costs are not shared between runs),
doing what the node does at start with the default parameters: ``Segmentor()`` (the packaged road
model), then reading ``segmentor.prompt_engine`` (``node/startup.py`` does so at configure, so a bad
prompt model fails start-up rather than a click; the library alone creates the engine lazily, at the
first click), then the first click and a second one on a 640x480 frame. Measured per step: wall time
and the process's resident memory (VmRSS) after it, plus the peak (VmHWM) at the end. Runs of the
engines alternate, so a load that comes and goes weighs on each alike; medians over ``--repeats``.

Writes bench/results/prompt_startup.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results  # noqa: E402

STEPS = ("segmentor", "prompt_engine", "first_click", "second_click")


def _memory_mb() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def child(engine: str) -> dict:
    """One start-up in this process; returns seconds and MB per step."""
    import cv2
    import numpy as np

    from openpixel_ros import Segmentor
    from openpixel_ros.interactive import ClickPrompt

    frame = np.full((480, 640, 3), (40, 60, 150), np.uint8)
    cv2.circle(frame, (320, 240), 90, (230, 140, 40), -1)
    out = {"rss_mb": {"imports": _memory_mb()["VmRSS"]}, "ms": {}}

    def step(name, fn):
        t0 = time.perf_counter()
        value = fn()
        out["ms"][name] = (time.perf_counter() - t0) * 1e3
        out["rss_mb"][name] = _memory_mb()["VmRSS"]
        return value

    segmentor = step("segmentor", lambda: Segmentor(prompt_engine=engine))
    step("prompt_engine", lambda: segmentor.prompt_engine)
    first = ClickPrompt.from_lists([(320, 240)], [1], image_size=frame.shape[:2])
    second = ClickPrompt.from_lists([(320, 240), (20, 20)], [1, 0], image_size=frame.shape[:2])
    result = step("first_click", lambda: segmentor.segment_clicks(frame, first, key=1))
    step("second_click", lambda: segmentor.segment_clicks(frame, second, key=1))
    out["peak_rss_mb"] = _memory_mb()["VmHWM"]
    out["engine"] = segmentor.prompt_engine.name
    out["first_click_area"] = int(result.area)
    segmentor.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", nargs="+", default=["classical", "openpixel"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return

    runs = {engine: [] for engine in args.engines}
    for _ in range(args.repeats):
        for engine in args.engines:  # alternate: a varying load weighs on each engine alike
            done = subprocess.run([sys.executable, __file__, "--child", engine], check=True,
                                  capture_output=True, text=True)
            runs[engine].append(json.loads(done.stdout.strip().splitlines()[-1]))

    results = {"frame": "640x480 synthetic (one disc)", "repeats": args.repeats, "engines": {}}
    rows = []
    for engine, samples in runs.items():
        median = {"ms": {s: statistics.median(r["ms"][s] for r in samples) for s in STEPS},
                  "rss_mb": {s: statistics.median(r["rss_mb"][s] for r in samples) for s in ("imports", *STEPS)},
                  "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in samples),
                  "engine": samples[0]["engine"]}
        # Memory the prompt engine adds at configure: RSS after it minus RSS after the Segmentor.
        median["prompt_engine_added_mb"] = statistics.median(
            r["rss_mb"]["prompt_engine"] - r["rss_mb"]["segmentor"] for r in samples)
        median["first_click_added_mb"] = statistics.median(
            r["rss_mb"]["first_click"] - r["rss_mb"]["prompt_engine"] for r in samples)
        results["engines"][engine] = {"median": median, "runs": samples}
        rows.append([engine, f"{median['ms']['segmentor']:.0f}", f"{median['ms']['prompt_engine']:.0f}",
                     f"{median['prompt_engine_added_mb']:.1f}", f"{median['ms']['first_click']:.0f}",
                     f"{median['first_click_added_mb']:.1f}", f"{median['ms']['second_click']:.0f}",
                     f"{median['rss_mb']['second_click']:.0f}", f"{median['peak_rss_mb']:.0f}"])
    path = write_results("prompt_startup", results)
    print_table(f"Start-up of each click engine, medians of {args.repeats} fresh processes ({path.name})",
                ["engine", "Segmentor ms", "engine load ms", "engine +MB", "1st click ms", "1st click +MB",
                 "2nd click ms", "RSS MB", "peak MB"], rows)


if __name__ == "__main__":
    main()
