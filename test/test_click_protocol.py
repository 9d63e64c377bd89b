"""The standard click protocol on synthetic shapes whose answers are known exactly, and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from openpixel_ros.eval.__main__ import main as eval_main
from openpixel_ros.eval.click_protocol import evaluate_sample, iou, next_click, noc, summarize
from openpixel_ros.inference.ground_truth import load_ground_truth, split_ground_truth
from openpixel_ros.interactive import PromptResult
from openpixel_ros.interactive.base import PromptEngine

H, W = 120, 160


def _square(top=30, left=50, side=41):
    mask = np.zeros((H, W), bool)
    mask[top:top + side, left:left + side] = True
    return mask


def _disc(cx=80, cy=60, radius=25):
    rows, cols = np.mgrid[:H, :W]
    return (cols - cx) ** 2 + (rows - cy) ** 2 <= radius ** 2


class ScriptedEngine(PromptEngine):
    """Answers each click with a mask computed from the prompt by ``answer(prompt, call)``."""

    name = "scripted"

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.prompts = []

    def _prepare(self, rgb):
        pass

    def _predict(self, prompt, multimask):
        self.prompts.append(prompt)
        return PromptResult(masks=[self.answer(prompt, len(self.prompts))], scores=[1.0])


RGB = np.zeros((H, W, 3), np.uint8)


def test_first_click_is_positive_at_the_centre():
    assert next_click(_square(), np.zeros((H, W), bool)) == (70, 50, 1)
    assert next_click(_disc(), np.zeros((H, W), bool)) == (80, 60, 1)


def test_border_counts_as_boundary():
    # An object cut by the left edge: the click goes to the middle of what is visible (x 14/15),
    # not to the edge, as it would if the outside of the image counted as object.
    ground_truth = np.zeros((H, W), bool)
    ground_truth[20:61, 0:30] = True
    x, y, label = next_click(ground_truth, np.zeros((H, W), bool))
    assert label == 1 and x in (14, 15) and 34 <= y <= 46


def test_second_click_sign_follows_the_error_type():
    ground_truth = _square()
    too_big = _square(top=10, left=30, side=81)       # false positives all around
    too_small = _square(top=45, left=65, side=11)     # false negatives all around
    assert next_click(ground_truth, too_big)[2] == 0
    assert next_click(ground_truth, too_small)[2] == 1
    # The false-positive click lands in the deepest part of the error: the widest margin.
    shifted = _square(top=30, left=50, side=41) | _square(top=30, left=91, side=41)
    x, y, label = next_click(ground_truth, shifted)
    assert label == 0 and x == 111 and y == 50
    assert next_click(ground_truth, ground_truth) is None


def test_ignored_pixels_take_no_clicks_and_no_score():
    ground_truth = _square()
    ignore = _disc(cx=70, cy=50, radius=12)  # the square's centre is "unknown"
    x, y, _ = next_click(ground_truth & ~ignore, np.zeros((H, W), bool), ignore)
    assert not ignore[y, x]
    prediction = ground_truth & ~ignore
    assert iou(ground_truth, prediction, ignore) == 1.0
    assert iou(ground_truth, prediction) < 1.0


def test_oracle_needs_one_click_and_empty_never_reaches_85():
    ground_truth = _disc()
    oracle = ScriptedEngine(lambda prompt, call: ground_truth.copy())
    empty = ScriptedEngine(lambda prompt, call: np.zeros((H, W), bool))
    perfect = evaluate_sample(oracle, RGB, ground_truth, name="oracle")
    hopeless = evaluate_sample(empty, RGB, ground_truth, name="empty", max_clicks=20)
    assert perfect.noc(0.85, 20) == perfect.noc(0.90, 20) == 1
    assert hopeless.noc(0.85, 20) == 20 and len(hopeless.ious) == 20
    assert all(v == 0 for v in hopeless.ious)
    # With an empty answer the same (deepest) false negative comes back every time, as positive.
    assert all(c == hopeless.clicks[0] for c in hopeless.clicks) and hopeless.clicks[0][2] == 1
    assert len(empty.prompts[-1].points) == 20  # clicks accumulate

    summary = summarize([perfect, hopeless], max_clicks=20)
    assert summary["images"] == 2
    assert summary["noc85"] == summary["noc90"] == pytest.approx(10.5)
    assert summary["over20_90"] == 1
    assert summary["miou_at"] == {"1": 0.5, "3": 0.5, "5": 0.5}
    assert summary["per_click_ms_median"] >= 0


def test_clicks_accumulate_with_the_previous_mask():
    ground_truth = _square()

    def grow(prompt, call):  # a quarter of the square more per click
        mask = np.zeros((H, W), bool)
        mask[30:30 + min(41, 11 * call), 50:91] = True
        return mask

    engine = ScriptedEngine(grow)
    result = evaluate_sample(engine, RGB, ground_truth, max_clicks=10)
    assert result.ious == pytest.approx([11 / 41, 22 / 41, 33 / 41, 1.0, 1.0][:len(result.ious)])
    assert noc(result.ious, 0.85, 10) == 4 and noc(result.ious, 0.80, 10) == 3
    assert all(label == 1 for _, _, label in result.clicks)
    assert engine.prompts[0].previous_mask is None
    np.testing.assert_array_equal(engine.prompts[1].previous_mask, grow(None, 1))
    no_previous = ScriptedEngine(grow)
    evaluate_sample(no_previous, RGB, ground_truth, max_clicks=3, feed_previous_mask=False)
    assert all(p.previous_mask is None for p in no_previous.prompts)


def test_ground_truth_value_rules():
    grabcut = np.array([[0, 128, 255]], np.uint8)
    obj, ignore = split_ground_truth(grabcut)
    assert obj.tolist() == [[False, False, True]] and ignore.tolist() == [[False, True, False]]
    davis = np.array([[0, 1, 2, 255, 128]], np.uint8)
    obj, ignore = split_ground_truth(davis)
    assert obj.tolist() == [[False, True, True, False, True]]
    assert ignore.tolist() == [[False, False, False, True, False]]
    binary = np.array([[0, 1]], np.uint8)
    assert split_ground_truth(binary)[0].tolist() == [[False, True]]
    only_128 = np.array([[0, 128]], np.uint8)  # no 255: 128 is an instance id, not an ignore band
    assert split_ground_truth(only_128)[0].tolist() == [[False, True]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    assert split_ground_truth(rgb)[0].tolist() == [[False, True]]


def test_palette_masks_give_their_indices(tmp_path):
    from PIL import Image

    indices = np.zeros((4, 4), np.uint8)
    indices[1:3, 1:3] = 2
    indices[0, 0] = 255
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [255, 255, 255] * 253)
    image.save(tmp_path / "palette.png")
    obj, ignore = load_ground_truth(tmp_path / "palette.png")
    assert obj.sum() == 4 and ignore[0, 0] and ignore.sum() == 1


def test_cli_report(tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for stem, shape in (("b_disc", _disc()), ("a_square", _square()), ("c_unused", _disc(radius=10))):
        rgb = rng.integers(0, 40, (H, W, 3), dtype=np.uint8)
        rgb[shape] = rng.integers(200, 255, (int(shape.sum()), 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"{stem}.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(masks / f"{stem}.png"), shape.astype(np.uint8) * 255)
    (images / "no_mask.png").write_bytes((images / "a_square.jpg").read_bytes())
    out = tmp_path / "report.json"
    code = eval_main(["clicks", "--images", str(images), "--masks", str(masks), "--limit", "2",
                      "--max-clicks", "5", "--engine", "classical", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("images", "noc85", "noc90", "over20_90", "miou_at", "per_click_ms_median", "engine", "per_image"):
        assert key in report
    assert report["engine"] == "classical" and report["images"] == 2
    assert [r["name"] for r in report["per_image"]] == ["a_square", "b_disc"]
    assert set(report["miou_at"]) == {"1", "3", "5"}
    # High-contrast shapes: the classical engine gets them at the first click.
    assert report["noc90"] == 1.0 and report["miou_at"]["1"] > 0.9
    assert "NoC@90" in capsys.readouterr().out
    # The mIoU-versus-clicks curve beside the JSON (openpixel_ros.eval.plots).
    png = tmp_path / "report.miou_vs_clicks.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and cv2.imread(str(png)).shape[1] > 300
    # Without --engine: the default engine, the packaged click network, named in the report (it said null).
    default = tmp_path / "default.json"
    assert eval_main(["clicks", "--images", str(images), "--masks", str(masks), "--limit", "1",
                      "--max-clicks", "2", "--threads", "1", "--json", str(default)]) == 0
    report = json.loads(default.read_text())
    assert report["engine"] == "openpixel" and report["images"] == 1
    assert Path(report["model"]).name == "openpixel_click.onnx"
    assert report["zoom_in"] is True and report["zoom_first"] is True
    assert report["retry_ignored_click"] is True and report["retries"] >= 0
    second = tmp_path / "second.json"
    assert eval_main(["clicks", "--images", str(images), "--masks", str(masks), "--limit", "1", "--max-clicks", "2",
                      "--threads", "1", "--zoom-in", "second", "--json", str(second)]) == 0
    assert (json.loads(second.read_text())["zoom_in"], json.loads(second.read_text())["zoom_first"]) == (True, False)
    assert eval_main(["clicks", "--images", str(images), "--masks", str(masks), "--limit", "1", "--max-clicks", "2",
                      "--threads", "1", "--retry-ignored-click", "off", "--json", str(second)]) == 0
    assert json.loads(second.read_text())["retry_ignored_click"] is False


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit, match="not a directory"):
        eval_main(["clicks", "--images", str(tmp_path / "x"), "--masks", str(tmp_path)])
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    with pytest.raises(SystemExit, match="unknown prompt engine"):
        cv2.imwrite(str(tmp_path / "i" / "a.png"), np.zeros((4, 4, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "m" / "a.png"), np.zeros((4, 4), np.uint8))
        eval_main(["clicks", "--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"), "--engine", "nope"])
