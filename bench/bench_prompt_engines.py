"""Per-click time of each prompt engine, first click (per-frame work included) vs. later clicks.

    .venv/bin/python bench/bench_prompt_engines.py [--clicks 8] [--sam-encoder PATH [--sam-decoder PATH]]

For every engine (classical, sam, and the packaged openpixel click network with and without zoom-in and
guided boundaries): one frame, then ``--clicks`` clicks on it as
the standard protocol places them (each click adds to the previous ones). The first click pays for
``set_image`` (the SAM image encoder; the classical engine's colour-edge map); every later click on
the same frame must reuse it, so its time is the decoder's alone. The script checks that by counting
encoder runs.

The frame is the first GrabCut benchmark image from ../shared when present, else a
synthetic one. Without ``--sam-encoder`` the "sam" engine runs a SAM-format *stand-in*
pair built here (random weights, the exact SAM export signature, an encoder of about
10 GFLOP and a light decoder): its numbers show the caching, not a real model's speed.
Give a real encoder/decoder pair (docs/interactive.md) to time that instead.

Writes bench/results/prompt_engines.json and prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_table, write_results  # noqa: E402

from openpixel_ros.engines import Engine  # noqa: E402
from openpixel_ros.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from openpixel_ros.eval.click_protocol import next_click  # noqa: E402
from openpixel_ros.inference.ground_truth import load_ground_truth  # noqa: E402
from openpixel_ros.eval.common import load_rgb, pair_by_stem  # noqa: E402
from openpixel_ros.interactive import ClickPrompt, create_prompt_engine  # noqa: E402
from openpixel_ros.interactive.base import decoder_path_for  # noqa: E402
from openpixel_ros.interactive.sam_onnx import SamOnnxEngine  # noqa: E402


class CountingEngine(Engine):
    """Counts how often the wrapped model runs."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.runs = 0
        self._inputs, self._outputs = inner.inputs, inner.outputs

    def run(self, feeds):
        self.runs += 1
        return self.inner.run(feeds)


def _weights(name, shape, rng):
    fan_in = int(np.prod(shape[1:]))
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)


def build_stand_in(folder: Path) -> Path:
    """A SAM-signature encoder/decoder pair with random weights; returns the encoder path."""
    rng = np.random.default_rng(0)
    # Encoder: 1024 -> 256 (stride 4) -> 128 -> 64, then four 3x3 256->256 convolutions at 64x64.
    layers = [("c0", 3, 32, 4, 4), ("c1", 32, 64, 2, 2), ("c2", 64, 256, 2, 2)] + \
             [(f"c{i}", 256, 256, 3, 1) for i in range(3, 7)]
    nodes, inits, last = [], [], "images"
    for name, cin, cout, kernel, stride in layers:
        inits.append(_weights(f"{name}_w", (cout, cin, kernel, kernel), rng))
        pad = kernel // 2 if stride == 1 else 0
        nodes.append(helper.make_node("Conv", [last, f"{name}_w"], [f"{name}_y"], strides=[stride, stride],
                                      pads=[pad] * 4, kernel_shape=[kernel, kernel]))
        nodes.append(helper.make_node("Relu", [f"{name}_y"], [f"{name}_r"]))
        last = f"{name}_r"
    nodes.append(helper.make_node("Identity", [last], ["image_embeddings"]))
    _save(helper.make_graph(nodes, "stand_in_encoder",
                            [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 1024, 1024])],
                            [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64])],
                            inits), folder / "stand_in.encoder.onnx")

    # Decoder: prompt -> per-channel bias of a 1x1 conv over the embedding, 4 low-res masks
    # upsampled 4x, then resized to orig_im_size; IoU from pooled logits.
    inits = [_weights("prompt_w", (256, 2), rng), _weights("head_w", (4, 256, 1, 1), rng),
             _weights("iou_w", (4, 4), rng),
             numpy_helper.from_array(np.array([1.0, 1.0, 4.0, 4.0], np.float32), "up"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "batch_masks"),
             numpy_helper.from_array(np.array([1, 256, 1, 1], np.int64), "bias_shape")]
    nodes = [
        helper.make_node("ReduceMean", ["point_coords"], ["mean_point"], axes=[1], keepdims=0),   # [1,2]
        helper.make_node("Transpose", ["prompt_w"], ["prompt_w_t"]),
        helper.make_node("MatMul", ["mean_point", "prompt_w_t"], ["prompt_bias"]),              # [1,256]
        helper.make_node("Reshape", ["prompt_bias", "bias_shape"], ["bias4"]),
        helper.make_node("ReduceMean", ["point_labels"], ["mean_label"], axes=[1], keepdims=1),  # [1,1]
        helper.make_node("Mul", ["has_mask_input", "mean_label"], ["gate"]),
        helper.make_node("ReduceMean", ["mask_input"], ["mask_mean"], keepdims=0),
        helper.make_node("Mul", ["gate", "mask_mean"], ["mask_term"]),
        helper.make_node("Add", ["image_embeddings", "bias4"], ["conditioned"]),
        helper.make_node("Conv", ["conditioned", "head_w"], ["low64"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["low64", "mask_term"], ["low64b"]),
        helper.make_node("Resize", ["low64b", "", "up"], ["low_res_masks"], mode="linear"),
        helper.make_node("Cast", ["orig_im_size"], ["orig_int"], to=TensorProto.INT64),
        helper.make_node("Concat", ["batch_masks", "orig_int"], ["full_size"], axis=0),
        helper.make_node("Resize", ["low_res_masks", "", "", "full_size"], ["masks"], mode="linear"),
        helper.make_node("ReduceMean", ["low64"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "iou_w"], ["iou_raw"]),
        helper.make_node("Sigmoid", ["iou_raw"], ["iou_predictions"]),
    ]
    inputs = [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64]),
              helper.make_tensor_value_info("point_coords", TensorProto.FLOAT, [1, "num_points", 2]),
              helper.make_tensor_value_info("point_labels", TensorProto.FLOAT, [1, "num_points"]),
              helper.make_tensor_value_info("mask_input", TensorProto.FLOAT, [1, 1, 256, 256]),
              helper.make_tensor_value_info("has_mask_input", TensorProto.FLOAT, [1]),
              helper.make_tensor_value_info("orig_im_size", TensorProto.FLOAT, [2])]
    outputs = [helper.make_tensor_value_info("masks", TensorProto.FLOAT, [1, 4, "H", "W"]),
               helper.make_tensor_value_info("iou_predictions", TensorProto.FLOAT, [1, 4]),
               helper.make_tensor_value_info("low_res_masks", TensorProto.FLOAT, [1, 4, 256, 256])]
    _save(helper.make_graph(nodes, "stand_in_decoder", inputs, outputs, inits), folder / "stand_in.decoder.onnx")
    return folder / "stand_in.encoder.onnx"


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def load_frame() -> tuple:
    """(name, rgb, ground truth, ignore) of the benchmark frame."""
    grabcut = SHARED / "datasets" / "grabcut"
    if grabcut.is_dir():
        stem, image_path, mask_path = pair_by_stem(grabcut / "images", grabcut / "masks")[0]
        ground_truth, ignore = load_ground_truth(mask_path)
        return f"grabcut/{stem}", load_rgb(image_path), ground_truth, ignore
    rows, cols = np.mgrid[:480, :640]
    ground_truth = ((cols - 320) / 150.0) ** 2 + ((rows - 240) / 110.0) ** 2 <= 1
    rng = np.random.default_rng(0)
    rgb = rng.integers(30, 90, (480, 640, 3), dtype=np.uint8)
    rgb[ground_truth] = rng.integers(150, 220, (int(ground_truth.sum()), 3), dtype=np.uint8)
    return "synthetic 640x480", rgb, ground_truth, np.zeros_like(ground_truth)


def time_engine(engine, rgb, ground_truth, ignore, clicks: int, repeats: int) -> dict:
    """Per-click timings of ``repeats`` protocol runs of ``clicks`` clicks, each on a fresh frame key."""
    first, later = [], []
    for repeat in range(repeats):
        prediction = np.zeros(ground_truth.shape, bool)
        points, labels = [], []
        for index in range(clicks):
            click = next_click(ground_truth, prediction, ignore) or (points[-1][0], points[-1][1], labels[-1])
            points.append(click[:2])
            labels.append(click[2])
            prompt = ClickPrompt.from_lists(points, labels, image_size=ground_truth.shape,
                                            previous_mask=prediction if index else None)
            engine.set_image(rgb, key=("bench", repeat))
            result = engine.predict(prompt)
            prediction = result.mask
            (later if index else first).append(result.timings)
    median = lambda rows, key: round(statistics.median(r.get(key, 0.0) for r in rows), 2)  # noqa: E731
    keys = ("encoder_ms", "decoder_ms", "total_ms", "zoom_encoder_ms")
    return {"first_click": {k: median(first, k) for k in keys},
            "later_clicks": {k: median(later, k) for k in keys},
            "all_clicks_total_ms": median(first + later, "total_ms"),
            "clicks_per_frame": clicks, "frames": repeats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=8, help="clicks per frame (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="frames (fresh keys) per engine")
    parser.add_argument("--sam-encoder", help="a real SAM-format image encoder ONNX")
    parser.add_argument("--sam-decoder", help="its decoder (default: found beside the encoder by name)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads; 0 = one per core")
    args = parser.parse_args()

    name, rgb, ground_truth, ignore = load_frame()
    results = {"frame": name, "frame_size": list(rgb.shape[:2]), "engines": {}}
    rows = []

    classical = create_prompt_engine("classical")
    results["engines"]["classical"] = time_engine(classical, rgb, ground_truth, ignore, args.clicks, args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        if args.sam_encoder:
            encoder_path = Path(args.sam_encoder)
            decoder_path = Path(args.sam_decoder) if args.sam_decoder else decoder_path_for(encoder_path)
            sam_label = f"sam ({encoder_path.name})"
        else:
            encoder_path = build_stand_in(Path(tmp))
            decoder_path = decoder_path_for(encoder_path)
            sam_label = "sam (stand-in pair, random weights)"
        encoder = CountingEngine(OnnxRuntimeEngine(encoder_path, threads=args.threads))
        decoder = CountingEngine(OnnxRuntimeEngine(decoder_path, threads=args.threads))
        sam = SamOnnxEngine(encoder, decoder)
        sam_result = time_engine(sam, rgb, ground_truth, ignore, args.clicks, args.repeats)
        sam_result.update(model=sam_label, encoder_runs=encoder.runs, decoder_runs=decoder.runs)
        if encoder.runs != args.repeats:
            raise SystemExit(f"error: the SAM encoder ran {encoder.runs} times for {args.repeats} frames")
        results["engines"]["sam"] = sam_result

    # The package's click network, as shipped (zoom-in and guided boundaries) and without both. (The road
    # model's late-fusion click decoder of issue 12 was timed here too until it was retired.)
    for label, options in (("openpixel", {}),
                           ("openpixel (no zoom-in, bilinear)", {"zoom_in": False, "refine": "none"})):
        engine = create_prompt_engine("openpixel", threads=args.threads, **options)
        results["engines"][label] = time_engine(engine, rgb, ground_truth, ignore, args.clicks, args.repeats)
        engine.close()

    for engine_name, data in results["engines"].items():
        for phase in ("first_click", "later_clicks"):
            t = data[phase]
            rows.append([data.get("model", engine_name), phase.replace("_", " "), t["encoder_ms"], t["decoder_ms"],
                         t["zoom_encoder_ms"], t["total_ms"]])
        rows.append([data.get("model", engine_name), "every click", "", "", "", data["all_clicks_total_ms"]])
    print_table(f"Prompt engines, per-click time (ms, medians) on {name}, {args.clicks} clicks per frame",
                ["engine", "click", "encoder", "decoder", "of which zoom encoder", "total"], rows)
    sam_data = results["engines"]["sam"]
    print(f"\nsam: {sam_data['encoder_runs']} encoder runs for {sam_data['frames']} frames x "
          f"{args.clicks} clicks; later clicks = decoder only")
    path = write_results("prompt_engines", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
