"""Semantic segmentation around an engine: image in, label image out.

Pre-processing (resize or letterbox, colour order, normalisation, layout) and
post-processing (upsampling back to the frame's size, argmax or threshold) are
driven by the model's :class:`~openpixel_ros.model_contract.ModelContract`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from .engines import Engine, EngineError, create_engine
from .model_contract import ContractError, ModelContract, load_contract


@dataclass
class SemanticResult:
    """Class ids at the frame's resolution, plus per-stage timings in milliseconds."""

    labels: np.ndarray  # HxW uint8 (uint16 when there are more than 255 classes)
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Geometry:
    """Where the frame sits inside the model input (for letterbox)."""

    top: int
    left: int
    height: int
    width: int


def downscale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased shrink, ~7x faster than INTER_AREA on large frames.

    Exact halvings with INTER_LINEAR average 2x2 blocks (a box-filter pyramid); the last
    step, by less than 2x, is bilinear. Measured here on 1080p -> 256x144: 1.0-1.6 ms
    against 11.6 ms for INTER_AREA, mean difference from INTER_AREA under 1 grey level.
    """
    h, w = image.shape[:2]
    while w >= 2 * width and h >= 2 * height:
        w, h = w // 2, h // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if (w, h) == (width, height):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def label_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.uint16


class SemanticSegmenter:
    """Runs one semantic model on RGB frames.

    Thread-safety: one call at a time (the node runs inference on one worker thread).
    """

    def __init__(self, engine: Engine, contract: ModelContract, label_upsampling: str = "bilinear"):
        self.engine = engine
        self.contract = contract
        if label_upsampling not in ("bilinear", "nearest"):
            raise ValueError(f"label_upsampling must be bilinear or nearest, not {label_upsampling!r}")
        self.label_upsampling = label_upsampling
        self._check_contract()
        spec = contract.input
        self._mean = np.asarray(spec.mean, np.float32) / np.float32(spec.scale)
        # Fold scale and std into one multiply: x = (p - mean/scale) * (scale/std).
        self._mul = np.float32(spec.scale) / np.asarray(spec.std, np.float32)
        self._dtype = engine.input(spec.name).dtype

    @classmethod
    def from_file(cls, model_path, engine: str = "onnxruntime", device: str = None, threads: int = 0,
                  label_upsampling: str = "bilinear", **engine_options) -> "SemanticSegmenter":
        eng = create_engine(engine, model_path, device=device, threads=threads, **engine_options)
        try:
            contract = load_contract(model_path, eng.metadata)
            return cls(eng, contract, label_upsampling=label_upsampling)
        except Exception:
            eng.close()
            raise

    # -- validation -------------------------------------------------------------------
    def _check_contract(self) -> None:
        c = self.contract
        names = {s.name for s in self.engine.inputs}
        if c.input.name not in names:
            raise ContractError(f"model has no input {c.input.name!r} (inputs: {', '.join(sorted(names))})")
        if c.conditioning and c.conditioning.name not in names:
            raise ContractError(f"model has no conditioning input {c.conditioning.name!r}")
        extra = names - {c.input.name} - ({c.conditioning.name} if c.conditioning else set())
        if extra:
            raise ContractError(f"model inputs {sorted(extra)} are not declared in its metadata")
        outputs = {s.name: s for s in self.engine.outputs}
        if c.output.name not in outputs:
            raise ContractError(f"model has no output {c.output.name!r} (outputs: {', '.join(outputs)})")
        shape = self.engine.input(c.input.name).shape
        if len(shape) != 4:
            raise ContractError(f"input {c.input.name!r} has rank {len(shape)}, expected 4")
        channel_dim = shape[1] if c.input.layout == "NCHW" else shape[3]
        if channel_dim not in (None, 3):
            raise ContractError(f"input {c.input.name!r} has {channel_dim} channels, expected 3")
        hw = shape[2:4] if c.input.layout == "NCHW" else shape[1:3]
        for declared, actual in zip((c.input.height, c.input.width), hw):
            if actual is not None and declared is not None and declared != actual:
                raise ContractError(f"metadata input size {c.input.height}x{c.input.width} "
                                    f"disagrees with the graph's {hw[0]}x{hw[1]}")
        out_shape = outputs[c.output.name].shape
        if len(out_shape) != 4:
            raise ContractError(f"output {c.output.name!r} has rank {len(out_shape)}, expected 4 ([1,C,h,w])")
        expected_c = 1 if c.output.kind == "probability" else c.num_classes
        if out_shape[1] is not None and out_shape[1] != expected_c:
            raise ContractError(f"output {c.output.name!r} has {out_shape[1]} channels; "
                                f"{c.output.kind} with {c.num_classes} classes needs {expected_c}")
        if c.conditioning:
            cshape = self.engine.input(c.conditioning.name).shape
            if len(cshape) != 2 or cshape[1] not in (None, c.conditioning.size):
                raise ContractError(f"conditioning input {c.conditioning.name!r} has shape {cshape}, "
                                    f"expected [1,{c.conditioning.size}]")

    # -- pre-processing -----------------------------------------------------------------
    def input_size(self, frame_hw) -> tuple:
        """Model input (height, width) for a frame of ``frame_hw``; dynamic dims take the frame's."""
        h = self.contract.input.height or frame_hw[0]
        w = self.contract.input.width or frame_hw[1]
        return int(h), int(w)

    def preprocess(self, rgb: np.ndarray):
        """RGB uint8 HxWx3 -> (model input tensor, geometry of the frame inside it)."""
        spec = self.contract.input
        h, w = rgb.shape[:2]
        in_h, in_w = self.input_size((h, w))
        if spec.resize == "letterbox" and (in_h, in_w) != (h, w):
            s = min(in_h / h, in_w / w)
            rh, rw = max(1, round(h * s)), max(1, round(w * s))
            top, left = (in_h - rh) // 2, (in_w - rw) // 2
            canvas = np.zeros((in_h, in_w, 3), np.uint8)
            canvas[top:top + rh, left:left + rw] = downscale(rgb, rw, rh)
            resized, geom = canvas, _Geometry(top, left, rh, rw)
        else:
            resized = downscale(rgb, in_w, in_h) if (in_h, in_w) != (h, w) else rgb
            geom = _Geometry(0, 0, in_h, in_w)
        if spec.color_order == "bgr":
            resized = resized[..., ::-1]
        x = (resized.astype(np.float32) - self._mean) * self._mul
        if spec.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None], dtype=self._dtype), geom

    # -- inference ----------------------------------------------------------------------
    def run_model(self, rgb: np.ndarray, conditioning: Optional[np.ndarray] = None):
        """Pre-process and run the engine. Returns (raw output [1,C,h,w], geometry, timings)."""
        t0 = time.perf_counter()
        tensor, geom = self.preprocess(rgb)
        feeds = {self.contract.input.name: tensor}
        if self.contract.conditioning:
            size = self.contract.conditioning.size
            vec = np.zeros((1, size), np.float32) if conditioning is None else \
                np.asarray(conditioning, np.float32).reshape(1, -1)
            if vec.shape[1] != size:
                raise EngineError(f"conditioning vector has {vec.shape[1]} values, model expects {size}")
            feeds[self.contract.conditioning.name] = vec
        t1 = time.perf_counter()
        out = self.engine.run(feeds)[self.contract.output.name]
        t2 = time.perf_counter()
        return out, geom, {"preprocess_ms": (t1 - t0) * 1e3, "engine_ms": (t2 - t1) * 1e3}

    def infer(self, rgb: np.ndarray, conditioning: Optional[np.ndarray] = None) -> SemanticResult:
        """Label image at the frame's resolution for an RGB uint8 frame."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
        out, geom, timings = self.run_model(rgb, conditioning)
        t0 = time.perf_counter()
        labels = self.labels_from_output(out, geom, rgb.shape[:2])
        timings["postprocess_ms"] = (time.perf_counter() - t0) * 1e3
        return SemanticResult(labels=labels, timings=timings)

    # -- post-processing ----------------------------------------------------------------
    def labels_from_output(self, out: np.ndarray, geom: _Geometry, frame_hw) -> np.ndarray:
        """Crop the letterbox, upsample to ``frame_hw`` and turn scores into class ids."""
        out = np.asarray(out)
        if out.ndim != 4 or out.shape[0] != 1:
            raise EngineError(f"model output has shape {out.shape}, expected [1,C,h,w]")
        maps = out[0]
        in_h, in_w = self.input_size(frame_hw)
        oh, ow = maps.shape[1:]
        # Output may be a downsampled grid of the input: map the letterbox crop onto it.
        sy, sx = oh / in_h, ow / in_w
        y0, x0 = int(round(geom.top * sy)), int(round(geom.left * sx))
        y1, x1 = int(round((geom.top + geom.height) * sy)), int(round((geom.left + geom.width) * sx))
        maps = maps[:, y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
        H, W = frame_hw
        dtype = label_dtype(self.contract.num_classes)
        if self.contract.output.kind == "probability":
            prob = maps[0].astype(np.float32, copy=False)
            if prob.shape != (H, W):
                prob = cv2.resize(prob, (W, H), interpolation=cv2.INTER_LINEAR)
            return (prob > 0.5).astype(dtype)
        if self.label_upsampling == "nearest" or maps.shape[0] > 512:
            labels = np.argmax(maps, axis=0).astype(dtype)
            if labels.shape != (H, W):
                labels = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST)
            return labels
        if maps.shape[1:] == (H, W):
            return np.argmax(maps, axis=0).astype(dtype)
        scores = cv2.resize(np.ascontiguousarray(maps.transpose(1, 2, 0), dtype=np.float32), (W, H),
                            interpolation=cv2.INTER_LINEAR)
        if scores.ndim == 2:  # cv2 drops a single channel axis
            scores = scores[..., None]
        return np.argmax(scores, axis=2).astype(dtype)
