"""Reduced-precision variants of an exported OpenPixel encoder: INT8 and FP16 ONNX.

* **INT8** (:func:`quantize_int8`): ONNX Runtime static quantization, QDQ format,
  per-channel signed weights and unsigned activations (MinMax), calibrated on real
  training images that go through the node's own pre-processing (resize,
  default lighting adaptation, normalisation, conditioning vector). Only
  convolutions are quantized, and not the first (raw pixels) nor the last (the
  class logits): measured on 12 CamVid val frames, that keeps 96.9% of pixels
  equal to FP32 where quantizing every operator kept 92.8% (percentile
  calibration 95.2%, entropy 93.2%). Weights use 7 bits (``reduce_range``): on x86 CPUs without
  VNNI, ONNX Runtime's u8s8 kernels can saturate with 8-bit weights; measured on the trained
  road model (21 val frames) it kept 97.4% of FP32's mIoU against 97.1% without. Keeping the
  depthwise convolutions in FP32 too reached 98.0% but ran 60% slower than FP32 on this CPU.
* **FP16** (:func:`convert_fp16`): weights and activations in float16 with
  float32 inputs and outputs (ONNX Runtime's converter keeps the I/O types), for
  GPUs; on a CPU it is slower than FP32.

Only the per-frame encoder is converted: the per-click decoder is small, and
the variant's metadata keeps pointing at the FP32 decoder beside it when the export has one
(an encoder-only export's variants name none either).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import onnx

from openpixel_ros.model_contract import METADATA_KEY, load_contract, parse_contract, write_sidecar

def variant_path(encoder_path, precision: str) -> Path:
    """``X.encoder.onnx`` -> ``X.<precision>.encoder.onnx``."""
    encoder_path = Path(encoder_path)
    stem = encoder_path.name[:-len(".encoder.onnx")] if encoder_path.name.endswith(".encoder.onnx") \
        else encoder_path.stem
    return encoder_path.with_name(f"{stem}.{precision}.encoder.onnx")


def calibration_feeds(contract, images_dir, count: int = 64, seed: int = 0) -> list:
    """``count`` encoder feeds from the images in ``images_dir`` (a seeded sample), made as the node
    makes them (:class:`~openpixel_ros.model_io.ModelInput`): shrink to the model's size, default
    lighting adaptation and its conditioning vector, then the contract's resize and normalisation."""
    import cv2

    from openpixel_ros.adaptation import LightingAdapter
    from openpixel_ros.model_io import ModelInput

    from openpixel_ros.engines.tensorrt_plan import list_calibration_images

    paths = list_calibration_images(images_dir, limit=None)
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), min(count, len(paths)), replace=False))]
    model_input = ModelInput(contract)
    adapter = LightingAdapter()
    feeds = []
    for path in chosen:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read calibration image {path}")
        adapter.reset()
        frame, state = adapter.process(model_input.shrink_for_model(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        vector = adapter.conditioning_vector(state) if contract.conditioning else None
        feeds.append(model_input.feeds(frame, vector)[0])
    return feeds


def _finish(source: Path, model: onnx.ModelProto, out: Path, precision: str) -> Path:
    """Save ``model`` with the source's contract (plus ``precision``), embedded and as the sidecar."""
    data = load_contract(source).to_dict()
    data["precision"] = precision  # extra keys are kept by the contract
    contract = parse_contract(data)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(contract.to_dict())})
    onnx.save(model, str(out))
    write_sidecar(out, contract)
    return out


def quantize_int8(encoder_path, calib_images, out_path: Optional[Path] = None, count: int = 64,
                  seed: int = 0) -> Path:
    """Static INT8 (QDQ) quantization of ``encoder_path``; returns the written path."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    encoder_path = Path(encoder_path)
    out = Path(out_path) if out_path else variant_path(encoder_path, "int8")
    contract = load_contract(encoder_path)
    if contract.input.height is None or contract.input.width is None:
        raise ValueError("INT8 calibration needs a fixed-size encoder (export without --dynamic)")
    feeds = calibration_feeds(contract, calib_images, count, seed)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(feeds)

        def get_next(self):
            return next(self._items, None)

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(encoder_path), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        quantized = Path(scratch) / "int8.onnx"
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=convs[:1] + convs[-1:], reduce_range=True)
        model = onnx.load(str(quantized))
    return _finish(encoder_path, model, out, "int8")


def convert_fp16(encoder_path, out_path: Optional[Path] = None) -> Path:
    """Float16 weights and activations, float32 inputs and outputs; returns the written path."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    encoder_path = Path(encoder_path)
    out = Path(out_path) if out_path else variant_path(encoder_path, "fp16")
    model = convert_float_to_float16(onnx.load(str(encoder_path)), keep_io_types=True)
    return _finish(encoder_path, model, out, "fp16")
