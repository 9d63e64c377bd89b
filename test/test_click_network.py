"""The OpenPixel click network (issue 21): early fusion, its training (exact resume), its engine (the
prompt maps it feeds are training's), and the packaged network as the default ``openpixel`` engine."""
from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openpixel_ros.default_model import MODELS_DIR, click_network_path  # noqa: E402
from openpixel_ros.export.click_network import export_click_network  # noqa: E402
from openpixel_ros.interactive import DEFAULT_PROMPT_ENGINE, ClickPrompt, create_prompt_engine  # noqa: E402
from openpixel_ros.interactive.click_network_engine import ClickNetworkEngine  # noqa: E402
from openpixel_ros.model.click_network import ClickNetwork, ClickNetworkConfig, load_click_network_checkpoint  # noqa: E402
from openpixel_ros.inference.prompt_maps import render_prompt_maps  # noqa: E402
from openpixel_ros.model_contract import load_contract  # noqa: E402
from openpixel_ros.segmentor import Segmentor  # noqa: E402
from openpixel_ros.inference.click_simulation import Click  # noqa: E402
from openpixel_ros.training.config import ConfigError, config_from_dict, load_config  # noqa: E402
from openpixel_ros.training.train import Trainer  # noqa: E402

from conftest import shared_path  # noqa: E402
from openpixel_ros.eval.click_protocol import evaluate_sample  # noqa: E402
from openpixel_ros.eval.common import load_rgb, pair_by_stem  # noqa: E402
from openpixel_ros.inference.ground_truth import load_ground_truth  # noqa: E402
from openpixel_ros.interactive import PromptError  # noqa: E402
from test_model_training import REPO  # noqa: E402

def synthetic_object(seed=0, centre=(250, 170), axes=(110, 70), angle=15):
    """A textured object (an ellipse) on a differently textured background, 480x360."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((360, 480), np.uint8)
    cv2.ellipse(truth, centre, axes, angle, 0, 360, 1, -1)
    truth = truth.astype(bool)
    rgb = np.empty((360, 480, 3), np.uint8)
    rgb[...] = np.clip(rng.normal((70, 110, 60), 18, (360, 480, 3)), 0, 255).astype(np.uint8)
    rgb[truth] = np.clip(rng.normal((200, 80, 70), 18, (int(truth.sum()), 3)), 0, 255).astype(np.uint8)
    return rgb, truth


def grabcut_reached_within_three_clicks(engine) -> tuple:
    """``(images, how many reach IoU 0.85 within three clicks)`` on GrabCut (skips without ../shared)."""
    grabcut = shared_path("datasets", "grabcut")
    reached = 0
    pairs = pair_by_stem(grabcut / "images", grabcut / "masks")
    for stem, image_path, mask_path in pairs:
        truth, ignore = load_ground_truth(mask_path)
        sample = evaluate_sample(engine, load_rgb(image_path), truth, ignore, name=stem, max_clicks=3,
                                 stop_iou=0.85, min_clicks=1, key=stem)
        reached += max(sample.ious) >= 0.85
    return len(pairs), reached


S = 64  # the tiny network's input side
TINY = {
    "seed": 3,
    "network": "click",
    "model": {"context_channels": 16, "s8_channels": 16, "s4_channels": 8, "fusion_hidden": 8},
    "data": {"kind": "synthetic", "num_samples": 6, "height": S, "width": S},
    "optimizer": {"lr": 0.003},
    "clicks": {"max_iterations": 2, "sigma": 5.0, "scribble_prob": 0.3, "previous_mask_dropout": 0.3},
    "train": {"epochs": 3, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "threads": 1},
}


def tiny_config(out, **changes):
    data = copy.deepcopy(TINY)
    data.update(changes)
    return config_from_dict({**data, "output_dir": str(out)})


@pytest.fixture(scope="module")
def tiny_network(tmp_path_factory):
    torch.manual_seed(0)
    model = ClickNetwork(ClickNetworkConfig(**TINY["model"])).eval()
    return export_click_network(model, tmp_path_factory.mktemp("click") / "tiny_click.onnx", size=S, sigma=5.0)


def recording(engine):
    """Keep every feed the engine hands its ONNX graph."""
    feeds = []
    run = engine.network.run

    def run_and_record(inputs):
        feeds.append({k: np.array(v) for k, v in inputs.items()})
        return run(inputs)
    engine.network.run = run_and_record
    return feeds


def test_stem_fusion_starts_as_the_pretrained_backbone_and_every_layer_sees_the_clicks():
    torch.manual_seed(0)
    model = ClickNetwork(ClickNetworkConfig(**TINY["model"])).eval()
    image = torch.randn(1, 3, S, S)
    quiet, clicked = torch.zeros(1, 4, S // 2, S // 2), torch.zeros(1, 4, S // 2, S // 2)
    clicked[0, 0, 10, 10] = 1.0
    with torch.no_grad():
        # zero-initialised fusion: the backbone starts exactly as pretrained, clicks or not
        assert torch.equal(model(image, quiet)[0], model(image, clicked)[0])
        torch.nn.init.normal_(model.fusion.project.weight)
        stem = model.backbone.stem(image)
        assert not torch.equal(stem + model.fusion(clicked), stem)
        logits, score = model(image, clicked)
    assert logits.shape == (1, 1, S // 4, S // 4) and score.shape == (1, 1)
    with pytest.raises(ValueError, match="stem's grid"):
        model(image, torch.zeros(1, 4, S // 4, S // 4))


@pytest.mark.slow
def test_resumed_click_network_training_continues_exactly(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "straight"))
    straight_history = straight.run(max_steps=5, log=None)
    first = Trainer(tiny_config(tmp_path / "split"))
    first.run(max_steps=2, log=None)
    resumed = Trainer(tiny_config(tmp_path / "split"))  # a fresh process would start here
    torch.manual_seed(123)
    np.random.seed(123)
    resumed.resume(tmp_path / "split" / "last.pt")
    assert resumed.step == 2
    resumed_history = resumed.run(max_steps=5, log=None)
    assert [h["total"] for h in resumed_history] == [h["total"] for h in straight_history[2:]]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    model, checkpoint = load_click_network_checkpoint(tmp_path / "split" / "last.pt")
    assert checkpoint["step"] == 5 and isinstance(model, ClickNetwork)
    # every parameter trains (the whole network, not a head on a frozen encoder)
    fresh = ClickNetwork(ClickNetworkConfig(**TINY["model"])).state_dict()
    changed = {k.split(".")[0] for k, v in a.items() if v.dtype.is_floating_point and not torch.equal(v, fresh[k])}
    assert {"backbone", "fusion", "decoder"} <= changed


def test_a_click_network_checkpoint_is_not_taken_for_a_road_model(tmp_path):
    from test_model_training import tiny_config as road_config
    Trainer(tiny_config(tmp_path)).run(max_steps=1, log=None)
    with pytest.raises(ValueError, match="checkpoint of this kind"):
        Trainer(road_config(tmp_path / "road")).resume(tmp_path / "last.pt")


def test_the_committed_weights_start_a_longer_run_of_the_committed_recipe(tmp_path):
    """config/train/click_network.weights.pt (the shipped run's last weights, no optimiser) is where a
    longer schedule continues, on a fresh machine too."""
    weights = REPO / "config" / "train" / "click_network.weights.pt"
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    config = load_config(REPO / "config" / "train" / "click_network.yaml")
    assert saved["model_config"] == config.model.to_dict() and saved["step"] == config.train.max_steps
    model = ClickNetwork(config.model)
    model.load_state_dict(saved["model"])


def test_a_longer_run_starts_from_a_finished_runs_weights(tmp_path):
    finished = Trainer(tiny_config(tmp_path / "first"))
    finished.run(max_steps=2, log=None)
    longer = Trainer(tiny_config(tmp_path / "longer", init_checkpoint=str(tmp_path / "first" / "last.pt")))
    a, b = finished.model.state_dict(), longer.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and longer.step == 0


@pytest.mark.parametrize("change, message", [
    ({"train": {"freeze_encoder": True}}, "neither train.freeze_encoder"),
    ({"data": {"kind": "folder", "images": "a", "labels": "b"}}, "object masks"),
    ({"model": {"num_classes": 3}}, "unknown option"),
    ({"network": "unet"}, "network must be one of"),
])
def test_click_network_configuration_errors_are_named(change, message):
    data = {**copy.deepcopy(TINY), **change}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_the_committed_training_configuration_is_valid_and_never_trains_on_grabcut():
    config = load_config(REPO / "config" / "train" / "click_network.yaml")
    assert config.network == "click" and "deeplabv3_mnv2_voc" in config.pretrained_tflite
    assert not any("grabcut" in str(source).lower() for source in config.data.sources)


@pytest.mark.parametrize("scale", [1, 2])
def test_the_engine_feeds_the_prompt_maps_training_renders(tiny_network, tmp_path, scale):
    """Clicks and the previous mask reach the network's early-fusion input as training renders them
    (Trainer._prompts), on the frame at the network's size and at twice it; a shift would show."""
    trainer = Trainer(tiny_config(tmp_path))
    # (no retry: an untrained network may ignore a click, and the retry's pass leaves the previous mask out)
    engine = ClickNetworkEngine.from_files(str(tiny_network), threads=1, zoom_in=False, retry_ignored_click=False)
    feeds = recording(engine)
    side = S * scale
    engine.set_image(np.zeros((side, side, 3), np.uint8), key=scale)
    previous = np.zeros((S, S), bool)
    previous[20:40, 10:50] = True
    for (col, row), (ncol, nrow) in [((13, 7), (40, 50)), ((0, 0), (S - 1, S - 1)), ((31, 32), (5, 60))]:
        frame_previous = np.kron(previous, np.ones((scale, scale), bool))
        engine.predict(ClickPrompt.from_lists([(col * scale, row * scale), (ncol * scale, nrow * scale)], [1, 0],
                                              image_size=(side, side), previous_mask=frame_previous))
        fed = feeds[-1]["prompts"][0]
        if scale == 1:  # the frame is the network's input: training's own rendering, bit for bit
            clicks = [Click(row, col, True), Click(nrow, ncol, False)]
            trained = trainer._prompts([clicks], [previous.astype(np.float32)], (S, S))[0].numpy()
        else:  # a frame pixel's centre is a quarter input pixel before the input pixel's (resizing)
            centre = lambda c, r: ((c * scale + 0.5) / scale, (r * scale + 0.5) / scale)  # noqa: E731
            trained = render_prompt_maps((S, S), [centre(col, row)], [centre(ncol, nrow)],
                                         previous_mask=previous.astype(np.float32), sigma=5.0, stride=2)
        np.testing.assert_allclose(fed, trained, atol=1e-5)
        shifted = np.roll(trained, 1, axis=-1)
        assert np.abs(fed - shifted).max() > 0.1  # a one-cell shift would fail the comparison above
    engine.close()


def test_the_packaged_click_network_is_the_default_engine():
    # Issue 21: the network is the default engine (library, node, eval clicks): it beats classical narrowly on
    # GrabCut and far on road-scene and small objects (docs/interactive.md); Segmentor() gets it too.
    assert DEFAULT_PROMPT_ENGINE == "openpixel"
    path = click_network_path()
    for engine in (create_prompt_engine("openpixel"), create_prompt_engine(DEFAULT_PROMPT_ENGINE),
                   Segmentor(prompt_engine="openpixel").prompt_engine, Segmentor().prompt_engine):
        assert isinstance(engine, ClickNetworkEngine) and engine.model_path == path
        assert engine.zoom_in and engine.zoom_first and engine.refine == "guided" and engine.retry_ignored_click
        engine.close()
    contract = load_contract(path)
    assert contract.task == "click" and (contract.input.height, contract.input.width) == (384, 384)
    assert contract.extra["prompt_stride"] == 2
    # The shipped weights: click_network.yaml's 4,000 steps continued by click_network_long.yaml.
    trained_with = load_config(REPO / "config" / "train" / "click_network_long.yaml")
    assert trained_with.init_checkpoint == "config/train/click_network.weights.pt"
    assert contract.extra["click_sigma"] == trained_with.clicks.sigma
    meta = json.loads(path.with_suffix(".json").read_text())
    assert "config/train/click_network_long.yaml" in meta["source"] and "non-commercial" in meta["license"]
    # The road model ships without a click decoder (issue 12's read the v1 encoder's features and is
    # retired): naming it as the prompt model gives one line that names the click network instead.
    for road in ("openpixel_road", "openpixel_road.int8"):
        with pytest.raises(PromptError, match="no click decoder.*click network openpixel_click") as error:
            create_prompt_engine("openpixel", road)
        assert "\n" not in str(error.value)
        with pytest.raises(PromptError, match="click network openpixel_click"):
            Segmentor(prompt_engine="openpixel", prompt_model=road).prompt_engine
    assert not list(MODELS_DIR.glob("*decoder*"))
    shipped = sum(p.stat().st_size for p in MODELS_DIR.iterdir() if p.suffix == ".onnx")
    assert shipped <= 8.7e6, shipped


def test_the_packaged_network_answers_clicks_boxes_scribbles_and_previous_masks():
    rgb, truth = synthetic_object()
    engine = create_prompt_engine("openpixel", threads=1)
    engine.set_image(rgb, key="object")
    h, w = truth.shape
    one = engine.predict(ClickPrompt.from_lists([(250, 170)], [1], image_size=(h, w)))
    assert one.mask.shape == (h, w) and one.mask[170, 250] and 0.0 <= one.score <= 1.0

    def iou(mask):
        return (mask & truth).sum() / (mask | truth).sum()
    assert iou(one.mask) > 0.7, iou(one.mask)
    stroke = engine.predict(ClickPrompt.from_lists([], [], scribbles=[[(180, 150), (320, 190)]], scribble_labels=[1],
                                                   image_size=(h, w)))
    assert iou(stroke.mask) > 0.7, iou(stroke.mask)
    boxed = engine.predict(ClickPrompt.from_lists([(250, 170)], [1], box=(130, 90, 370, 250), image_size=(h, w)))
    assert not boxed.mask[:, :120].any()
    again = engine.predict(ClickPrompt.from_lists([(250, 170), (40, 40)], [1, 0], image_size=(h, w),
                                                  previous_mask=one.mask))
    assert iou(again.mask) > 0.7 and again.timings["encoder_ms"] == 0.0
    engine.close()


# GrabCut images (of 50) reaching IoU 0.85 within three clicks (bench/results/clicks_grabcut_*.json): the
# click network 38 (after the long run; 35 after the first 4,000 steps), the issue-12 decoder 29,
# classical 38. The bar keeps a margin of two images, and the first run's network fails it.
DECODER_12_REACHED = 29
BAR = 36


def test_the_first_click_on_a_small_object_is_decoded_again_in_its_window():
    """zoom_first on the packaged network: a small object's first mask comes from its window (one
    more pass) and still covers it; a large object's first click is one whole-frame pass."""
    engine = create_prompt_engine("openpixel", threads=1)
    for axes, zoomed in (((36, 24), True), ((215, 160), False)):
        rgb, truth = synthetic_object(4, centre=(240, 180), axes=axes, angle=0)
        engine.set_image(rgb, key=axes)
        result = engine.predict(ClickPrompt.from_lists([(240, 180)], [1], image_size=truth.shape))
        iou = (result.mask & truth).sum() / (result.mask | truth).sum()
        assert result.timings["zoom"] == float(zoomed) and iou > 0.7, (axes, result.timings, iou)
    engine.close()


@pytest.mark.slow
def test_within_three_clicks_more_grabcut_objects_reach_085_than_with_the_issue_12_decoder():
    images, reached = grabcut_reached_within_three_clicks(create_prompt_engine("openpixel", threads=2))
    assert images == 50 and reached >= BAR > DECODER_12_REACHED, reached


def test_a_correction_the_packaged_network_ignored_is_obeyed_on_the_second_pass():
    """GrabCut's person2 (the face is the object): the packaged network's previous mask (the whole
    person) outvotes the negative clicks on the jacket, so without the retry the protocol clicks
    the same pixel again and again and the IoU stays at 0.76 (NoC@90 20); with it, 0.90 at click 7."""
    grabcut = shared_path("datasets", "grabcut")
    truth, ignore = load_ground_truth(grabcut / "masks" / "person2.png")
    rgb = load_rgb(next((grabcut / "images").glob("person2.*")))
    runs = {}
    for retry in (False, True):
        engine = create_prompt_engine("openpixel", threads=1, retry_ignored_click=retry)
        runs[retry] = evaluate_sample(engine, rgb, truth, ignore, name="person2", max_clicks=8, key=retry)
        engine.close()
    stuck, obeyed = runs[False], runs[True]
    assert max(stuck.ious) < 0.8 and len(set(stuck.clicks)) < len(stuck.clicks), stuck.ious
    assert max(obeyed.ious) >= 0.85 and len(set(obeyed.clicks)) == len(obeyed.clicks), obeyed.ious


# Road-scene objects held out from the click network (openpixel_ros.eval.road_objects, CamVid val; the first
# 30 frames): within three clicks the click network brings 23 to IoU 0.85, the classical engine 1
# (bench/results/clicks_camvid_objects_*.json). The bar keeps a margin of five objects.
ROAD_OBJECTS = 30
CLASSICAL_ROAD_REACHED = 1
ROAD_BAR = 18


@pytest.mark.slow
def test_within_three_clicks_road_scene_objects_reach_085_far_more_often_than_with_classical():
    from openpixel_ros.eval.road_objects import road_objects

    camvid = shared_path("datasets", "camvid")
    engine = create_prompt_engine("openpixel", threads=2)
    reached = 0
    objects = list(road_objects(camvid / "val", camvid / "valannot"))[:ROAD_OBJECTS]
    for stem, image_path, truth in objects:
        sample = evaluate_sample(engine, load_rgb(image_path), truth, name=stem, max_clicks=3, stop_iou=0.85,
                                 min_clicks=1, key=stem)
        reached += max(sample.ious) >= 0.85
    assert len(objects) == ROAD_OBJECTS and reached >= ROAD_BAR > CLASSICAL_ROAD_REACHED, reached
