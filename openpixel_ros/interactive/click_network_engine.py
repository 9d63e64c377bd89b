"""The "openpixel" prompt engine on the OpenPixel click network (no torch): the default click engine.

File (``python -m openpixel_ros.export.click_network --checkpoint X.pt --onnx X.onnx``):
``X.onnx`` with its ``X.json`` contract (``openpixel-model/1``, ``task: click``):

* inputs ``image`` ``[1,3,S,S]`` (the contract's input transform, as for semantic models)
  and ``prompts`` ``[1,4,ceil(S/2),ceil(S/2)]``: the prompt maps of
  :func:`~openpixel_ros.inference.prompt_maps.render_prompt_maps` on the stem's grid
  (``prompt_stride`` 2, ``click_sigma`` in input pixels);
* outputs ``mask_logits`` ``[1,1,ceil(S/4),ceil(S/4)]`` and ``score`` ``[1,1]`` (a logit of
  the predicted IoU).

The clicks enter the network's first layer (early fusion), so the whole network runs
per click: the per-frame work is only the input transform. Everything else (zoom-in
windows, click placement on pixel centres, guided boundaries, scribbles, boxes, the
previous mask) is :class:`~.openpixel_engine.OpenPixelPromptEngine`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..engines import Engine, EngineError, create_engine
from ..inference.prompt_maps import DEFAULT_SIGMA, PROMPT_CHANNELS, grid_size
from ..model_contract import ContractError, ModelContract, load_contract
from ..model_io import ModelInput, View
from .base import PromptEngine
from .openpixel_engine import OpenPixelPromptEngine, _Encoding
from .prompts import PromptError

CLICK_TASK = "click"
_INPUTS = ("prompts",)
_OUTPUTS = ("mask_logits", "score")


def is_click_network(model_path) -> bool:
    """Whether ``model_path``'s contract is a click network's (``task: click``)."""
    try:
        return load_contract(model_path).task == CLICK_TASK
    except (ContractError, OSError, ValueError):
        return False


class ClickNetworkEngine(OpenPixelPromptEngine):
    """The early-fusion click network behind :class:`PromptEngine`.

    Options as :class:`OpenPixelPromptEngine`'s: ``zoom_in``, ``zoom_first``, ``zoom_expansion``,
    ``refine`` (``"guided"`` or ``"none"``) and ``retry_ignored_click``; the network takes no lighting
    conditioning.
    """

    name = "openpixel"

    def __init__(self, network: Engine, contract: ModelContract, zoom_in: bool = True,
                 zoom_expansion: float = 1.4, refine: str = "guided", zoom_first: bool = True,
                 retry_ignored_click: bool = True):
        # (OpenPixelPromptEngine.__init__ expects an encoder/decoder pair; the shared state is set here.)
        PromptEngine.__init__(self)
        self._set_view_options(zoom_in, zoom_expansion, refine, zoom_first, retry_ignored_click)
        if contract.task != CLICK_TASK:
            raise EngineError(f"model task is {contract.task!r}, a click network's is {CLICK_TASK!r}")
        inputs = {i.name: i for i in network.inputs}
        outputs = {o.name for o in network.outputs}
        image_name = contract.input.name
        if image_name not in inputs or set(_INPUTS) - set(inputs) or set(_OUTPUTS) - outputs:
            raise EngineError(f"click network has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
                              f"expected {(image_name,) + _INPUTS} -> {_OUTPUTS}")
        if not (contract.input.height and contract.input.width):
            raise EngineError("click network contract needs a fixed input height and width")
        self.network = network
        self.encoder = self.decoder = network  # (one graph; close() closes it once)
        self.contract = contract
        self.model_input = ModelInput(contract, inputs[image_name].dtype)
        self.sigma = float(contract.extra.get("click_sigma", DEFAULT_SIGMA))
        self.prompt_stride = int(contract.extra.get("prompt_stride", 2))
        expected = (1, PROMPT_CHANNELS) + grid_size(contract.input.height, contract.input.width, self.prompt_stride)
        shape = tuple(inputs["prompts"].shape)
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape, expected)):
            raise EngineError(f"click network prompts input is {list(shape)}, its contract implies {list(expected)}")
        self.conditioning = None
        self.decoder_path = None
        self.model_path: Optional[Path] = None  # set by from_files
        self._zoom_encoder_ms = 0.0
        self._full = self._zoom = None

    @classmethod
    def from_files(cls, model_path, *, device: str = "cpu", threads: int = 0, backend: str = "onnxruntime",
                   **options) -> "ClickNetworkEngine":
        """Load ``X.onnx`` (with its ``X.json`` contract or embedded metadata)."""
        if not model_path:
            raise PromptError("the click network needs model=<X.onnx>")
        network = create_engine(backend, model_path, device=device, threads=threads)
        try:
            engine = cls(network, load_contract(model_path, network.metadata), **options)
        except (ContractError, EngineError):
            network.close()
            raise
        engine.model_path = Path(model_path)
        return engine

    def set_conditioning(self, conditioning) -> None:
        """The click network takes no lighting conditioning: ignored (the frame cache stays)."""

    def _encode(self, view: View) -> _Encoding:
        tensor, _ = self.model_input.tensor(view.crop(self._image))  # the per-frame (per-window) work
        return _Encoding((tensor,), view)

    def _run(self, encoding: _Encoding, prompts: np.ndarray) -> dict:
        return self.network.run({self.contract.input.name: encoding.features[0], "prompts": prompts})

    def close(self) -> None:
        self._image = self._key = None
        self._full = self._zoom = None
        self.network.close()
