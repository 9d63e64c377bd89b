"""The Python API without ROS, and the code path the node runs.

    from openpixel_ros import Segmentor
    seg = Segmentor("model.onnx", device="cpu")      # no argument: the package's default model
    r = seg.infer(frame, clicks=[(x, y, 1), ...])     # frame: HxWx3 uint8, RGB (color_order="bgr" for OpenCV frames)
    r = seg.infer(frame, scribbles=[([(x0, y0), (x1, y1), ...], 1)])  # a stroke over the object
    r.labels, r.mask, r.score, r.timings

Frame -> lighting adaptation -> :meth:`SemanticSegmenter.infer` (engine and
post-processing). The ROS node holds one Segmentor and calls
:meth:`Segmentor.segment` on every camera frame, so the two give identical
results on the same frame.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .semantic import SemanticSegmenter


@dataclass
class SegmentationResult:
    labels: Optional[np.ndarray]  # HxW class ids (None for a click-only result)
    mask: np.ndarray              # HxW uint8 0/255: foreground classes, or the clicked object
    score: float                  # semantic: mean top-class confidence; clicks: the prompt engine's score
    timings: dict = field(default_factory=dict)  # milliseconds per stage
    adaptation: object = None     # AdaptationState of this frame (None when adaptation is off)
    adapted: Optional[np.ndarray] = None  # the frame the model saw after adaptation (model-sized when smaller)
    candidates: list = field(default_factory=list)  # click mode with multimask: [(mask, score), ...]
    bbox: Optional[tuple] = None  # click mode: (x, y, width, height) of the object, None when the mask is empty
    area: int = 0                 # click mode: the object's pixel count


def _to_rgb(frame: np.ndarray, color_order: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.size == 0:
        raise ValueError(f"expected a non-empty uint8 frame, got {frame.dtype} {frame.shape}")
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"expected HxW, HxWx3 or HxWx4, got {frame.shape}")
    frame = frame[..., :3]
    if color_order == "bgr":
        return np.ascontiguousarray(frame[..., ::-1])
    if color_order != "rgb":
        raise ValueError(f"color_order must be 'rgb' or 'bgr', not {color_order!r}")
    return frame


def _split_scribbles(scribbles) -> tuple:
    """``[(polyline, label), ...]`` -> ``(polylines, labels)``; PromptError when an item is not a pair."""
    from .interactive import PromptError
    lines, labels = [], []
    for index, item in enumerate(scribbles or []):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or np.ndim(item[1]) != 0:
            raise PromptError(f"scribble {index} must be a (polyline, label) pair, "
                              "e.g. ([(10, 20), (40, 25)], 1)")
        lines.append(item[0])
        labels.append(item[1])
    return lines, labels


class Segmentor:
    """Semantic segmentation (+ optional click prompts and lighting adaptation) on numpy frames.

    Parameters mirror the node's: ``engine`` (onnxruntime | tensorrt), ``device``
    (cpu | cuda | cuda:N; default cpu for onnxruntime, cuda for tensorrt), ``threads``,
    ``foreground_classes`` (names or ids; default all but class 0), ``adaptation`` (True: the
    default ``AdaptationConfig``, as the node; an ``AdaptationConfig``; or None/False for none),
    ``prompt_engine`` (name for click prompts: "openpixel", "classical" or "sam"; default
    :data:`openpixel_ros.interactive.DEFAULT_PROMPT_ENGINE`, "openpixel", the package's click network,
    whose weights are for non-commercial research only: "classical" (GrabCut) needs no model file),
    ``prompt_model`` (its model; for "openpixel" the packaged click network when None) and
    ``prompt_options`` (the engine's options, e.g. ``{"zoom_in": False}``). The prompt engine is
    created (its model loaded) at the first click, or when ``prompt_engine`` is first read.

    Threads: one Segmentor may be shared. Semantic segmentation runs concurrently (ONNX Runtime
    sessions are thread-safe; the lighting adapter's smoothing then sees frames in arrival
    order). Click inference (``infer`` with prompts, ``segment_clicks``) is serialised by a
    lock, because the prompt engine holds one frame at a time: concurrent clicks wait for
    each other instead of answering on another thread's frame.
    """

    def __init__(self, model=None, *, engine: str = "onnxruntime", device: str = None, threads: int = 0,
                 foreground_classes: Optional[Sequence] = None, label_upsampling: str = "bilinear",
                 adaptation=True, prompt_engine: Optional[str] = None, prompt_model=None,
                 prompt_options: Optional[dict] = None, color_order: str = "rgb", **engine_options):
        from .default_model import resolve_model
        model = resolve_model(model)
        self.model_path = model
        self.semantic = SemanticSegmenter.from_file(model, engine=engine, device=device, threads=threads,
                                                    label_upsampling=label_upsampling, **engine_options)
        self.contract = self.semantic.contract
        self.color_order = color_order
        self.set_foreground_classes(foreground_classes)
        self.adapter = None
        if adaptation:
            from .adaptation import AdaptationConfig, LightingAdapter
            config = adaptation if isinstance(adaptation, AdaptationConfig) else AdaptationConfig()
            self.adapter = LightingAdapter(config)
        self._prompt_engine_name = prompt_engine
        self._prompt_model = prompt_model
        self._prompt_options = dict(prompt_options or {})
        self._prompt_engine = None
        # A prompt engine holds one frame (set_image, then predict): two threads interleaving
        # would answer on each other's frames. Click inference is serialised by this lock.
        self._prompt_lock = threading.RLock()

    # -- configuration ----------------------------------------------------------------
    def set_foreground_classes(self, classes: Optional[Sequence]) -> None:
        """Classes that make up ``mask``: names or ids; empty/None means the model's own choice
        (metadata ``foreground_classes``), else every class but 0."""
        self.semantic.set_foreground_classes(classes)

    @property
    def foreground_ids(self) -> list:
        return self.semantic.foreground_ids

    @property
    def prompt_engine(self):
        """The click-prompt engine, created on first use."""
        with self._prompt_lock:
            return self._create_prompt_engine()

    def _create_prompt_engine(self):
        if self._prompt_engine is None:
            from .interactive import DEFAULT_PROMPT_ENGINE, create_prompt_engine
            name = (self._prompt_engine_name or DEFAULT_PROMPT_ENGINE).lower()
            self._prompt_engine = create_prompt_engine(name, self._prompt_model, **self._prompt_options)
        return self._prompt_engine

    # -- inference --------------------------------------------------------------------
    def set_adaptation(self, config) -> None:
        """Switch adaptation to ``config`` (an AdaptationConfig) or off (None); keeps the smoothing state."""
        if config is None:
            self.adapter = None
        elif self.adapter is None:
            from .adaptation import LightingAdapter
            self.adapter = LightingAdapter(config)
        else:
            self.adapter.configure(config)

    def adapt(self, rgb: np.ndarray):
        """Lighting adaptation of one frame: (adapted frame, state, conditioning vector).

        When the model's input is smaller than the frame, the frame is first shrunk to it (the
        model's own resize, done earlier), so the correction costs what the model input costs.
        """
        if self.adapter is None:
            return rgb, None, None
        adapted, state = self.adapter.process(self.semantic.model_input.shrink_for_model(rgb))
        vector = self.adapter.conditioning_vector(state) if self.contract.conditioning else None
        return adapted, state, vector

    def segment(self, rgb: np.ndarray, on_stage: Optional[Callable[[str], None]] = None) -> SegmentationResult:
        """Semantic segmentation of an RGB uint8 frame (the node's per-frame call).

        ``on_stage("adaptation")`` and ``on_stage("inference")`` are called as each stage starts
        (the node's diagnostics name a stage that never ends)."""
        t0 = time.perf_counter()
        if on_stage is not None:
            on_stage("adaptation")
        adapted, state, vector = self.adapt(rgb)
        t1 = time.perf_counter()
        if on_stage is not None:
            on_stage("inference")
        result = self.semantic.infer(adapted, vector, frame_hw=rgb.shape[:2])
        timings = dict(result.timings, adaptation_ms=(t1 - t0) * 1e3)
        return SegmentationResult(labels=result.labels, mask=result.mask, score=result.score, timings=timings,
                                  adaptation=state, adapted=adapted if state is not None else None)

    def segment_clicks(self, rgb: np.ndarray, prompt, multimask: bool = False, key=None) -> SegmentationResult:
        """Click-prompted mask of an RGB frame; ``prompt`` is an ``interactive.ClickPrompt``.

        ``key`` identifies the frame's content (e.g. a number given to each frame on receipt; not
        its stamp, which may repeat) so repeated clicks reuse the engine's cached image features;
        None hashes the pixels.
        """
        with self._prompt_lock:  # the engine's frame is shared state: one caller at a time
            engine = self.prompt_engine
            t0 = time.perf_counter()
            engine.set_image(rgb, key=key)
            result = engine.predict(prompt, multimask=multimask)
        timings = dict(result.timings)
        timings.setdefault("total_ms", (time.perf_counter() - t0) * 1e3)
        masks = [m.view(np.uint8) * np.uint8(255) for m in result.masks]
        return SegmentationResult(labels=None, mask=masks[0], score=float(result.scores[0]), timings=timings,
                                  candidates=list(zip(masks, [float(s) for s in result.scores])),
                                  bbox=result.bbox, area=result.area)

    def infer(self, frame: np.ndarray, clicks: Optional[Sequence] = None, box=None,
              color_order: Optional[str] = None, multimask: bool = False,
              scribbles: Optional[Sequence] = None) -> SegmentationResult:
        """Segment one frame. Without prompts: the label image and the foreground mask.

        With ``clicks`` (``[(x, y, label), ...]``, label 1 = object, 0 = background), ``box``
        (x0, y0, x1, y1) and/or ``scribbles`` (``[(polyline, label), ...]``, a polyline being
        ``[(x, y), ...]`` with at least one point, e.g. ``[([(10, 20), (40, 25)], 1)]``), any of
        them alone or together: the prompted object's mask and score, plus the label image.
        Coordinates are frame pixels (x right, y down); a bad prompt raises ``PromptError``.
        """
        rgb = _to_rgb(frame, color_order or self.color_order)
        result = self.segment(rgb)
        if clicks or box is not None or scribbles:
            from .interactive import ClickPrompt
            clicks = list(clicks or [])
            lines, line_labels = _split_scribbles(scribbles)
            prompt = ClickPrompt.from_lists([(c[0], c[1]) for c in clicks], [c[2] for c in clicks], box=box,
                                            image_size=rgb.shape[:2], scribbles=lines, scribble_labels=line_labels)
            clicked = self.segment_clicks(rgb, prompt, multimask=multimask)
            clicked.labels = result.labels
            clicked.adaptation = result.adaptation
            clicked.timings = {**result.timings, **{f"click_{k}": v for k, v in clicked.timings.items()}}
            return clicked
        return result

    def close(self) -> None:
        self.semantic.engine.close()

