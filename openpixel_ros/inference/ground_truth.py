"""Ground-truth masks of interactive segmentation: the object and the pixels not scored.

A mask whose values are all in {0, 128, 255} and that contains 255 is GrabCut-style (255
object, 128 ignore band, 0 background); any other mask is DAVIS-style (1..254 object, 255
void/ignore, 0 background). The click protocol (:mod:`openpixel_ros.eval.click_protocol`) and
training's click data (:mod:`openpixel_ros.training.data`) read masks here, so both see the
same object.
"""
from __future__ import annotations

import numpy as np

from ..image_header import check_image_file


def split_ground_truth(values: np.ndarray) -> tuple:
    """``(object, ignore)`` bool masks of a ground-truth mask (2-D uint8, or HxWxC: first channel).

    GrabCut rule when the value set is a subset of {0, 128, 255} and includes 255: object =
    255, ignore = 128. Otherwise DAVIS rule: object = 1..254 (every instance id merged),
    ignore = 255. So a 0/255 mask is object = 255, a 0/1 mask object = 1, and a palette mask
    with ids 1, 2, 3 and void 255 has all three ids as the object.
    """
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[..., 0]
    if values.ndim != 2:
        raise ValueError(f"a mask must be HxW or HxWxC, got shape {values.shape}")
    present = set(np.unique(values).tolist())
    if present <= {0, 128, 255} and 255 in present:
        return values == 255, values == 128
    return (values >= 1) & (values <= 254), values == 255


def load_ground_truth(path) -> tuple:
    """``(object, ignore)`` of a mask file; palette PNGs give their indices, RGB their first channel."""
    from PIL import Image

    check_image_file(path)  # the decompression-bomb guard
    with Image.open(path) as image:
        if image.mode in ("P", "L"):
            values = np.asarray(image)
        elif image.mode in ("I;16", "I"):
            values = np.asarray(image)
            if values.max(initial=0) > 255:
                raise ValueError(f"mask {path} has values above 255")
            values = values.astype(np.uint8)
        else:
            values = np.asarray(image.convert("RGB"))[..., 0]
    return split_ground_truth(values)
