"""Road-scene objects for click evaluation, cut from a semantic label map (CamVid val).

Per frame, the largest connected region of a compact, clickable class (car, pedestrian,
bicyclist, sign) becomes that frame's object. The click network trains on CamVid *train*
objects only, so CamVid val's make a held-out set of the objects an operator clicks on a
car's camera (``scripts/make_camvid_object_set.py`` writes them out for ``eval clicks``).
Touching cars are one region in a label map, so they count as one object.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

OBJECT_CLASSES = {"Car": 8, "Pedestrian": 9, "Bicyclist": 10, "SignSymbol": 6}  # CamVid ids
MIN_AREA = 800  # pixels: smaller regions are a few pixels of a distant car or a sign's edge


def largest_object(labels: np.ndarray, min_area: int = MIN_AREA) -> Optional[np.ndarray]:
    """The largest connected region (8-connected) of any of OBJECT_CLASSES with at least ``min_area``
    pixels, as an HxW bool mask; None when the frame has none."""
    best_area, best = 0, None
    for class_id in OBJECT_CLASSES.values():
        count, regions, stats, _ = cv2.connectedComponentsWithStats((labels == class_id).astype(np.uint8),
                                                                    connectivity=8)
        for index in range(1, count):
            area = int(stats[index, cv2.CC_STAT_AREA])
            if area >= min_area and area > best_area:
                best_area, best = area, regions == index
    return best


def road_objects(images_dir, labels_dir, min_area: int = MIN_AREA) -> Iterator[tuple]:
    """``(stem, image_path, mask)`` for each frame of ``images_dir`` (sorted) whose label map
    (``labels_dir/<stem>.png``) has an object; FileNotFoundError naming a missing label map."""
    for image_path in sorted(p for p in Path(images_dir).iterdir() if p.is_file()):
        label_path = Path(labels_dir) / f"{image_path.stem}.png"
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise FileNotFoundError(f"no label map {label_path} for {image_path.name}")
        mask = largest_object(labels, min_area)
        if mask is not None:
            yield image_path.stem, image_path, mask
