"""``python -m openpixel_ros.eval semantic``: mIoU, pixel accuracy and per-class IoU of a
semantic model on a labelled image set (images and labels paired by file stem).

JSON: ``{"miou", "pixel_acc", "per_class_iou": {class: iou or null}, ...}``; a class that
is neither in the ground truth nor predicted has IoU null and is left out of the mIoU.
``confusion_matrix`` holds the pixel counts [ground truth][prediction]. With ``--json``, a per-class
IoU bar chart and the confusion matrix are drawn beside it (``<json>.per_class_iou.png``,
``<json>.confusion.png``).
"""
from __future__ import annotations

import time

from ..inference.confusion_matrix import ConfusionMatrix
from .common import (add_data_arguments, class_map_for, load_labels, load_rgb, load_segmenter, pair_by_stem, progress,
                     write_json)
from .plots import write_plots


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--adaptation", default="off", choices=("off", "adaptive", "naive"),
                        help="lighting adaptation applied to each image first (default: %(default)s)")


def run(args) -> int:
    pairs = pair_by_stem(args.images, args.labels, args.limit)
    segmenter = load_segmenter(args)
    class_map = class_map_for(args, segmenter.contract.classes)
    adapter = None
    if args.adaptation != "off":
        from ..adaptation import AdaptationConfig, LightingAdapter
        adapter = LightingAdapter(AdaptationConfig(mode=args.adaptation))
    matrix = ConfusionMatrix(class_map.num_classes, class_map.ignore_index)
    start = time.monotonic()
    engine_ms = 0.0
    for i, (stem, image_path, label_path) in enumerate(pairs):
        rgb, gt = load_rgb(image_path), load_labels(label_path)
        if adapter is not None:
            adapter.reset()  # independent stills, not a video
            rgb, _ = adapter.process(rgb)
        result = segmenter.infer(rgb)
        engine_ms += result.timings.get("engine_ms", 0.0)
        matrix.update(gt, class_map.apply(result.labels))
        progress(f"[{i + 1}/{len(pairs)}] {stem}")
    report = {
        "tool": "semantic", "model": str(args.model or "default"), "engine": args.engine,
        "class_map": class_map.name, "ignore_index": class_map.ignore_index, "images": len(pairs),
        "adaptation": args.adaptation, **matrix.summary(class_map.target_classes),
        "engine_ms_mean": round(engine_ms / len(pairs), 2), "seconds": round(time.monotonic() - start, 1),
        # [ground truth][prediction] pixel counts; the last column: predictions outside the classes
        "confusion_matrix": matrix.counts.tolist(),
    }
    print(f"mIoU {100 * report['miou']:.2f}%  pixel accuracy {100 * report['pixel_acc']:.2f}%  "
          f"({len(pairs)} images, {report['engine_ms_mean']:.0f} ms/image in the engine)")
    for name, iou in report["per_class_iou"].items():
        print(f"  {name:<16} {'-' if iou is None else f'{100 * iou:.1f}'}")
    if args.json:
        write_json(args.json, report)
        write_plots(report, args.json, log=progress)  # per-class IoU bars and the confusion matrix
    return 0
