"""The prompt-engine interface: set an image once, then answer any number of click prompts on it;
and the rule every encoder/decoder engine finds its decoder file by."""
from __future__ import annotations

import hashlib
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Optional

import cv2
import numpy as np

from .prompts import ClickPrompt, PromptError


@dataclass
class PromptResult:
    """Masks for one prompt, best first.

    ``masks``: HxW bool arrays; ``scores``: the engine's confidence in each, in [0, 1];
    ``timings``: milliseconds per stage (every engine reports ``encoder_ms``, which is 0
    when the frame's cached features were reused, ``decoder_ms`` and ``total_ms``);
    ``low_res_logits``: engine-specific logits of ``masks[0]`` that the caller may hand back
    as ``ClickPrompt.previous_logits`` on the next click (None when the engine has none).
    """

    masks: list
    scores: list
    timings: dict = field(default_factory=dict)
    low_res_logits: Optional[np.ndarray] = None

    @property
    def mask(self) -> np.ndarray:
        return self.masks[0]

    @property
    def score(self) -> float:
        return float(self.scores[0])

    @property
    def bbox(self) -> Optional[tuple]:
        """``(x, y, width, height)`` of ``mask``'s object pixels, or None when it is empty."""
        if not self.mask.any():
            return None
        return tuple(int(v) for v in cv2.boundingRect(self.mask.view(np.uint8)))

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


class PromptEngine(ABC):
    """Click-prompted segmentation of one frame at a time.

    :meth:`set_image` does the per-frame work (for a network, the image embedding) and
    caches it under ``key``; setting the same key again costs nothing, so a user who
    clicks five times on one frame pays for the encoder once. :meth:`predict` then answers
    prompts on that frame. Subclasses implement :meth:`_prepare` and :meth:`_predict`.
    """

    #: Short name used in parameters, logs and evaluation reports.
    name: str = ""

    def __init__(self):
        self._image: Optional[np.ndarray] = None
        self._key: Optional[Hashable] = None
        self._unreported_encoder_ms = 0.0

    @property
    def image_size(self) -> Optional[tuple]:
        """``(height, width)`` of the current frame, or None before :meth:`set_image`."""
        return None if self._image is None else self._image.shape[:2]

    def set_image(self, rgb: np.ndarray, key: Optional[Hashable] = None) -> None:
        """Make ``rgb`` (HxWx3 uint8, RGB) the frame that prompts refer to.

        ``key`` identifies the frame's content (for example a number given to each frame on
        receipt; not a header stamp, which drivers may leave at zero or repeat); without one the
        frame's content is hashed (about a millisecond for VGA). When the key equals the
        current frame's, nothing is recomputed: a key reused for another frame answers on the old one.
        """
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise PromptError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        if key is None:
            key = ("content", rgb.shape, hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest())
        if self._image is not None and key == self._key:
            return
        started = time.perf_counter()
        self._image = np.ascontiguousarray(rgb)
        self._key = None  # a failing _prepare must not leave a stale key behind
        self._prepare(self._image)
        self._key = key
        self._unreported_encoder_ms = (time.perf_counter() - started) * 1e3

    def predict(self, prompt: ClickPrompt, multimask: bool = False) -> PromptResult:
        """Masks for ``prompt`` on the current frame; ``multimask`` asks for several candidates."""
        if self._image is None or self._key is None:
            raise PromptError("no image set: call set_image() before predict()")
        if prompt.image_size is not None and tuple(prompt.image_size) != self.image_size:
            h, w = prompt.image_size
            raise PromptError(f"the prompt was made for a {w}x{h} image but the frame is "
                              f"{self.image_size[1]}x{self.image_size[0]}")
        started = time.perf_counter()
        result = self._predict(prompt, multimask)
        decoder_ms = (time.perf_counter() - started) * 1e3
        encoder_ms, self._unreported_encoder_ms = self._unreported_encoder_ms, 0.0
        result.timings = {"encoder_ms": encoder_ms, "decoder_ms": decoder_ms, **result.timings,
                          "total_ms": encoder_ms + decoder_ms}
        return result

    @abstractmethod
    def _prepare(self, rgb: np.ndarray) -> None:
        """Per-frame work for a new frame (its result is kept until the next frame)."""

    @abstractmethod
    def _predict(self, prompt: ClickPrompt, multimask: bool) -> PromptResult:
        """Answer one prompt on the prepared frame; ``timings`` may add engine-specific stages."""

    def close(self) -> None:
        """Release the engine's resources. Safe to call twice."""
        self._image = None
        self._key = None


def decoder_path_for(encoder_path) -> Path:
    """The decoder file beside an encoder, by name: ``X.encoder.onnx`` -> ``X.decoder.onnx``,
    ``X_encoder.onnx`` -> ``X_decoder.onnx`` (also ``-encoder``, and ``image_encoder`` ->
    ``mask_decoder`` as NanoSAM names them). Raises PromptError when the encoder or the
    decoder file does not exist."""
    encoder_path = Path(encoder_path)
    if not encoder_path.is_file():
        raise PromptError(f"prompt model file not found: {encoder_path}")
    name = encoder_path.name
    candidates = []
    for pattern, replacement in ((r"image_encoder", "mask_decoder"), (r"([._-])encoder", r"\1decoder")):
        if re.search(pattern, name):
            candidates.append(encoder_path.with_name(re.sub(pattern, replacement, name)))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(c.name for c in candidates) or "no name with 'encoder' in it to derive one from"
    raise PromptError(f"no decoder found beside {encoder_path} (tried: {tried}); pass decoder=PATH")
