"""The click model's learning curve: every kept checkpoint of a click run through the product path.

    .venv/bin/python scripts/click_learning_curve.py [--run out/train/click] [--images DIR --masks DIR]
        [--json bench/results/click_learning_curve.json]

For each ``step_<N>.pt`` (and ``last.pt``) in the run folder: export it (a click network's graph, or the
road model's ONNX pair), load it in the
``openpixel`` prompt engine with the shipped options (zoom-in, guided boundaries) and run the
standard click protocol (``eval clicks``) on the evaluation set, GrabCut by default. The
checkpoint that ships is the run's last one whatever this curve says: it reports, it does not
select.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRABCUT = REPO.parent / "shared" / "datasets" / "grabcut"


def evaluate_checkpoint(checkpoint: Path, pairs, folder: Path, max_clicks: int, threads: int) -> dict:
    from openpixel_ros.eval.click_protocol import evaluate_sample, summarize
    from openpixel_ros.inference.ground_truth import load_ground_truth
    from openpixel_ros.eval.common import load_rgb
    from openpixel_ros.export.onnx_export import export_openpixel
    from openpixel_ros.interactive import create_prompt_engine
    from openpixel_ros.model.openpixel import load_checkpoint_model

    import torch

    from openpixel_ros.export.click_network import export_click_network
    from openpixel_ros.model.click_network import CLICK_NETWORK_CHECKPOINT, load_click_network_checkpoint

    if torch.load(checkpoint, map_location="cpu", weights_only=True).get("format") == CLICK_NETWORK_CHECKPOINT:
        network, saved = load_click_network_checkpoint(checkpoint)  # issue 21's click network
        model_file = export_click_network(network, folder / f"{checkpoint.stem}.onnx",
                                          sigma=saved["train_config"]["clicks"]["sigma"])
    else:  # the road model with its late-fusion click decoder (issue 12)
        model, info, _ = load_checkpoint_model(checkpoint)
        model_file, _ = export_openpixel(model, info, folder / f"{checkpoint.stem}.onnx")
    engine = create_prompt_engine("openpixel", str(model_file), threads=threads)
    samples = []
    for stem, image_path, mask_path in pairs:
        ground_truth, ignore = load_ground_truth(mask_path)
        samples.append(evaluate_sample(engine, load_rgb(image_path), ground_truth, ignore, name=stem,
                                       max_clicks=max_clicks, key=("curve", stem)))
    engine.close()
    return summarize(samples, max_clicks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "out" / "train" / "click"))
    parser.add_argument("--images", default=str(GRABCUT / "images"))
    parser.add_argument("--masks", default=str(GRABCUT / "masks"))
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "click_learning_curve.json"))
    args = parser.parse_args()
    from openpixel_ros.eval.common import pair_by_stem

    run = Path(args.run)
    # Recorded relative to the repository, so the JSON names no path of the machine that wrote it.
    run_name, set_name = (os.path.relpath(os.path.abspath(p), REPO) for p in (args.run, args.images))
    steps = sorted((int(re.match(r"step_(\d+)", p.stem).group(1)), p) for p in run.glob("step_*.pt"))
    if not steps:
        raise SystemExit(f"error: no step_<N>.pt checkpoints in {run}")
    pairs = pair_by_stem(args.images, args.masks)
    done = {}  # steps already in the JSON of the same run and set are kept (the script resumes)
    if Path(args.json).is_file():
        old = json.loads(Path(args.json).read_text())
        if old.get("run") == run_name and old.get("set") == set_name:
            done = {row["step"]: row for row in old["curve"]}
    rows = []

    def write_curve():
        Path(args.json).write_text(json.dumps({"run": run_name, "images": len(pairs), "set": set_name,
                                               "options": "zoom-in on, guided boundaries", "curve": rows}, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        for step, path in steps:
            if step in done:
                rows.append(done[step])
                continue
            summary = evaluate_checkpoint(path, pairs, Path(tmp), args.max_clicks, args.threads)
            rows.append({"step": step, **{k: summary[k] for k in ("noc85", "noc90", "over20_90", "miou_at")}})
            print(f"step {step}: NoC@85 {summary['noc85']:.2f}  NoC@90 {summary['noc90']:.2f}  "
                  f"never 90: {summary['over20_90']}  mIoU@1/3/5 "
                  + "/".join(f"{summary['miou_at'][k]:.3f}" for k in ("1", "3", "5")), flush=True)
            write_curve()  # after each checkpoint: an interrupted curve resumes from here
    write_curve()
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
