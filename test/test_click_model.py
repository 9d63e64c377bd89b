"""The road model's click decoder (issue 12), now behind the click network (issue 21) as
``create_prompt_engine("openpixel", "openpixel_road")``: it outlines objects from clicks far better
than an untrained decoder."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import shared_path
from openpixel_ros.default_model import MODELS_DIR, default_model_path
from openpixel_ros.eval.click_protocol import evaluate_sample
from openpixel_ros.inference.ground_truth import load_ground_truth
from openpixel_ros.eval.common import load_rgb, pair_by_stem
from openpixel_ros.interactive import create_prompt_engine
from openpixel_ros.interactive.openpixel_engine import OpenPixelPromptEngine
from openpixel_ros.segmentor import Segmentor

DECODER = MODELS_DIR / "openpixel_road.decoder.onnx"
# Images of GrabCut's 50 that reach IoU 0.85 within three clicks (bench/results/clicks_grabcut_*.json):
# the packaged model 29, an untrained decoder 0, and the classical engine 38. The click model does not
# beat GrabCut yet (docs/interactive.md), so the bar is "most images", which an untrained decoder fails.
REACHED_BY_MODEL = 29
BAR = 26


def synthetic_object(seed=0):
    """A textured object (an ellipse) on a differently textured background, 480x360."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((360, 480), np.uint8)
    cv2.ellipse(truth, (250, 170), (110, 70), 15, 0, 360, 1, -1)
    truth = truth.astype(bool)
    rgb = np.empty((360, 480, 3), np.uint8)
    rgb[...] = np.clip(rng.normal((70, 110, 60), 18, (360, 480, 3)), 0, 255).astype(np.uint8)
    rgb[truth] = np.clip(rng.normal((200, 80, 70), 18, (int(truth.sum()), 3)), 0, 255).astype(np.uint8)
    return rgb, truth


def test_the_road_models_click_decoder_loads_when_the_road_model_is_named():
    for engine in (create_prompt_engine("openpixel", "openpixel_road"),
                   Segmentor(prompt_engine="openpixel", prompt_model="openpixel_road").prompt_engine):
        assert isinstance(engine, OpenPixelPromptEngine)
        assert engine.zoom_in and engine.refine == "guided"
        assert engine.decoder_path == DECODER
        engine.close()
    metadata = json.loads(DECODER.with_suffix(".json").read_text())
    assert "config/train/click.yaml" in metadata["source"] and "non-commercial" in metadata["license"]


@pytest.mark.slow
def test_two_clicks_outline_an_object_an_untrained_decoder_cannot(tmp_path):
    torch = pytest.importorskip("torch")
    from openpixel_ros.export.onnx_export import export_openpixel
    from openpixel_ros.model.openpixel import ModelInfo, OpenPixel, OpenPixelConfig
    from openpixel_ros.model_contract import load_contract

    rgb, truth = synthetic_object()

    def iou(engine):  # after two clicks of the standard protocol (measured: 0.45 after one, 0.96 after two)
        return evaluate_sample(engine, rgb, truth, max_clicks=2, stop_iou=None).ious[-1]

    trained = iou(create_prompt_engine("openpixel", "openpixel_road"))
    # The same architecture (config/train/road.yaml) with a freshly initialised decoder, behind the
    # packaged encoder.
    contract = load_contract(default_model_path())
    torch.manual_seed(0)
    model = OpenPixel(OpenPixelConfig(num_classes=len(contract.classes), s4_channels=64,
                                      pyramid_channels=96)).eval()
    _, untrained_decoder = export_openpixel(model, ModelInfo(input_height=360, input_width=480), tmp_path / "u.onnx")
    untrained = iou(create_prompt_engine("openpixel", str(default_model_path()), decoder=str(untrained_decoder)))
    assert trained > 0.85 and untrained < 0.5, (trained, untrained)


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


@pytest.mark.slow
def test_within_three_clicks_most_grabcut_objects_reach_085():
    images, reached = grabcut_reached_within_three_clicks(
        create_prompt_engine("openpixel", "openpixel_road", threads=2))
    assert images == 50 and reached >= BAR, reached


def test_the_int8_encoder_finds_the_shared_decoder_its_contract_names():
    engine = create_prompt_engine("openpixel", "openpixel_road.int8")
    assert engine.decoder_path == DECODER
    rgb, truth = synthetic_object()
    assert evaluate_sample(engine, rgb, truth, max_clicks=2, stop_iou=None).ious[-1] > 0.8
    engine.close()
