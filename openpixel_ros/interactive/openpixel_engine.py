"""The "openpixel" prompt engine: OpenPixel's exported encoder + click decoder (no torch).

Files (``python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx``):

* ``X.encoder.onnx``: ``image`` (+ ``conditioning``) -> ``logits``, ``features_s4``,
  ``features_s8``; its ``openpixel-model/1`` metadata drives pre-processing,
  exactly as for semantic segmentation;
* ``X.decoder.onnx``: ``features_s4``, ``features_s8``, ``prompts`` [1,4,h4,w4]
  -> ``mask_logits`` [1,1,h4,w4], ``score`` [1,1]; metadata format
  ``openpixel-prompt-decoder/1`` (the click Gaussian's ``click_sigma``). Only a checkpoint
  whose run trained the click head has one (the packaged road model has none: its issue-12
  decoder is retired; the click network, :mod:`.click_network_engine`, answers clicks).

Per frame the encoder runs once; per click this engine renders the prompt maps
(:func:`openpixel_ros.inference.prompt_maps.render_prompt_maps`, on the 1/4 grid),
runs the decoder and maps its logits back onto the frame; the frame <-> model
geometry both ways is :class:`~openpixel_ros.model_io.View`'s (the frame, or a zoom window
of it, placed by :class:`~openpixel_ros.model_io.ModelInput`).

Zoom-in (RITM, FocalClick): once a prompt comes with the previous mask, the
engine encodes a window around the object (the previous mask and the positive
prompts, expanded by ``zoom_expansion``, at the model input's aspect ratio) and
decodes there, so later clicks see the object at a higher resolution. One extra
encoder pass, cached while the window stays about the same. With ``zoom_first``
the first prompt (no previous mask, no box) does the same with its own whole-frame
mask when that mask's window is small enough to zoom (:func:`zoom_window`): a
small object's first mask comes from the window, at one more network pass.

Boundaries (``refine="guided"``): the mask's probability, upsampled from the
1/4 grid, is snapped to the frame's edges by a guided filter
(:mod:`.boundary`) before the 0.5 threshold.

Ignored clicks (``retry_ignored_click``): when the mask contradicts the newest click (the last
point: a positive click left outside, a negative one inside) although the prompt carried a
previous mask, the same view is decoded once more with the previous-mask channel empty (as
training's previous-mask dropout shows it) and that mask is taken if it obeys the click: the
previous mask can otherwise outvote a correction, so the operator clicks and nothing changes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..default_model import CLICK_NETWORK
from ..engines import Engine, EngineError, create_engine
from ..inference.prompt_maps import DEFAULT_SIGMA, GRID_STRIDE, grid_size, render_prompt_maps
from ..model_contract import METADATA_KEY, ContractError, load_contract
from ..model_io import ModelInput, View
from ..semantic import SemanticSegmenter
from .base import PromptEngine, PromptResult, decoder_path_for
from .boundary import refine_probability
from .prompts import ClickPrompt, PromptError

DECODER_FORMAT = "openpixel-prompt-decoder/1"
_DECODER_INPUTS = ("features_s4", "features_s8", "prompts")
_DECODER_OUTPUTS = ("mask_logits", "score")


REFINEMENTS = ("none", "guided")
ZOOM_REUSE_IOU = 0.8  # a new zoom window this close to the cached one reuses its features


@dataclass(frozen=True)
class _Encoding:
    """What the decoder looks at: the encoder's features of a :class:`View` (the frame, or a zoom window)."""

    features: tuple
    view: View


def _box_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def zoom_window(region: np.ndarray, points, aspect: float, expansion: float = 1.4,
                min_fraction: float = 0.2, max_area_fraction: float = 0.7) -> Optional[tuple]:
    """The zoom-in window ``(x0, y0, x1, y1)`` (pixels, end exclusive) around ``region`` (HxW bool)
    and ``points`` (clicked pixels, ``[N, 2]`` x, y): their bounding box expanded ``expansion``
    times about its centre, at least ``min_fraction`` of the frame on each side, widened to the
    ``aspect`` (width / height) of the model input and shifted into the frame. None when the
    window would cover more than ``max_area_fraction`` of the frame (zooming would gain nothing).
    """
    h, w = region.shape
    ys, xs = np.nonzero(region)
    pts = np.floor(np.asarray(points, np.float64).reshape(-1, 2))
    xs = np.concatenate([xs, pts[:, 0]]).astype(np.float64)
    ys = np.concatenate([ys, pts[:, 1]]).astype(np.float64)
    if not len(xs):
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw = max((x1 - x0) * expansion, min_fraction * w)
    bh = max((y1 - y0) * expansion, min_fraction * h)
    if bw / bh < aspect:
        bw = bh * aspect
    else:
        bh = bw / aspect
    bw, bh = min(bw, w), min(bh, h)
    if bw * bh > max_area_fraction * w * h:
        return None
    bw, bh = int(round(bw)), int(round(bh))
    left = int(np.clip(round(cx - bw / 2), 0, w - bw))
    top = int(np.clip(round(cy - bh / 2), 0, h - bh))
    return left, top, left + bw, top + bh


def _ignores_newest_click(mask: np.ndarray, prompt: ClickPrompt) -> bool:
    """Whether ``mask`` contradicts the prompt's last point (the newest click): a positive one
    outside it, a negative one inside."""
    if not len(prompt.points):
        return False
    x, y = prompt.pixel_indices()[-1]
    return bool(mask[y, x]) != bool(prompt.labels[-1])


def _decoder_named_by(encoder_path) -> Optional[Path]:
    """The decoder file the encoder's sidecar contract names (``prompt_decoder``), when it exists."""
    try:
        name = load_contract(encoder_path).extra.get("prompt_decoder")
    except (ContractError, OSError, ValueError):
        return None
    path = Path(encoder_path).with_name(name) if isinstance(name, str) and name else None
    return path if path is not None and path.is_file() else None


def _decoder_beside(encoder_path) -> Path:
    """``X.decoder.onnx`` beside ``X.encoder.onnx``; a PromptError naming the click network when there is
    none (a semantic model alone, such as the packaged road model since its decoder was retired)."""
    try:
        return decoder_path_for(encoder_path)
    except PromptError:
        if not Path(encoder_path).is_file():
            raise  # "prompt model file not found"
    raise PromptError(f"{Path(encoder_path).name} has no click decoder beside it: it segments frames but takes "
                      f"no clicks; for clicks use the click network {CLICK_NETWORK} (prompt engine openpixel, "
                      f"prompt_model empty or {CLICK_NETWORK})")


def read_decoder_metadata(decoder_path, engine: Engine) -> dict:
    """The decoder's metadata from its sidecar JSON or embedded ``openpixel`` property; EngineError if absent."""
    sidecar = Path(decoder_path).with_suffix(".json")
    try:
        if sidecar.is_file():
            data = json.loads(sidecar.read_text())
        elif METADATA_KEY in engine.metadata:
            data = json.loads(engine.metadata[METADATA_KEY])
        else:
            raise EngineError(f"OpenPixel decoder {decoder_path} has no metadata ({sidecar.name} or embedded)")
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"cannot read OpenPixel decoder metadata: {exc}") from None
    if data.get("format") != DECODER_FORMAT:
        raise EngineError(f"{decoder_path} metadata format is {data.get('format')!r}, expected {DECODER_FORMAT!r}")
    return data


class OpenPixelPromptEngine(PromptEngine):
    """OpenPixel encoder/decoder pair behind :class:`PromptEngine`.

    ``conditioning``: the lighting-adaptation vector fed to the encoder of
    models that take one (zeros when None); :meth:`set_conditioning` changes
    it for the next frame. ``zoom_in``: decode in a window around the object
    once the prompt carries the previous mask; ``refine``: ``"guided"`` or
    ``"none"`` (bilinear) boundaries at the frame's resolution.
    """

    name = "openpixel"

    def __init__(self, encoder: Engine, decoder: Engine, contract, decoder_metadata: dict,
                 conditioning: Optional[np.ndarray] = None, zoom_in: bool = True, zoom_expansion: float = 1.4,
                 refine: str = "guided", zoom_first: bool = True, retry_ignored_click: bool = True):
        super().__init__()
        self._set_view_options(zoom_in, zoom_expansion, refine, zoom_first, retry_ignored_click)
        self.encoder, self.decoder = encoder, decoder
        self.contract = contract
        SemanticSegmenter(encoder, contract)  # validates the contract against the encoder's graph
        self.model_input = ModelInput(contract, encoder.input(contract.input.name).dtype)
        encoder_outputs = {o.name for o in encoder.outputs}
        missing = {"features_s4", "features_s8"} - encoder_outputs
        if missing:
            raise EngineError(f"OpenPixel encoder lacks output(s) {', '.join(sorted(missing))}")
        decoder_inputs = {i.name for i in decoder.inputs}
        decoder_outputs = {o.name for o in decoder.outputs}
        if set(_DECODER_INPUTS) - decoder_inputs or set(_DECODER_OUTPUTS) - decoder_outputs:
            raise EngineError(f"OpenPixel decoder has inputs {sorted(decoder_inputs)} and outputs "
                              f"{sorted(decoder_outputs)}; expected {_DECODER_INPUTS} -> {_DECODER_OUTPUTS}")
        self.sigma = float(decoder_metadata.get("click_sigma", DEFAULT_SIGMA))
        self.prompt_stride = GRID_STRIDE  # the prompt maps' grid: the decoder's (1/4)
        self.conditioning = conditioning
        self.decoder_path: Optional[Path] = None  # set by from_files
        self._zoom_encoder_ms = 0.0  # this prompt's window encoding (part of decoder_ms)
        self._full: Optional[_Encoding] = None
        self._zoom: Optional[_Encoding] = None

    def _set_view_options(self, zoom_in: bool, zoom_expansion: float, refine: str, zoom_first: bool,
                          retry_ignored_click: bool) -> None:
        """Zoom-in, boundary and retry options, checked (shared with the click network's engine)."""
        if refine not in REFINEMENTS:
            raise EngineError(f"refine must be one of {', '.join(REFINEMENTS)}, not {refine!r}")
        if not (np.isfinite(zoom_expansion) and zoom_expansion >= 1.0):
            raise EngineError(f"zoom_expansion must be a finite number >= 1, not {zoom_expansion!r}")
        self.zoom_in, self.zoom_expansion, self.refine = bool(zoom_in), float(zoom_expansion), refine
        self.zoom_first = bool(zoom_first)
        self.retry_ignored_click = bool(retry_ignored_click)

    @classmethod
    def from_files(cls, encoder_path, decoder: Optional[str] = None, *, device: str = "cpu", threads: int = 0,
                   backend: str = "onnxruntime", **options) -> "OpenPixelPromptEngine":
        """Load ``X.encoder.onnx`` and its decoder: ``decoder``, else the one the encoder's contract names
        (``prompt_decoder``: an INT8 encoder shares the FP32 decoder), else ``X.decoder.onnx`` beside it."""
        if not encoder_path:
            raise PromptError("prompt engine 'openpixel' needs model=<X.encoder.onnx>")
        decoder_path = Path(decoder) if decoder else (_decoder_named_by(encoder_path)
                                                      or _decoder_beside(encoder_path))  # raises when none
        encoder = create_engine(backend, encoder_path, device=device, threads=threads)
        try:
            decoder_engine = create_engine(backend, decoder_path, device=device, threads=threads)
        except EngineError:
            encoder.close()
            raise
        try:
            contract = load_contract(encoder_path, encoder.metadata)
            metadata = read_decoder_metadata(decoder_path, decoder_engine)
            engine = cls(encoder, decoder_engine, contract, metadata, **options)
            engine.decoder_path = decoder_path
            return engine
        except (ContractError, EngineError):
            encoder.close()
            decoder_engine.close()
            raise

    def set_conditioning(self, conditioning: Optional[np.ndarray]) -> None:
        """Adaptation vector for the frames set from now on. It changes the encoder's features, so the
        cached frame is dropped: call :meth:`set_image` again before the next :meth:`predict`."""
        self.conditioning = None if conditioning is None else np.asarray(conditioning, np.float32)
        self._key = None  # the cached features were computed with the old vector

    # -- per frame ---------------------------------------------------------------------
    def _encode(self, view: View) -> _Encoding:
        feeds, _ = self.model_input.feeds(view.crop(self._image), self.conditioning)
        outputs = self.encoder.run(feeds)
        return _Encoding((outputs["features_s4"], outputs["features_s8"]), view)

    def _prepare(self, rgb: np.ndarray) -> None:
        self._full = self._encode(self.model_input.view(rgb.shape[:2]))
        self._zoom = None

    def _encoding_for(self, prompt: ClickPrompt) -> _Encoding:
        """The whole frame's, or (zoom-in, with a previous mask) a window's around the object."""
        if not self.zoom_in or prompt.previous_mask is None or prompt.previous_logits is not None:
            return self._full
        points = [prompt.positive_points] + [np.asarray(s) for s in prompt.positive_scribbles]
        in_h, in_w = self._full.view.placement.input_hw
        window = zoom_window(prompt.previous_mask, np.concatenate(points) if points else np.zeros((0, 2)),
                             in_w / in_h, self.zoom_expansion)
        if window is None:
            return self._full
        cached = self._zoom
        if cached is not None and _box_iou(cached.view.window, window) >= ZOOM_REUSE_IOU:
            return cached
        started = time.perf_counter()
        self._zoom = self._encode(self.model_input.view(self._image.shape[:2], window))
        self._zoom_encoder_ms = (time.perf_counter() - started) * 1e3
        return self._zoom

    # -- per prompt --------------------------------------------------------------------
    def _previous_probability(self, prompt: ClickPrompt, grid_hw, view: View) -> Optional[np.ndarray]:
        """The previous mask as a probability: from the caller's logits (on the output grid
        ``grid_hw``) or its binary mask (at the model input's size); None without either."""
        if prompt.previous_logits is not None:
            logits = np.asarray(prompt.previous_logits, np.float32)
            if logits.shape[-2:] != tuple(grid_hw):
                raise PromptError(f"previous logits are {logits.shape[-1]}x{logits.shape[-2]}; "
                                  f"this decoder takes {grid_hw[1]}x{grid_hw[0]}")
            return 1.0 / (1.0 + np.exp(-logits.reshape(grid_hw)))
        if prompt.previous_mask is None:
            return None
        return view.mask_to_input(prompt.previous_mask)

    def _predict(self, prompt: ClickPrompt, multimask: bool) -> PromptResult:
        self._zoom_encoder_ms = 0.0
        result = self._predict_in(self._encoding_for(prompt), prompt)
        first = prompt.previous_mask is None and prompt.previous_logits is None and prompt.box is None
        if not (self.zoom_in and self.zoom_first and first and result.masks[0].any()):
            return result
        # The first mask says where the object is: decode again in its window, as the next click would.
        again = replace(prompt, previous_mask=result.masks[0])
        encoding = self._encoding_for(again)
        return result if encoding is self._full else self._predict_in(encoding, again)

    def _predict_in(self, encoding: _Encoding, prompt: ClickPrompt) -> PromptResult:
        """``prompt`` on ``encoding``'s view (the frame's or a zoom window's): one network pass, and a
        second without the previous mask when the first ignores the newest click (see the module)."""
        result = self._decode_in(encoding, prompt)
        has_previous = prompt.previous_mask is not None or prompt.previous_logits is not None
        if not (self.retry_ignored_click and has_previous and _ignores_newest_click(result.masks[0], prompt)):
            return result
        again = self._decode_in(encoding, replace(prompt, previous_mask=None, previous_logits=None))
        if _ignores_newest_click(again.masks[0], prompt):
            return result
        again.timings["retry"] = 1.0
        return again

    def _decode_in(self, encoding: _Encoding, prompt: ClickPrompt) -> PromptResult:
        """One network pass for ``prompt`` on ``encoding``'s view."""
        view = encoding.view
        grid_hw = grid_size(*view.placement.input_hw)  # the 1/4 output grid
        maps = render_prompt_maps(view.placement.input_hw, view.to_input(prompt.positive_points),
                                  view.to_input(prompt.negative_points),
                                  previous_mask=self._previous_probability(prompt, grid_hw, view),
                                  box=None if prompt.box is None else view.box_to_input(prompt.box),
                                  positive_scribbles=[view.to_input(s) for s in prompt.positive_scribbles],
                                  negative_scribbles=[view.to_input(s) for s in prompt.negative_scribbles],
                                  sigma=self.sigma, stride=self.prompt_stride)
        outputs = self._run(encoding, maps[None])
        logits = np.asarray(outputs["mask_logits"], np.float32).reshape(grid_hw)
        score = float(1.0 / (1.0 + np.exp(-float(np.asarray(outputs["score"]).reshape(-1)[0]))))
        mask = view.paste(self._window_mask(logits, view))
        zoomed = encoding is not self._full
        # Zoomed logits live on the window's grid, which the caller cannot hand back as the frame's.
        return PromptResult(masks=[mask], scores=[score], low_res_logits=None if zoomed else logits[None, None],
                            timings={"zoom": 1.0 if zoomed else 0.0, "zoom_encoder_ms": self._zoom_encoder_ms,
                                     "retry": 0.0})

    def _run(self, encoding: _Encoding, prompts: np.ndarray) -> dict:
        """The per-click network: the decoder on the view's cached features."""
        features_s4, features_s8 = encoding.features
        return self.decoder.run({"features_s4": features_s4, "features_s8": features_s8, "prompts": prompts})

    def _window_mask(self, logits: np.ndarray, view: View) -> np.ndarray:
        """The decoder's grid logits -> the view's pixels, thresholded (after refinement)."""
        window_logits = view.grid_to_window(logits)
        if self.refine == "none":
            return window_logits > 0.0
        probability = 1.0 / (1.0 + np.exp(-np.clip(window_logits, -30, 30)))
        return refine_probability(view.crop(self._image), probability, view.pixels_per_cell(logits.shape[-1])) > 0.5

    def close(self) -> None:
        super().close()
        self._full = self._zoom = None
        for engine in (self.encoder, self.decoder):
            engine.close()
