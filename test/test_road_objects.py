"""Road-scene click objects cut from a label map (openpixel_ros.eval.road_objects)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from openpixel_ros.eval.road_objects import OBJECT_CLASSES, largest_object, road_objects

CAR, SIGN, ROAD, UNLABELLED = OBJECT_CLASSES["Car"], OBJECT_CLASSES["SignSymbol"], 3, 11


def test_the_largest_region_of_any_object_class_wins_and_regions_stay_apart():
    labels = np.full((120, 160), ROAD, np.uint8)
    labels[10:40, 10:40] = CAR       # 900 px
    labels[10:40, 50:90] = CAR       # 1,200 px, apart from the first car
    labels[60:100, 100:130] = SIGN   # 1,200 px too, found later: a tie keeps the first
    labels[100:120, 0:160] = UNLABELLED
    mask = largest_object(labels, min_area=800)
    assert mask.dtype == bool and mask.sum() == 1200 and mask[20, 60] and not mask[20, 20] and not mask[70, 110]
    labels[60:100, 95:130] = SIGN    # 1,400 px: now the sign
    assert largest_object(labels, min_area=800)[70, 110]
    assert largest_object(labels, min_area=1500) is None
    assert largest_object(np.full((8, 8), ROAD, np.uint8)) is None


def test_frames_without_an_object_are_left_out_and_a_missing_label_map_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for stem, fill in (("a", CAR), ("b", ROAD)):
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.jpg"), np.zeros((40, 40, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "labels" / f"{stem}.png"), np.full((40, 40), fill, np.uint8))
    found = list(road_objects(tmp_path / "images", tmp_path / "labels", min_area=100))
    assert [(stem, mask.sum()) for stem, _, mask in found] == [("a", 1600)]
    cv2.imwrite(str(tmp_path / "images" / "c.jpg"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="c.png"):
        list(road_objects(tmp_path / "images", tmp_path / "labels"))
