"""Training entry point: a few steps on tiny synthetic data, checkpoints, exact resume, configuration errors."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from openpixel_ros.model.openpixel import load_checkpoint_model  # noqa: E402
from openpixel_ros.training.config import ConfigError, config_from_dict, load_config  # noqa: E402
from openpixel_ros.training.data import LabelFolder, SyntheticShapes, pick_object  # noqa: E402
from openpixel_ros.training.train import Trainer, main as train_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINY = {
    "seed": 5,
    "model": {"num_classes": 3, "conditioning_size": 10, "pyramid_channels": 32, "attention_dim": 16,
              "attention_heads": 2, "s4_channels": 16},
    "data": {"kind": "synthetic", "num_samples": 6, "height": 48, "width": 48},
    "optimizer": {"lr": 0.003},
    "clicks": {"max_iterations": 2},
    "train": {"epochs": 2, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "threads": 1},
}


def tiny_config(out: Path):
    return config_from_dict({**copy.deepcopy(TINY), "output_dir": str(out)})


def test_a_few_steps_train_both_heads_and_write_a_loadable_checkpoint(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.run(max_steps=3, log=None)
    assert [h["step"] for h in history] == [1, 2, 3]
    for entry in history:
        assert {"ce", "dice", "mask_pixel", "mask_dice", "score", "total"} <= set(entry)
        assert all(np.isfinite(v) for k, v in entry.items() if isinstance(v, float))
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("semantic_head") for k in changed) and any(k.startswith("decoder") for k in changed)
    assert any(k.startswith("backbone") for k in changed) and any(k.startswith("pyramid.attention") for k in changed)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["step"] == 3

    model, info, checkpoint = load_checkpoint_model(tmp_path / "last.pt")
    assert checkpoint["step"] == 3 and checkpoint["epoch"] == 1  # 3 batches per epoch
    for key, value in model.state_dict().items():
        assert torch.equal(value, after[key]), key


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "straight"))
    straight_history = straight.run(max_steps=4, log=None)

    first = Trainer(tiny_config(tmp_path / "split"))
    first.run(max_steps=2, log=None)
    resumed = Trainer(tiny_config(tmp_path / "split"))
    saved = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    torch.manual_seed(999)
    np.random.seed(999)
    resumed.resume(tmp_path / "split" / "last.pt")
    assert resumed.step == 2
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])
    assert np.random.get_state(legacy=False)["state"]["key"].tolist() == saved["rng"]["numpy"]["key"]
    resumed_history = resumed.run(max_steps=4, log=None)

    assert [h["total"] for h in resumed_history] == [h["total"] for h in straight_history[2:]]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.optimizer.state_dict()["state"].keys() == straight.optimizer.state_dict()["state"].keys()
    assert resumed.scheduler.get_last_lr() == straight.scheduler.get_last_lr()


def test_weights_only_resume_point_continues_the_schedule_repeatably(tmp_path):
    """A run that spans machines commits a weights-only point (--write-resume-point); --resume from it
    restores the weights, the step and the learning rate of the schedule, and two resumes agree."""
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "run")}))
    assert train_main(["--config", str(config_path), "--max-steps", "2"]) == 0
    point = tmp_path / "committed" / "run.weights.pt"
    assert train_main(["--config", str(config_path), "--write-resume-point", str(point)]) == 0
    saved = torch.load(point, weights_only=True)
    assert saved["step"] == 2 and "optimizer" not in saved and "rng" not in saved
    assert point.stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size / 2

    straight = Trainer(tiny_config(tmp_path / "straight"))
    straight.run(max_steps=2, log=None)
    histories = []
    for name in ("a", "b"):
        resumed = Trainer(tiny_config(tmp_path / name))
        resumed.resume(point)
        assert resumed.step == 2
        assert resumed.scheduler.get_last_lr() == straight.scheduler.get_last_lr()
        weights = resumed.model.state_dict()
        assert all(torch.equal(weights[k], v) for k, v in straight.model.state_dict().items())
        histories.append([h["total"] for h in resumed.run(max_steps=4, log=None)])
    assert len(histories[0]) == 2 and histories[0] == histories[1]


def test_resume_refuses_another_architecture(tmp_path):
    Trainer(tiny_config(tmp_path)).save_checkpoint()
    other = copy.deepcopy(TINY)
    other["model"]["num_classes"] = 4
    trainer = Trainer(config_from_dict({**other, "output_dir": str(tmp_path)}))
    with pytest.raises(ValueError, match="another model configuration"):
        trainer.resume(tmp_path / "last.pt")


def test_command_line_with_yaml_and_auto_resume(tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "run")}))
    assert train_main(["--config", str(config_path), "--max-steps", "1"]) == 0
    assert train_main(["--config", str(config_path), "--max-steps", "2", "--resume", "auto"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 2/2" in out
    assert train_main(["--config", str(config_path), "--resume", str(tmp_path / "nope.pt")]) == 2


def test_example_config_is_valid():
    config = load_config(REPO / "config" / "train" / "example.yaml")
    assert config.model.num_classes == len(config.model_info.classes) == 11
    assert config.loss.ignore_index == config.data.ignore_index


@pytest.mark.parametrize("bad,message", [
    ({"modle": {}}, "unknown top-level"),
    ({"model": {"num_clases": 3}}, "unknown option"),
    ({"data": {"kind": "video"}}, "data.kind"),
    ({"data": {"kind": "folder"}}, "needs data.images"),
    ({"optimizer": {"name": "lbfgs"}}, "optimizer.name"),
    ({"model_info": {"classes": ["a", "b"]}}, "classes"),
    ({"data": {"kind": "synthetic", "extra_folders": [{"images": "a", "labels": "b"}]}}, "folder only"),
    ({"data": {"kind": "folder", "images": "a", "labels": "b", "extra_folders": [{"images": "c"}]}},
     r"extra_folders\[0\] needs images and labels"),
    ({"data": {"kind": "folder", "images": "a", "labels": "b", "val_images": "v", "val_labels": "w",
               "extra_folders": [{"images": "v", "labels": "w"}]}, "train": {"validate_every": 10}},
     "validate_every to 0"),
])
def test_configuration_errors_are_named(bad, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(bad)


def test_synthetic_data_is_deterministic_and_objects_are_components():
    data = SyntheticShapes(4, 32, 40, 3, seed=1)
    image, labels = data[2]
    again, labels_again = data[2]
    assert image.shape == (32, 40, 3) and labels.shape == (32, 40)
    assert np.array_equal(image, again) and np.array_equal(labels, labels_again)
    obj = pick_object(labels, np.random.default_rng(0), ignore_index=255)
    assert obj is not None and obj.any() and len(np.unique(labels[obj])) == 1 and labels[obj][0] != 0
    assert pick_object(np.zeros((4, 4), np.uint8), np.random.default_rng(0), 255) is None


def test_extra_folders_are_trained_on_after_the_main_folder(tmp_path):
    """The train+val run: data.extra_folders joins more label folders to data.images/labels."""
    import cv2

    from openpixel_ros.training.data import make_dataset

    for folder, value in (("train", 1), ("val", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / f"{folder}annot").mkdir()
        for stem in ("a", "b", "c")[:value + 1]:
            cv2.imwrite(str(tmp_path / folder / f"{stem}.png"), np.full((12, 16, 3), 10 * value, np.uint8))
            cv2.imwrite(str(tmp_path / f"{folder}annot" / f"{stem}.png"), np.full((12, 16), value, np.uint8))
    config = config_from_dict({"data": {
        "kind": "folder", "images": str(tmp_path / "train"), "labels": str(tmp_path / "trainannot"),
        "extra_folders": [{"images": str(tmp_path / "val"), "labels": str(tmp_path / "valannot")}],
        "height": 6, "width": 8}})
    data = make_dataset(config.data, num_classes=3, seed=0)
    assert len(data) == 2 + 3
    assert [int(data[i][1][0, 0]) for i in range(len(data))] == [1, 1, 2, 2, 2]


def test_label_folder_reads_camvid():
    images, labels = SHARED / "datasets" / "camvid" / "val", SHARED / "datasets" / "camvid" / "valannot"
    if not images.is_dir():
        pytest.skip("needs ../shared")
    data = LabelFolder(str(images), str(labels), 90, 120)
    assert len(data) == 101
    rgb, label = data[0]
    assert rgb.shape == (90, 120, 3) and label.shape == (90, 120) and label.max() <= 11
