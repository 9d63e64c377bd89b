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
REPO = MODELS_DIR.parents[1]


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


def test_the_shipped_weights_come_from_the_committed_run_and_its_log_is_beside_it():
    """Issue 20: the packaged model names its config; that config is committed and trains on train + val
    for a fixed number of steps (nothing picked on val), and its CSV log beside it reaches the last step."""
    import csv

    import yaml

    source = load_contract(default_model_path()).extra["source"]
    config_path = REPO / "config" / "train" / "road_v2_trainval.yaml"
    assert "config/train/road_v2_trainval.yaml" in source, source
    config = yaml.safe_load(config_path.read_text())
    assert config["train"]["validate_every"] == 0
    assert {"images": "../shared/datasets/camvid/val", "labels": "../shared/datasets/camvid/valannot"} in \
        config["data"]["extra_folders"]
    with open(config_path.with_suffix(".csv"), newline="") as log:
        steps = [int(row["step"]) for row in csv.DictReader(log)]
    assert steps == sorted(steps) and steps[-1] == config["train"]["max_steps"]


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


# Recall floors on these frames. Road, Sky and Car: conservative (every trained model scores about 0.95).
# The thin and rare classes (issue 20): what road v2's train-only run reaches on these frames (SignSymbol
# 0.669, Fence 0.842, Pedestrian 0.877; the shipped weights also trained on val and reach more) minus a
# margin; road v1 scored 0.580 / 0.766 / 0.710 and fails them (test below).
THRESHOLDS = {"Road": 0.85, "Sky": 0.85, "Car": 0.6, "SignSymbol": 0.62, "Fence": 0.80, "Pedestrian": 0.80}
ROAD_V1_COMMIT = "e4a9d2399080dba8972b4c3fc26d88a580b6e16a"  # the last commit that packaged road v1


def test_recall_floors_on_real_camvid_frames(camvid_val):
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
def test_the_previous_road_model_fails_the_raised_floors(camvid_val, tmp_path):
    """Road v1, taken from git history (skipped where the history is not there, e.g. a shallow clone)."""
    for suffix in (".onnx", ".json"):
        shown = subprocess.run(["git", "-C", str(REPO), "show",
                                f"{ROAD_V1_COMMIT}:openpixel_ros/models/openpixel_road.encoder{suffix}"],
                               capture_output=True)
        if shown.returncode:
            pytest.skip(f"road v1 is not in this checkout's git history: {shown.stderr.decode().strip()}")
        (tmp_path / f"openpixel_road_v1.encoder{suffix}").write_bytes(shown.stdout)
    segmentor = Segmentor(str(tmp_path / "openpixel_road_v1.encoder.onnx"))
    recall = class_recall(segmentor, camvid_val)
    segmentor.close()
    failed = [name for name, threshold in THRESHOLDS.items() if recall[name] <= threshold]
    assert set(failed) == {"SignSymbol", "Fence", "Pedestrian"}, recall


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
