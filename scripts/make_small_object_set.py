"""A small-object variant of an evaluation set: each scene shrunk to 1/3 in the middle of a frame of
its original size (edges replicated; masks padded with background), as a distant object in a large
camera frame. Used to measure the click engine's zoom-in (docs/interactive.md); written outside the repo.

    .venv/bin/python scripts/make_small_object_set.py [--images DIR --masks DIR] --out /tmp/grabcut_small
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
GRABCUT = REPO.parent / "shared" / "datasets" / "grabcut"


def main() -> int:
    from openpixel_ros.eval.common import pair_by_stem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(GRABCUT / "images"))
    parser.add_argument("--masks", default=str(GRABCUT / "masks"))
    parser.add_argument("--factor", type=int, default=3, help="shrink factor (default: %(default)s)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for stem, image_path, mask_path in pair_by_stem(args.images, args.masks):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        mask = np.asarray(Image.open(mask_path))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        h, w = mask.shape
        sh, sw = h // args.factor, w // args.factor
        top, left = (h - sh) // 2, (w - sw) // 2
        pad = (top, h - sh - top, left, w - sw - left)
        small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(out / "images" / f"{stem}.png"), cv2.copyMakeBorder(small, *pad, cv2.BORDER_REPLICATE))
        cv2.imwrite(str(out / "masks" / f"{stem}.png"),
                    cv2.copyMakeBorder(small_mask, *pad, cv2.BORDER_CONSTANT, value=0))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
