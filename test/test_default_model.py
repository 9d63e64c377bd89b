"""The packaged default model, OpenPixel road: loads with no network, honours the contract (a semantic
model: no click decoder), segments real CamVid frames far better than an untrained network, and its
INT8 variant agrees with FP32."""
from __future__ import annotations

import socket
import subprocess

import cv2
import numpy as np
import pytest

from conftest import shared_path
from openpixel_ros.default_model import (MODELS_DIR, PACKAGED_MODELS, default_model_path, packaged_model_path,
                                         resolve_model)
from openpixel_ros.eval.common import load_labels, pair_by_stem
from openpixel_ros.model_contract import CONDITIONING_SIZE, load_contract
from openpixel_ros.segmentor import Segmentor

CAMVID = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
          "Bicyclist")
MAX_MODEL_MB = 8.7


def test_default_model_loads_and_runs_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the default model must not touch the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(subprocess, "run", no_network)
    segmentor = Segmentor()
    assert segmentor.model_path == default_model_path() == MODELS_DIR / "openpixel_road.encoder.onnx"
    rgb = np.random.default_rng(0).integers(0, 256, (270, 480, 3), np.uint8)
    result = segmentor.segment(rgb)
    assert result.labels.shape == (270, 480) and result.labels.max() < len(CAMVID)
    segmentor.close()


def test_packaged_files_match_the_contract_and_size_budget():
    contract = load_contract(default_model_path())
    assert contract.classes == CAMVID and len(contract.colors) == len(CAMVID)
    assert (contract.input.height, contract.input.width) == (360, 480)
    assert contract.conditioning is not None and contract.conditioning.size == CONDITIONING_SIZE
    assert contract.output.kind == "logits"
    assert "non-commercial" in contract.extra["license"]
    assert contract.extra["foreground_classes"] == ["Car", "Pedestrian", "Bicyclist"]
    assert default_model_path().stat().st_size / 1e6 <= MAX_MODEL_MB
    int8 = load_contract(packaged_model_path("openpixel_road.int8"))
    assert int8.classes == CAMVID and int8.extra["precision"] == "int8"
    assert set(PACKAGED_MODELS) == {"openpixel_road", "openpixel_road.int8"}


def test_the_road_model_ships_without_a_click_decoder():
    """Its issue-12 decoder read the v1 encoder's features and is retired (the click network answers
    clicks): no decoder file, and neither contract (sidecar nor embedded) names one."""
    import json

    import onnx

    assert not list(MODELS_DIR.glob("openpixel_road*decoder*"))
    for name in PACKAGED_MODELS:
        path = packaged_model_path(name)
        embedded = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert json.loads(embedded["openpixel"]) == sidecar and "prompt_decoder" not in sidecar, name


def test_model_names_resolve():
    assert resolve_model(None) == resolve_model("") == default_model_path()
    assert resolve_model("openpixel_road.int8").name == "openpixel_road.int8.encoder.onnx"
    assert str(resolve_model("/some/where.onnx")) == "/some/where.onnx"


def test_default_mask_marks_road_users():
    segmentor = Segmentor()
    assert [segmentor.contract.classes[i] for i in segmentor.foreground_ids] == ["Car", "Pedestrian", "Bicyclist"]
    segmentor.set_foreground_classes(["Road"])
    assert segmentor.foreground_ids == [CAMVID.index("Road")]
    segmentor.close()


# -- real frames ----------------------------------------------------------------------------
VAL_STEMS = 12  # the first frames of CamVid val (sorted): several sequences' road scenes


@pytest.fixture(scope="module")
def camvid_val():
    images, labels = shared_path("datasets", "camvid", "val"), shared_path("datasets", "camvid", "valannot")
    if not images.is_dir():
        pytest.skip("needs ../shared/datasets/camvid")
    pairs = pair_by_stem(images, labels)[::len(pair_by_stem(images, labels)) // VAL_STEMS][:VAL_STEMS]
    return [(cv2.cvtColor(cv2.imread(str(i)), cv2.COLOR_BGR2RGB), load_labels(lab)) for _, i, lab in pairs]


def class_recall(segmentor, frames) -> dict:
    """Per class: the share of its ground-truth pixels labelled as that class."""
    hit, total = np.zeros(len(CAMVID)), np.zeros(len(CAMVID))
    for rgb, gt in frames:
        pred = segmentor.segment(rgb).labels
        for c in range(len(CAMVID)):
            mask = gt == c
            hit[c] += np.sum(pred[mask] == c)
            total[c] += mask.sum()
    return {name: hit[c] / total[c] for c, name in enumerate(CAMVID) if total[c]}


# Conservative: the shipped model scores about 0.95 / 0.95 / 0.85 on these frames.
THRESHOLDS = {"Road": 0.85, "Sky": 0.85, "Car": 0.6}


def test_road_sky_and_car_on_real_camvid_frames(camvid_val):
    segmentor = Segmentor()
    recall = class_recall(segmentor, camvid_val)
    segmentor.close()
    for name, threshold in THRESHOLDS.items():
        assert recall[name] > threshold, (name, recall)


@pytest.mark.slow
def test_an_untrained_network_fails_the_same_thresholds(camvid_val, tmp_path):
    torch = pytest.importorskip("torch")
    from openpixel_ros.export.onnx_export import export_openpixel
    from openpixel_ros.model.openpixel import ModelInfo, OpenPixel, OpenPixelConfig

    torch.manual_seed(0)
    config = OpenPixelConfig(num_classes=11, output_stride=32, s4_channels=64, pyramid_channels=96)
    encoder, _ = export_openpixel(OpenPixel(config).eval(), ModelInfo(classes=list(CAMVID)), tmp_path / "u.onnx")
    segmentor = Segmentor(encoder)
    recall = class_recall(segmentor, camvid_val[:4])
    segmentor.close()
    assert any(recall[name] <= threshold for name, threshold in THRESHOLDS.items()), recall


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_frames(camvid_val):
    fp32, int8 = Segmentor(), Segmentor("openpixel_road.int8")
    agree = total = 0
    for rgb, _ in camvid_val:
        a, b = fp32.segment(rgb).labels, int8.segment(rgb).labels
        agree += int((a == b).sum())
        total += a.size
    fp32.close(), int8.close()
    assert agree / total >= 0.95
