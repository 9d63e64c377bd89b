"""Evaluation tools: pairing, label loading, class maps, confusion matrix, the semantic and lighting
CLIs on a tiny ONNX model, and the real ENet reference through OpenCV DNN (skipped without ../shared)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path
from onnx_models import expected_linear_labels, linear_classifier
from openpixel_ros.eval.__main__ import main as eval_main
from openpixel_ros.eval.common import ClassMap, load_labels, pair_by_stem
from openpixel_ros.inference.confusion_matrix import ConfusionMatrix
from openpixel_ros.eval.lighting import shift_rng
from openpixel_ros.lighting_shifts import SHIFTS

CLASS_MAPS = REPO / "config" / "class_maps"
CAMVID = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
          "Bicyclist"]


# -- pairing and loading -----------------------------------------------------------------
def test_pairing_by_stem_skips_unlabelled_images_and_honours_limit(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for stem in ("b", "a", "c"):
        cv2.imwrite(str(images / f"{stem}.jpg"), np.zeros((4, 4, 3), np.uint8))
    for stem in ("a", "b", "z"):
        cv2.imwrite(str(labels / f"{stem}.png"), np.zeros((4, 4), np.uint8))
    (images / "notes.txt").write_text("not an image")
    pairs = pair_by_stem(images, labels)
    assert [stem for stem, _, _ in pairs] == ["a", "b"]
    assert pairs[0][1].name == "a.jpg" and pairs[0][2].name == "a.png"
    assert len(pair_by_stem(images, labels, limit=1)) == 1
    (tmp_path / "empty_labels").mkdir()
    with pytest.raises(ValueError, match="no image"):
        pair_by_stem(images, tmp_path / "empty_labels")
    with pytest.raises(FileNotFoundError):
        pair_by_stem(tmp_path / "missing", labels)


def test_palette_labels_load_as_indices(tmp_path):
    ids = np.array([[0, 1], [2, 11]], np.uint8)
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette([v for i in range(256) for v in ((37 * i) % 256, (91 * i) % 256, (173 * i) % 256)])
    palette.save(tmp_path / "p.png")
    Image.fromarray(ids, mode="L").save(tmp_path / "g.png")
    assert np.array_equal(load_labels(tmp_path / "p.png"), ids)
    assert np.array_equal(load_labels(tmp_path / "g.png"), ids)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="mode RGB"):
        load_labels(tmp_path / "rgb.png")


# -- scoring -----------------------------------------------------------------------------
def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1, 1], [2, 2, 9, 9]])
    pred = np.array([[0, 1, 1, 1], [2, 5, 0, 2]])  # 5: "no class" (a miss); gt 9: ignored
    matrix = ConfusionMatrix(3, ignore_index=9)
    matrix.update(gt, pred)
    # class 0: TP 1, FN 1, FP 0 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 (no class) -> 1/2
    assert matrix.per_class_iou() == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert matrix.miou() == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert matrix.pixel_accuracy() == pytest.approx(4 / 6)
    summary = matrix.summary(["a", "b", "c"])
    assert set(summary) == {"miou", "pixel_acc", "per_class_iou"} and list(summary["per_class_iou"]) == ["a", "b", "c"]


def test_absent_classes_are_left_out_of_the_mean():
    matrix = ConfusionMatrix(4, ignore_index=255)
    matrix.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    assert np.isnan(matrix.per_class_iou()[2:]).all()
    assert matrix.miou() == 1.0
    assert matrix.summary(list("abcd"))["per_class_iou"]["c"] is None


def test_class_map_files_parse_and_reject_mistakes(tmp_path):
    selfie = ClassMap.from_file(CLASS_MAPS / "selfie_to_camvid.yaml", ["background", "person"])
    assert selfie.target_classes == tuple(CAMVID) and selfie.ignore_index == 11
    assert selfie.apply(np.array([0, 1])).tolist() == [11, 9]  # background: no CamVid class (a miss)
    voc = ClassMap.from_file(CLASS_MAPS / "voc_to_camvid.yaml", [f"voc{i}" for i in range(21)])
    assert voc.apply(np.array([7, 15, 2])).tolist() == [8, 9, 10]  # car, person, bicycle
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"target_classes": ["x"], "map": {"background": 0}}))
    with pytest.raises(ValueError, match="does not map model classes: person"):
        ClassMap.from_file(bad, ["background", "person"])
    bad.write_text(json.dumps({"target_classes": ["x"], "map": {"background": 0, "persn": 0}}))
    with pytest.raises(ValueError, match="persn"):
        ClassMap.from_file(bad, ["background", "person"])
    bad.write_text(json.dumps({"target_classes": ["x"], "map": {"background": 0, "person": 3}}))
    with pytest.raises(ValueError, match="not an id"):
        ClassMap.from_file(bad, ["background", "person"])


def test_cityscapes_map_covers_enet_classes():
    classes = (shared_path("models", "enet_cityscapes") / "enet-classes.txt").read_text().split()
    class_map = ClassMap.from_file(CLASS_MAPS / "cityscapes_to_camvid.yaml", classes)
    named = dict(zip(classes, class_map.apply(np.arange(len(classes))).tolist()))
    assert named["Road"] == 3 and named["Sidewalk"] == 4 and named["Unlabeled"] == 11
    assert {named[c] for c in ("Car", "Truck", "Bus", "Train")} == {8}
    assert set(named.values()) == set(range(12))  # every CamVid class is reachable


# -- the tools on a tiny model ----------------------------------------------------------------
WEIGHTS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # class = brightest channel


@pytest.fixture()
def tiny_set(tmp_path):
    """Three random images; labels = the tiny model's prediction with one block relabelled."""
    model = tmp_path / "tiny.onnx"
    linear_classifier(model, WEIGHTS, [0.0, 0.0, 0.0], classes=["red", "green", "blue"])
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    rng = np.random.default_rng(5)
    truths, predictions = [], []
    for i in range(3):
        rgb = np.kron(rng.integers(20, 235, (6, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        predicted = expected_linear_labels(rgb, WEIGHTS, [0, 0, 0])
        truth = predicted.copy()
        truth[:8, :16] = (truth[:8, :16] + 1) % 3   # a wrong block
        truth[-8:, -8:] = 255                         # an ignored block
        cv2.imwrite(str(images / f"im{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(labels / f"im{i}.png"), truth)
        truths.append(truth), predictions.append(predicted)
    return model, images, labels, np.stack(truths), np.stack(predictions)


def test_semantic_tool_reports_the_hand_computed_miou(tiny_set, tmp_path):
    model, images, labels, truths, predictions = tiny_set
    out = tmp_path / "semantic.json"
    assert eval_main(["semantic", "--images", str(images), "--labels", str(labels), "--model", str(model),
                      "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    valid = truths != 255
    ious = []
    for c in range(3):
        t, p = (truths == c) & valid, (predictions == c) & valid
        ious.append((t & p).sum() / (t | p).sum())
    assert report["per_class_iou"] == pytest.approx(dict(zip(["red", "green", "blue"], ious)), abs=1e-6)
    assert report["miou"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert report["pixel_acc"] == pytest.approx((truths == predictions)[valid].mean(), abs=1e-6)
    assert report["images"] == 3


def test_lighting_tool_reports_every_shift_off_and_on(tiny_set, tmp_path):
    model, images, labels, _, _ = tiny_set
    out = tmp_path / "lighting.json"
    assert eval_main(["lighting", "--images", str(images), "--labels", str(labels), "--model", str(model),
                      "--limit", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["shifts"]) == set(SHIFTS) and report["images"] == 2
    for entry in [report["clean"], *report["shifts"].values()]:
        for key in ("miou_off", "miou_on", "pixel_acc_off", "pixel_acc_on", "miou_naive", "pixel_acc_naive"):
            assert 0.0 <= entry[key] <= 1.0, key
    # the tiny model's brightest-channel rule is invariant to a uniform gain: darkening barely matters
    assert report["shifts"]["dark_0.5"]["miou_off"] == pytest.approx(report["clean"]["miou_off"], abs=0.05)
    assert set(report["summary"]) == {"on", "naive"}


@pytest.mark.slow
def test_lighting_tool_scores_conditioning_on_and_off(tmp_path, tiny_set):
    _, images, labels, _, _ = tiny_set
    model = tmp_path / "conditioned.onnx"
    linear_classifier(model, WEIGHTS, [0.0, 0.0, 0.0], classes=["red", "green", "blue"], conditioning_size=10)
    out = tmp_path / "lighting.json"
    assert eval_main(["lighting", "--images", str(images), "--labels", str(labels), "--model", str(model),
                      "--limit", "2", "--conditioning", "--no-baseline", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["modes"] == ["off", "on", "cond", "on_cond"]
    assert set(report["summary"]) == {"on", "cond", "on_cond"}
    for entry in [report["clean"], *report["shifts"].values()]:
        # the model adds the vector's first value to every class score: argmax (and mIoU) unchanged
        assert entry["miou_cond"] == pytest.approx(entry["miou_off"], abs=1e-9)
        assert entry["miou_on_cond"] == pytest.approx(entry["miou_on"], abs=1e-9)
    plain = tmp_path / "plain.onnx"
    linear_classifier(plain, WEIGHTS, [0.0, 0.0, 0.0], classes=["red", "green", "blue"])
    with pytest.raises(SystemExit, match="no conditioning input"):
        eval_main(["lighting", "--images", str(images), "--labels", str(labels), "--model", str(plain),
                   "--conditioning"])


def test_missing_model_is_a_clear_error(tiny_set, tmp_path, capsys):
    _, images, labels, _, _ = tiny_set
    assert eval_main(["semantic", "--images", str(images), "--labels", str(labels),
                      "--model", str(tmp_path / "nowhere.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nowhere.onnx" in err and len(err.splitlines()) == 1


def test_shifts_are_seeded_and_repeatable():
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    first = SHIFTS["dusk_noise"](rgb, shift_rng(0, "a", "dusk_noise"))
    assert np.array_equal(first, SHIFTS["dusk_noise"](rgb, shift_rng(0, "a", "dusk_noise")))
    assert not np.array_equal(first, SHIFTS["dusk_noise"](rgb, shift_rng(1, "a", "dusk_noise")))
    assert SHIFTS["dark_0.5"](rgb, None).max() <= 128
    assert SHIFTS["low_contrast"](rgb, None).std() < 0.4 * rgb.std()


# -- the real reference model -------------------------------------------------------------------
@pytest.mark.slow
def test_enet_reference_through_opencv_dnn_on_real_camvid(tmp_path):
    model = shared_path("models", "enet_cityscapes", "enet-model.net")
    camvid = shared_path("datasets", "camvid")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for stem in ("0016E5_07959", "0016E5_08085"):
        (images / f"{stem}.jpg").symlink_to(camvid / "val" / f"{stem}.jpg")
        (labels / f"{stem}.png").symlink_to(camvid / "valannot" / f"{stem}.png")
    out = tmp_path / "enet.json"
    assert eval_main(["semantic", "--images", str(images), "--labels", str(labels), "--model", str(model),
                      "--engine", "opencv-dnn", "--class-map", str(CLASS_MAPS / "cityscapes_to_camvid.yaml"),
                      "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    # a real road-scene model: road and sky are easy, the mean is far above chance (1/11)
    assert report["per_class_iou"]["Road"] > 0.5 and report["per_class_iou"]["Sky"] > 0.7
    assert report["miou"] > 0.3 and report["pixel_acc"] > 0.6
    assert Path(report["class_map"]).name == "cityscapes_to_camvid"


def test_a_bomb_label_file_is_one_line_and_exit_1(tiny_set, tmp_path, capsys):
    """Issue 17: a small label PNG declaring 36 MP (over the 33-MP default) took eval semantic to
    5.3 GB and a traceback; now it is refused from its header."""
    from image_bombs import png_bomb
    model, images, labels, _, _ = tiny_set
    (labels / "im1.png").write_bytes(png_bomb(6000, 6000))
    assert eval_main(["semantic", "--images", str(images), "--labels", str(labels), "--model", str(model)]) == 1
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "im1.png is 6000x6000 (36.0 MP), over the pixel budget" in errors[0], err
    assert "Traceback" not in err
