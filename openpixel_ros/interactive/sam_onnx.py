"""The "sam" prompt engine: bring-your-own Segment-Anything-format ONNX encoder + decoder.

Encoder: one image input, either NCHW ``[1, 3, S, S]`` (the image resized so its longest
side is S, normalised with SAM's pixel mean/std and zero-padded at the bottom/right) or
HWC ``[H, W, 3]`` (samexporter's ``--use-preprocess`` export: resized RGB as float 0..255,
the graph normalises and pads). S comes from the input's shape, else ``input_size``
(1024). Output: the image embedding (``image_embeddings``, else the first output).

Decoder: the segment-anything ``scripts/export_onnx_model.py`` signature, inputs
``image_embeddings``, ``point_coords`` [1, N, 2] (pixels of the 1024 prompt frame: the
frame resized like the encoder's input), ``point_labels`` [1, N] (1 object, 0 background,
2/3 box corners, -1 padding), ``mask_input`` [1, 1, 256, 256], ``has_mask_input`` [1],
``orig_im_size`` [2]; outputs ``masks`` [1, M, H, W] logits, ``iou_predictions`` [1, M]
and optionally ``low_res_masks`` [1, M, 256, 256]. Decoders that lack
``mask_input``/``has_mask_input``/``orig_im_size`` (NanoSAM's, EdgeSAM's) work too, as do
``scores`` for ``iou_predictions`` and low-resolution ``masks`` (upscaled here).
EfficientSAM's own export (``batched_*`` inputs) is recognised by its input names.

SAM takes points only: a scribble becomes up to :data:`SCRIBBLE_SAMPLES` points evenly
spaced along it (both ends included), each labelled as the scribble.

Per frame the encoder runs once (``set_image`` caches the embedding under the frame's key);
every click after the first runs only the decoder. See docs/interactive.md for exporting
MobileSAM, EdgeSAM, NanoSAM and EfficientSAM.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..engines import Engine, EngineError, create_engine
from ..model_contract import InputSpec, ModelContract, OutputSpec
from ..model_io import ModelInput, Placement
from .base import PromptEngine, PromptResult, decoder_path_for
from .prompts import ClickPrompt, PromptError

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
DEFAULT_INPUT_SIZE = 1024
#: Logit magnitude given to a binary previous mask turned into ``mask_input``.
BINARY_MASK_LOGIT = 10.0
#: Most points one scribble becomes for the decoder (SAM's prompts are points).
SCRIBBLE_SAMPLES = 8

_LABEL_PADDING, _LABEL_BOX_TOP_LEFT, _LABEL_BOX_BOTTOM_RIGHT = -1.0, 2.0, 3.0
#: decoder flavour -> (coordinates input, labels input)
_POINT_INPUTS = {"sam": ("point_coords", "point_labels"),
                 "efficientsam": ("batched_point_coords", "batched_point_labels")}


def scribble_samples(line, max_points: int = SCRIBBLE_SAMPLES) -> np.ndarray:
    """float32 [n, 2] points evenly spaced along the polyline ``line`` ([K, 2] (x, y)), both ends
    included: ``n = min(max_points, 1 + floor(length))``, so a scribble no longer than a pixel is
    one point."""
    line = np.asarray(line, np.float64).reshape(-1, 2)
    steps = np.hypot(*np.diff(line, axis=0).T)
    line = line[np.concatenate([[True], steps > 0])]  # repeated vertices add no length
    steps = steps[steps > 0]
    length = float(steps.sum())
    count = max(1, min(int(max_points), 1 + int(length)))
    if count == 1:
        return line[:1].astype(np.float32)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    wanted = np.linspace(0.0, along[-1], count)
    return np.stack([np.interp(wanted, along, line[:, 0]), np.interp(wanted, along, line[:, 1])],
                    axis=1).astype(np.float32)


class SamOnnxEngine(PromptEngine):
    """Segment-Anything-format encoder/decoder pair behind :class:`PromptEngine`.

    ``encoder``/``decoder`` are :class:`~openpixel_ros.engines.Engine` instances (see
    :meth:`from_files`). Two decoder flavours are recognised by their input names: "sam"
    (``point_coords``/``point_labels``: SAM, MobileSAM, EdgeSAM, NanoSAM) and "efficientsam"
    (``batched_point_coords``/``batched_point_labels``: EfficientSAM's own export, whose
    encoder takes the whole frame in [0, 1] at its own size and whose decoder takes
    original-frame pixels).

    Options: ``input_size`` (encoder square side when the model's input shape does not
    say), ``prompt_size`` (side of the square frame the decoder's point coordinates and
    masks refer to: 1024 for every SAM-family decoder, even behind a smaller encoder such
    as a 512 NanoSAM one), ``pixel_mean``/``pixel_std`` (RGB, 0..255 scale; default SAM's,
    or 0/255 for "efficientsam"), ``resize`` ("longest": SAM's longest side to
    ``input_size`` plus padding; "none": the frame as it is; default by flavour),
    ``mask_source``: "auto" (upscale ``low_res_masks`` here when the decoder has it, which
    sidesteps the traced aspect-ratio crop of some ``masks`` exports, else ``masks``),
    "masks" or "low_res".
    """

    name = "sam"

    def __init__(self, encoder: Engine, decoder: Engine, *, input_size: Optional[int] = None,
                 prompt_size: int = DEFAULT_INPUT_SIZE, pixel_mean: Optional[Sequence[float]] = None,
                 pixel_std: Optional[Sequence[float]] = None, resize: Optional[str] = None,
                 mask_source: str = "auto"):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        inputs = {spec.name: spec for spec in decoder.inputs}
        self.flavour = next((flavour for flavour, (coords, labels) in _POINT_INPUTS.items()
                             if coords in inputs and labels in inputs), None)
        if self.flavour is None:
            raise EngineError(f"SAM decoder inputs are {', '.join(inputs)}; expected point_coords and "
                              "point_labels (or EfficientSAM's batched_point_coords and batched_point_labels), "
                              "see docs/interactive.md")
        self._coords_input, self._labels_input = _POINT_INPUTS[self.flavour]
        efficient = self.flavour == "efficientsam"

        self._encoder_input = encoder.inputs[0]
        shape = self._encoder_input.shape
        if len(shape) == 4:
            self._layout = "nchw"
            fixed = [d for d in shape[2:] if d is not None]
        elif len(shape) == 3:
            self._layout = "hwc"
            fixed = []
        else:
            raise EngineError(f"SAM encoder input {self._encoder_input.name!r} has shape {shape}; "
                              "expected [1, 3, S, S] or [H, W, 3]")
        self.input_size = int(input_size or (max(fixed) if fixed else DEFAULT_INPUT_SIZE))
        self.prompt_size = int(prompt_size)
        self.resize = resize or ("none" if efficient else "longest")
        if self.resize not in ("longest", "none"):
            raise PromptError(f"resize must be longest or none, not {self.resize!r}")
        self.pixel_mean = np.asarray(pixel_mean if pixel_mean is not None else
                                     ((0.0, 0.0, 0.0) if efficient else SAM_PIXEL_MEAN), np.float32)
        self.pixel_std = np.asarray(pixel_std if pixel_std is not None else
                                    ((255.0, 255.0, 255.0) if efficient else SAM_PIXEL_STD), np.float32)
        output_names = [o.name for o in encoder.outputs]
        self._embedding_name = "image_embeddings" if "image_embeddings" in output_names else output_names[0]

        self._decoder_inputs = inputs
        known = {self._coords_input, self._labels_input, "mask_input", "has_mask_input", "orig_im_size"}
        self._embedding_input = "image_embeddings" if "image_embeddings" in inputs else next(
            n for n in inputs if n not in known)
        outputs = [o.name for o in decoder.outputs]
        self._score_output = next((n for n in ("iou_predictions", "scores") if n in outputs), None)
        self._masks_output = next((n for n in ("masks", "output_masks") if n in outputs), None)
        if self._score_output is None or (self._masks_output is None and "low_res_masks" not in outputs):
            raise EngineError(f"SAM decoder outputs are {', '.join(outputs)}; expected masks (or output_masks) "
                              "and/or low_res_masks, and iou_predictions (or scores)")
        if mask_source not in ("auto", "masks", "low_res"):
            raise PromptError(f"mask_source must be auto, masks or low_res, not {mask_source!r}")
        if mask_source == "auto":
            # EfficientSAM's low_res_masks are in its squashed 1024x1024 frame, not SAM's padded one.
            mask_source = "low_res" if "low_res_masks" in outputs and not efficient else "masks"
        if mask_source == "low_res" and "low_res_masks" not in outputs:
            raise EngineError("mask_source 'low_res' needs a decoder output named low_res_masks")
        if mask_source == "masks" and self._masks_output is None:
            raise EngineError("mask_source 'masks' needs a decoder output named masks")
        self.mask_source = mask_source
        self._mask_input_size = self._decoder_mask_input_size()

        # The frame <-> model geometry is ModelInput's, twice: the encoder's input ("longest": SAM's
        # ResizeLongestSide, padded at the bottom and right; "none": the frame as it is) and the
        # decoder's prompt frame, which point coordinates and masks refer to.
        graph_normalises = self._layout == "hwc" and self.resize == "longest"  # samexporter --use-preprocess
        self.model_input = ModelInput(self._input_contract(self.input_size, normalise=not graph_normalises))
        self.prompt_frame = ModelInput(self._input_contract(self.prompt_size))
        self._embedding = None
        self._prompt_placement: Optional[Placement] = None  # the frame inside the decoder's prompt frame
        self._last = None  # (binary mask, its low-res logits) of this frame's last answer

    @classmethod
    def from_files(cls, encoder_path, decoder: Optional[str] = None, *, device: str = "cpu",
                   threads: int = 0, backend: str = "onnxruntime", **options) -> "SamOnnxEngine":
        """Load an encoder ONNX and its decoder (``decoder`` or found by :func:`decoder_path_for`)."""
        if not encoder_path:
            raise PromptError("prompt engine 'sam' needs model=<image encoder .onnx>")
        decoder_path = Path(decoder) if decoder else decoder_path_for(encoder_path)
        encoder = create_engine(backend, encoder_path, device=device, threads=threads)
        decoder_engine = create_engine(backend, decoder_path, device=device, threads=threads)
        return cls(encoder, decoder_engine, **options)

    # -- geometry ----------------------------------------------------------------------
    def _input_contract(self, side: int, normalise: bool = True) -> ModelContract:
        """The input transform as a model contract: a ``side`` square ("longest") or the frame's own
        size ("none"), RGB normalised with the pixel mean and std (unless ``normalise`` is False: the
        HWC export takes the resized frame as 0..255 and normalises in its graph)."""
        longest = self.resize == "longest"
        mean, std = (tuple(self.pixel_mean), tuple(self.pixel_std)) if normalise else ((0.0,) * 3, (1.0,) * 3)
        spec = InputSpec(name=self._encoder_input.name, layout="NHWC" if self._layout == "hwc" else "NCHW",
                         height=side if longest else None, width=side if longest else None, scale=1.0,
                         mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                         resize="longest" if longest else "stretch")
        return ModelContract(spec, OutputSpec("masks", "probability"), ("background", "object"),
                             ((0, 0, 0), (255, 255, 255)), task="click")

    def to_model_coords(self, points: np.ndarray) -> np.ndarray:
        """Frame coordinates -> pixels of the decoder's ``prompt_size`` frame (its placement's resize)."""
        return np.asarray(self.prompt_frame.points_to_input(points, self._prompt_placement),
                          np.float32).reshape(-1, 2)

    # -- per frame ---------------------------------------------------------------------
    def _prepare(self, rgb: np.ndarray) -> None:
        self._prompt_placement = self.prompt_frame.placement(rgb.shape[:2])
        tensor, placement = self.model_input.tensor(rgb)
        if self._layout == "hwc":  # samexporter's --use-preprocess graph: the resized frame, unbatched, unpadded
            p = placement
            tensor = np.ascontiguousarray(tensor[0, p.top:p.top + p.height, p.left:p.left + p.width])
        self._embedding = self.encoder.run({self._encoder_input.name: tensor})[self._embedding_name]
        self._last = None

    # -- per prompt --------------------------------------------------------------------
    def _predict(self, prompt: ClickPrompt, multimask: bool) -> PromptResult:
        coords, labels = self.decoder_points(prompt)
        batch = (1, 1) if self.flavour == "efficientsam" else (1,)  # EfficientSAM: [batch, query, ...]
        feeds = {self._embedding_input: self._embedding,
                 self._coords_input: coords.reshape(*batch, -1, 2).astype(np.float32),
                 self._labels_input: labels.reshape(*batch, -1).astype(np.float32)}
        if "mask_input" in self._decoder_inputs:
            mask_input = self._mask_input(prompt)
            feeds["mask_input"] = mask_input if mask_input is not None else np.zeros(
                (1, 1, self._mask_input_size, self._mask_input_size), np.float32)
            if "has_mask_input" in self._decoder_inputs:
                feeds["has_mask_input"] = np.array([0.0 if mask_input is None else 1.0], np.float32)
        if "orig_im_size" in self._decoder_inputs:
            dtype = self._decoder_inputs["orig_im_size"].dtype
            feeds["orig_im_size"] = np.array(self._image.shape[:2], dtype=dtype)
        outputs = self.decoder.run(feeds)

        scores = np.asarray(outputs[self._score_output], np.float32).reshape(-1)
        low_res = outputs.get("low_res_masks")
        low_res = None if low_res is None else np.asarray(low_res, np.float32).reshape(-1, *low_res.shape[-2:])
        if self.mask_source == "low_res":
            logits = None
        else:
            logits = np.asarray(outputs[self._masks_output], np.float32)
            logits = logits.reshape(-1, *logits.shape[-2:])
            if logits.shape[-2:] != self._image.shape[:2]:
                low_res, logits = logits, None  # EdgeSAM-style: "masks" are the low-resolution ones
        count = len(scores)

        point_count = int(np.count_nonzero((labels == 0) | (labels == 1)))  # clicks and scribble samples
        order = self._candidate_order(scores, point_count, prompt.box is not None, multimask)
        masks, kept_scores, kept_low_res = [], [], []
        for index in order:
            full = logits[index] if logits is not None else self._upscale(low_res[index])
            masks.append(full > 0.0)
            kept_scores.append(float(np.clip(scores[index], 0.0, 1.0)))
            kept_low_res.append(None if low_res is None or len(low_res) != count else low_res[index])
        best_low_res = kept_low_res[0]
        if best_low_res is not None:
            self._last = (masks[0], best_low_res)
        return PromptResult(masks=masks, scores=kept_scores,
                            low_res_logits=None if best_low_res is None else best_low_res[None, None])

    def decoder_points(self, prompt: ClickPrompt) -> tuple:
        """``(coords [K, 2], labels [K])`` fed to the decoder: clicks in the decoder's frame, then
        each scribble's samples (:func:`scribble_samples`) with its label, then the box as two
        corners labelled 2 and 3, or else SAM's padding point (0, 0, -1)."""
        coords = [self.to_model_coords(prompt.points)]
        labels = [prompt.labels.astype(np.float32)]
        for line, label in zip(prompt.scribbles, prompt.scribble_labels):
            samples = scribble_samples(line)
            coords.append(self.to_model_coords(samples))
            labels.append(np.full(len(samples), float(label), np.float32))
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            coords.append(self.to_model_coords([[x0, y0], [x1, y1]]))
            labels.append(np.array([_LABEL_BOX_TOP_LEFT, _LABEL_BOX_BOTTOM_RIGHT], np.float32))
        elif self.flavour == "sam":  # EfficientSAM pads inside its graph
            coords.append(np.zeros((1, 2), np.float32))
            labels.append(np.array([_LABEL_PADDING], np.float32))
        return np.concatenate(coords).astype(np.float32), np.concatenate(labels).astype(np.float32)

    def _candidate_order(self, scores: np.ndarray, point_count: int, has_box: bool, multimask: bool) -> list:
        """Indices of the masks to return, best first.

        With 4 outputs (SAM's single-mask token first, then 3 multimask tokens): multimask
        returns tokens 1..3 by predicted IoU; single mask follows SAM's own rule, the best of
        1..3 for a lone point and token 0 once there is more than one point (clicks and
        scribble samples together) or a box.
        Otherwise every output is a candidate, by predicted IoU (single mask: the best one).
        """
        count = len(scores)
        if count == 4:
            if not multimask and (point_count > 1 or has_box):
                return [0]
            candidates = [1, 2, 3]
        else:
            candidates = list(range(count))
        ranked = sorted(candidates, key=lambda i: -float(scores[i]))
        return ranked if multimask else ranked[:1]

    def _mask_input(self, prompt: ClickPrompt) -> Optional[np.ndarray]:
        """``mask_input`` for the decoder: the caller's logits, this engine's own logits when the
        previous mask is the one it last returned on this frame, else the binary mask as logits."""
        size = self._mask_input_size
        if prompt.previous_logits is not None:
            logits = np.asarray(prompt.previous_logits, np.float32)
            if logits.shape[-2:] != (size, size):
                raise PromptError(f"previous logits are {logits.shape[-1]}x{logits.shape[-2]}; "
                                  f"this decoder takes {size}x{size}")
            return logits.reshape(1, 1, size, size)
        if prompt.previous_mask is None:
            return None
        if self._last is not None and np.array_equal(self._last[0], prompt.previous_mask):
            return self._last[1].reshape(1, 1, size, size)
        # A binary mask: onto the frame's place in the prompt frame's low-res grid, as +/- logits.
        y0, y1, x0, x1 = ModelInput.grid_box(self._prompt_placement, (size, size))
        small = cv2.resize(prompt.previous_mask.view(np.uint8).astype(np.float32), (x1 - x0, y1 - y0),
                           interpolation=cv2.INTER_AREA)
        grid = np.full((size, size), -BINARY_MASK_LOGIT, np.float32)
        grid[y0:y1, x0:x1] = np.where(small > 0.5, BINARY_MASK_LOGIT, -BINARY_MASK_LOGIT)
        return grid[None, None]

    def _upscale(self, low_res: np.ndarray) -> np.ndarray:
        """Low-res logits (on the prompt frame's grid) -> the frame: the padding cropped, then resized."""
        return self.prompt_frame.to_frame(low_res, self._prompt_placement)

    def _decoder_mask_input_size(self) -> int:
        spec = self._decoder_inputs.get("mask_input")
        if spec is not None and spec.shape and spec.shape[-1] is not None:
            return int(spec.shape[-1])
        return self.prompt_size // 4  # SAM: 4x the 64x64 embedding grid

    def close(self) -> None:
        super().close()
        self.encoder.close()
        self.decoder.close()
        self._embedding = None
        self._last = None
