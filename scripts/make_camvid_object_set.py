"""A road-scene click evaluation set from CamVid val (held out from the click network): per frame, its
largest car, pedestrian, bicyclist or sign region (openpixel_ros.eval.road_objects) as a 0/255 mask
beside the frame, for ``python -m openpixel_ros.eval clicks`` (docs/interactive.md). Written outside the repo.

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


def main() -> int:
    from openpixel_ros.eval.road_objects import MIN_AREA, road_objects

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(CAMVID / "val"))
    parser.add_argument("--labels", default=str(CAMVID / "valannot"))
    parser.add_argument("--min-area", type=int, default=MIN_AREA,
                        help="smallest object in pixels (default: %(default)s)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        for stem, image_path, mask in road_objects(args.images, args.labels, args.min_area):
            cv2.imwrite(str(out / "images" / f"{stem}.png"), cv2.imread(str(image_path), cv2.IMREAD_COLOR))
            cv2.imwrite(str(out / "masks" / f"{stem}.png"), mask.astype(np.uint8) * 255)
            written += 1
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written} objects to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
