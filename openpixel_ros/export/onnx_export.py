"""PyTorch -> ONNX export of OpenPixel checkpoints (and of the DeepLab reference port).

``python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx`` writes two graphs:

* ``X.encoder.onnx`` (+ ``X.encoder.json``): per frame,
  ``image [1,3,H,W]`` (+ ``conditioning [1,K]``) -> ``logits [1,C,H/4,W/4]``,
  ``features_s4 [1,48,H/4,W/4]``, ``features_s8 [1,64,H/8,W/8]``. Its metadata
  is a regular ``openpixel-model/1`` contract, so the node's semantic
  pipeline runs it as is; the contract's ``prompt_decoder`` entry names the decoder.
* ``X.decoder.onnx`` (+ ``X.decoder.json``, format ``openpixel-prompt-decoder/1``):
  per click, ``features_s4, features_s8, prompts [1,4,H/4,W/4]`` ->
  ``mask_logits [1,1,H/4,W/4]``, ``score [1,1]``.

A checkpoint whose run did not train the click head (``clicks.enabled: false``, as the road
runs) exports the encoder alone: its decoder would be the head's initial weights, a file that
loads and answers clicks with noise. Its contract then has no ``prompt_decoder`` entry, and a
stale ``X.decoder.onnx`` from an earlier export is removed (the prompt engine would pair it
with the new encoder by name). See :func:`click_head_trained`.

Sizes written H/4 round up. Export uses PyTorch's TorchScript-based exporter
(``dynamo=False``: no extra dependency, opset 17), folds the result with ONNX
Runtime's basic optimisations (:func:`fold_constants`) and refuses a graph with
an operator outside :data:`TENSORRT_OPS`.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
import torch

from openpixel_ros.model_contract import (METADATA_KEY, ConditioningSpec, InputSpec, ModelContract, OutputSpec,
                                          default_colors, write_sidecar)

MIN_OPSET = 17
DECODER_FORMAT = "openpixel-prompt-decoder/1"

#: ONNX operators the exported graphs may contain: all are in the TensorRT ONNX parser's support
#: matrix (onnx-tensorrt docs/operators.md, TensorRT 8.5 and later) without restrictions our graphs hit.
TENSORRT_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "Div", "Expand", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "Identity", "MatMul", "Mul", "Pad",
    "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Sub",
    "Transpose", "Unsqueeze", "Squeeze",
})


class ExportError(ValueError):
    """The model cannot be exported as asked (bad options or an unsupported operator)."""


def graph_ops(model: onnx.ModelProto) -> set:
    """The operator types used in ``model``'s main graph."""
    return {node.op_type for node in model.graph.node}


def check_tensorrt_ops(model: onnx.ModelProto) -> None:
    """Raise ExportError naming any operator outside :data:`TENSORRT_OPS`."""
    extra = graph_ops(model) - TENSORRT_OPS
    if extra:
        raise ExportError(f"graph uses operators outside the TensorRT-supported set: {', '.join(sorted(extra))}")


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constant subgraphs (the exporter's pad-list arithmetic, shapes of fixed-size tensors).

    Uses ONNX Runtime's basic graph optimisations, which rewrite with standard
    ONNX operators only (constant folding, identity elimination, Conv+BN and
    similar fusions); unused operator-set imports it adds are dropped.
    """
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        folded = onnx.load(options.optimized_model_filepath)
    used_domains = {node.domain for node in folded.graph.node}
    kept = [o for o in folded.opset_import if o.domain in used_domains or o.domain in ("", "ai.onnx")]
    del folded.opset_import[:]
    folded.opset_import.extend(kept)
    return folded


def export_module(module: torch.nn.Module, example_inputs: tuple, path, input_names: Sequence[str],
                  output_names: Sequence[str], opset: int = MIN_OPSET, dynamic_axes: Optional[dict] = None,
                  contract: Optional[ModelContract] = None, metadata: Optional[dict] = None) -> onnx.ModelProto:
    """Export ``module`` (eval mode) to ``path`` and attach its metadata.

    ``contract`` is written as the sidecar JSON and embedded as the ONNX
    metadata property ``openpixel``; ``metadata`` (a dict) is used instead
    for graphs that are not semantic models (the prompt decoder).
    """
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is below the supported minimum {MIN_OPSET}")
    path = Path(path)
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter is "legacy"
        warnings.filterwarnings("ignore", category=UserWarning)  # its constant-folding notes
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, example_inputs, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=opset, dynamic_axes=dynamic_axes,
                          do_constant_folding=True, dynamo=False)
    model = fold_constants(onnx.load(str(path)))
    check_tensorrt_ops(model)
    data = contract.to_dict() if contract is not None else metadata
    if data is not None:
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(data)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if contract is not None:
        write_sidecar(path, contract)
    elif metadata is not None:
        path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return model


def graph_paths(onnx_path) -> tuple:
    """``(X.encoder.onnx, X.decoder.onnx)`` for ``--onnx X.onnx``."""
    onnx_path = Path(onnx_path)
    stem = onnx_path.with_suffix("")
    return stem.with_name(stem.name + ".encoder.onnx"), stem.with_name(stem.name + ".decoder.onnx")


def click_head_trained(checkpoint: dict) -> bool:
    """Whether the run that wrote ``checkpoint`` trained the click head. False for ``clicks.enabled:
    false`` (the road runs train the semantic head only; the click head keeps its initial weights).
    A checkpoint without its training configuration is taken as trained, as exports always did."""
    clicks = (checkpoint.get("train_config") or {}).get("clicks") or {}
    return bool(clicks.get("enabled", True))


def encoder_contract(config, info, height: Optional[int], width: Optional[int], decoder_file: Optional[str],
                     extra: Optional[dict] = None) -> ModelContract:
    """The encoder's ``openpixel-model/1`` contract (inputs normalised as x = p / 127.5 - 1);
    ``decoder_file`` None: no click decoder goes with it (no ``prompt_decoder`` entry)."""
    classes = tuple(info.classes) or tuple(f"class{i}" for i in range(config.num_classes))
    if len(classes) != config.num_classes:
        raise ExportError(f"checkpoint lists {len(classes)} class names for {config.num_classes} classes")
    colors = tuple(tuple(c) for c in info.colors) if info.colors else tuple(default_colors(len(classes)))
    conditioning = ConditioningSpec("conditioning", config.conditioning_size) if config.conditioning_size else None
    return ModelContract(
        input=InputSpec(name="image", layout="NCHW", height=height, width=width, color_order="rgb",
                        scale=1.0 / 255.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="stretch"),
        output=OutputSpec(name="logits", kind="logits"), classes=classes, colors=colors,
        conditioning=conditioning,
        extra={**({"prompt_decoder": decoder_file} if decoder_file else {}),
               "features": ["features_s4", "features_s8"],
               **({"foreground_classes": list(info.foreground_classes)}
                  if getattr(info, "foreground_classes", None) else {}),
               **(extra or {})})


PROVENANCE_KEYS = ("license", "source")  # --metadata keys that also describe the decoder


def decoder_metadata(config, height: Optional[int], width: Optional[int], encoder_file: str,
                     extra: Optional[dict] = None) -> dict:
    """The decoder's metadata: what the promptable engine needs to render prompts and read outputs,
    and the provenance keys (licence, source) of ``extra``."""
    from openpixel_ros.inference.prompt_maps import DEFAULT_SIGMA, GRID_STRIDE

    return {
        "format": DECODER_FORMAT,
        "encoder": encoder_file,
        "input_height": height, "input_width": width,
        "inputs": {"features_s4": "encoder output features_s4", "features_s8": "encoder output features_s8",
                   "prompts": "[1,4,ceil(H/4),ceil(W/4)] float32 on the features_s4 grid"},
        "prompt_channels": ["positive", "negative", "previous_mask", "box"],
        "click_sigma": DEFAULT_SIGMA,
        "grid_stride": GRID_STRIDE,
        "outputs": {"mask_logits": "[1,1,ceil(H/4),ceil(W/4)] object logit", "score": "[1,1] logit of predicted IoU"},
        **{k: v for k, v in (extra or {}).items() if k in PROVENANCE_KEYS},
    }


def export_openpixel(model, info, onnx_path, height: Optional[int] = None, width: Optional[int] = None,
                     dynamic: bool = False, opset: int = MIN_OPSET, extra: Optional[dict] = None,
                     decoder: bool = True) -> tuple:
    """Write the encoder and decoder graphs of ``model`` for ``--onnx onnx_path``. Returns their paths
    ``(encoder, decoder)``; with ``decoder`` False only the encoder is written, a stale decoder at its
    path is removed and the decoder's path is None.

    Fixed size: ``height``/``width``, else the checkpoint's input size. With
    ``dynamic`` the spatial sizes are dynamic (the example size only traces).
    """
    from openpixel_ros.model.openpixel import DecoderGraph, EncoderGraph

    config = model.config
    h = height or info.input_height
    w = width or info.input_width
    encoder_path, decoder_path = graph_paths(onnx_path)
    model.eval()
    image = torch.zeros(1, 3, h, w)
    encoder_inputs = (image,)
    input_names = ["image"]
    if config.conditioning_size:
        encoder_inputs += (torch.zeros(1, config.conditioning_size),)
        input_names.append("conditioning")
    encoder_outputs = ["logits", "features_s4", "features_s8"]

    encoder_axes = decoder_axes = None
    if dynamic:
        s1 = {2: "height", 3: "width"}
        s4 = {2: "height_4", 3: "width_4"}
        s8 = {2: "height_8", 3: "width_8"}
        encoder_axes = {"image": s1, "logits": s4, "features_s4": s4, "features_s8": s8}
        decoder_axes = {"features_s4": s4, "features_s8": s8, "prompts": s4, "mask_logits": s4}
    fixed_h, fixed_w = (None, None) if dynamic else (h, w)
    export_module(EncoderGraph(model), encoder_inputs, encoder_path, input_names, encoder_outputs, opset, encoder_axes,
                  contract=encoder_contract(config, info, fixed_h, fixed_w, decoder_path.name if decoder else None,
                                            extra))
    if not decoder:
        for stale in (decoder_path, decoder_path.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        return encoder_path, None
    with torch.no_grad():
        features_s4, features_s8, _ = model.encode(*encoder_inputs)
    prompts = torch.zeros(1, config.prompt_channels, *features_s4.shape[-2:])
    export_module(DecoderGraph(model), (features_s4, features_s8, prompts), decoder_path,
                  ["features_s4", "features_s8", "prompts"], ["mask_logits", "score"], opset, decoder_axes,
                  metadata=decoder_metadata(config, fixed_h, fixed_w, encoder_path.name, extra))
    return encoder_path, decoder_path


def parity(module: torch.nn.Module, onnx_path, feeds: dict, argmax_outputs: Sequence[str] = ("logits",)) -> dict:
    """Run ``module`` and ONNX Runtime on the same ``feeds`` (name -> numpy array, in the module's argument order).

    Returns per-output ``max_abs_diff`` and, for the class-score outputs named
    in ``argmax_outputs``, ``argmax_agreement`` (fraction of pixels whose
    arg-max class agrees).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ort_out = session.run(names, feeds)
    with torch.no_grad():
        torch_out = module(*(torch.from_numpy(v) for v in feeds.values()))
    if isinstance(torch_out, torch.Tensor):
        torch_out = (torch_out,)
    report = {}
    for name, a, b in zip(names, ort_out, torch_out):
        b = b.numpy()
        entry = {"max_abs_diff": float(np.max(np.abs(a - b)))}
        if name in argmax_outputs:
            entry["argmax_agreement"] = float(np.mean(np.argmax(a, 1) == np.argmax(b, 1)))
        report[name] = entry
    return report


def parse_metadata_options(items) -> dict:
    """``KEY=VALUE`` strings -> dict; a VALUE that parses as JSON (a list, a number) is taken as such."""
    extra = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ExportError(f"--metadata {item!r}: expected KEY=VALUE")
        try:
            extra[key] = json.loads(text)
        except json.JSONDecodeError:
            extra[key] = text
    return extra


def run_cli(args) -> int:
    """``python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx [--height H --width W | --dynamic]``.

    Writes ``X.encoder.onnx`` and ``X.decoder.onnx`` with their metadata (the encoder alone when
    the checkpoint's run did not train the click head: :func:`click_head_trained`), prints
    ONNX Runtime vs PyTorch parity, and points ``args.onnx`` at the encoder so a
    following ``--engine`` step builds the per-frame graph.
    """
    import sys

    from openpixel_ros.model.openpixel import EncoderGraph, load_checkpoint_model

    try:
        extra = parse_metadata_options(getattr(args, "metadata", None) or [])
        model, info, checkpoint = load_checkpoint_model(args.checkpoint)
        encoder_path, decoder_path = export_openpixel(model, info, args.onnx, args.height, args.width,
                                                      args.dynamic, args.opset, extra,
                                                      decoder=click_head_trained(checkpoint))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    h = args.height or info.input_height
    w = args.width or info.input_width
    rng = np.random.default_rng(0)
    feeds = {"image": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)}
    if model.config.conditioning_size:
        feeds["conditioning"] = np.zeros((1, model.config.conditioning_size), np.float32)
    report = parity(EncoderGraph(model), encoder_path, feeds)
    for name, entry in report.items():
        print(f"  parity {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in entry.items()))
    if decoder_path is None:
        print(f"wrote {encoder_path} (+ .json metadata) only: the checkpoint's run did not train the click head "
              "(clicks.enabled: false), so no decoder was written")
    else:
        print(f"wrote {encoder_path} and {decoder_path} (+ .json metadata)")
    args.onnx = str(encoder_path)
    return 0
