"""The optional selfie (person) model: fetched from the PyPI mediapipe wheel, converted, described by metadata."""
from __future__ import annotations

import json
import subprocess
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
from ai_edge_litert.interpreter import Interpreter

from test_tflite_to_onnx import mediapipe_wheel  # noqa: F401 (fixture)

from openpixel_ros import selfie_model
from openpixel_ros.model_contract import load_contract, parse_contract

METADATA_KEYS = {"format", "task", "input", "output", "classes", "colors", "conditioning",
                 "source", "license"}


@pytest.fixture()
def model_home(tmp_path, monkeypatch, mediapipe_wheel) -> Path:  # noqa: F811 (fixture)
    """An empty model directory whose downloads/ already holds the wheel (a link to it)."""
    home = tmp_path / "models"
    (home / "downloads").mkdir(parents=True)
    (home / "downloads" / selfie_model.WHEEL_FILENAME).symlink_to(mediapipe_wheel)
    monkeypatch.setenv("OPENPIXEL_MODEL_DIR", str(home))
    return home


def forbid_pip(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError(f"pip must not run: {args}")
    monkeypatch.setattr(subprocess, "run", fail)


def test_model_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENPIXEL_MODEL_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert selfie_model.model_dir() == tmp_path / "explicit"
    monkeypatch.delenv("OPENPIXEL_MODEL_DIR")
    assert selfie_model.model_dir() == tmp_path / "xdg" / "openpixel_ros" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert selfie_model.model_dir() == tmp_path / "home" / ".cache" / "openpixel_ros" / "models"


def test_missing_default_model_names_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENPIXEL_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="openpixel_fetch_model") as info:
        selfie_model.selfie_model_path()
    assert "\n" not in str(info.value)


def test_fetch_converts_both_models_with_metadata(model_home, monkeypatch):
    forbid_pip(monkeypatch)  # the wheel is already in downloads/
    start = time.monotonic()
    path = selfie_model.fetch_selfie_model()
    print(f"convert from a downloaded wheel: {time.monotonic() - start:.2f} s")
    assert path == model_home / "selfie_segmentation_landscape.onnx"
    assert selfie_model.selfie_model_path() == path
    for name, spec in selfie_model.SELFIE_MODELS.items():
        onnx_path = model_home / f"{name}.onnx"
        sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
        assert set(sidecar) == METADATA_KEYS
        model = onnx.load(str(onnx_path))
        embedded = {p.key: p.value for p in model.metadata_props}
        assert json.loads(embedded["openpixel"]) == sidecar
        contract = parse_contract(sidecar)
        assert load_contract(onnx_path, embedded).input == contract.input
        assert contract.classes == ("background", "person")
        assert contract.output.kind == "probability"
        assert sidecar["license"] == "Apache-2.0" and "mediapipe==0.10.21" in sidecar["source"]
        graph_input, graph_output = model.graph.input[0], model.graph.output[0]
        assert (graph_input.name, graph_output.name) == (contract.input.name,
                                                         contract.output.name)
        h, w = spec["height"], spec["width"]
        assert (contract.input.height, contract.input.width) == (h, w)
        assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [1, 3, h, w]
        assert [d.dim_value for d in graph_output.type.tensor_type.shape.dim] == [1, 1, h, w]


def test_fetched_model_follows_its_metadata_to_the_reference_mask(model_home, tmp_path):
    """Preprocess as the metadata says, run ONNX Runtime, compare with the interpreter on
    the wheel's TFLite file."""
    path = selfie_model.fetch_selfie_model()
    contract = load_contract(path)
    spec = contract.input
    image = cv2.resize(skimage.data.astronaut(), (spec.width, spec.height),
                       interpolation=cv2.INTER_AREA)
    x = (image.astype(np.float32) * spec.scale - np.float32(spec.mean)) / np.float32(spec.std)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probability = session.run([contract.output.name],
                              {spec.name: x.transpose(2, 0, 1)[None].copy()})[0][0, 0]

    tflite = selfie_model.extract_selfie_tflite(
        model_home / "downloads" / selfie_model.WHEEL_FILENAME, tmp_path)[path.stem]
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
    interpreter.invoke()
    reference = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, :, :, 0]
    assert np.mean((probability > 0.5) == (reference > 0.5)) >= 0.99
    assert 0.2 < np.mean(probability > 0.5) < 0.9  # a person fills part of the frame


def test_fetch_is_idempotent_and_force_reconverts_without_downloading(model_home, monkeypatch):
    path = selfie_model.fetch_selfie_model()
    sidecar = path.with_suffix(".json")
    before = (path.stat().st_mtime_ns, sidecar.stat().st_mtime_ns)
    forbid_pip(monkeypatch)
    assert selfie_model.fetch_selfie_model() == path
    assert (path.stat().st_mtime_ns, sidecar.stat().st_mtime_ns) == before
    time.sleep(0.01)
    assert selfie_model.fetch_selfie_model(force=True) == path
    assert path.stat().st_mtime_ns > before[0]


def test_pip_failure_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENPIXEL_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 1, stdout="", stderr="Looking in indexes\nERROR: network is unreachable\n"))
    with pytest.raises(RuntimeError, match="mediapipe==0.10.21 failed .exit 1.: ERROR: network"):
        selfie_model.fetch_selfie_model()
    assert selfie_model.main([]) == 1


def test_damaged_or_foreign_wheel_is_rejected(tmp_path):
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="delete it"):
        selfie_model.install_from_wheel(broken, tmp_path / "out")
    foreign = tmp_path / "foreign.whl"
    with zipfile.ZipFile(foreign, "w") as archive:
        for name in selfie_model.SELFIE_MODELS:
            archive.writestr(f"{selfie_model.WHEEL_MODEL_DIR}{name}.tflite", b"other bytes")
    with pytest.raises(RuntimeError, match="SHA-256"):
        selfie_model.install_from_wheel(foreign, tmp_path / "out")
    assert not (tmp_path / "out" / "selfie_segmentation_landscape.onnx").exists()


def test_main_reports_the_model(model_home, capsys):
    assert selfie_model.main([]) == 0
    assert "selfie_segmentation_landscape.onnx" in capsys.readouterr().out
