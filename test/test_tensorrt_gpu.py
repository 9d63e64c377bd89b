"""TensorRT backend on a real GPU: parity with ONNX Runtime (CPU), caching, profiles, errors.

Skips, with the reason, where TensorRT, cuda-python or a CUDA GPU is missing (CI and most
developer machines). On a Jetson or a desktop GPU these tests build real engines:

* fp32 on a small linear model matches ONNX Runtime's logits, conditioning input included;
* DeepLabV3-MobileNetV2 (../shared) in fp16 agrees with ONNX Runtime CPU on >= 99.5% of
  the pixels' labels over real frames; int8 (entropy calibration) agreement is reported;
* a multi-input, multi-output (promptable-style) model with a dynamic point count;
* the engine cache (no rebuild on reuse, new engine per precision), profile bounds,
  engine files with a manifest from another TensorRT version, corrupted engines.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from onnx_models import linear_classifier

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed: the GPU path is not tested here")

from openpixel_ros.engines import EngineError, create_engine  # noqa: E402
from openpixel_ros.engines.cuda_buffers import device_properties  # noqa: E402
from openpixel_ros.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from openpixel_ros.engines.tensorrt_cache import manifest_path  # noqa: E402
from openpixel_ros.export.tensorrt import build_from_args  # noqa: E402
from openpixel_ros.semantic import SemanticSegmenter  # noqa: E402

try:
    GPU = device_properties(0)
except EngineError as exc:  # cuda-python missing, or no usable GPU
    pytest.skip(f"no CUDA GPU for TensorRT: {exc}", allow_module_level=True)

FP16_MIN_AGREEMENT = 0.995
INT8_MIN_AGREEMENT = 0.90  # a sanity floor only; the measured value is reported
WEIGHTS = [[1.0, -0.5, 0.0], [-0.3, 1.0, 0.2], [0.1, 0.1, -1.0]]
BIAS = [0.0, 0.1, 0.05]


def camvid_frames(split: str, count: int) -> list:
    folder = shared_path("datasets", "camvid", split)
    paths = sorted(folder.glob("*.jpg"))[:count]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def deeplab_onnx(tmp_path_factory) -> Path:
    """The reference DeepLabV3-MobileNetV2 (VOC, 21 classes) as ONNX with its contract sidecar."""
    from openpixel_ros.tflite.to_onnx import convert

    tflite = shared_path("models", "deeplabv3_mnv2_voc", "deeplabv3_257_mv_gpu.tflite")
    labels = [line.strip() for line in
              (tflite.parent / "deeplabv3_257_mv_gpu_labels.txt").read_text().splitlines() if line.strip()]
    path = tmp_path_factory.mktemp("deeplab") / "deeplab.onnx"
    model = convert(tflite, path)
    contract = {
        "format": "openpixel-model/1", "task": "semantic",
        "input": {"name": model.graph.input[0].name, "layout": "NCHW", "height": 257, "width": 257,
                  "color_order": "rgb", "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3,
                  "resize": "stretch"},
        "output": {"name": model.graph.output[0].name, "kind": "logits"},
        "classes": labels,
    }
    path.with_suffix(".json").write_text(json.dumps(contract))
    return path


def label_agreement(onnx_path, engine_options: dict, frames) -> float:
    """Fraction of pixels whose label matches ONNX Runtime CPU's, over all frames."""
    reference = SemanticSegmenter.from_file(onnx_path)
    candidate = SemanticSegmenter.from_file(onnx_path, engine="tensorrt", **engine_options)
    try:
        same = total = 0
        for rgb in frames:
            a, b = reference.infer(rgb).labels, candidate.infer(rgb).labels
            same += int(np.count_nonzero(a == b))
            total += a.size
    finally:
        reference.engine.close()
        candidate.engine.close()
    return same / total


# -- small models: exact parity, cache, profiles -----------------------------------------------
def test_fp32_matches_onnxruntime_with_conditioning(tmp_path, cache_dir):
    onnx_path = tmp_path / "cond.onnx"
    linear_classifier(onnx_path, WEIGHTS, BIAS, conditioning_size=4)
    ort = OnnxRuntimeEngine(onnx_path)
    engine = create_engine("tensorrt", onnx_path, precision="fp32", cache_dir=cache_dir,
                           min_shape="64x64", opt_shape="360x480", max_shape="480x640")
    try:
        assert engine.build_info["built"] and engine.build_info["build_seconds"] is not None
        assert [s.name for s in engine.inputs] == ["image", "adaptation"]
        pointers = dict(engine._buffers.device_ptrs)
        rng = np.random.default_rng(0)
        for rgb in camvid_frames("val", 2):
            for h, w in ((360, 480), (200, 300), (480, 640)):
                x = cv2.resize(rgb, (w, h)).astype(np.float32).transpose(2, 0, 1)[None] / 255
                feeds = {"image": np.ascontiguousarray(x), "adaptation": rng.normal(size=(1, 4)).astype(np.float32)}
                got, want = engine.run(feeds)["output"], ort.run(feeds)["output"]
                assert got.shape == want.shape == (1, 3, h, w)
                np.testing.assert_allclose(got, want, atol=1e-4)
        assert engine._buffers.device_ptrs == pointers  # buffers allocated once, reused
    finally:
        engine.close()
        engine.close()  # safe twice


def test_cache_reuse_and_profile_bounds(tmp_path, cache_dir):
    onnx_path = tmp_path / "lin.onnx"
    linear_classifier(onnx_path, WEIGHTS, BIAS)
    options = dict(cache_dir=cache_dir, min_shape="64x64", opt_shape="120x160", max_shape="240x320")
    first = create_engine("tensorrt", onnx_path, precision="fp16", **options)
    first.close()
    again = create_engine("tensorrt", onnx_path, precision="fp16", **options)
    assert first.build_info["built"] and not again.build_info["built"]
    assert again.engine_path == first.engine_path
    too_big = np.zeros((1, 3, 480, 640), np.float32)
    with pytest.raises(EngineError, match="--max-shape"):
        again.run({"image": too_big})
    out = again.run({"image": np.full((1, 3, 240, 320), 0.5, np.float32)})["output"]
    assert out.shape == (1, 3, 240, 320)
    again.close()
    fp32 = create_engine("tensorrt", onnx_path, precision="fp32", **options)
    assert fp32.build_info["built"] and fp32.engine_path != first.engine_path
    fp32.close()
    # A manifest that no longer matches its engine makes the cache rebuild, never reuse.
    manifest = json.loads(manifest_path(first.engine_path).read_text())
    manifest["engine_sha256"] = "0" * 64
    manifest_path(first.engine_path).write_text(json.dumps(manifest))
    rebuilt = create_engine("tensorrt", onnx_path, precision="fp16", **options)
    assert rebuilt.build_info["built"]
    rebuilt.close()


def _promptable_model(path: Path) -> None:
    """image [1,3,32,32] + points [1,N,2] + labels [1,N] -> mask [1,1,32,32] and score [1,1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([0.2, -0.4, 0.6], np.float32).reshape(1, 3, 1, 1), "W")
    axes12 = numpy_helper.from_array(np.array([1, 2], np.int64), "axes12")
    axes1 = numpy_helper.from_array(np.array([1], np.int64), "axes1")
    shape4 = numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), "shape4")
    nodes = [helper.make_node("Conv", ["image", "W"], ["conv"]),
             helper.make_node("ReduceSum", ["points", "axes12"], ["point_sum"], keepdims=0),
             helper.make_node("Reshape", ["point_sum", "shape4"], ["offset"]),
             helper.make_node("Add", ["conv", "offset"], ["mask"]),
             helper.make_node("ReduceSum", ["labels", "axes1"], ["score"], keepdims=1)]
    graph = helper.make_graph(
        nodes, "promptable",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32]),
         helper.make_tensor_value_info("points", TensorProto.FLOAT, [1, "N", 2]),
         helper.make_tensor_value_info("labels", TensorProto.FLOAT, [1, "N"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 32, 32]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        [w, axes12, axes1, shape4])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_multiple_named_inputs_and_outputs(tmp_path, cache_dir):
    onnx_path = tmp_path / "promptable.onnx"
    _promptable_model(onnx_path)
    with pytest.raises(EngineError, match="--profile points"):
        create_engine("tensorrt", onnx_path, precision="fp32", cache_dir=cache_dir)
    engine = create_engine("tensorrt", onnx_path, precision="fp32", cache_dir=cache_dir,
                           profiles={"points": "1x1x2:1x4x2:1x16x2", "labels": "1x1:1x4:1x16"})
    ort = OnnxRuntimeEngine(onnx_path)
    rng = np.random.default_rng(1)
    try:
        assert {s.name for s in engine.outputs} == {"mask", "score"}
        for n in (1, 3, 16, 2):
            feeds = {"image": rng.random((1, 3, 32, 32), dtype=np.float32),
                     "points": rng.random((1, n, 2), dtype=np.float32) * 32,
                     "labels": rng.integers(0, 2, (1, n)).astype(np.float32)}
            got, want = engine.run(feeds), ort.run(feeds)
            for name in ("mask", "score"):
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-4)
        with pytest.raises(EngineError, match="missing"):
            engine.run({"image": feeds["image"]})
    finally:
        engine.close()


def test_engine_files_from_the_export_cli(tmp_path):
    onnx_path = tmp_path / "model.onnx"
    linear_classifier(onnx_path, WEIGHTS, BIAS, height=48, width=64, embed_metadata=True)
    engine_path = tmp_path / "out" / "model.engine"
    args = argparse.Namespace(onnx=str(onnx_path), engine=str(engine_path), precision="fp16", calib_images=None,
                              calib_cache=None, workspace=256, timing_cache=None, min_shape=None, opt_shape=None,
                              max_shape=None, profile=None)
    manifest = build_from_args(args)
    assert manifest["gpu_name"] == GPU[0] and manifest["tensorrt_version"] == trt.__version__
    assert (engine_path.parent / "timing.cache").stat().st_size > 0
    assert engine_path.with_suffix(".json").is_file()  # the embedded contract, copied beside the engine
    frame = camvid_frames("val", 1)[0]
    reference = SemanticSegmenter.from_file(onnx_path)
    direct = SemanticSegmenter.from_file(engine_path, engine="tensorrt")
    try:
        agreement = np.mean(reference.infer(frame).labels == direct.infer(frame).labels)
        assert agreement >= FP16_MIN_AGREEMENT
    finally:
        direct.engine.close()
    # An engine whose manifest names another TensorRT version is refused with one clear line.
    manifest["tensorrt_version"] = "9.9.9"
    manifest_path(engine_path).write_text(json.dumps(manifest))
    with pytest.raises(EngineError) as info:
        create_engine("tensorrt", engine_path)
    assert "9.9.9" in str(info.value) and "rebuild" in str(info.value) and "\n" not in str(info.value)
    # Without a manifest, a corrupted engine fails at deserialization, also in one line.
    manifest_path(engine_path).unlink()
    engine_path.write_bytes(engine_path.read_bytes()[: engine_path.stat().st_size // 2])
    with pytest.raises(EngineError, match="cannot load TensorRT engine") as info:
        create_engine("tensorrt", engine_path)
    assert "\n" not in str(info.value)


# -- the reference model: label agreement -----------------------------------------------------
def test_deeplab_fp16_label_agreement(deeplab_onnx, cache_dir):
    frames = camvid_frames("val", 12) + camvid_frames("train", 8)
    agreement = label_agreement(deeplab_onnx, dict(precision="fp16", cache_dir=cache_dir), frames)
    print(f"\nDeepLabV3-MNv2 fp16 on {GPU[0]}: label agreement with ONNX Runtime CPU {agreement:.4%}")
    assert agreement >= FP16_MIN_AGREEMENT


def test_deeplab_int8_label_agreement(deeplab_onnx, cache_dir, tmp_path, record_property):
    calib = tmp_path / "calib"
    calib.mkdir()
    for path in sorted(shared_path("datasets", "camvid", "train").glob("*.jpg"))[::6]:
        (calib / path.name).write_bytes(path.read_bytes())
    options = dict(precision="int8", calib_images=calib, cache_dir=cache_dir)
    frames = camvid_frames("val", 12)
    agreement = label_agreement(deeplab_onnx, options, frames)
    record_property("int8_label_agreement", agreement)
    print(f"\nDeepLabV3-MNv2 int8 on {GPU[0]}: label agreement with ONNX Runtime CPU {agreement:.4%}")
    assert list(cache_dir.glob("deeplab-*.calib")), "the calibration cache was not kept"
    assert agreement >= INT8_MIN_AGREEMENT
