"""Pictures of the evaluation reports, as PNGs beside their JSON (matplotlib, headless Agg backend).

- ``eval clicks``: mIoU versus number of clicks, one line per report (as the interactive
  segmentation papers plot it): ``<json>.miou_vs_clicks.png``.
- ``eval semantic``: per-class IoU bars (``<json>.per_class_iou.png``) and the row-normalised
  confusion matrix (``<json>.confusion.png``).
- ``eval lighting``: mIoU per lighting shift with adaptation off, on and naive (``<json>.shifts.png``).

Each tool writes its pictures when it writes ``--json``. From existing reports:

    python -m openpixel_ros.eval plot A.json [B.json ...] [--out PNG]

several click reports give one curve with a line each. Without matplotlib (``pip install
matplotlib``) the JSON is still written and the pictures are skipped with one line saying so.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # headless: no display on a vehicle computer or CI
    import matplotlib.pyplot as plt
    return plt


def report_kind(report: dict) -> str:
    """clicks, scribbles, semantic or lighting: which tool wrote ``report``."""
    if "shifts" in report and "clean" in report:
        return "lighting"
    if "miou_at_scribbles" in report:
        return "scribbles"
    if "per_image" in report and "miou_at" in report:
        return "clicks"
    if "per_class_iou" in report:
        return "semantic"
    raise ValueError("not a clicks, semantic or lighting report")


def miou_curve(report: dict) -> np.ndarray:
    """mIoU after 1..max_clicks clicks; a run that stopped early keeps its last IoU (the protocol's rule)."""
    max_clicks = int(report["max_clicks"])
    per_image = [image["ious"] for image in report["per_image"] if image["ious"]]
    if not per_image:
        raise ValueError("the report has no per-image IoUs")
    return np.array([np.mean([ious[min(k, len(ious)) - 1] for ious in per_image]) for k in range(1, max_clicks + 1)])


def _label(report: dict, path: Optional[Path]) -> str:
    options = []
    if report.get("zoom_in") is False:
        options.append("no zoom")
    if report.get("refine") == "none":
        options.append("no refinement")
    name = report.get("engine", "?") + (f" ({', '.join(options)})" if options else "")
    return f"{name}: NoC@90 {report['noc90']:.2f}" + (f" [{path.stem}]" if path is not None else "")


def plot_click_curves(reports: Sequence[dict], out: Path, paths: Sequence[Optional[Path]] = ()) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    paths = list(paths) + [None] * (len(reports) - len(paths))
    show_paths = len({r.get("engine") for r in reports}) < len(reports)  # same engine twice: tell the files apart
    for report, path in zip(reports, paths):
        curve = miou_curve(report)
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3,
                label=_label(report, path if show_paths else None))
    ax.axhline(0.85, color="grey", linewidth=0.6, linestyle=":")
    ax.axhline(0.90, color="grey", linewidth=0.6, linestyle="--")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of clicks")
    ax.set_ylabel("mIoU")
    images = {r.get("images") for r in reports}
    ax.set_title("mIoU vs clicks" + (f" ({images.pop()} images)" if len(images) == 1 else ""))
    ax.set_ylim(max(0.0, min(miou_curve(r)[0] for r in reports) - 0.05), 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out)


def plot_per_class_iou(report: dict, out: Path) -> Path:
    plt = _pyplot()
    names = list(report["per_class_iou"])
    values = [report["per_class_iou"][n] for n in names]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.45 * len(names) + 2), 4.2), dpi=110)
    bars = ax.bar(range(len(names)), [v if v is not None else 0.0 for v in values], color="#4477aa")
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, "n/a" if value is None else f"{value:.2f}",
                ha="center", va="bottom", fontsize=7)
    ax.axhline(report["miou"], color="#cc6677", linestyle="--", linewidth=1, label=f"mIoU {report['miou']:.3f}")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("IoU")
    ax.set_title(f"per-class IoU: {Path(str(report.get('model', ''))).name} ({report.get('images', '?')} images)")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_confusion(report: dict, out: Path) -> Path:
    """Rows: ground truth, normalised to 1; columns: prediction (last: no class / unmapped)."""
    plt = _pyplot()
    counts = np.asarray(report["confusion_matrix"], dtype=np.float64)
    names = list(report["per_class_iou"])
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    columns = names + (["(none)"] if counts.shape[1] > len(names) else [])
    size = max(5.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if len(names) <= 25:
        for i in range(rows.shape[0]):
            for j in range(rows.shape[1]):
                if rows[i, j] >= 0.01:
                    ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (rows sum to 1)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, out)


def plot_lighting(report: dict, out: Path) -> Path:
    plt = _pyplot()
    conditions = {"clean": report["clean"], **report["shifts"]}
    modes = [m for m in ("off", "on", "naive") if f"miou_{m}" in report["clean"]]
    labels = {"off": "adaptation off", "on": "adaptation on", "naive": "naive baseline"}
    colors = {"off": "#bbbbbb", "on": "#228833", "naive": "#ee6677"}
    x = np.arange(len(conditions))
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(conditions) + 2), 4.2), dpi=110)
    for i, mode in enumerate(modes):
        ax.bar(x + (i - (len(modes) - 1) / 2) * width, [c[f"miou_{mode}"] for c in conditions.values()], width,
               label=labels[mode], color=colors[mode])
    ax.set_xticks(x, list(conditions), rotation=30, ha="right", fontsize=8)
    lowest = min(c[f"miou_{m}"] for c in conditions.values() for m in modes)
    ax.set_ylim(max(0.0, lowest - 0.1), None)  # the differences are what matters; the axis says where it starts
    ax.set_ylabel("mIoU")
    ax.set_title(f"mIoU under lighting shifts: {Path(str(report.get('model', ''))).name} "
                 f"({report.get('images', '?')} images)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(modes), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    _pyplot().close(fig)
    return out


def plots_for(report: dict, json_path: Path) -> list:
    """Write the pictures of one report beside ``json_path``; the paths written."""
    json_path = Path(json_path)
    stem = json_path.with_suffix("")
    kind = report_kind(report)
    if kind == "clicks":
        return [plot_click_curves([report], Path(f"{stem}.miou_vs_clicks.png"))]
    if kind == "semantic":
        written = [plot_per_class_iou(report, Path(f"{stem}.per_class_iou.png"))]
        if "confusion_matrix" in report:
            written.append(plot_confusion(report, Path(f"{stem}.confusion.png")))
        return written
    if kind == "lighting":
        return [plot_lighting(report, Path(f"{stem}.shifts.png"))]
    return []  # scribbles: three points, the table says it


def write_plots(report: dict, json_path, log=print) -> list:
    """:func:`plots_for`, or one line when matplotlib is missing (the JSON stands on its own)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    written = plots_for(report, json_path)
    for path in written:
        log(f"wrote {path}")
    return written


# -- the `plot` tool ---------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of eval clicks, semantic or lighting")
    parser.add_argument("--out", type=Path, help="the PNG for several click reports (default: beside the first, "
                                                 "<stem>.miou_vs_clicks_compared.png)")


def run(args) -> int:
    from .common import progress
    reports = [json.loads(path.read_text()) for path in args.reports]
    kinds = [report_kind(r) for r in reports]
    if len(reports) > 1:
        if set(kinds) != {"clicks"}:
            raise ValueError("several reports are drawn together only for eval clicks; give one semantic or "
                             "lighting report at a time")
        out = args.out or args.reports[0].with_name(args.reports[0].stem + ".miou_vs_clicks_compared.png")
        progress(f"wrote {plot_click_curves(reports, out, args.reports)}")
        return 0
    write_plots(reports[0], args.reports[0], log=progress)
    return 0
