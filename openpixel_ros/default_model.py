"""The default segmentation model: OpenPixel road, shipped inside the package.

OpenPixel (MobileNetV2 0.5 encoder, cross-scale pyramid, semantic head, FiLM
lighting conditioning) trained on CamVid: 11 road-scene classes at 480x360.
It ships as a semantic model only: its late-fusion click decoder (issue 12) read
the v1 encoder's features and is retired; the click network below answers clicks.
Its files live in ``openpixel_ros/models/`` and install with the package (pip and
colcon), so no download is needed. The weights inherit
CamVid's CC BY-NC 4.0 licence: non-commercial research use only (see
``docs/model_card.md``).

Named models, accepted wherever a model path is (``model_path`` parameter,
``Segmentor(model)``, ``--model``):

=====================  ===============================================================
``openpixel_road``     FP32 encoder (the default)
``openpixel_road.int8`` INT8 encoder (ONNX Runtime static quantization)
``selfie``             MediaPipe selfie (person), fetched by ``openpixel_fetch_model``
=====================  ===============================================================

The click network ``openpixel_click`` (``openpixel_click.onnx``, the ``openpixel`` prompt
engine's default) ships beside them; it is a prompt model, not a segmentation model.
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "openpixel_road"
PACKAGED_MODELS = {
    "openpixel_road": "openpixel_road.encoder.onnx",
    "openpixel_road.int8": "openpixel_road.int8.encoder.onnx",
}
MODEL_NAMES = (*PACKAGED_MODELS, "selfie")
#: The click network (``openpixel`` prompt engine's default): its own file, not a segmentation model.
CLICK_NETWORK = "openpixel_click"
CLICK_NETWORK_FILE = "openpixel_click.onnx"


def click_network_path() -> Path:
    """The packaged click network's ONNX file; FileNotFoundError when the install lacks it."""
    path = MODELS_DIR / CLICK_NETWORK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"packaged click network {path} is missing: the package install is incomplete "
                                "(reinstall openpixel_ros)")
    return path


def default_model_path() -> Path:
    """The default model's encoder ONNX file (FP32)."""
    return packaged_model_path(DEFAULT_MODEL)


def packaged_model_path(name: str) -> Path:
    """A model shipped in the package by name; FileNotFoundError when the install lacks it."""
    path = MODELS_DIR / PACKAGED_MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(f"packaged model {path} is missing: the package install is incomplete "
                                "(reinstall openpixel_ros)")
    return path


def resolve_model(model) -> Path:
    """A model argument as a file path: None or "" is the default; a name of :data:`MODEL_NAMES`
    is that model; anything else is a path, returned as is."""
    if model is None or model == "":
        return default_model_path()
    if isinstance(model, str) and model in PACKAGED_MODELS:
        return packaged_model_path(model)
    if model == "selfie":
        from .selfie_model import selfie_model_path
        return selfie_model_path()
    return Path(model)
