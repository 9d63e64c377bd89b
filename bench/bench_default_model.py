"""The packaged default model (OpenPixel road) in FP32, INT8 and FP16: size, CPU latency, accuracy.

    .venv/bin/python bench/bench_default_model.py [--repeats 50] [--threads 2] [--limit N] [--candidate X.encoder.onnx]

Per format, in one run on this machine:

* **size** of the encoder file (the road model ships no click decoder: the click network answers clicks);
* **per frame**, ONNX Runtime on the CPU with ``--threads`` intra-op threads at 480x360:
  the encoder graph alone, and the node's whole per-frame path (``Segmentor.segment``:
  adaptation, pre-processing, encoder, labels, mask) on a real CamVid frame;
* **accuracy** on CamVid val (needs ../shared): mIoU over the 11 classes, the share of FP32's
  mIoU each format keeps, and the share of pixels whose label agrees with FP32.

FP32 is the baseline the other formats are compared with in the same run. FP16 is written
on the fly from the FP32 encoder (it is for GPUs; ONNX Runtime's CPU provider runs it
through casts). ``--candidate`` adds a new road model's FP32 encoder (a training run's export, before it
ships) to the same run, so it is measured against the packaged model on the same machine and load.
Writes bench/results/default_model.json (with a candidate: default_model_candidate.json) and prints a table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_table, time_interleaved, time_ms, write_results  # noqa: E402

CAMVID_VAL = SHARED / "datasets" / "camvid" / "val"
CAMVID_VAL_LABELS = SHARED / "datasets" / "camvid" / "valannot"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N val images")
    parser.add_argument("--candidate", type=Path, default=None,
                        help="a new road model's FP32 encoder (X.encoder.onnx) to measure beside the packaged one")
    args = parser.parse_args(argv)

    import cv2
    import onnxruntime as ort

    from openpixel_ros.default_model import packaged_model_path
    from openpixel_ros.eval.common import load_labels, pair_by_stem
    from openpixel_ros.inference.confusion_matrix import ConfusionMatrix
    from openpixel_ros.export.quantize import convert_fp16
    from openpixel_ros.segmentor import Segmentor

    scratch = Path(tempfile.mkdtemp(prefix="openpixel_bench_"))
    fp32 = packaged_model_path("openpixel_road")
    fp16 = scratch / "openpixel_road.fp16.encoder.onnx"
    convert_fp16(fp32, fp16)
    formats = {"fp32": fp32, "int8": packaged_model_path("openpixel_road.int8"), "fp16": fp16}
    if args.candidate is not None:
        if not args.candidate.is_file():
            parser.error(f"--candidate {args.candidate}: no such file")
        formats["candidate"] = args.candidate

    pairs = pair_by_stem(CAMVID_VAL, CAMVID_VAL_LABELS, args.limit) if CAMVID_VAL.is_dir() else []
    if pairs:
        frame = cv2.cvtColor(cv2.imread(str(pairs[0][1])), cv2.COLOR_BGR2RGB)
    else:
        import skimage.data
        frame = cv2.resize(skimage.data.astronaut(), (480, 360))

    sessions, segmentors = {}, {}
    for name, path in formats.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        segmentors[name] = Segmentor(path, threads=args.threads)
    feeds = {"image": np.random.default_rng(0).uniform(-1, 1, (1, 3, 360, 480)).astype(np.float32),
             "conditioning": np.zeros((1, 10), np.float32)}
    # The encoder graphs one after another: bare sessions interleaved inflate each other (ONNX Runtime's
    # idle threads spin; measured 44 ms against 18 ms for the whole path). The whole path (the node's
    # per-frame cost, the budget's figure) interleaved, so that the formats share whatever load there is.
    encoder_ms = {name: time_ms(lambda s=s: s.run(["logits"], feeds), args.repeats) for name, s in sessions.items()}
    segment_ms = time_interleaved({name: (lambda s=s: s.segment(frame)) for name, s in segmentors.items()},
                                  args.repeats)

    results, fp32_labels = {}, {}
    for name, path in formats.items():
        segmentor = segmentors[name]
        entry = {"file": path.name, "encoder_mb": round(path.stat().st_size / 1e6, 3),
                 "encoder_ms": encoder_ms[name], "segment_ms": segment_ms[name]}
        if pairs:
            matrix = ConfusionMatrix(11, 11)
            agree = total = 0
            for stem, image_path, label_path in pairs:
                rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
                labels = segmentor.segment(rgb).labels
                matrix.update(load_labels(label_path), labels)
                if name == "fp32":
                    fp32_labels[stem] = labels
                agree += int((labels == fp32_labels[stem]).sum())
                total += labels.size
            summary = matrix.summary(segmentor.contract.classes)
            entry.update(miou=summary["miou"], pixel_acc=summary["pixel_acc"],
                         per_class_iou=summary["per_class_iou"], pixels_agreeing_with_fp32=round(agree / total, 5),
                         images=len(pairs))
        segmentor.close()
        results[name] = entry
    base = results["fp32"]
    for entry in results.values():
        entry["speedup_vs_fp32"] = round(base["encoder_ms"]["median_ms"] / entry["encoder_ms"]["median_ms"], 3)
        if "miou" in entry:
            entry["miou_retained_vs_fp32"] = round(entry["miou"] / base["miou"], 4)

    rows = [[name, e["encoder_mb"], e["encoder_ms"]["median_ms"], e["segment_ms"]["median_ms"],
             e.get("miou", "-"), e.get("miou_retained_vs_fp32", "-"), e.get("pixels_agreeing_with_fp32", "-")]
            for name, e in results.items()]
    print_table(f"OpenPixel road at 480x360, ONNX Runtime CPU, {args.threads} threads",
                ["format", "encoder MB", "encoder ms", "segment ms", "val mIoU", "kept", "agree px"], rows)
    name = "default_model_candidate" if args.candidate else "default_model"
    path = write_results(name, {"threads": args.threads, "repeats": args.repeats, "formats": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
