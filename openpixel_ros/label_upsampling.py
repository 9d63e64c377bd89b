"""Class ids at the frame's size from a coarse score grid: exact bilinear-then-argmax, at a fraction
of its cost ("corner agreement").

Bilinear upsampling (OpenCV's ``INTER_LINEAR``: half-pixel centres, borders replicated) makes each
frame pixel a convex combination of the score vectors at the four grid points around it (its
*cell*). When those four points share one argmax class, every convex combination of them ranks that
class first too, so the pixel takes it without any interpolation. Only pixels in cells whose
corners disagree (about 10 % of a 1080p frame with the default model) need interpolated scores, and
there only for the classes that can win: a class is skipped when one corner winner scores at least
as high at all four corners (first index wins ties, as ``np.argmax`` does); with two candidates
left, the sign of one interpolated difference decides. The same argument one dimension down: a
frame column whose upper and lower horizontally interpolated points pick the same class takes it
at every pixel of the cell. Scores are interpolated in float32 in OpenCV's order (along rows, then
between them), so the labels equal bilinear-then-argmax except where two classes' scores tie to
within float32 rounding (OpenCV's own float resize differs from exact arithmetic by up to ~5e-5).
Skipping only classes that win at no corner would not be exact: a class second at every corner can
win in the middle (test_label_upsampling.py has one).

The per-size geometry (source indices and weights of every frame row and column) is cached.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


class _Axis:
    """OpenCV ``INTER_LINEAR`` geometry along one axis: frame index -> (source index, its
    neighbour, both weights), and the frame indices each source cell covers."""

    def __init__(self, src: int, dst: int):
        # resize.cpp: scale = 1 / (dst / src); f = (float)((d + 0.5) * scale - 0.5); s = floor(f); f -= s;
        # s < 0 -> (0, f = 0); s >= src - 1 -> (src - 1, f = 0).
        scale = 1.0 / (dst / src)
        f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(f).astype(np.intp)
        f = f - s.astype(np.float32)
        clamp = (s < 0) | (s >= src - 1)
        f[clamp] = 0
        s = np.clip(s, 0, src - 1)
        self.i0 = s
        self.w0 = (np.float32(1) - f).astype(np.float32)
        self.w1 = f
        # The cell of source index i spans frame indices [start[i], start[i] + count[i]); s is monotone.
        self.start = np.searchsorted(s, np.arange(src), side="left").astype(np.intp)
        self.count = (np.searchsorted(s, np.arange(src), side="right") - self.start).astype(np.intp)
        self.next = np.minimum(np.arange(src) + 1, src - 1)  # the neighbour row/column (replicated border)
        # The most frame indices an interior cell covers (border cells also cover the clamped ones).
        self.interior_count = int(self.count[1:-1].max()) if src > 2 else int(self.count.max())
        # Per cell: its frame indices and their weights, padded to the longest cell by repeating the
        # cell's last index (a pixel written twice with its own value). Rows of these tables are
        # gathered whole, which is much cheaper than gathering every pixel's weight.
        longest = max(int(self.count.max()), 1)
        self.index_table = self.start[:, None] + np.minimum(np.arange(longest)[None, :],
                                                            np.maximum(self.count, 1)[:, None] - 1)
        self.index_table = np.minimum(self.index_table, dst - 1)
        self.w0_table, self.w1_table = self.w0[self.index_table], self.w1[self.index_table]


@lru_cache(maxsize=16)
def _axis(src: int, dst: int) -> _Axis:
    return _Axis(src, dst)


def bilinear_argmax(maps: np.ndarray, frame_hw, dtype=np.uint8) -> np.ndarray:
    """argmax over classes of ``maps`` [C, h, w] bilinearly resized to ``frame_hw``, as ``dtype``.

    The labels of resizing every class plane with OpenCV's ``INTER_LINEAR`` and taking the argmax
    (first maximum wins), computed exactly: they can differ only where two classes' interpolated
    scores tie to within float32 rounding (OpenCV's own float resize is off by up to ~1e-5)."""
    H, W = int(frame_hw[0]), int(frame_hw[1])
    C, h, w = maps.shape
    if C > np.iinfo(dtype).max + 1:
        raise ValueError(f"{C} classes do not fit {np.dtype(dtype).name} labels")
    rows, cols = _axis(h, H), _axis(w, W)
    grid = grid_argmax(maps, dtype)
    # Every pixel takes its cell's top-left corner class; pixels of hard cells are corrected below.
    # (np.repeat of whole rows: i0 is each source index repeated count times, and row copies are memcpy.)
    labels = np.repeat(np.repeat(grid, cols.count, axis=1), rows.count, axis=0)
    below, right = grid[rows.next], grid[:, cols.next]
    hard = (grid != below) | (grid != right) | (grid != below[:, cols.next])
    # Cells no frame pixel falls in (downscaling) need no work.
    hard &= (rows.count[:, None] > 0) & (cols.count[None, :] > 0)
    ci, cj = np.nonzero(hard)
    if ci.size:
        _resolve_hard_cells(maps.astype(np.float32, copy=False), grid, rows, cols, ci, cj, labels)
    return labels


def grid_argmax(maps: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """argmax over the first axis of ``maps`` [C, h, w] as ``dtype`` (first maximum wins)."""
    C = maps.shape[0]
    if C > 32:
        return np.argmax(maps, axis=0).astype(dtype)
    # A running maximum plane by plane is ~3x faster than np.argmax over a leading axis.
    best = maps[0].copy()
    labels = np.zeros(maps.shape[1:], dtype)
    higher = np.empty(maps.shape[1:], bool)
    for c in range(1, C):
        np.greater(maps[c], best, out=higher)
        labels[higher] = c
        np.maximum(best, maps[c], out=best)
    return labels


def _resolve_hard_cells(maps, grid, rows: _Axis, cols: _Axis, ci, cj, labels) -> None:
    """Exact labels for every frame pixel of the cells (ci, cj), whose corners disagree."""
    C = maps.shape[0]
    ni, nj = rows.next[ci], cols.next[cj]
    # Scores at the four corners, [4, C, K]: (i, j), (i, j+1), (i+1, j), (i+1, j+1).
    corners = np.stack([maps[:, ci, cj], maps[:, ci, nj], maps[:, ni, cj], maps[:, ni, nj]])
    winners = np.stack([grid[ci, cj], grid[ci, nj], grid[ni, cj], grid[ni, nj]]).astype(np.intp)  # [4, K]
    # Class k cannot win anywhere in the cell if a corner winner c scores >= k at all four corners
    # (c < k: ties go to c) or > k at all four (c > k): the same then holds for every convex
    # combination. The corner winners themselves always stay.
    cells = np.arange(ci.size)
    winner_scores = corners[:, winners, cells][:, :, None, :]  # [corner, slot, 1, K]
    ge = gt = True
    for corner in range(4):  # [slot, C, K]; explicit ands beat .all() over a middle axis
        ge = ge & (winner_scores[corner] >= corners[corner])
        gt = gt & (winner_scores[corner] > corners[corner])
    dominated = np.where(winners[:, None, :] < np.arange(C)[None, :, None], ge, gt).any(axis=0)
    candidate = ~dominated.T                                                      # [K, C]
    count = candidate.sum(axis=1)
    flat = labels.reshape(-1)
    # Two groups: two candidates (one interpolated difference decides) and more (padded with each
    # cell's last candidate, which changes no maximum).
    for sel in (np.flatnonzero(count == 2), np.flatnonzero(count > 2)):
        if not sel.size:
            continue
        m = int(count[sel].max())
        if m == 2:  # row-major nonzero: each cell's two classes, ascending
            classes = np.nonzero(candidate[sel])[1].reshape(sel.size, 2)
        else:
            rank = np.minimum(np.arange(m)[None, :], count[sel, None] - 1)
            classes = np.take_along_axis(np.argsort(~candidate[sel], axis=1, kind="stable"), rank, axis=1)
        scores = corners[:, classes, sel[:, None]]                               # [4, Ks, m]
        _resolve_cells(scores, classes, ci[sel], cj[sel], grid, rows, cols, flat, labels.shape[1])


def _resolve_cells(scores, classes, ci, cj, grid, rows: _Axis, cols: _Axis, flat, W) -> None:
    """Cells with the same number m of candidate classes: ``scores`` [4, K, m] at their corners."""
    m = classes.shape[1]
    # Columns first (OpenCV's horizontal pass): one entry per (cell, frame column).
    ncol = cols.count[cj]
    entry_cell = np.repeat(np.arange(ci.size), ncol)
    first = np.cumsum(ncol) - ncol
    x = cols.start[cj][entry_cell] + (np.arange(entry_cell.size) - first[entry_cell])
    a0, a1 = cols.w0[x], cols.w1[x]
    if m == 2:
        # Two candidates a < b: a wins where the interpolated difference a - b is >= 0.
        diff = scores[..., 0] - scores[..., 1]                                   # [4, K]
        top = diff[0][entry_cell] * a0 + diff[1][entry_cell] * a1                # the upper source row
        bottom = diff[2][entry_cell] * a0 + diff[3][entry_cell] * a1             # the lower one
        win_top = (top < 0).astype(np.intp)
        agree = win_top == (bottom < 0)
    else:
        top = scores[0][entry_cell] * a0[:, None] + scores[1][entry_cell] * a1[:, None]     # [E, m]
        bottom = scores[2][entry_cell] * a0[:, None] + scores[3][entry_cell] * a1[:, None]
        win_top = np.argmax(top, axis=1)
        agree = win_top == np.argmax(bottom, axis=1)
    # Each frame pixel of an entry mixes `top` and `bottom`: where one class wins both, it wins the
    # entry's whole column (the corner argument again, one dimension down).
    classes = classes.astype(flat.dtype)
    entry_class = classes[entry_cell, win_top]
    entry_row = ci[entry_cell]
    # Pixels already hold their cell's top-left corner class: rewrite only entries that differ.
    fill = agree & (entry_class != grid[entry_row, cj[entry_cell]])
    row_offsets = rows.index_table * W
    for e, n in _entry_groups(rows, entry_row, fill):
        flat[row_offsets[entry_row[e], :n] + x[e][:, None]] = entry_class[e][:, None]
    for e, n in _entry_groups(rows, entry_row, ~agree):
        r = entry_row[e]
        b0, b1 = rows.w0_table[r, :n], rows.w1_table[r, :n]                   # [entries, n]
        if m == 2:
            second = top[e][:, None] * b0 + bottom[e][:, None] * b1 < 0
            pair = classes[entry_cell[e]]
            value = np.where(second, pair[:, 1:], pair[:, :1])
        else:
            best = np.argmax(top[e][:, None, :] * b0[..., None] + bottom[e][:, None, :] * b1[..., None], axis=2)
            value = np.take_along_axis(classes[entry_cell[e]], best, axis=1)
        flat[row_offsets[r, :n] + x[e][:, None]] = value


def _entry_groups(rows: _Axis, entry_row, selected):
    """(entries, n) for the selected entries: interior cells (at most ``interior_count`` frame rows)
    and border cells (more), so the padding to ``n`` rows stays small."""
    counts = rows.count[entry_row]
    for group in (selected & (counts <= rows.interior_count), selected & (counts > rows.interior_count)):
        e = np.flatnonzero(group)
        if e.size:
            yield e, int(counts[e].max())
