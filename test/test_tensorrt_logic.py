"""TensorRT backend logic that needs no GPU: cache keys, manifests, profiles, buffer plans, errors.

These run where TensorRT and CUDA are absent (CI, laptops). Nothing here pretends to run
TensorRT; the GPU path is tested by test_tensorrt_gpu.py on a machine that has one.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_path
from onnx_models import linear_classifier
from openpixel_ros.engines import EngineError, TensorSpec, create_engine
from openpixel_ros.engines.cuda_buffers import (BufferPlan, check_in_profile, numpy_dtype, plan_buffers,
                                                resolve_shape, total_nbytes)
from openpixel_ros.engines.onnxruntime_engine import OnnxRuntimeEngine
from openpixel_ros.engines.tensorrt_plan import (DEFAULT_MAX_HW, DEFAULT_MIN_HW, DEFAULT_OPT_HW, CalibrationBatches,
                                                 calibration_fingerprint, image_axes, list_calibration_images,
                                                 onnx_io_specs, parse_dims, parse_hw, parse_tensor_profile,
                                                 plan_profiles, prepare_build)
from openpixel_ros.engines.tensorrt_cache import (BuildSettings, RuntimeIdentity, TensorProfile, cache_key,
                                                  cached_engine_path, engine_cache_dir, file_sha256, make_manifest,
                                                  manifest_path, read_manifest, runtime_mismatches, stale_reasons,
                                                  timing_cache_path, write_manifest)
from openpixel_ros.engines.tensorrt_engine import TensorRTEngine, _normalise_profiles, parse_device
from openpixel_ros.model_contract import sidecar_path
from openpixel_ros.semantic import SemanticSegmenter

TENSORRT_PRESENT = importlib.util.find_spec("tensorrt") is not None
needs_tensorrt_absent = pytest.mark.skipif(TENSORRT_PRESENT, reason="TensorRT is installed here; "
                                           "the missing-TensorRT errors cannot be observed")
ORIN = RuntimeIdentity("Orin", "8.7", "10.3.0.30")
WEIGHTS = [[1.0, -0.5, 0.0], [-0.3, 1.0, 0.2], [0.1, 0.1, -1.0]]
BIAS = [0.0, 0.1, 0.05]


@pytest.fixture
def dynamic_onnx(tmp_path) -> Path:
    path = tmp_path / "dyn.onnx"
    linear_classifier(path, WEIGHTS, BIAS)
    return path


@pytest.fixture
def fixed_onnx(tmp_path) -> Path:
    path = tmp_path / "fixed.onnx"
    linear_classifier(path, WEIGHTS, BIAS, height=8, width=8, conditioning_size=4)
    return path


# -- option parsing --------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("480x640", (480, 640)), (" 1080 X 1920 ", (1080, 1920)),
                                            (None, None), ("", None)])
def test_parse_hw(text, expected):
    assert parse_hw(text) == expected


@pytest.mark.parametrize("text", ["480", "480x640x3", "0x640", "-1x5", "axb", "480x"])
def test_parse_hw_rejects(text):
    with pytest.raises(EngineError):
        parse_hw(text, "--max-shape")


def test_parse_tensor_profile():
    profile = parse_tensor_profile("points=1x1x2:1x4x2:1x16x2")
    assert profile == TensorProfile("points", (1, 1, 2), (1, 4, 2), (1, 16, 2))
    assert parse_dims("1x3x8x8") == (1, 3, 8, 8)
    for bad in ("points", "points=1x1x2:1x4x2", "=1x1:1x1:1x1", "p=1x4x2:1x1x2:1x16x2", "p=1x1:1x1x1:1x1"):
        with pytest.raises(EngineError):
            parse_tensor_profile(bad)


def test_parse_device_and_profiles_option():
    assert parse_device("cuda") == 0 and parse_device("cuda:2") == 2
    with pytest.raises(EngineError, match="cuda or cuda:N"):
        parse_device("cpu")
    parsed = _normalise_profiles({"points": "1x1x2:1x4x2:1x16x2"})
    assert parsed["points"].max == (1, 16, 2)
    assert _normalise_profiles(["labels=1x1:1x4:1x16"])["labels"].opt == (1, 4)


# -- optimization profiles -------------------------------------------------------------------
def test_dynamic_image_gets_default_profile(dynamic_onnx):
    inputs, _ = onnx_io_specs(dynamic_onnx)
    plan = plan_profiles(inputs)
    (profile,) = plan.profiles
    assert profile == TensorProfile("image", (1, 3) + DEFAULT_MIN_HW, (1, 3) + DEFAULT_OPT_HW,
                                    (1, 3) + DEFAULT_MAX_HW)
    assert plan.notes == ()


def test_given_shapes_are_used_exactly(dynamic_onnx):
    inputs, _ = onnx_io_specs(dynamic_onnx)
    (profile,) = plan_profiles(inputs, min_hw=(240, 320), opt_hw=(480, 640), max_hw=(720, 1280)).profiles
    assert (profile.min, profile.opt, profile.max) == ((1, 3, 240, 320), (1, 3, 480, 640), (1, 3, 720, 1280))


def test_unset_opt_is_clamped_into_given_range(dynamic_onnx):
    inputs, _ = onnx_io_specs(dynamic_onnx)
    (profile,) = plan_profiles(inputs, max_hw=(240, 320)).profiles
    assert profile.opt == (1, 3, 240, 320) and profile.min == (1, 3, 128, 128) and profile.max == (1, 3, 240, 320)
    (profile,) = plan_profiles(inputs, min_hw=(720, 1280)).profiles
    assert profile.min == profile.opt == (1, 3, 720, 1280) and profile.max == (1, 3) + DEFAULT_MAX_HW


@pytest.mark.parametrize("shapes", [dict(min_hw=(480, 640), max_hw=(240, 320)),
                                    dict(min_hw=(480, 640), opt_hw=(240, 320)),
                                    dict(opt_hw=(480, 640), max_hw=(480, 320))])
def test_min_opt_max_order_is_enforced(dynamic_onnx, shapes):
    inputs, _ = onnx_io_specs(dynamic_onnx)
    with pytest.raises(EngineError, match="min <= opt <= max"):
        plan_profiles(inputs, **shapes)


def test_fixed_shape_model_ignores_profiles(fixed_onnx):
    inputs, _ = onnx_io_specs(fixed_onnx)
    assert [s.shape for s in inputs] == [(1, 3, 8, 8), (1, 4)]
    plan = plan_profiles(inputs, min_hw=(240, 320), opt_hw=(480, 640), max_hw=(720, 1280))
    assert plan.profiles == ()
    assert any("ignored" in note for note in plan.notes)
    assert plan_profiles(inputs).notes == ()


def test_layouts_batch_and_conditioning():
    nhwc = TensorSpec("frame", (1, None, None, 3), np.dtype(np.float32))
    assert image_axes(nhwc.shape) == (1, 2) and image_axes((1, 3, None, None)) == (2, 3)
    assert image_axes((1, None, None, 3), "NCHW") == (2, 3)  # the contract's layout wins
    batch = TensorSpec("image", (None, 3, 64, 64), np.dtype(np.float32))
    cond = TensorSpec("adaptation", (None, 8), np.dtype(np.float32))
    plan = plan_profiles([nhwc, batch, cond], opt_hw=(360, 640), max_hw=(720, 1280))
    by_name = {p.name: p for p in plan.profiles}
    assert by_name["frame"].opt == (1, 360, 640, 3) and by_name["frame"].max == (1, 720, 1280, 3)
    assert by_name["image"].min == by_name["image"].max == (1, 3, 64, 64)
    assert by_name["adaptation"].min == by_name["adaptation"].max == (1, 8)


def test_other_dynamic_dims_need_an_explicit_profile():
    image = TensorSpec("image", (1, 3, 256, 256), np.dtype(np.float32))
    points = TensorSpec("points", (1, None, 2), np.dtype(np.float32))
    with pytest.raises(EngineError, match="--profile points=MIN:OPT:MAX"):
        plan_profiles([image, points])
    given = {"points": TensorProfile("points", (1, 1, 2), (1, 4, 2), (1, 16, 2))}
    assert plan_profiles([image, points], tensor_profiles=given).profiles == (given["points"],)
    with pytest.raises(EngineError, match="unknown input"):
        plan_profiles([image, points], tensor_profiles={"clicks": given["points"]})
    with pytest.raises(EngineError, match="do not fit"):  # the fixed last dim is 2, not 3
        plan_profiles([image, points], tensor_profiles={
            "points": TensorProfile("points", (1, 1, 3), (1, 4, 3), (1, 16, 3))})
    with pytest.raises(EngineError, match="do not fit"):  # rank 2 for a rank-3 input
        plan_profiles([image, points], tensor_profiles={"points": TensorProfile("points", (1, 1), (1, 4), (1, 16))})


def test_contract_size_pins_a_dynamic_graph():
    image = TensorSpec("image", (1, 3, None, None), np.dtype(np.float32))
    (profile,) = plan_profiles([image], contract_hw={"image": (256, 320)}).profiles
    assert profile.min == profile.opt == profile.max == (1, 3, 256, 320)
    (profile,) = plan_profiles([image], contract_hw={"image": (256, 320)}, max_hw=(512, 640)).profiles
    assert profile.max == (1, 3, 512, 640)  # explicit options win over the contract


def test_onnx_specs_match_onnxruntime(fixed_onnx, dynamic_onnx):
    for path in (fixed_onnx, dynamic_onnx):
        inputs, outputs = onnx_io_specs(path)
        ort = OnnxRuntimeEngine(path)
        assert inputs == tuple(ort.inputs) and outputs == tuple(ort.outputs)


# -- cache keys ----------------------------------------------------------------------------------
def test_file_hash_is_content_based(tmp_path, dynamic_onnx):
    copy = tmp_path / "elsewhere" / "renamed.onnx"
    copy.parent.mkdir()
    shutil.copy(dynamic_onnx, copy)
    assert file_sha256(copy) == file_sha256(dynamic_onnx)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    assert file_sha256(copy) != file_sha256(dynamic_onnx)


PROFILE = (TensorProfile("image", (1, 3, 128, 128), (1, 3, 480, 640), (1, 3, 1080, 1920)),)
BASE_SETTINGS = BuildSettings("fp16", PROFILE, "")


ONNX_HASH = "0" * 64


@pytest.mark.parametrize("onnx_hash, settings, runtime", [
    ("f" * 64, BASE_SETTINGS, ORIN),
    (ONNX_HASH, replace(BASE_SETTINGS, precision="fp32"), ORIN),
    (ONNX_HASH, replace(BASE_SETTINGS, precision="int8", calibration="images:ab"), ORIN),
    (ONNX_HASH, replace(BASE_SETTINGS, profiles=(replace(PROFILE[0], max=(1, 3, 720, 1280)),)), ORIN),
    (ONNX_HASH, replace(BASE_SETTINGS, profiles=()), ORIN),
    (ONNX_HASH, BASE_SETTINGS, replace(ORIN, gpu_name="NVIDIA H100 80GB HBM3")),
    (ONNX_HASH, BASE_SETTINGS, replace(ORIN, compute_capability="8.6")),
    (ONNX_HASH, BASE_SETTINGS, replace(ORIN, tensorrt_version="10.3.0.26")),
], ids=["onnx", "precision", "int8-calibration", "profile-max", "no-profile", "gpu", "compute", "tensorrt"])
def test_cache_key_changes_with_each_component(onnx_hash, settings, runtime):
    base = cache_key(ONNX_HASH, BASE_SETTINGS, ORIN)
    same_inputs = cache_key("0" * 64, BuildSettings("fp16", PROFILE, ""), RuntimeIdentity("Orin", "8.7", "10.3.0.30"))
    assert base == same_inputs and len(base) == 64
    assert cache_key(onnx_hash, settings, runtime) != base


def test_prepare_build_settings(dynamic_onnx, tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copy(dynamic_onnx, copy)
    a, b = prepare_build(dynamic_onnx), prepare_build(copy)
    assert cache_key(a.onnx_sha256, a.settings, ORIN) == cache_key(b.onnx_sha256, b.settings, ORIN)
    c = prepare_build(dynamic_onnx, max_hw=(720, 1280))
    assert cache_key(c.onnx_sha256, c.settings, ORIN) != cache_key(a.onnx_sha256, a.settings, ORIN)
    assert a.calibration_shapes() == {"image": (1, 3, 480, 640)}
    with pytest.raises(EngineError, match="--calib-images"):
        prepare_build(dynamic_onnx, precision="int8")
    with pytest.raises(EngineError, match="not one of"):
        prepare_build(dynamic_onnx, precision="int4")
    with pytest.raises(EngineError, match="not found"):
        prepare_build(tmp_path / "absent.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    with pytest.raises(EngineError, match="cannot read ONNX"):
        prepare_build(corrupt)


def test_cache_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENPIXEL_ENGINE_CACHE", str(tmp_path / "engines"))
    assert engine_cache_dir() == tmp_path / "engines"
    monkeypatch.delenv("OPENPIXEL_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine_cache_dir() == tmp_path / "xdg" / "openpixel_ros" / "engines"
    key = "ab" * 32
    path = cached_engine_path(tmp_path, "/models/My Model.onnx", key)
    assert path.parent == tmp_path and path.name == f"my-model-{key[:16]}.engine"
    assert timing_cache_path(tmp_path, ORIN).name == "timing-orin-sm87-trt10-3-0-30.cache"
    # The manifest never collides with the model contract sidecar (model.json).
    assert manifest_path(tmp_path / "m.engine").name == "m.engine.manifest.json"
    assert sidecar_path(tmp_path / "m.engine").name == "m.json"


# -- manifests and stale engines -------------------------------------------------------------------
@pytest.fixture
def cached(tmp_path):
    """An engine file (its bytes are opaque here) with a fresh manifest."""
    engine = tmp_path / "model-0123.engine"
    engine.write_bytes(b"serialized engine bytes")
    onnx_hash = "1" * 64
    key = cache_key(onnx_hash, BASE_SETTINGS, ORIN)
    write_manifest(engine, make_manifest(key=key, engine_sha256=file_sha256(engine), onnx_path="/m/model.onnx",
                                         onnx_sha256=onnx_hash, settings=BASE_SETTINGS, runtime=ORIN,
                                         inputs=["image"], outputs=["output"], metadata={"openpixel": "{}"},
                                         build_seconds=42.5, workspace_mb=1024))
    return engine, key, onnx_hash


def test_fresh_manifest_round_trips(cached):
    engine, key, onnx_hash = cached
    manifest = read_manifest(engine)
    assert manifest["build_seconds"] == 42.5 and manifest["metadata"] == {"openpixel": "{}"}
    assert stale_reasons(manifest, key=key, onnx_sha256=onnx_hash, settings=BASE_SETTINGS, runtime=ORIN,
                         engine_sha256=file_sha256(engine)) == []


@pytest.mark.parametrize("change, reason", [
    (dict(runtime=replace(ORIN, tensorrt_version="10.4.0")), "TensorRT 10.3.0.30, this machine has 10.4.0"),
    (dict(runtime=replace(ORIN, gpu_name="NVIDIA RTX A2000", compute_capability="8.6")), "built for GPU 'Orin'"),
    (dict(onnx_sha256="2" * 64), "ONNX file changed"),
    (dict(settings=replace(BASE_SETTINGS, precision="fp32")), "precision fp16 != fp32"),
    (dict(settings=replace(BASE_SETTINGS, profiles=())), "profile shapes changed"),
    (dict(settings=replace(BASE_SETTINGS, calibration="images:00")), "calibration data changed"),
    (dict(engine_sha256="3" * 64), "does not match its manifest"),
    (dict(engine_sha256=None), "engine file is missing"),
    (dict(key="4" * 64), "cache key differs"),
])
def test_stale_engines_are_detected(cached, change, reason):
    engine, key, onnx_hash = cached
    args = dict(key=key, onnx_sha256=onnx_hash, settings=BASE_SETTINGS, runtime=ORIN,
                engine_sha256=file_sha256(engine))
    args.update(change)
    reasons = stale_reasons(read_manifest(engine), **args)
    assert any(reason in r for r in reasons), reasons


def test_unreadable_manifests(cached):
    engine, _, _ = cached
    path = manifest_path(engine)
    path.write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        read_manifest(engine)
    path.write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(EngineError, match="format"):
        read_manifest(engine)
    path.unlink()
    assert read_manifest(engine) is None


def test_engine_file_is_checked_against_this_machine(cached):
    engine, _, _ = cached
    assert TensorRTEngine._check_engine_file(engine, ORIN)["precision"] == "fp16"
    with pytest.raises(EngineError) as info:
        TensorRTEngine._check_engine_file(engine, replace(ORIN, tensorrt_version="10.7.0"))
    message = str(info.value)
    assert "\n" not in message and "10.3.0.30" in message and "10.7.0" in message and "rebuild" in message
    with pytest.raises(EngineError, match="'Orin'.*'NVIDIA GeForce RTX 4090'"):
        TensorRTEngine._check_engine_file(engine, RuntimeIdentity("NVIDIA GeForce RTX 4090", "8.9", "10.3.0.30"))
    engine.write_bytes(b"another engine")
    with pytest.raises(EngineError, match="does not match its manifest"):
        TensorRTEngine._check_engine_file(engine, ORIN)
    assert runtime_mismatches(read_manifest(engine), ORIN) == []


# -- buffer planning -------------------------------------------------------------------------
def test_dtype_mapping():
    assert numpy_dtype("FLOAT") == np.float32 and numpy_dtype("HALF") == np.float16
    assert numpy_dtype("INT64") == np.int64 and numpy_dtype("BOOL") == np.bool_ and numpy_dtype("UINT8") == np.uint8
    with pytest.raises(EngineError, match="'logits' has TensorRT type BF16"):
        numpy_dtype("BF16", "logits")


def test_buffers_are_sized_for_the_profile_maximum():
    plans = plan_buffers([("image", True, np.float32, (1, 3, 1080, 1920)),
                          ("adaptation", True, np.float32, (1, 8)),
                          ("logits", False, np.float16, (1, 21, 1080, 1920))])
    by_name = {p.name: p for p in plans}
    assert by_name["image"].nbytes == 3 * 1080 * 1920 * 4
    assert by_name["adaptation"].nbytes == 32
    assert by_name["logits"].nbytes == 21 * 1080 * 1920 * 2 and not by_name["logits"].is_input
    assert total_nbytes(plans) == 3 * 1080 * 1920 * 4 + 32 + 21 * 1080 * 1920 * 2
    with pytest.raises(EngineError, match="data-dependent"):
        plan_buffers([("boxes", False, np.float32, (-1, 4))])
    with pytest.raises(EngineError, match="two tensors"):
        plan_buffers([("x", True, np.float32, (1,)), ("x", False, np.float32, (1,))])
    assert BufferPlan("m", True, np.dtype(np.uint8), (1, 480, 640, 3)).max_elements == 480 * 640 * 3


def test_dynamic_dims_resolve_from_feeds():
    declared = (1, 3, None, None)
    assert resolve_shape("image", declared, (1, 3, 480, 640)) == (1, 3, 480, 640)
    assert resolve_shape("image", (1, 3, -1, -1), np.zeros((1, 3, 2, 5)).shape) == (1, 3, 2, 5)
    with pytest.raises(EngineError, match=r"engine expects \(1, 3, \?, \?\)"):
        resolve_shape("image", declared, (1, 480, 640, 3))
    with pytest.raises(EngineError):
        resolve_shape("image", declared, (3, 480, 640))
    check_in_profile("image", (1, 3, 480, 640), (1, 3, 128, 128), (1, 3, 1080, 1920))
    with pytest.raises(EngineError, match="--max-shape") as info:
        check_in_profile("image", (1, 3, 2160, 3840), (1, 3, 128, 128), (1, 3, 1080, 1920))
    assert "(1, 3, 2160, 3840)" in str(info.value)
    with pytest.raises(EngineError):
        check_in_profile("image", (1, 3, 64, 640), (1, 3, 128, 128), (1, 3, 1080, 1920))


# -- INT8 calibration data ---------------------------------------------------------------------
@pytest.fixture
def calib_folder(tmp_path) -> Path:
    source = shared_path("datasets", "camvid", "val")
    folder = tmp_path / "calib"
    folder.mkdir()
    for image in sorted(source.glob("*.jpg"))[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_calibration_uses_the_contract_preprocessing(calib_folder, dynamic_onnx, tmp_path):
    images = list_calibration_images(calib_folder)
    assert [p.suffix for p in images] == [".jpg"] * 3
    batches = CalibrationBatches(dynamic_onnx, images, {"image": (1, 3, 480, 640)})
    try:
        feeds = list(batches)
    finally:
        batches.close()
    assert len(feeds) == 3
    segmenter = SemanticSegmenter.from_file(dynamic_onnx)
    rgb = cv2.cvtColor(cv2.imread(str(images[0])), cv2.COLOR_BGR2RGB)
    expected, _ = segmenter.preprocess(cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(feeds[0]["image"], expected)
    assert feeds[0]["image"].dtype == np.float32 and 0.0 <= feeds[0]["image"].min() <= feeds[0]["image"].max() <= 1.0

    fixed = tmp_path / "fixed_cond.onnx"
    linear_classifier(fixed, WEIGHTS, BIAS, height=8, width=8, conditioning_size=4)
    plan = prepare_build(fixed, precision="int8", calib_images=calib_folder)
    batches = CalibrationBatches(fixed, plan.calib_images, plan.calibration_shapes())
    try:
        feed = batches.batch(plan.calib_images[1])
    finally:
        batches.close()
    assert feed["image"].shape == (1, 3, 8, 8)
    np.testing.assert_array_equal(feed["adaptation"], np.zeros((1, 4), np.float32))


def test_calibration_fingerprint_follows_the_data(calib_folder, dynamic_onnx):
    before = prepare_build(dynamic_onnx, precision="int8", calib_images=calib_folder)
    assert before.settings.calibration.startswith("images:") and len(before.calib_images) == 3
    first = before.calib_images[0]
    first.write_bytes(first.read_bytes()[:-10])
    after = prepare_build(dynamic_onnx, precision="int8", calib_images=calib_folder)
    assert after.settings.calibration != before.settings.calibration
    assert cache_key(after.onnx_sha256, after.settings, ORIN) != cache_key(before.onnx_sha256, before.settings, ORIN)
    assert calibration_fingerprint(after.calib_images) == after.settings.calibration.split(":")[1]
    with pytest.raises(EngineError, match="no images"):
        list_calibration_images(calib_folder / "..")


def test_calibration_refuses_models_without_contract(calib_folder, dynamic_onnx):
    sidecar_path(dynamic_onnx).unlink()
    with pytest.raises(EngineError, match="model contract"):
        CalibrationBatches(dynamic_onnx, list_calibration_images(calib_folder), {"image": (1, 3, 480, 640)})


# -- errors without TensorRT --------------------------------------------------------------------
def test_modules_import_without_tensorrt_or_cuda():
    code = ("import sys, openpixel_ros.engines.tensorrt_engine, openpixel_ros.export.tensorrt; "
            "print(sorted(m for m in ('tensorrt', 'cuda', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@needs_tensorrt_absent
def test_create_engine_without_tensorrt_names_the_fallback(dynamic_onnx):
    with pytest.raises(EngineError) as info:
        create_engine("tensorrt", dynamic_onnx)
    message = str(info.value)
    assert "engine: onnxruntime" in message and "TensorRT" in message and "\n" not in message
    with pytest.raises(EngineError, match="engine: onnxruntime"):
        SemanticSegmenter.from_file(dynamic_onnx, engine="tensorrt")


def test_tensorrt_argument_errors_come_first(tmp_path, dynamic_onnx):
    with pytest.raises(EngineError, match="model file not found"):
        create_engine("tensorrt", tmp_path / "absent.onnx")
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(EngineError, match=r"needs an \.onnx model or a serialized engine"):
        create_engine("tensorrt", other)
    with pytest.raises(EngineError, match="precision"):
        create_engine("tensorrt", dynamic_onnx, precision="int4")
    with pytest.raises(EngineError, match="HEIGHTxWIDTH"):
        create_engine("tensorrt", dynamic_onnx, max_shape="1080")


def _export(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "openpixel_ros.export", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@needs_tensorrt_absent
def test_export_cli_without_tensorrt_fails_with_the_fallback(tmp_path, dynamic_onnx):
    result = _export("--onnx", dynamic_onnx, "--engine", tmp_path / "x.engine")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "engine: onnxruntime" in lines[0], result.stderr
    assert not (tmp_path / "x.engine").exists()


def test_export_cli_validates_options_before_building(tmp_path, dynamic_onnx):
    result = _export("--onnx", dynamic_onnx, "--engine", tmp_path / "x.engine", "--precision", "int8")
    assert result.returncode == 1 and "--calib-images" in result.stderr
    result = _export("--onnx", dynamic_onnx, "--engine", tmp_path / "x.engine", "--max-shape", "1080by1920")
    assert result.returncode == 1 and "--max-shape" in result.stderr
    result = _export("--onnx", dynamic_onnx, "--engine", tmp_path / "x.engine", "--profile", "points")
    assert result.returncode == 1 and "NAME=MIN:OPT:MAX" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")
def test_no_gpu_is_a_one_line_error():
    from openpixel_ros.engines.cuda_buffers import device_properties, load_cudart

    cudart = load_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if err == cudart.cudaError_t.cudaSuccess and count > 0:
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(EngineError) as info:
        device_properties(0)
    assert "engine: onnxruntime" in str(info.value) and "\n" not in str(info.value)
