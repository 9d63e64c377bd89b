"""The trainer's upgrade: augmentation, conditioning from the augmented frame, class weights,
BatchNorm calibration, validation with the best checkpoint, the CSV log and its exact resume."""
from __future__ import annotations

import copy
import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openpixel_ros.adaptation import CONDITIONING_LAYOUT, CONDITIONING_SIZE, compute_stats  # noqa: E402
from openpixel_ros.lighting_shifts import random_lighting_shift  # noqa: E402
from openpixel_ros.model.backbone import MobileNetV2  # noqa: E402
from openpixel_ros.training.augment import SampleAugmenter  # noqa: E402
from openpixel_ros.training.config import ConfigError, DataConfig, config_from_dict  # noqa: E402
from openpixel_ros.training.losses import class_weights  # noqa: E402
from openpixel_ros.training.train import Trainer, calibrate_batchnorm, select_device  # noqa: E402

from test_model_training import TINY  # noqa: E402


def blocks(h=60, w=80):
    """Labels of four vertical bands (ids 0..3) and an image whose grey level encodes the id."""
    labels = np.repeat(np.minimum(np.arange(w) * 4 // w, 3)[None, :], h, axis=0).astype(np.uint8)
    rgb = np.repeat((labels * 60 + 20)[..., None], 3, axis=2).astype(np.uint8)
    return rgb, labels


def test_geometry_keeps_image_and_labels_aligned_under_scale_crop_and_flip():
    rgb, labels = blocks()
    data = DataConfig(height=60, width=80, crop_height=40, crop_width=56, scale_min=0.5, scale_max=2.0,
                      ignore_index=9)
    augmenter = SampleAugmenter(data, 0)
    padded = flipped = 0
    for seed in range(30):
        out_rgb, out_labels, vector = augmenter(rgb, labels, np.random.default_rng(seed))
        assert vector is None and out_rgb.shape == (40, 56, 3) and out_labels.shape == (40, 56)
        valid = out_labels != 9
        expected = out_labels.astype(np.int32) * 60 + 20
        # away from band edges the image's grey level names the label (bilinear vs nearest differ at edges)
        padded_labels = np.pad(out_labels, 1, mode="edge")
        interior = valid & np.logical_and.reduce([padded_labels[1 + dy:padded_labels.shape[0] - 1 + dy,
                                                                1 + dx:padded_labels.shape[1] - 1 + dx] == out_labels
                                                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        agree = np.abs(out_rgb[..., 0].astype(np.int32) - expected) <= 2
        assert agree[interior].mean() > 0.95
        assert (out_rgb[~valid] == 0).all(axis=-1).mean() > 0.8 if (~valid).any() else True  # black pad (edges blend)
        padded += int((~valid).any())
        row = out_labels[20][valid[20]]
        flipped += int(len(row) > 1 and row[0] > row[-1])
    assert padded > 0 and flipped > 0  # both the pad and the flip paths ran


def test_lighting_shifts_cover_the_family_and_are_seeded():
    rgb, _ = blocks()
    kinds = {random_lighting_shift(rgb, np.random.default_rng(s))[1] for s in range(40)}
    assert kinds == {"dark", "gamma", "low_contrast", "dusk"}
    a, _ = random_lighting_shift(rgb, np.random.default_rng(3))
    b, _ = random_lighting_shift(rgb, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == rgb.shape and np.array_equal(a, b)


def test_conditioning_comes_from_the_augmented_frame():
    rgb = np.full((60, 80, 3), 180, np.uint8)
    rgb[:, 40:] = 90
    labels = np.zeros((60, 80), np.uint8)
    lum = CONDITIONING_LAYOUT.index("mean_luminance")
    bright = SampleAugmenter(DataConfig(height=60, width=80, correction_prob=0.0), CONDITIONING_SIZE)
    dark = SampleAugmenter(DataConfig(height=60, width=80, lighting_prob=1.0, correction_prob=0.0),
                           CONDITIONING_SIZE)
    frame, _, vector = bright(rgb, labels, np.random.default_rng(0))
    assert vector.shape == (CONDITIONING_SIZE,) and vector[lum] == pytest.approx(compute_stats(frame).mean_luminance)
    lums = []
    for seed in range(12):
        shifted, _, v = dark(rgb, labels, np.random.default_rng(seed))
        assert v[lum] == pytest.approx(compute_stats(shifted).mean_luminance, abs=1e-6)
        lums.append(v[lum])
    assert min(lums) < vector[lum] - 0.1  # the vector follows the shift
    dropped = SampleAugmenter(DataConfig(height=60, width=80, conditioning_dropout=1.0), CONDITIONING_SIZE)
    assert not dropped(rgb, labels, np.random.default_rng(0))[2].any()


def test_class_weights_favour_rare_classes_and_keep_the_loss_scale():
    counts = np.array([1000, 100, 10, 0])
    for method in ("inverse_sqrt", "median_frequency"):
        w = class_weights(counts, method, max_weight=100.0)
        assert w[0] < w[1] < w[2] and w[3] == 0
        assert float((w.double() * torch.tensor(counts / counts.sum()))[:3].sum()) == pytest.approx(1.0, rel=1e-5)
    assert class_weights(counts, "none") is None
    assert float(class_weights(counts, "median_frequency", max_weight=2.0).max()) == 2.0


@pytest.mark.slow
def test_batchnorm_calibration_keeps_the_function_and_learns_the_statistics():
    torch.manual_seed(0)
    net = MobileNetV2(width=0.5, output_stride=32, norm=True)
    for m in net.modules():  # the state pretrained folded weights leave: identity BN plus a bias
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_((1 + m.eps) ** 0.5)
            m.bias.data.normal_(0, 0.1)
    x = torch.randn(4, 3, 64, 64) * 0.5 + 0.2
    net.eval()
    with torch.no_grad():
        before = net(x)["c5"]
    assert calibrate_batchnorm(net, [x]) > 0
    with torch.no_grad():
        after_eval = net(x)["c5"]
        net.train()
        after_train = net(x)["c5"]
    assert torch.allclose(before, after_eval, atol=1e-4)
    assert torch.allclose(before, after_train, atol=1e-3)  # batch statistics = calibration statistics
    stem = net.stem.norm
    assert stem.running_mean.abs().sum() > 0 and not torch.allclose(stem.running_var, torch.ones_like(stem.running_var))


def test_device_selection_falls_back_to_the_cpu():
    messages = []
    device = select_device("cuda", messages.append)
    if torch.cuda.is_available():
        assert device.type == "cuda" and not messages
    else:
        assert device.type == "cpu" and "no CUDA device" in messages[0]
    assert select_device("cpu").type == "cpu"


def _validating(out, **train):
    config = copy.deepcopy(TINY)
    config["data"].update(crop_height=32, crop_width=40, scale_min=0.75, scale_max=1.5, lighting_prob=0.5)
    config["loss"] = {"class_weighting": "inverse_sqrt"}
    config["train"].update(validate_every=2, log_every=1, **train)
    return config_from_dict({**config, "output_dir": str(out)})


def _csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_validation_keeps_the_best_checkpoint_and_the_csv_resumes_exactly(tmp_path):
    straight = Trainer(_validating(tmp_path / "straight"), log=None)
    straight.run(max_steps=4, log=None)
    rows = _csv(tmp_path / "straight" / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    scored = [r for r in rows if r["val_miou"]]
    assert [int(r["step"]) for r in scored] == [2, 4]
    assert all(0 <= float(r["val_miou"]) <= 1 and r["val_iou_0"] != "" for r in scored)
    assert (tmp_path / "straight" / "best.pt").is_file()
    best = torch.load(tmp_path / "straight" / "best.pt", weights_only=True)
    assert best["best_miou"] == pytest.approx(max(float(r["val_miou"]) for r in scored), abs=1e-6)

    first = Trainer(_validating(tmp_path / "split", checkpoint_every=2), log=None)
    first.run(max_steps=3, log=None)  # a checkpoint at step 2; step 3 is logged, then "crashes"
    resumed = Trainer(_validating(tmp_path / "split", checkpoint_every=2), log=None)
    resumed.resume(tmp_path / "split" / "last.pt")  # last.pt is step 3 (written at the end)
    resumed.run(max_steps=4, log=None)
    split_rows = _csv(tmp_path / "split" / "log.csv")
    keep = ("step", "loss", "val_miou", "val_iou_1")
    assert [{k: r[k] for k in keep} for r in split_rows] == [{k: r[k] for k in keep} for r in rows]


def test_new_configuration_errors_are_named():
    for bad, message in [({"train": {"freeze_backbone_bn": True}}, "needs pretrained_tflite"),
                         ({"train": {"device": "tpu"}}, "train.device"),
                         ({"data": {"crop_height": 32}}, "go together"),
                         ({"data": {"lighting_prob": 2}}, "lighting_prob"),
                         ({"loss": {"class_weighting": "magic"}}, "class_weighting"),
                         ({"model": {"conditioning_size": 4}}, "conditioning_size")]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(bad)


def test_click_simulation_rounds_run_the_decoder_in_eval_mode(tmp_path):
    """Issue 12, item 1: the no-grad click rounds predict as evaluation does (decoder BatchNorms on
    their running statistics, not updated by those passes); only the training pass is in train mode."""
    config = copy.deepcopy(TINY)
    config["clicks"] = {"max_iterations": 6}
    trainer = Trainer(config_from_dict({**config, "output_dir": str(tmp_path)}), log=None)
    modes = []
    norms = [m for m in trainer.model.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    norms[0].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    steps = 4
    trainer.run(max_steps=steps, log=None)
    assert modes.count(True) == steps  # one training pass per step
    assert modes.count(False) > 0  # the simulation rounds, all in eval mode


def test_click_simulation_feeds_the_previous_mask_as_evaluation_does(tmp_path, monkeypatch):
    """Issue 12, item 2: the previous mask is the binary prediction at the input's size (what the
    protocol passes to the engine), not sigmoid probabilities on the 1/4 grid."""
    import openpixel_ros.training.train as train_module

    seen = []
    real = train_module.render_prompt_maps

    def spy(input_hw, positive, negative, previous_mask=None, **kwargs):
        if previous_mask is not None:
            seen.append((tuple(input_hw), np.asarray(previous_mask)))
        return real(input_hw, positive, negative, previous_mask=previous_mask, **kwargs)

    monkeypatch.setattr(train_module, "render_prompt_maps", spy)
    config = copy.deepcopy(TINY)
    config["clicks"] = {"max_iterations": 6}
    Trainer(config_from_dict({**config, "output_dir": str(tmp_path)}), log=None).run(max_steps=4, log=None)
    assert seen
    for input_hw, previous in seen:
        assert previous.shape == input_hw and set(np.unique(previous)) <= {0.0, 1.0}
