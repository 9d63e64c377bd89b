"""Click-head training (issue 12): object-mask sources, a frozen encoder started from another run,
scribble simulation, and the kept checkpoints of a learning curve."""
from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from openpixel_ros.inference.click_simulation import Scribble, next_scribble, scribble_in  # noqa: E402
from openpixel_ros.training.config import ConfigError, config_from_dict  # noqa: E402
from openpixel_ros.training.data import (WHOLE_OBJECT, ClassObjects, LabelFolder, ObjectMaskFolder,  # noqa: E402
                                         pick_object)
from openpixel_ros.training.train import Trainer  # noqa: E402

from test_model_training import TINY  # noqa: E402


def ellipse(h=60, w=90, axes=(35, 8), angle=20.0, centre=(45, 30)):
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)


def stroke_pixels(scribble: Scribble) -> np.ndarray:
    return np.floor(np.asarray(scribble.points)).astype(int)  # (col, row) of each vertex


def test_a_scribble_runs_inside_the_region_along_its_main_axis():
    region = ellipse()
    stroke = scribble_in(region, True)
    pixels = stroke_pixels(stroke)
    assert stroke.positive and len(pixels) > 5
    assert region[pixels[:, 1], pixels[:, 0]].all()
    extent = np.ptp(pixels, axis=0)
    assert extent[0] > 30 and extent[0] > 2 * extent[1]  # along the 20-degree major axis
    assert scribble_in(region, True) == stroke  # deterministic without a generator (the protocol)
    varied = {len(scribble_in(region, False, np.random.default_rng(s)).points) for s in range(6)}
    assert len(varied) > 1
    assert scribble_in(np.zeros((10, 10), bool), True) is None


def test_corrective_scribbles_go_into_the_deeper_error_with_its_sign():
    gt = ellipse()
    missed = next_scribble(np.zeros_like(gt), gt)  # everything is a false negative
    assert missed.positive and gt[stroke_pixels(missed)[:, 1], stroke_pixels(missed)[:, 0]].all()
    spill = gt.copy()
    spill[:, :25] = True  # a wide false positive on the left
    extra = next_scribble(spill, gt)
    assert not extra.positive
    px = stroke_pixels(extra)
    assert (spill & ~gt)[px[:, 1], px[:, 0]].all()
    assert next_scribble(gt, gt) is None


def _write_pair(folder, stem, rgb, mask, palette=False):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / "images" / f"{stem}.jpg")
    image = Image.fromarray(mask)
    if palette:  # an L image given a palette becomes P with the same indices (the DAVIS layout)
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
        assert image.mode == "P"
    image.save(folder / "masks" / f"{stem}.png")


@pytest.fixture
def mask_folders(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        salient = np.zeros((40, 60), np.uint8)
        salient[5:30, 10 + i:40] = 255
        salient[30:32, 10:40] = 128  # an unknown band
        _write_pair(tmp_path / "salient", f"s{i}", rgb, salient)
        davis = np.zeros((40, 60), np.uint8)
        davis[10:20, 5:25] = 1
        davis[22:35, 30:50] = 2  # two instances: one object, parts and all
        davis[0, 0] = 255
        _write_pair(tmp_path / "davis", f"d{i}", rgb, davis, palette=True)
    return tmp_path


def test_mask_folders_read_as_whole_objects_with_void(mask_folders):
    salient = ObjectMaskFolder(str(mask_folders / "salient/images"), str(mask_folders / "salient/masks"),
                               40, 60, ignore_index=255)
    rgb, labels = salient[0]
    assert rgb.shape == (40, 60, 3) and set(np.unique(labels)) == {0, WHOLE_OBJECT, 255}
    assert (labels[30:32, 10:40] == 255).all() and (labels[5:30, 10:40] == WHOLE_OBJECT).all()
    davis = ObjectMaskFolder(str(mask_folders / "davis/images"), str(mask_folders / "davis/masks"),
                             40, 60, ignore_index=255)
    _, labels = davis[1]
    assert (labels[10:20, 5:25] == WHOLE_OBJECT).all() and (labels[22:35, 30:50] == WHOLE_OBJECT).all()
    assert labels[0, 0] == 255
    obj = pick_object(labels, np.random.default_rng(0), 255, (0,), whole_classes=(WHOLE_OBJECT,))
    assert obj.sum() == 200 + 260  # both parts: the whole mask is the object
    part = pick_object(labels, np.random.default_rng(0), 255, (0,))
    assert part.sum() in (200, 260)  # without whole_classes: one connected component


def test_class_label_folders_give_their_listed_classes_as_objects(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    labels = np.zeros((20, 30), np.uint8)
    labels[:, 10:20] = 8  # a car
    labels[:, 20:] = 3  # road: not an object
    labels[0, :] = 11  # unlabelled
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((20, 30, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "lab" / "a.png"), labels)
    objects = ClassObjects(LabelFolder(str(tmp_path / "img"), str(tmp_path / "lab"), 20, 30), [5, 8], 11, 255)
    _, mapped = objects[0]
    assert set(np.unique(mapped)) == {0, WHOLE_OBJECT + 2, 255}


def click_config(out, sources, init, **clicks):
    raw = copy.deepcopy(TINY)
    raw["data"] = {"kind": "objects", "sources": sources, "height": 40, "width": 60, "ignore_index": 255,
                   "crop_height": 32, "crop_width": 48, "scale_min": 0.8, "scale_max": 1.2}
    raw["clicks"] = {"max_iterations": 2, **clicks}
    raw["train"] = {**raw["train"], "freeze_encoder": True, "keep_every": 2}
    raw["init_checkpoint"] = str(init)
    raw["output_dir"] = str(out)
    return config_from_dict(raw)


def test_frozen_encoder_training_changes_only_the_decoder(mask_folders, tmp_path):
    base = Trainer(config_from_dict({**copy.deepcopy(TINY), "output_dir": str(tmp_path / "base")}))
    init = base.save_checkpoint()
    sources = [{"images": str(mask_folders / "salient/images"), "masks": str(mask_folders / "salient/masks")},
               {"images": str(mask_folders / "davis/images"), "masks": str(mask_folders / "davis/masks")}]
    trainer = Trainer(click_config(tmp_path / "click", sources, init, scribble_prob=0.5))
    assert len(trainer.dataset) == 6
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())  # started from init
    history = trainer.run(max_steps=4, log=None)
    assert all(np.isfinite(h["mask_pixel"]) for h in history)
    after = trainer.model.state_dict()
    encoder = [k for k in after if not k.startswith("decoder.")]
    decoder = [k for k in after if k.startswith("decoder.") and after[k].dtype.is_floating_point]
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # BatchNorm statistics included
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    assert (tmp_path / "click" / "step_2.pt").is_file() and (tmp_path / "click" / "step_4.pt").is_file()


def test_scribble_samples_are_prompted_with_strokes(mask_folders, tmp_path, monkeypatch):
    base = Trainer(config_from_dict({**copy.deepcopy(TINY), "output_dir": str(tmp_path / "base")}))
    init = base.save_checkpoint()
    sources = [{"images": str(mask_folders / "salient/images"), "masks": str(mask_folders / "salient/masks")}]
    trainer = Trainer(click_config(tmp_path / "click", sources, init, scribble_prob=1.0))
    import openpixel_ros.training.train as train_module
    seen = []
    real = train_module.render_prompt_maps

    def spy(input_hw, positive, negative, previous_mask=None, **kwargs):
        seen.append((len(positive) + len(negative),
                     len(kwargs["positive_scribbles"]) + len(kwargs["negative_scribbles"])))
        return real(input_hw, positive, negative, previous_mask=previous_mask, **kwargs)

    monkeypatch.setattr(train_module, "render_prompt_maps", spy)
    trainer.train_step()
    assert seen and all(clicks == 0 and strokes >= 1 for clicks, strokes in seen)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["train"].update(freeze_encoder=False), "freeze_encoder"),
    (lambda c: c.pop("init_checkpoint"), "init_checkpoint"),
    (lambda c: c["data"].update(sources=[{"images": "x"}]), "sources\\[0\\]"),
    (lambda c: c["clicks"].update(scribble_prob=1.5), "scribble_prob"),
])
def test_click_training_configuration_errors_are_named(change, message):
    raw = copy.deepcopy(TINY)
    raw.update(init_checkpoint="init.pt", data={"kind": "objects", "sources": [{"images": "a", "masks": "b"}]})
    raw["train"] = {**raw["train"], "freeze_encoder": True}
    raw["clicks"] = {}
    change(raw)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


@pytest.mark.parametrize("dropout", [0.0, 1.0])
def test_previous_mask_dropout_withholds_the_mask_in_the_training_pass(mask_folders, tmp_path, monkeypatch, dropout):
    base = Trainer(config_from_dict({**copy.deepcopy(TINY), "output_dir": str(tmp_path / "base")}))
    init = base.save_checkpoint()
    sources = [{"images": str(mask_folders / "salient/images"), "masks": str(mask_folders / "salient/masks")}]
    config = click_config(tmp_path / "click", sources, init, previous_mask_dropout=dropout)
    config.clicks.max_iterations = 1
    trainer = Trainer(config)
    import openpixel_ros.training.train as train_module
    calls = []
    real = train_module.render_prompt_maps

    def spy(input_hw, positive, negative, previous_mask=None, **kwargs):
        calls.append(previous_mask is not None)
        return real(input_hw, positive, negative, previous_mask=previous_mask, **kwargs)

    monkeypatch.setattr(train_module, "render_prompt_maps", spy)
    batch = config.train.batch_size
    with_round = None
    for _ in range(6):  # until a step draws a simulation round (its last pass then has previous masks)
        calls.clear()
        trainer.train_step()
        if len(calls) == 2 * batch:
            with_round = calls[batch:]
            break
    assert with_round is not None
    assert not any(with_round) if dropout == 1.0 else all(with_round)
