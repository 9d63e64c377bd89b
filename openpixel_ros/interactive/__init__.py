"""Click-prompted segmentation: prompts, prompt engines and their registry.

    from openpixel_ros.interactive import ClickPrompt, create_prompt_engine
    engine = create_prompt_engine("openpixel")                  # or "classical"; "sam", model="mobile_sam.encoder.onnx"
    engine.set_image(rgb, key=frame_number)                     # per-frame work, cached under key
    prompt = ClickPrompt.from_lists([(320, 240)], [1], image_size=rgb.shape[:2])
    result = engine.predict(prompt)                             # result.mask, .score, .bbox, .area, .timings

Plain numpy/OpenCV/ONNX Runtime: no ROS here. The node's SegmentAtPoints service and
:class:`openpixel_ros.Segmentor` both call this package. See docs/interactive.md.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from ..engines import EngineError  # noqa: F401  (re-exported: prompt engines raise it)
from .base import PromptEngine, PromptResult
from .click_session import ClickSession
from .prompts import ClickPrompt, PromptError

#: The engine the node, :class:`openpixel_ros.Segmentor` and ``python -m openpixel_ros.eval clicks``
#: use when none is named: the package's click network (issue 21: far fewer clicks than GrabCut on held-out
#: road-scene and small objects, narrowly fewer on GrabCut's own photos; docs/interactive.md).
#: "classical" needs no model file: the choice where the network's non-commercial licence rules it out.
DEFAULT_PROMPT_ENGINE = "openpixel"
DEFAULT_PROMPT_MODEL: Optional[str] = None


def _create_classical(model: Optional[str], **options) -> PromptEngine:
    if model:
        raise PromptError("the classical prompt engine takes no model file")
    from .classical import ClassicalEngine
    return ClassicalEngine(**options)


def _create_sam(model: Optional[str], **options) -> PromptEngine:
    from .sam_onnx import SamOnnxEngine
    return SamOnnxEngine.from_files(model, **options)


def _create_openpixel(model: Optional[str], **options) -> PromptEngine:
    # No model (or "openpixel_click"): the packaged click network. A click network's file (contract
    # task "click", python -m openpixel_ros.export.click_network) runs as such; any other OpenPixel
    # export is an encoder with its late-fusion click decoder beside it (X.encoder.onnx + X.decoder.onnx,
    # from a run that trained the click head). An encoder alone (the packaged road model) is refused
    # with a PromptError naming the click network.
    from ..default_model import CLICK_NETWORK, click_network_path, resolve_model
    from .click_network_engine import ClickNetworkEngine, is_click_network
    if model is None or model in ("", CLICK_NETWORK):
        return ClickNetworkEngine.from_files(str(click_network_path()), **options)
    path = resolve_model(model)
    if is_click_network(path):
        return ClickNetworkEngine.from_files(str(path), **options)
    from .openpixel_engine import OpenPixelPromptEngine
    return OpenPixelPromptEngine.from_files(str(path), **options)


#: name -> factory(model, **options); more with :func:`register_prompt_engine`.
_FACTORIES: Dict[str, Callable[..., PromptEngine]] = {
    "classical": _create_classical,
    "sam": _create_sam,
    "openpixel": _create_openpixel,
}


def prompt_engine_names() -> tuple:
    """Every registered engine name."""
    return tuple(_FACTORIES)


def register_prompt_engine(name: str, factory: Callable[..., PromptEngine]) -> None:
    """Register (or replace) ``factory(model, **options) -> PromptEngine`` under ``name``."""
    _FACTORIES[name.lower()] = factory


def create_prompt_engine(name: str, model: Optional[str] = None, **options) -> PromptEngine:
    """Build the prompt engine called ``name`` ("classical", "sam" or "openpixel").

    ``model``: for "sam", the image-encoder ONNX file; the decoder is ``decoder=PATH`` or
    found beside it by name (``X.encoder.onnx`` -> ``X.decoder.onnx``, ``X_encoder.onnx``
    -> ``X_decoder.onnx``); other options go to the engine's constructor. Raises
    :class:`PromptError` for an unknown name or bad options and
    :class:`~openpixel_ros.engines.EngineError` when a model cannot be loaded.
    """
    factory = _FACTORIES.get(str(name).lower())
    if factory is None:
        raise PromptError(f"unknown prompt engine {name!r}; choose one of: {', '.join(_FACTORIES)}")
    try:
        return factory(model, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise PromptError(f"prompt engine {name!r} does not take that option ({exc})") from None


__all__ = ["ClickPrompt", "ClickSession", "PromptError", "PromptEngine", "PromptResult", "EngineError",
           "DEFAULT_PROMPT_ENGINE", "DEFAULT_PROMPT_MODEL", "create_prompt_engine",
           "register_prompt_engine", "prompt_engine_names"]
