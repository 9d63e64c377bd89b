"""``python -m openpixel_ros.eval lighting``: mIoU under fixed, seeded lighting shifts,
with lighting adaptation off and on (and the naive baseline, for comparison).

Every image is scored unshifted ("clean") and under each shift of :data:`SHIFTS`.
Each condition is segmented three ways: the shifted frame as is (``off``), after
the adaptation under test (``on``, ``--adaptation``), and after the naive
baseline (``naive``, unless ``--no-baseline``). The adapter is reset before each
image: frames are independent stills, not a video.

JSON: ``{"clean": {...}, "shifts": {name: {...}}, "summary": {...}}``; each entry
holds ``miou_off``, ``miou_on``, ``pixel_acc_off``, ``pixel_acc_on`` (and
``miou_naive``, ``pixel_acc_naive``), plus per-class IoU for each mode. With ``--json``, a chart of
mIoU per shift, off / on / naive, is drawn beside it (``<json>.shifts.png``).
"""
from __future__ import annotations

import time
import zlib
from dataclasses import fields

import numpy as np

from ..inference.confusion_matrix import ConfusionMatrix
from ..lighting_shifts import EXTRA_SHIFTS, SHIFTS
from .common import (add_data_arguments, class_map_for, load_labels, load_rgb, load_segmenter, pair_by_stem, progress,
                     write_json)
from .plots import write_plots


def shift_rng(seed: int, stem: str, shift: str) -> np.random.Generator:
    """The generator of one (image, shift): independent of the order images are visited in."""
    return np.random.default_rng([seed, zlib.crc32(stem.encode()), zlib.crc32(shift.encode())])


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--adaptation", default="adaptive", choices=("adaptive", "naive"),
                        help="the adaptation scored as 'on' (default: %(default)s)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the naive baseline columns (faster)")
    parser.add_argument("--conditioning", action="store_true",
                        help="for models with a conditioning input, also score 'cond' (frame as is, the "
                             "adaptation's conditioning vector) and 'on_cond' (corrected frame and its vector, "
                             "what the node does); the other modes feed zeros (no conditioning)")
    parser.add_argument("--shifts", help="comma-separated shift names (default: all of "
                                         f"{', '.join(SHIFTS)}; extra: {', '.join(EXTRA_SHIFTS)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noisy shifts (default: 0)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override an AdaptationConfig field, e.g. --set clahe_clip_limit=0 (repeatable)")


def _config_overrides(pairs) -> dict:
    from ..adaptation import AdaptationConfig

    names = {f.name for f in fields(AdaptationConfig)}
    defaults = AdaptationConfig()
    values = {}
    for item in pairs:
        name, _, text = item.partition("=")
        if name not in names:
            raise SystemExit(f"error: --set {item}: AdaptationConfig has no field {name!r}")
        kind = type(getattr(defaults, name))
        values[name] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
    return values


def _entry(matrices: dict, class_names) -> dict:
    entry, per_class = {}, {}
    for mode, matrix in matrices.items():
        summary = matrix.summary(class_names)
        entry[f"miou_{mode}"] = summary["miou"]
        entry[f"pixel_acc_{mode}"] = summary["pixel_acc"]
        per_class[mode] = summary["per_class_iou"]
    entry["per_class_iou"] = per_class
    return entry


def _summary(clean: dict, shifts: dict, modes) -> dict:
    """Per mode: recovery (fraction of each shift's mIoU loss won back; the mean over the
    default shifts of :data:`SHIFTS` only), worst change and clean cost, in mIoU."""
    out = {}
    for mode in modes:
        if mode == "off":
            continue
        recoveries, deltas = {}, {}
        for name, entry in shifts.items():
            lost = clean["miou_off"] - entry["miou_off"]
            deltas[name] = round(entry[f"miou_{mode}"] - entry["miou_off"], 6)
            recoveries[name] = round(deltas[name] / lost, 4) if lost > 0 else None
        default = [recoveries[n] for n in SHIFTS if recoveries.get(n) is not None]
        out[mode] = {
            "mean_recovery": round(float(np.mean(default)), 4) if default else None,
            "recovery": recoveries, "miou_change": deltas,
            "worst_miou_change": min(deltas.values()) if deltas else None,
            "clean_miou_change": round(clean[f"miou_{mode}"] - clean["miou_off"], 6),
        }
    return out


def run(args) -> int:
    from ..adaptation import AdaptationConfig, LightingAdapter

    names = args.shifts.split(",") if args.shifts else list(SHIFTS)
    all_shifts = {**SHIFTS, **EXTRA_SHIFTS}
    unknown = [n for n in names if n not in all_shifts]
    if unknown:
        raise SystemExit(f"error: unknown shift(s) {', '.join(unknown)}; known: {', '.join(all_shifts)}")
    pairs = pair_by_stem(args.images, args.labels, args.limit)
    segmenter = load_segmenter(args)
    class_map = class_map_for(args, segmenter.contract.classes)
    overrides = _config_overrides(args.set)
    # mode -> (adapter whose output frame is scored, or None for the frame as is; feed its vector?)
    adaptive = AdaptationConfig(**{**overrides, "mode": args.adaptation})
    modes = {"off": (None, False), "on": (LightingAdapter(adaptive), False)}
    if not args.no_baseline:
        modes["naive"] = (LightingAdapter(AdaptationConfig(mode="naive")), False)
    if args.conditioning:
        if segmenter.contract.conditioning is None:
            raise SystemExit("error: --conditioning: the model has no conditioning input")
        modes["cond"] = (LightingAdapter(AdaptationConfig(**{**overrides, "enabled": False})), True)
        modes["on_cond"] = (LightingAdapter(adaptive), True)
    conditions = ["clean", *names]
    matrices = {cond: {m: ConfusionMatrix(class_map.num_classes, class_map.ignore_index) for m in modes}
                for cond in conditions}
    active_frames = {cond: {m: 0 for m in modes if m != "off"} for cond in conditions}
    start = time.monotonic()
    for i, (stem, image_path, label_path) in enumerate(pairs):
        rgb, gt = load_rgb(image_path), load_labels(label_path)
        for cond in conditions:
            frame = rgb if cond == "clean" else all_shifts[cond](rgb, shift_rng(args.seed, stem, cond))
            off = class_map.apply(segmenter.infer(frame).labels)
            matrices[cond]["off"].update(gt, off)
            for mode, (adapter, conditioned) in modes.items():
                if adapter is None:
                    continue
                adapter.reset()
                adapted, state = adapter.process(frame)
                if adapted is not frame:
                    active_frames[cond][mode] += 1
                if adapted is frame and not conditioned:  # untouched: the prediction is the "off" one
                    pred = off
                else:
                    vector = adapter.conditioning_vector(state) if conditioned else None
                    pred = class_map.apply(segmenter.infer(adapted, vector).labels)
                matrices[cond][mode].update(gt, pred)
        progress(f"[{i + 1}/{len(pairs)}] {stem}  {time.monotonic() - start:.0f} s")
    results = {cond: {**_entry(matrices[cond], class_map.target_classes),
                      "frames_adapted": dict(active_frames[cond])}
               for cond in conditions}
    clean = results.pop("clean")
    report = {
        "tool": "lighting", "model": str(args.model or "default"), "engine": args.engine,
        "class_map": class_map.name, "images": len(pairs), "adaptation": args.adaptation,
        "config_overrides": overrides, "seed": args.seed, "modes": list(modes),
        "clean": clean, "shifts": results, "summary": _summary(clean, results, modes),
        "seconds": round(time.monotonic() - start, 1),
    }
    _print_table(report, modes)
    if args.json:
        write_json(args.json, report)
        write_plots(report, args.json, log=progress)  # mIoU per shift: off / on / naive
    return 0


def _print_table(report: dict, modes) -> None:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    header = ["condition", *[f"mIoU {m}" for m in modes], *[f"acc {m}" for m in modes]]
    rows = []
    for name, entry in [("clean", report["clean"]), *report["shifts"].items()]:
        rows.append([name, *[pct(entry[f"miou_{m}"]) for m in modes],
                     *[pct(entry[f"pixel_acc_{m}"]) for m in modes]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for mode, s in report["summary"].items():
        print(f"{mode}: mean recovery over the default shifts {pct(s['mean_recovery'])}%, worst shift change "
              f"{pct(s['worst_miou_change'])} points, clean change {pct(s['clean_miou_change'])} points")
