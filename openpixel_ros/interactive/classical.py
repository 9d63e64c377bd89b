"""The classical prompt engine: GrabCut seeded by clicks and scribbles, with no weights at all.

How a prompt becomes a mask (all at a working resolution whose longest side is
``work_size``, 320 by default, because GrabCut costs grow faster than the pixel count):

1. **Geodesic competition.** Each pixel's colour-edge-weighted (geodesic) distance to the
   nearest positive click is compared with its distance to the nearest negative click or
   to the image border (the box's border when there is a box). The closer side gives the
   pixel its *probable* label. A pixel much closer to one side (distance ratio below
   ``hard_ratio``) gets a *definite* label: that is what makes a correction click flip
   its whole region rather than only the pixels around it, even where colours alone
   cannot tell object from background.
2. **Previous mask.** When given, it is the probable labelling away from the clicks
   (beyond ``reach`` times the clicks' typical geodesic distance to the border); near the
   clicks the competition of step 1 decides.
3. **Seeds.** Every positive click is a disc of definite foreground, every negative click
   a disc of definite background (``seed_radius`` working pixels); outside a box is
   definite background. A scribble is its polyline swept by that disc, so it seeds like a
   click at each of its pixels; in steps 1, 2 and 5 every pixel of a scribble counts as a
   click of its label.
4. **GrabCut** (OpenCV) refines the labelling with foreground/background colour GMMs and a
   contrast-sensitive smoothness term. The GMMs are initialised here by k-means on a
   4000-pixel sample instead of OpenCV's k-means++ over every pixel, which alone cost
   about half a second per click at 320 pixels. An iteration that would leave less than
   ``collapse_ratio`` of the foreground is undone (the colour models ran away).
5. **Connectivity.** Only foreground components containing a positive click are kept.
   Without positive clicks (a box, maybe with negative clicks) every component is kept
   except those a negative click lands in: that click rejects its whole blob.
6. **Upsampling** to the frame's size by linear interpolation of the binary mask
   (thresholded at 0.5, which smooths the staircase); then the clicked pixels themselves
   and the scribbles' own 1-pixel lines are set to their label, so the mask always contains
   every positive click and scribble and excludes every negative one.

Score: the Bhattacharyya (Hellinger) distance between the colour histogram of the mask
and that of a ring of background around it, in [0, 1]. 1 means the object's colours are
absent from its surroundings (a cut GrabCut can be confident in); 0 means object and
surroundings look alike, so the boundary is a guess. An empty mask scores 0.

The engine returns one mask, also when several candidates are asked for.
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.graph import MCP_Geometric

from .base import PromptEngine, PromptResult
from .prompts import ClickPrompt, PromptError

_GMM_COMPONENTS = 5  # OpenCV's GrabCut GMM size; its model array is 13 doubles per component


class ClassicalEngine(PromptEngine):
    """GrabCut-based click segmentation (see the module docstring).

    ``work_size``: longest side of the working resolution; ``iterations``: GrabCut
    iterations per click; ``seed_radius``: radius of a click's definite disc in working
    pixels; ``seed``: random seed of the colour-model initialisation (results are
    deterministic for a given seed); ``collapse_ratio``, ``reach`` and ``hard_ratio`` as in
    the module docstring (defaults tuned on the first 25 GrabCut images).
    """

    name = "classical"

    def __init__(self, work_size: int = 320, iterations: int = 3, seed_radius: int = 3, seed: int = 0,
                 collapse_ratio: float = 0.1, reach: float = 1.0, hard_ratio: float = 0.3):
        super().__init__()
        if work_size < 32 or iterations < 1 or seed_radius < 0 or hard_ratio >= 1:
            raise PromptError("classical engine: work_size >= 32, iterations >= 1, seed_radius >= 0 "
                              "and hard_ratio < 1 are required")
        self.work_size = int(work_size)
        self.iterations = int(iterations)
        self.seed_radius = int(seed_radius)
        self.seed = int(seed)
        self.reach = float(reach)
        self.hard_ratio = float(hard_ratio)
        self.collapse_ratio = float(collapse_ratio)
        self._small = None
        self._scale = (1.0, 1.0)
        self._edge_cost = None
        self._border_distance = None

    # -- per frame ---------------------------------------------------------------------
    def _prepare(self, rgb: np.ndarray) -> None:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.work_size / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb.copy()
        self._small = small
        self._scale = (size[0] / width, size[1] / height)
        self._edge_cost = _edge_cost(small)
        self._border_distance = _geodesic(self._edge_cost, _border_mask(small.shape[:2]))

    # -- per prompt --------------------------------------------------------------------
    def _predict(self, prompt: ClickPrompt, multimask: bool) -> PromptResult:
        seeds = self._small_points(prompt)
        lines = self._small_scribbles(prompt)
        # Every pixel of a scribble is a click of its label for the geodesics and connectivity.
        shape = self._small.shape[:2]
        line_pixels = [(_line_pixels(shape, line), label) for line, label in lines]
        positive = [p for p, label in seeds if label == 1] + [p for pixels, label in line_pixels if label == 1
                                                              for p in pixels]
        negative = [p for p, label in seeds if label == 0] + [p for pixels, label in line_pixels if label == 0
                                                              for p in pixels]

        box_mask = None
        if prompt.box is not None:
            box_mask = self._small_box(prompt.box)

        labels = self._initial_labels(prompt, positive, negative, box_mask)
        # Scribbles first, then clicks (the precise corrections); later ones override earlier ones.
        for line, label in lines:
            _draw_polyline(labels, line, int(cv2.GC_FGD if label else cv2.GC_BGD), self.seed_radius)
        for point, label in seeds:
            cv2.circle(labels, point, self.seed_radius, int(cv2.GC_FGD if label else cv2.GC_BGD), -1)
        for line, label in lines:
            _draw_polyline(labels, line, int(cv2.GC_FGD if label else cv2.GC_BGD), 0)
        for point, label in seeds:
            labels[point[1], point[0]] = cv2.GC_FGD if label else cv2.GC_BGD

        labels = self._grabcut(labels)
        foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        if positive:
            foreground = _components_containing(foreground, positive)
        elif negative:
            # No positive click: a negative click says its whole blob is not the object.
            # The click's own seed disc is background, so look just around it.
            foreground = foreground & ~_components_near(foreground, negative, self.seed_radius + 2)

        mask = self._upsample(foreground)
        height, width = mask.shape
        for line, label in zip(prompt.scribbles, prompt.scribble_labels):
            pixels = np.minimum(np.floor(line).astype(np.int32), [width - 1, height - 1])
            mask[_line_mask(mask.shape, pixels)] = bool(label)
        for (x, y), label in zip(prompt.pixel_indices(), prompt.labels):
            mask[y, x] = bool(label)
        score = _separation_score(self._small, foreground)
        return PromptResult(masks=[mask], scores=[score])

    def _small_points(self, prompt: ClickPrompt) -> list:
        """``[((col, row), label)]`` of the clicks at working resolution, in click order."""
        small_h, small_w = self._small.shape[:2]
        seeds = []
        for (x, y), label in zip(prompt.points, prompt.labels):
            col = min(small_w - 1, int(x * self._scale[0]))
            row = min(small_h - 1, int(y * self._scale[1]))
            seeds.append(((col, row), int(label)))
        return seeds

    def _small_scribbles(self, prompt: ClickPrompt) -> list:
        """``[(int32 [K, 2] (col, row) vertices, label)]`` of the scribbles at working resolution."""
        small_h, small_w = self._small.shape[:2]
        lines = []
        for line, label in zip(prompt.scribbles, prompt.scribble_labels):
            cols = np.minimum(small_w - 1, (line[:, 0] * self._scale[0]).astype(np.int32))
            rows = np.minimum(small_h - 1, (line[:, 1] * self._scale[1]).astype(np.int32))
            lines.append((np.stack([cols, rows], axis=1), int(label)))
        return lines

    def _small_box(self, box) -> np.ndarray:
        small_h, small_w = self._small.shape[:2]
        x0, y0, x1, y1 = box
        c0, r0 = int(x0 * self._scale[0]), int(y0 * self._scale[1])
        c1 = max(c0 + 1, min(small_w, int(np.ceil(x1 * self._scale[0]))))
        r1 = max(r0 + 1, min(small_h, int(np.ceil(y1 * self._scale[1]))))
        inside = np.zeros((small_h, small_w), bool)
        inside[r0:r1, c0:c1] = True
        return inside

    def _initial_labels(self, prompt, positive, negative, box_mask) -> np.ndarray:
        """GrabCut labels before the clicks' discs: probable foreground/background from the
        geodesic competition (or the previous mask away from the clicks), definite where a
        pixel is much closer to one side's clicks than to the other side."""
        shape = self._small.shape[:2]
        fg_distance = _geodesic(self._edge_cost, _points_mask(shape, positive))
        neg_distance = _geodesic(self._edge_cost, _points_mask(shape, negative))
        outside_distance = (self._border_distance if box_mask is None
                            else _geodesic(self._edge_cost, _border_mask(shape, box_mask)))
        bg_distance = np.minimum(neg_distance, outside_distance)
        if positive:
            probable_fg = fg_distance < bg_distance
        elif box_mask is not None:
            probable_fg = box_mask.copy()
        else:  # negative clicks only: nothing says where the object is
            probable_fg = np.zeros(shape, bool)

        if prompt.previous_mask is not None:
            previous = cv2.resize(prompt.previous_mask.view(np.uint8), (shape[1], shape[0]),
                                  interpolation=cv2.INTER_AREA) > 0
            click_distance = np.minimum(fg_distance, neg_distance)
            click_seeds = _points_mask(shape, positive + negative)
            # Near the clicks the geodesic labels win, so a correction flips its whole region;
            # "near" is relative to how far the clicks are from the image border.
            reach = self.reach * float(np.median(self._border_distance[click_seeds]))
            probable_fg = np.where(click_distance < reach, probable_fg, previous)

        labels = np.where(probable_fg, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        if box_mask is not None:
            labels[~box_mask] = cv2.GC_BGD
        if positive and self.hard_ratio > 0:
            labels[fg_distance < self.hard_ratio * bg_distance] = cv2.GC_FGD
            labels[neg_distance < self.hard_ratio * fg_distance] = cv2.GC_BGD
            if box_mask is not None:
                labels[~box_mask] = cv2.GC_BGD
        return labels

    def _grabcut(self, labels: np.ndarray) -> np.ndarray:
        """GrabCut iterations on ``labels`` (GC_* values), colour models seeded from a sample."""
        rng = np.random.default_rng(self.seed)
        pixels = self._small.reshape(-1, 3).astype(np.float64)
        fg_model = bg_model = None
        for _ in range(self.iterations):
            is_fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
            if is_fg.all() or not is_fg.any():
                break  # one side is empty: OpenCV cannot learn its colour model
            if fg_model is None:
                fg_model = _fit_gmm(pixels[is_fg.reshape(-1)], rng)
                bg_model = _fit_gmm(pixels[~is_fg.reshape(-1)], rng)
            before = labels.copy()
            # One iteration per call (the models are updated in place) so the checks run
            # between re-learning steps.
            cv2.grabCut(self._small, labels, None, bg_model, fg_model, 1, cv2.GC_EVAL)
            after_fg = np.count_nonzero((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD))
            if after_fg < self.collapse_ratio * np.count_nonzero(is_fg):
                return before  # the colour models ran away from the clicks: keep the last good cut
            if np.array_equal(before, labels):
                break
        return labels

    def _upsample(self, small_mask: np.ndarray) -> np.ndarray:
        height, width = self._image.shape[:2]
        if small_mask.shape == (height, width):
            return small_mask.copy()
        soft = cv2.resize(small_mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return soft > 0.5


# -- helpers ---------------------------------------------------------------------------
def _edge_cost(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel travel cost for geodesic distances: 1 in flat areas, high across colour edges."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.sqrt((gx * gx + gy * gy).sum(axis=2))
    return (1.0 + 4.0 * magnitude / (magnitude.mean() + 1e-6)).astype(np.float64)


def _geodesic(cost: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Edge-weighted distance from the ``seeds`` pixels (inf everywhere when there are none)."""
    starts = np.argwhere(seeds)
    if len(starts) == 0:
        return np.full(cost.shape, np.inf)
    distance, _ = MCP_Geometric(cost).find_costs(starts)
    return np.ascontiguousarray(distance)  # scikit-image returns Fortran order


def _points_mask(shape, points) -> np.ndarray:
    mask = np.zeros(shape, bool)
    if len(points):
        cols, rows = np.asarray(points, np.int64).reshape(-1, 2).T
        mask[rows, cols] = True
    return mask


def _draw_polyline(canvas: np.ndarray, vertices: np.ndarray, value: int, radius: int) -> None:
    """Draw the polyline through ``vertices`` ((col, row) int32 [K, 2]) swept by a disc of ``radius``."""
    if len(vertices) > 1:
        cv2.polylines(canvas, [vertices.reshape(-1, 1, 2)], False, value, 2 * radius + 1)
    if radius > 0 or len(vertices) == 1:
        for col, row in vertices:  # round joins and ends, like a click's disc
            cv2.circle(canvas, (int(col), int(row)), radius, value, -1)


def _line_mask(shape, vertices: np.ndarray) -> np.ndarray:
    """Bool mask of the 1-pixel polyline through ``vertices``."""
    canvas = np.zeros(shape, np.uint8)
    _draw_polyline(canvas, vertices, 1, 0)
    return canvas > 0


def _line_pixels(shape, vertices: np.ndarray) -> list:
    """``[(col, row)]`` of the 1-pixel polyline through ``vertices``."""
    rows, cols = np.nonzero(_line_mask(shape, vertices))
    return list(zip(cols.tolist(), rows.tolist()))


def _border_mask(shape, region=None) -> np.ndarray:
    """The outermost pixels of the image, or of ``region`` (a bool mask) when given."""
    if region is None:
        region = np.ones(shape, bool)
    inner = cv2.erode(region.view(np.uint8), np.ones((3, 3), np.uint8), borderValue=0) > 0
    return region & ~inner


def _fit_gmm(samples: np.ndarray, rng, max_samples: int = 4000) -> np.ndarray:
    """A GrabCut colour model (OpenCV's 1x65 layout) fitted by k-means on a random sample."""
    if len(samples) > max_samples:
        samples = samples[rng.choice(len(samples), max_samples, replace=False)]
    k = min(_GMM_COMPONENTS, len(samples))
    data = samples.astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 10, 0.5)
    cv2.setRNGSeed(int(rng.integers(1 << 30)))
    _, assignment, _ = cv2.kmeans(data, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    assignment = assignment.reshape(-1)
    weights = np.zeros(_GMM_COMPONENTS)
    means = np.zeros((_GMM_COMPONENTS, 3))
    covariances = np.tile(np.eye(3) * 1e-2, (_GMM_COMPONENTS, 1, 1))
    for component in range(k):
        members = samples[assignment == component]
        if len(members) == 0:
            continue
        weights[component] = len(members) / len(samples)
        means[component] = members.mean(axis=0)
        centred = members - means[component]
        # The small ridge keeps single-colour components invertible, as OpenCV does.
        covariances[component] = centred.T @ centred / len(members) + np.eye(3) * 1e-2
    return np.concatenate([weights, means.ravel(), covariances.ravel()]).reshape(1, -1)


def _components_near(mask: np.ndarray, points, radius: int) -> np.ndarray:
    """The connected components (8-connected) of ``mask`` within ``radius`` of one of ``points``."""
    count, components = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    # The points' discs: dilating their pixels by a disc is one call however many points there are.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near = cv2.dilate(_points_mask(mask.shape, points).view(np.uint8), kernel)
    keep = set(np.unique(components[near > 0]).tolist()) - {0}
    return np.isin(components, sorted(keep))


def _components_containing(mask: np.ndarray, points) -> np.ndarray:
    """The connected components (8-connected) of ``mask`` that contain one of ``points``."""
    count, components = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    cols, rows = np.asarray(points, np.int64).reshape(-1, 2).T
    keep = set(np.unique(components[rows, cols]).tolist()) - {0}
    return np.isin(components, sorted(keep))


def _separation_score(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Hellinger distance between the colours of ``mask`` and of a background ring around it."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    ring_width = max(3, int(round(0.25 * np.sqrt(area))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_width + 1, 2 * ring_width + 1))
    ring = (cv2.dilate(mask.view(np.uint8), kernel) > 0) & ~mask
    if not ring.any():
        return 0.0
    bins, ranges = [8, 8, 8], [0, 256, 0, 256, 0, 256]
    fg_hist = cv2.calcHist([rgb], [0, 1, 2], mask.view(np.uint8), bins, ranges)
    bg_hist = cv2.calcHist([rgb], [0, 1, 2], ring.view(np.uint8), bins, ranges)
    return float(np.clip(cv2.compareHist(fg_hist, bg_hist, cv2.HISTCMP_BHATTACHARYYA), 0.0, 1.0))
