"""A road-scene click evaluation set from CamVid val: per frame, its largest car, pedestrian, bicyclist or
sign (one connected region of that class, at least --min-area pixels) as a 0/255 mask beside the frame.
The click network never trains on CamVid val (its CamVid objects come from CamVid train), so this set is
held out from it, and it is the kind of object an operator clicks on a car's camera (docs/interactive.md).
Written outside the repo; the regions are the label map's, so touching cars count as one object.

    .venv/bin/python scripts/make_camvid_object_set.py --out /tmp/camvid_val_objects
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"
OBJECT_CLASSES = {"Car": 8, "Pedestrian": 9, "Bicyclist": 10, "SignSymbol": 6}  # compact, clickable objects


def largest_object(labels: np.ndarray, min_area: int):
    """The largest connected region of any of OBJECT_CLASSES with at least ``min_area`` pixels (bool mask), or None."""
    best_area, best = 0, None
    for class_id in OBJECT_CLASSES.values():
        count, regions, stats, _ = cv2.connectedComponentsWithStats((labels == class_id).astype(np.uint8),
                                                                    connectivity=8)
        for index in range(1, count):
            area = int(stats[index, cv2.CC_STAT_AREA])
            if area >= min_area and area > best_area:
                best_area, best = area, regions == index
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(CAMVID / "val"))
    parser.add_argument("--labels", default=str(CAMVID / "valannot"))
    parser.add_argument("--min-area", type=int, default=800, help="smallest object in pixels (default: %(default)s)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    written = 0
    for image_path in sorted(Path(args.images).glob("*")):
        label_path = Path(args.labels) / f"{image_path.stem}.png"
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if labels is None:
            print(f"error: no label map {label_path} for {image_path.name}", file=sys.stderr)
            return 1
        region = largest_object(labels, args.min_area)
        if region is None:
            continue
        cv2.imwrite(str(out / "images" / f"{image_path.stem}.png"), cv2.imread(str(image_path), cv2.IMREAD_COLOR))
        cv2.imwrite(str(out / "masks" / f"{image_path.stem}.png"), region.astype(np.uint8) * 255)
        written += 1
    print(f"wrote {written} objects to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
