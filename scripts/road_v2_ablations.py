"""Road model v2 (issue 20): the short A/B runs on CamVid train -> val, each one change to today's recipe.

    .venv/bin/python scripts/road_v2_ablations.py --write            # config/train/ablations/v2_<name>.yaml
    .venv/bin/python scripts/road_v2_ablations.py --run [NAME ...]   # train each (resumable), then --table
    .venv/bin/python scripts/road_v2_ablations.py --table            # val mIoU and thin classes per run

Every run starts from config/train/road.yaml (same seed, data and schedule shape) for STEPS steps and is
scored once on val at its end; the CSV logs are copied beside the configs.
"""
from __future__ import annotations

import argparse
import copy
import csv
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "config" / "train" / "ablations"
STEPS = 300
# name -> changes to road.yaml (section -> {key: value})
VARIANTS = {
    "base": {},
    "os16": {"model": {"output_stride": 16}},
    "ohem": {"loss": {"ohem_fraction": 0.25}},
    "crop_large": {"data": {"crop_height": 320, "crop_width": 416}},
    "pyramid128": {"model": {"pyramid_channels": 128}},
}
THIN = ("Pole", "SignSymbol", "Fence", "Pedestrian", "Bicyclist")


def config_for(name: str) -> dict:
    config = yaml.safe_load((REPO / "config" / "train" / "road.yaml").read_text())
    for section, changes in VARIANTS[name].items():
        config[section] = {**config.get(section, {}), **copy.deepcopy(changes)}
    config["output_dir"] = f"out/ablations/v2_{name}"
    config["train"].update(max_steps=STEPS, validate_every=STEPS, keep_every=0)
    return config


def write() -> None:
    for name in VARIANTS:
        path = ABLATIONS / f"v2_{name}.yaml"
        path.write_text(f"# issue 20 A/B ({STEPS} steps, train -> val): {VARIANTS[name] or 'today s recipe'}\n"
                        + yaml.safe_dump(config_for(name), sort_keys=False))
        print(f"wrote {path.relative_to(REPO)}")


def run(names) -> None:
    for name in names:
        config = ABLATIONS / f"v2_{name}.yaml"
        subprocess.run([sys.executable, "-m", "openpixel_ros.training.train", "--config", str(config),
                        "--resume", "auto"], cwd=REPO, check=True)
        log = REPO / "out" / "ablations" / f"v2_{name}" / "log.csv"
        (ABLATIONS / f"v2_{name}.csv").write_text(log.read_text())


def table() -> None:
    print("| run | val mIoU | " + " | ".join(THIN) + " | s/step |")
    print("|---|---|" + "---|" * (len(THIN) + 1))
    for name in VARIANTS:
        path = ABLATIONS / f"v2_{name}.csv"
        if not path.is_file():
            continue
        rows = list(csv.DictReader(path.open()))
        scored = [r for r in rows if r.get("val_miou")]
        if not scored:
            continue
        last = scored[-1]
        per_step = float(last["elapsed_s"]) / max(1, int(last["step"]))
        print(f"| {name} | {100 * float(last['val_miou']):.1f} | "
              + " | ".join(f"{100 * float(last['val_iou_' + c]):.1f}" for c in THIN) + f" | {per_step:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--run", nargs="*")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.write:
        write()
    if args.run is not None:
        run(args.run or list(VARIANTS))
        table()
    if args.table:
        table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
