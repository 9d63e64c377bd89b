"""Click prompts: positive/negative points and scribbles, an optional box and an optional previous mask.

Coordinates are pixels of the segmented image, x to the right and y down. A point
``(x, y)`` names the pixel in column ``floor(x)`` and row ``floor(y)``, so it is inside a
``W x H`` image when ``0 <= x < W`` and ``0 <= y < H``.

A scribble is a polyline: one or more such points, joined in order, with one label for the
whole line. Every vertex must be inside the image (so is the whole line). All scribbles of a
prompt together hold at most :data:`MAX_SCRIBBLE_POINTS` points, which bounds what an engine
spends rasterising them; its clicks at most :data:`MAX_POINTS`.

A box is ``(x0, y0, x1, y1)`` with the top-left corner inclusive and the bottom-right
corner exclusive: it covers columns ``x0 .. x1-1`` and rows ``y0 .. y1-1``, exactly like a
ROS ``RegionOfInterest`` ``(x_offset, y_offset, x_offset + width, y_offset + height)``.
It is inside the image when ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H``.

Every check happens in :meth:`ClickPrompt.from_lists`, so engines may trust a prompt, and
a bad request fails with a one-line :class:`PromptError` that names what was wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

FOREGROUND = 1
BACKGROUND = 0
#: Most points all scribbles of one prompt may hold together (a request cannot make rendering explode).
MAX_SCRIBBLE_POINTS = 10_000
#: Most click points one prompt may hold: a person clicks tens; a million took 13.7 s and stalled
#: every request behind it.
MAX_POINTS = 1_000


class PromptError(ValueError):
    """A click prompt is invalid, or an engine cannot serve it. The message is one line."""


def _fmt(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(float(value))


@dataclass(frozen=True)
class ClickPrompt:
    """A validated prompt; build it with :meth:`from_lists`.

    ``points`` float32 [N, 2] (x, y); ``labels`` uint8 [N] (1 object, 0 background);
    ``box`` ``(x0, y0, x1, y1)`` floats or None; ``previous_mask`` HxW bool or None;
    ``previous_logits`` an engine's own low-resolution logits from an earlier
    :class:`~openpixel_ros.interactive.base.PromptResult` (``low_res_logits``) or None;
    ``image_size`` ``(height, width)`` the prompt was validated for;
    ``scribbles`` a tuple of read-only float32 [K, 2] polylines (x, y), K >= 1;
    ``scribble_labels`` uint8 [S], one 1/0 per scribble.
    """

    points: np.ndarray
    labels: np.ndarray
    box: Optional[tuple] = None
    previous_mask: Optional[np.ndarray] = None
    previous_logits: Optional[np.ndarray] = None
    image_size: Optional[tuple] = None
    scribbles: tuple = ()
    scribble_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    @classmethod
    def from_lists(cls, points: Sequence, labels: Sequence, box: Optional[Sequence] = None,
                   previous_mask: Optional[np.ndarray] = None, *, image_size: Sequence[int],
                   previous_logits: Optional[np.ndarray] = None, scribbles: Optional[Sequence] = None,
                   scribble_labels: Optional[Sequence] = None) -> "ClickPrompt":
        """Validate and build a prompt for an image of ``image_size = (height, width)``.

        ``points``: ``[(x, y), ...]`` or an [N, 2] array (may be empty when a box or a
        scribble is given); ``labels``: one 0/1 per point; ``box``: ``(x0, y0, x1, y1)`` or None;
        ``previous_mask``: HxW, non-zero = object (bool, 0/1 or 0/255), or None;
        ``scribbles``: polylines, each ``[(x, y), ...]`` or a [K, 2] array with K >= 1;
        ``scribble_labels``: one 0/1 per scribble.
        Raises :class:`PromptError` naming the first problem found.
        """
        height, width = (int(v) for v in image_size)
        if height <= 0 or width <= 0:
            raise PromptError(f"image size {width}x{height} is empty")
        size_text = f"{width}x{height}"

        if points is not None and len(points) > MAX_POINTS:
            raise PromptError(f"{len(points)} points; a prompt holds at most {MAX_POINTS}")
        try:
            point_array = np.asarray(points if points is not None else [], dtype=np.float64)
        except (TypeError, ValueError):
            raise PromptError("points must be (x, y) number pairs") from None
        if point_array.size == 0:
            point_array = np.zeros((0, 2))
        if point_array.ndim != 2 or point_array.shape[1] != 2:
            raise PromptError(f"points must be (x, y) pairs, got an array of shape {point_array.shape}")
        try:
            label_array = np.asarray(labels if labels is not None else [], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise PromptError("labels must be numbers (1 = object, 0 = background)") from None

        if len(label_array) != len(point_array):
            raise PromptError(f"got {len(label_array)} labels for {len(point_array)} points; "
                              "give one label per point")
        for index, ((x, y), label) in enumerate(zip(point_array, label_array)):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise PromptError(f"point {index} ({_fmt(x)}, {_fmt(y)}) has a non-finite coordinate")
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(f"point {index} ({_fmt(x)}, {_fmt(y)}) is outside the {size_text} image")
            if label not in (FOREGROUND, BACKGROUND):
                raise PromptError(f"label {index} is {label:g}; labels must be 1 (object) or 0 (background)")

        scribble_arrays, scribble_label_array = _check_scribbles(scribbles, scribble_labels, width, height,
                                                                 size_text)

        box_tuple = None
        if box is not None:
            box_tuple = _check_box(box, width, height, size_text)
        if len(point_array) == 0 and box_tuple is None and not scribble_arrays:
            raise PromptError("the prompt has no points, no scribbles and no box; give at least one of them")

        mask = None
        if previous_mask is not None:
            mask = np.asarray(previous_mask)
            if mask.ndim == 3 and mask.shape[2] == 1:
                mask = mask[..., 0]
            if mask.ndim != 2:
                raise PromptError(f"previous mask must be a single-channel HxW image, got shape {mask.shape}")
            if mask.shape != (height, width):
                raise PromptError(f"previous mask is {mask.shape[1]}x{mask.shape[0]} "
                                  f"but the image is {size_text}")
            mask = np.ascontiguousarray(mask != 0)
            mask.flags.writeable = False

        logits = None
        if previous_logits is not None:
            logits = np.asarray(previous_logits, dtype=np.float32)
            if logits.ndim < 2 or not np.all(np.isfinite(logits)):
                raise PromptError("previous logits must be a finite 2-D (or 1x1xHxW) array")

        point_array = point_array.astype(np.float32)
        label_array = label_array.astype(np.uint8)
        point_array.flags.writeable = False
        label_array.flags.writeable = False
        return cls(point_array, label_array, box_tuple, mask, logits, (height, width),
                   scribble_arrays, scribble_label_array)

    @property
    def positive_points(self) -> np.ndarray:
        """[K, 2] points labelled object."""
        return self.points[self.labels == FOREGROUND]

    @property
    def negative_points(self) -> np.ndarray:
        """[K, 2] points labelled background."""
        return self.points[self.labels == BACKGROUND]

    @property
    def positive_scribbles(self) -> tuple:
        """The [K, 2] polylines labelled object."""
        return tuple(s for s, label in zip(self.scribbles, self.scribble_labels) if label == FOREGROUND)

    @property
    def negative_scribbles(self) -> tuple:
        """The [K, 2] polylines labelled background."""
        return tuple(s for s, label in zip(self.scribbles, self.scribble_labels) if label == BACKGROUND)

    def pixel_indices(self) -> np.ndarray:
        """int [N, 2] (column, row) of the pixel each point falls in."""
        return np.floor(self.points).astype(np.int64).reshape(-1, 2)


def _check_scribbles(scribbles, scribble_labels, width: int, height: int, size_text: str) -> tuple:
    """``(tuple of read-only float32 [K, 2] arrays, read-only uint8 [S] labels)``, or PromptError."""
    scribbles = [] if scribbles is None else scribbles
    if isinstance(scribbles, np.ndarray) and scribbles.ndim == 2:
        raise PromptError("scribbles must be a list of polylines, each a list of (x, y) pairs")
    try:
        scribbles = list(scribbles)
        label_array = np.asarray(scribble_labels if scribble_labels is not None else [], dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError("scribble labels must be numbers (1 = object, 0 = background)") from None
    if label_array.ndim > 1:
        raise PromptError("scribble labels must be one number per scribble (1 = object, 0 = background)")
    label_array = label_array.reshape(-1)
    if len(label_array) != len(scribbles):
        raise PromptError(f"got {len(label_array)} scribble labels for {len(scribbles)} scribbles; "
                          "give one label per scribble")

    arrays, total = [], 0
    for index, (line, label) in enumerate(zip(scribbles, label_array)):
        if label not in (FOREGROUND, BACKGROUND):
            raise PromptError(f"scribble {index} label is {label:g}; "
                              "labels must be 1 (object) or 0 (background)")
        try:
            array = np.asarray(line, dtype=np.float64)
        except (TypeError, ValueError):
            raise PromptError(f"scribble {index} must be a list of (x, y) number pairs") from None
        if array.size == 0:
            raise PromptError(f"scribble {index} is empty; a scribble needs at least one point")
        if array.ndim != 2 or array.shape[1] != 2:
            raise PromptError(f"scribble {index} must be a list of (x, y) pairs, "
                              f"got an array of shape {array.shape}")
        total += len(array)
        if total > MAX_SCRIBBLE_POINTS:
            raise PromptError(f"the scribbles hold more than {MAX_SCRIBBLE_POINTS} points; "
                              "send fewer or simplify them")
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            k = int(np.argmin(finite))
            raise PromptError(f"scribble {index} point {k} ({_fmt(array[k, 0])}, {_fmt(array[k, 1])}) "
                              "has a non-finite coordinate")
        inside = (array[:, 0] >= 0) & (array[:, 0] < width) & (array[:, 1] >= 0) & (array[:, 1] < height)
        if not inside.all():
            k = int(np.argmin(inside))
            raise PromptError(f"scribble {index} point {k} ({_fmt(array[k, 0])}, {_fmt(array[k, 1])}) "
                              f"is outside the {size_text} image")
        array = array.astype(np.float32)
        array.flags.writeable = False
        arrays.append(array)
    label_array = label_array.astype(np.uint8)
    label_array.flags.writeable = False
    return tuple(arrays), label_array


def _check_box(box, width: int, height: int, size_text: str) -> tuple:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise PromptError("box must be 4 numbers (x0, y0, x1, y1)") from None
    if len(values) != 4:
        raise PromptError(f"box must be 4 numbers (x0, y0, x1, y1), got {len(values)}")
    text = "(" + ", ".join(_fmt(v) for v in values) + ")"
    if not all(math.isfinite(v) for v in values):
        raise PromptError(f"box {text} has a non-finite coordinate")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise PromptError(f"box {text} is degenerate: it needs x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise PromptError(f"box {text} is outside the {size_text} image")
    return values
