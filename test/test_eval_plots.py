"""The evaluation reports' pictures: what they plot is computed right, and each tool writes its PNGs
beside its JSON (real matplotlib, Agg backend)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is not installed (requirements/runtime.txt)")

from conftest import REPO  # noqa: E402
from openpixel_ros.eval.__main__ import main as eval_main  # noqa: E402
from openpixel_ros.eval.plots import miou_curve, report_kind  # noqa: E402
from test_eval_semantic import tiny_set  # noqa: E402,F401  (the fixture)

RESULTS = REPO / "bench" / "results"


def _png(path):
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 8, f"{path} looks blank"
    return image


def _click_report(engine, per_image, max_clicks=4):
    return {"engine": engine, "images": len(per_image), "noc90": 2.0, "max_clicks": max_clicks,
            "miou_at": {"1": 0.0}, "per_image": [{"name": f"i{i}", "ious": ious} for i, ious in enumerate(per_image)]}


def test_miou_curve_keeps_an_early_stop_at_its_last_iou():
    # Image 0 stopped after 2 clicks at 0.9 (reached the target); image 1 used all 4.
    report = _click_report("x", [[0.5, 0.9], [0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(miou_curve(report), [0.3, 0.55, 0.6, 0.65])
    assert report_kind(report) == "clicks"


@pytest.mark.slow
def test_several_click_reports_give_one_picture_with_a_line_each(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_click_report("classical", [[0.5, 0.9], [0.6, 0.8, 0.95]])))
    b.write_text(json.dumps(_click_report("openpixel", [[0.2, 0.4, 0.6, 0.8]])))
    out = tmp_path / "compared.png"
    assert eval_main(["plot", str(a), str(b), "--out", str(out)]) == 0
    _png(out)
    semantic = tmp_path / "s.json"
    semantic.write_text(json.dumps({"per_class_iou": {"a": 0.5}, "miou": 0.5}))
    assert eval_main(["plot", str(a), str(semantic)]) == 1  # only click reports go together


@pytest.mark.slow
def test_semantic_tool_draws_per_class_iou_and_the_confusion_matrix(tiny_set, tmp_path):  # noqa: F811
    model, images, labels, truths, predictions = tiny_set
    out = tmp_path / "semantic.json"
    assert eval_main(["semantic", "--images", str(images), "--labels", str(labels), "--model", str(model),
                      "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    counts = np.array(report["confusion_matrix"])
    valid = truths != 255
    expected = np.zeros((3, 4), np.int64)
    np.add.at(expected, (truths[valid].astype(int), predictions[valid].astype(int)), 1)
    np.testing.assert_array_equal(counts, expected)  # the matrix the picture draws is the scored one
    _png(tmp_path / "semantic.per_class_iou.png")
    _png(tmp_path / "semantic.confusion.png")


def test_lighting_tool_draws_a_chart_per_shift(tiny_set, tmp_path):  # noqa: F811
    model, images, labels, _, _ = tiny_set
    out = tmp_path / "lighting.json"
    assert eval_main(["lighting", "--images", str(images), "--labels", str(labels), "--model", str(model),
                      "--limit", "1", "--shifts", "dark_0.5,low_contrast", "--json", str(out)]) == 0
    _png(tmp_path / "lighting.shifts.png")


@pytest.mark.parametrize("name", ["lighting_openpixel_road", "lighting_enet_camvid", "clicks_grabcut_openpixel"])
def test_the_committed_reports_plot(tmp_path, name):
    """The JSONs in bench/results that docs/ shows as pictures still plot (their format is the tools')."""
    source = RESULTS / f"{name}.json"
    copy = tmp_path / source.name
    copy.write_text(source.read_text())
    assert eval_main(["plot", str(copy)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_docs_show_pictures_that_exist():
    for doc in (REPO / "docs").glob("*.md"):
        for target in __import__("re").findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", doc.read_text()):
            assert (doc.parent / target).resolve().is_file(), f"{doc.name} shows a missing picture {target}"
