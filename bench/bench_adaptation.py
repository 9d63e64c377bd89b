"""Cost of the lighting adaptation on a 1080p frame, against baselines timed in the same run.

    .venv/bin/python bench/bench_adaptation.py [--repeats N]

Stages: the score (statistics on the decimated frame + score + smoothing), the whole
``process`` call on a daylight frame (score only: the frame passes untouched), on a dark
frame (tone curve + CLAHE) and on a noisy dusk frame (denoise + tone curve + CLAHE).
Baselines: the same statistics on the full-resolution frame, and one frame copy.
Also the node's path: a dusk frame adapted at the default model's input size
(``Segmentor.adapt`` shrinks a frame larger than the model input before correcting it).
Writes ``bench/results/adaptation.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED, print_table, time_ms, write_results  # noqa: E402
from openpixel_ros.adaptation import (AdaptationConfig, LightingAdapter, complexity_score,  # noqa: E402
                                      compute_stats)
from openpixel_ros.lighting_shifts import darken, dusk  # noqa: E402


def daylight_frame_1080p() -> tuple:
    """A real daylight road frame (CamVid, when ../shared is there) scaled to 1920x1080."""
    camvid = sorted((SHARED / "datasets" / "camvid" / "val").glob("*.jpg"))
    if camvid:
        source, bgr = camvid[0].name, cv2.imread(str(camvid[0]))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        from skimage import data
        source, rgb = "skimage coffee", data.coffee()
    return source, cv2.resize(rgb, (1920, 1080), interpolation=cv2.INTER_LINEAR)


def full_resolution_stats(rgb: np.ndarray):
    """Baseline: the same statistics without decimation."""
    return compute_stats(rgb, max_side=max(rgb.shape[:2]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # the node's adaptation runs on one worker thread
    source, day = daylight_frame_1080p()
    dark = darken(day, 0.25)
    noisy = dusk(day, np.random.default_rng(0))
    adapter = LightingAdapter(AdaptationConfig())

    def process(frame):
        def call():
            adapter.reset()
            return adapter.process(frame)
        return call

    from openpixel_ros.segmentor import Segmentor
    try:
        segmentor = Segmentor()  # the default model, as the node runs it
    except FileNotFoundError:
        segmentor = None  # default model not fetched: the node-path row is left out

    def node_path():
        segmentor.adapter.reset()
        return segmentor.adapt(noisy)

    stages = {
        "score (stats + score), decimated": lambda: complexity_score(compute_stats(day)),
        "baseline: stats at full resolution": lambda: full_resolution_stats(day),
        "baseline: copy of the frame": lambda: day.copy(),
        "process, daylight (identity)": process(day),
        "process, dark 0.25x (curve + CLAHE)": process(dark),
        "process, dusk + noise (denoise + curve + CLAHE)": process(noisy),
    }
    if segmentor is not None:
        stages["node path: dusk + noise, shrunk to the model input first"] = node_path
    slow = ("process, dark", "process, dusk")
    results = {name: time_ms(fn, max(10, args.repeats // 10) if name.startswith(slow) else args.repeats)
               for name, fn in stages.items()}
    for name, frame in (("process, daylight (identity)", day), ("process, dark 0.25x (curve + CLAHE)", dark),
                        ("process, dusk + noise (denoise + curve + CLAHE)", noisy)):
        adapter.reset()
        _, state = adapter.process(frame)
        results[name]["active"] = state.active
    path = write_results("adaptation", {"frame": "1920x1080", "source": source, "opencv_threads": 1,
                                        "stages": results})
    print_table("Lighting adaptation on a 1920x1080 frame (one OpenCV thread)",
                ["stage", "median ms", "p90 ms"],
                [[name, f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}"] for name, r in results.items()])
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
