"""TensorRT vs ONNX Runtime (CUDA) vs PyTorch eager on a GPU (issue 5): per-frame latency, throughput.

    .venv/bin/python bench/bench_tensorrt.py [--frames 100] [--quick] [--openpixel MODEL.onnx]

Models: the reference DeepLabV3-MobileNetV2 (VOC, from ../shared, converted to ONNX here)
and an OpenPixel ONNX model when one is given or found in the model directory. Frames:
the dash-camera video of ../shared resized to 640x480 and 1920x1080. Backends, batch 1:

* ``tensorrt-fp16`` and ``tensorrt-int8`` (entropy calibration on CamVid train images),
* ``onnxruntime-cuda`` (needs onnxruntime-gpu),
* ``pytorch-eager``: the same ONNX graph converted with onnx2torch, run on CUDA in fp32
  (needs torch with CUDA and onnx2torch; skipped with the reason otherwise).

Two timings per frame: ``engine`` is the model alone on the pre-processed tensor
(host->device->host copies included), ``pipeline`` is SemanticSegmenter.infer
(pre-processing + engine + upsampling + argmax). A fixed-size model (DeepLab: 257x257)
sees the same tensor at every frame size, so only its pipeline time depends on it.
``agreement`` is the fraction of pixels whose label equals ONNX Runtime CPU's.

Writes bench/results/tensorrt_<gpu>.json and prints a table. On a machine without
TensorRT, cuda-python or a CUDA GPU it prints why it skipped and exits 0. On a Jetson,
record the power mode (``sudo nvpmodel -m 0`` for MAXN, then ``sudo jetson_clocks``):
figures differ several-fold between modes; the JSON includes ``nvpmodel -q``'s answer.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_table, write_results  # noqa: E402

from openpixel_ros.engines import Engine, EngineError, create_engine  # noqa: E402
from openpixel_ros.semantic import SemanticSegmenter  # noqa: E402

SIZES = ((480, 640), (1080, 1920))
DEEPLAB = SHARED / "models" / "deeplabv3_mnv2_voc" / "deeplabv3_257_mv_gpu.tflite"
VIDEO = SHARED / "video" / "solidWhiteRight.mp4"
CALIB_SOURCE = SHARED / "datasets" / "camvid" / "train"


def gpu_or_reason():
    """(tensorrt module, gpu name, compute capability) or a string saying why there is no GPU path."""
    from openpixel_ros.engines.cuda_buffers import device_properties
    from openpixel_ros.engines.tensorrt_build import load_tensorrt

    try:
        trt = load_tensorrt()
        name, capability = device_properties(0)
    except EngineError as exc:
        return str(exc)
    return trt, name, capability


def jetson_power_mode():
    """``nvpmodel -q`` output on a Jetson, else None."""
    if not shutil.which("nvpmodel"):
        return None
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return " | ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None


def deeplab_onnx(folder: Path) -> Path:
    """DeepLabV3-MNv2 as ONNX with its contract sidecar (input in [-1, 1], 257x257 stretch)."""
    from openpixel_ros.tflite.to_onnx import convert

    path = folder / "deeplab.onnx"
    model = convert(DEEPLAB, path)
    labels = [s.strip() for s in (DEEPLAB.parent / "deeplabv3_257_mv_gpu_labels.txt").read_text().splitlines()
              if s.strip()]
    path.with_suffix(".json").write_text(json.dumps({
        "format": "openpixel-model/1", "task": "semantic",
        "input": {"name": model.graph.input[0].name, "layout": "NCHW", "height": 257, "width": 257,
                  "color_order": "rgb", "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3},
        "output": {"name": model.graph.output[0].name, "kind": "logits"}, "classes": labels}))
    return path


def find_openpixel(explicit):
    if explicit:
        return Path(explicit)
    from openpixel_ros.default_model import model_dir

    found = sorted(model_dir().glob("openpixel*.onnx"))
    return found[0] if found else None


def video_frames(count: int) -> list:
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise SystemExit(f"cannot read frames from {VIDEO}")
    return frames


class TorchEagerEngine(Engine):
    """The ONNX graph converted to a torch.nn.Module (onnx2torch), run eagerly on CUDA in fp32."""

    backend = "pytorch-eager"

    def __init__(self, onnx_path):
        import onnx2torch
        import torch

        if not torch.cuda.is_available():
            raise EngineError("torch has no CUDA device")
        self._torch = torch
        reference = create_engine("onnxruntime", onnx_path)
        self._inputs, self._outputs = tuple(reference.inputs), tuple(reference.outputs)
        reference.close()
        self._module = onnx2torch.convert(str(onnx_path)).cuda().eval()

    @property
    def device(self) -> str:
        return "cuda:0"

    def run(self, feeds) -> dict:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])).cuda() for s in self._inputs]
            result = self._module(*args)
            result = result if isinstance(result, (tuple, list)) else (result,)
            values = [r.cpu().numpy() for r in result]  # .cpu() synchronizes
        return {s.name: v for s, v in zip(self._outputs, values)}


def make_segmenter(onnx_path: Path, backend: str, cache_dir: Path, calib_dir: Path) -> SemanticSegmenter:
    if backend == "tensorrt-fp16":
        return SemanticSegmenter.from_file(onnx_path, engine="tensorrt", precision="fp16", cache_dir=cache_dir)
    if backend == "tensorrt-int8":
        return SemanticSegmenter.from_file(onnx_path, engine="tensorrt", precision="int8", cache_dir=cache_dir,
                                           calib_images=calib_dir)
    if backend == "onnxruntime-cuda":
        return SemanticSegmenter.from_file(onnx_path, engine="onnxruntime", device="cuda")
    if backend == "pytorch-eager":
        from openpixel_ros.model_contract import load_contract

        engine = TorchEagerEngine(onnx_path)
        return SemanticSegmenter(engine, load_contract(onnx_path))
    raise ValueError(backend)


def time_calls(fn, items, warmup: int) -> list:
    for item in items[:warmup]:
        fn(item)
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summarise(times: list) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
            "fps": round(1e3 * len(ordered) / sum(ordered), 1)}


def bench_model(name: str, onnx_path: Path, frames: list, backends: list, cache_dir: Path, calib_dir: Path,
                results: list, skipped: list) -> None:
    reference = SemanticSegmenter.from_file(onnx_path)  # ONNX Runtime CPU, for label agreement
    check_frames = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA) for f in frames[:10]]
    expected = [reference.infer(f).labels for f in check_frames]
    reference.engine.close()
    for backend in backends:
        try:
            start = time.perf_counter()
            segmenter = make_segmenter(onnx_path, backend, cache_dir, calib_dir)
            setup_s = time.perf_counter() - start
        except Exception as exc:  # an optional backend that cannot start is reported, not fatal
            reason = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            skipped.append({"model": name, "backend": backend, "reason": reason})
            print(f"  {name} {backend}: skipped ({reason})")
            continue
        try:
            same = sum(int(np.count_nonzero(segmenter.infer(f).labels == e)) for f, e in zip(check_frames, expected))
            agreement = same / sum(e.size for e in expected)
            build = getattr(segmenter.engine, "build_info", {})
            for h, w in SIZES:
                sized = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]
                tensors = [segmenter.preprocess(f)[0] for f in sized]
                feeds = []
                for t in tensors:
                    feed = {segmenter.contract.input.name: t}
                    if segmenter.contract.conditioning:
                        c = segmenter.contract.conditioning
                        feed[c.name] = np.zeros((1, c.size), np.float32)
                    feeds.append(feed)
                engine_ms = time_calls(segmenter.engine.run, feeds, warmup=10)
                pipeline_ms = time_calls(segmenter.infer, sized, warmup=5)
                row = {"model": name, "backend": backend, "size": f"{w}x{h}",
                       "input_shape": list(tensors[0].shape), "agreement_vs_ort_cpu": round(agreement, 5),
                       "engine": summarise(engine_ms), "pipeline": summarise(pipeline_ms),
                       "setup_s": round(setup_s, 1), "engine_built_now": bool(build.get("built"))}
                results.append(row)
                print(f"  {name} {backend} {w}x{h}: engine {row['engine']['median_ms']:.2f} ms, "
                      f"pipeline {row['pipeline']['median_ms']:.2f} ms, agreement {agreement:.4f}")
        finally:
            segmenter.engine.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="timed frames per size (default 100)")
    parser.add_argument("--quick", action="store_true", help="30 frames, fp16 and ONNX Runtime only")
    parser.add_argument("--openpixel", help="OpenPixel ONNX model (default: openpixel*.onnx in the model dir)")
    parser.add_argument("--cache-dir", help="engine cache (default: a temporary folder, so engines are built)")
    args = parser.parse_args(argv)

    gpu = gpu_or_reason()
    if isinstance(gpu, str):
        print(f"bench_tensorrt: skipped: {gpu}")
        return 0
    if not DEEPLAB.is_file() or not VIDEO.is_file():
        print(f"bench_tensorrt: skipped: needs ../shared ({DEEPLAB} and {VIDEO})")
        return 0
    trt, gpu_name, capability = gpu
    count = 30 if args.quick else args.frames
    backends = (["tensorrt-fp16", "onnxruntime-cuda"] if args.quick else
                ["tensorrt-fp16", "tensorrt-int8", "onnxruntime-cuda", "pytorch-eager"])
    frames = video_frames(count)
    results, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="bench_trt_") as tmp:
        tmp = Path(tmp)
        cache_dir = Path(args.cache_dir) if args.cache_dir else tmp / "engines"
        calib_dir = tmp / "calib"
        calib_dir.mkdir()
        for path in sorted(CALIB_SOURCE.glob("*.jpg"))[::4]:
            shutil.copy(path, calib_dir / path.name)
        models = [("deeplabv3-mnv2", deeplab_onnx(tmp))]
        openpixel = find_openpixel(args.openpixel)
        if openpixel and openpixel.is_file():
            models.append(("openpixel", openpixel))
        else:
            skipped.append({"model": "openpixel", "backend": "*", "reason": "no OpenPixel ONNX model found"})
        for name, onnx_path in models:
            print(f"{name}: {onnx_path}")
            bench_model(name, onnx_path, frames, backends, cache_dir, calib_dir, results, skipped)

    import onnxruntime

    data = {"gpu": gpu_name, "compute_capability": capability, "tensorrt": trt.__version__,
            "onnxruntime": onnxruntime.__version__, "jetson_power_mode": jetson_power_mode(),
            "frames_per_size": count, "results": results, "skipped": skipped}
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    path = write_results(f"tensorrt_{slug}", data)
    rows = [[r["model"], r["backend"], r["size"], r["engine"]["median_ms"], r["engine"]["p95_ms"],
             r["engine"]["fps"], r["pipeline"]["median_ms"], r["pipeline"]["fps"], r["agreement_vs_ort_cpu"]]
            for r in results]
    print_table(f"TensorRT benchmark on {gpu_name} (TensorRT {trt.__version__}); {path}",
                ["model", "backend", "frame", "engine med ms", "engine p95 ms", "engine fps", "pipeline med ms",
                 "pipeline fps", "agreement"], rows)
    for s in skipped:
        print(f"skipped {s['model']} {s['backend']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
