"""The "openpixel" prompt engine: OpenPixel's exported encoder + click decoder (no torch).

Files (``python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx``):

* ``X.encoder.onnx``: ``image`` (+ ``conditioning``) -> ``logits``, ``features_s4``,
  ``features_s8``; its ``openpixel-model/1`` metadata drives pre-processing,
  exactly as for semantic segmentation;
* ``X.decoder.onnx``: ``features_s4``, ``features_s8``, ``prompts`` [1,4,h4,w4]
  -> ``mask_logits`` [1,1,h4,w4], ``score`` [1,1]; metadata format
  ``openpixel-prompt-decoder/1`` (the click Gaussian's ``click_sigma``).

Per frame the encoder runs once; per click this engine renders the prompt maps
(:func:`openpixel_ros.model.prompt_maps.render_prompt_maps`, on the 1/4 grid),
runs the decoder and maps its logits back onto the frame; the frame <-> model
geometry both ways is :class:`~openpixel_ros.model_io.ModelInput`'s.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..engines import Engine, EngineError, create_engine
from ..model.prompt_maps import DEFAULT_SIGMA, render_prompt_maps
from ..model_contract import METADATA_KEY, ContractError, load_contract
from ..model_io import ModelInput
from ..semantic import SemanticSegmenter
from .base import PromptEngine, PromptResult
from .prompts import ClickPrompt, PromptError
from .sam_onnx import decoder_path_for

DECODER_FORMAT = "openpixel-prompt-decoder/1"
_DECODER_INPUTS = ("features_s4", "features_s8", "prompts")
_DECODER_OUTPUTS = ("mask_logits", "score")


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
    it for the next frame.
    """

    name = "openpixel"

    def __init__(self, encoder: Engine, decoder: Engine, contract, decoder_metadata: dict,
                 conditioning: Optional[np.ndarray] = None):
        super().__init__()
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
        self.conditioning = conditioning
        self._features = None
        self._placement = None

    @classmethod
    def from_files(cls, encoder_path, decoder: Optional[str] = None, *, device: str = "cpu", threads: int = 0,
                   backend: str = "onnxruntime", **options) -> "OpenPixelPromptEngine":
        """Load ``X.encoder.onnx`` and its decoder (``decoder``, else ``X.decoder.onnx`` beside it)."""
        if not encoder_path:
            raise PromptError("prompt engine 'openpixel' needs model=<X.encoder.onnx>")
        decoder_path = Path(decoder) if decoder else decoder_path_for(encoder_path)
        encoder = create_engine(backend, encoder_path, device=device, threads=threads)
        try:
            decoder_engine = create_engine(backend, decoder_path, device=device, threads=threads)
        except EngineError:
            encoder.close()
            raise
        try:
            contract = load_contract(encoder_path, encoder.metadata)
            metadata = read_decoder_metadata(decoder_path, decoder_engine)
            return cls(encoder, decoder_engine, contract, metadata, **options)
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
    def _prepare(self, rgb: np.ndarray) -> None:
        feeds, placement = self.model_input.feeds(rgb, self.conditioning)
        outputs = self.encoder.run(feeds)
        self._features = (outputs["features_s4"], outputs["features_s8"])
        self._placement = placement

    # -- per prompt --------------------------------------------------------------------
    def _to_input(self, points) -> list:
        return self.model_input.points_to_input(points, self._placement)

    def _previous_probability(self, prompt: ClickPrompt, grid_hw) -> Optional[np.ndarray]:
        if prompt.previous_logits is not None:
            logits = np.asarray(prompt.previous_logits, np.float32)
            if logits.shape[-2:] != tuple(grid_hw):
                raise PromptError(f"previous logits are {logits.shape[-1]}x{logits.shape[-2]}; "
                                  f"this decoder takes {grid_hw[1]}x{grid_hw[0]}")
            return 1.0 / (1.0 + np.exp(-logits.reshape(grid_hw)))
        if prompt.previous_mask is None:
            return None
        return self.model_input.mask_to_input(prompt.previous_mask, self._placement)

    def _predict(self, prompt: ClickPrompt, multimask: bool) -> PromptResult:
        features_s4, features_s8 = self._features
        grid_hw = features_s4.shape[-2:]
        box = None
        if prompt.box is not None:
            (x0, y0), (x1, y1) = self._to_input([prompt.box[:2], prompt.box[2:]])
            box = (x0, y0, x1, y1)
        maps = render_prompt_maps(self._placement.input_hw, self._to_input(prompt.positive_points),
                                  self._to_input(prompt.negative_points),
                                  previous_mask=self._previous_probability(prompt, grid_hw), box=box,
                                  positive_scribbles=[self._to_input(s) for s in prompt.positive_scribbles],
                                  negative_scribbles=[self._to_input(s) for s in prompt.negative_scribbles],
                                  sigma=self.sigma)
        outputs = self.decoder.run({"features_s4": features_s4, "features_s8": features_s8,
                                    "prompts": maps[None]})
        logits = np.asarray(outputs["mask_logits"], np.float32).reshape(grid_hw)
        score = float(1.0 / (1.0 + np.exp(-float(np.asarray(outputs["score"]).reshape(-1)[0]))))
        return PromptResult(masks=[self.model_input.to_frame(logits, self._placement) > 0.0], scores=[score],
                            low_res_logits=logits[None, None])

    def close(self) -> None:
        super().close()
        self._features = None
        for engine in (self.encoder, self.decoder):
            engine.close()
