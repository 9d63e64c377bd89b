"""The DeepLabV3-MobileNetV2 port: weights from the TFLite file, parity with the LiteRT interpreter on real
images, ONNX export with metadata, and a plausible person mask against MediaPipe's selfie model."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

from openpixel_ros.export.deeplab import main as deeplab_main  # noqa: E402
from openpixel_ros.model.deeplab import VOC_CLASSES, deeplab_from_tflite  # noqa: E402
from openpixel_ros.model.tflite_weights import TFLiteGraphWalker, WeightMappingError  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEEPLAB = SHARED / "models" / "deeplabv3_mnv2_voc" / "deeplabv3_257_mv_gpu.tflite"
SELFIE = SHARED / "models" / "mediapipe_selfie" / "selfie_segmentation.tflite"
PERSON = VOC_CLASSES.index("person")

pytestmark = pytest.mark.skipif(not DEEPLAB.is_file(), reason="needs ../shared")


def real_images() -> dict:
    images = {name: getattr(skimage_data, name)() for name in ("astronaut", "coffee", "chelsea")}
    for folder, stem in (("davis345", "000.jpg"), ("davis345", "120.jpg"), ("grabcut", "106024.jpg")):
        path = SHARED / "datasets" / folder / "images" / stem
        bgr = cv2.imread(str(path))
        if bgr is not None:
            images[f"{folder}/{stem}"] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return images


def to_input(rgb: np.ndarray, size: int = 257) -> np.ndarray:
    """HxWx3 float32 in [-1, 1], the TFLite model's input."""
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def port():
    return deeplab_from_tflite(DEEPLAB)


@pytest.fixture(scope="module")
def onnx_model(port, tmp_path_factory):
    from openpixel_ros.export.deeplab import export_deeplab_onnx
    path = tmp_path_factory.mktemp("deeplab") / "deeplab.onnx"
    export_deeplab_onnx(DEEPLAB, path)
    return path


def test_every_operator_and_constant_is_mapped_once():
    from openpixel_ros.tflite import TFLiteModel
    from openpixel_ros.model.deeplab import DeepLabV3MobileNetV2
    from openpixel_ros.model.tflite_weights import walk_mobilenet_v2

    tflite = TFLiteModel.load(DEEPLAB)
    assert tflite.op_counts() == {"CONV_2D": 38, "DEPTHWISE_CONV_2D": 17, "ADD": 10, "AVERAGE_POOL_2D": 1,
                                  "RESIZE_BILINEAR": 3, "CONCATENATION": 1}
    deeplab_from_tflite(DEEPLAB)  # runs TFLiteGraphWalker.check_complete()
    # The backbone alone leaves the head unmapped, which the full check reports.
    walker = TFLiteGraphWalker(tflite)
    walk_mobilenet_v2(walker, DeepLabV3MobileNetV2().backbone)
    with pytest.raises(WeightMappingError, match="not mapped"):
        walker.check_complete()


def test_geometry_mismatch_is_refused():
    from openpixel_ros.tflite import TFLiteModel
    from openpixel_ros.model.backbone import MobileNetV2
    from openpixel_ros.model.tflite_weights import walk_mobilenet_v2

    walker = TFLiteGraphWalker(TFLiteModel.load(DEEPLAB))
    with pytest.raises(WeightMappingError, match="stride/dilation"):
        walk_mobilenet_v2(walker, MobileNetV2(output_stride=32, norm=False), check_geometry=True)
    walker = TFLiteGraphWalker(TFLiteModel.load(DEEPLAB))
    with pytest.raises(WeightMappingError, match="does not fit"):
        walk_mobilenet_v2(walker, MobileNetV2(width=1.0, output_stride=8, norm=False), check_geometry=True)


def test_logits_match_the_litert_interpreter_on_real_images(port):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(DEEPLAB))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    images = real_images()
    assert len(images) >= 5
    agreements, diffs = [], []
    for name, rgb in images.items():
        x = to_input(rgb)
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        reference = interpreter.get_tensor(out["index"])[0]
        with torch.no_grad():
            ours = port(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
        agreements.append(np.mean(reference.argmax(-1) == ours.argmax(-1)))
        diffs.append(np.abs(reference - ours).max() / max(1.0, np.abs(reference).max()))
        assert agreements[-1] >= 0.99, name
    assert min(agreements) >= 0.99
    assert max(diffs) < 1e-3  # relative to the logit range: float32 rounding, not a mapping error


def test_onnx_export_carries_the_voc_contract(onnx_model):
    import onnx
    from openpixel_ros.export.onnx_export import TENSORRT_OPS, graph_ops
    from openpixel_ros.model_contract import load_contract

    model = onnx.load(str(onnx_model))
    assert model.opset_import[0].version >= 17
    assert graph_ops(model) <= TENSORRT_OPS
    sidecar = json.loads(onnx_model.with_suffix(".json").read_text())
    embedded = json.loads({p.key: p.value for p in model.metadata_props}["openpixel"])
    assert sidecar == embedded
    contract = load_contract(onnx_model)
    assert contract.classes == VOC_CLASSES and contract.num_classes == 21
    assert contract.colors[PERSON] == (192, 128, 128)  # the VOC palette
    assert (contract.input.height, contract.input.width) == (257, 257)
    # x = (p * scale - mean) / std is the TFLite model's p / 127.5 - 1.
    p = np.array([0.0, 127.5, 255.0])
    np.testing.assert_allclose((p * contract.input.scale - contract.input.mean[0]) / contract.input.std[0],
                               p / 127.5 - 1, atol=1e-6)


def test_onnx_matches_the_port(port, onnx_model):
    from openpixel_ros.export.onnx_export import parity
    x = to_input(skimage_data.astronaut()).transpose(2, 0, 1)[None].copy()
    report = parity(port, onnx_model, {"image": x})["logits"]
    assert report["argmax_agreement"] >= 0.999 and report["max_abs_diff"] < 1e-3


def test_person_mask_agrees_with_the_selfie_model(onnx_model):
    if not SELFIE.is_file():
        pytest.skip("needs ../shared")
    from ai_edge_litert.interpreter import Interpreter
    from openpixel_ros.semantic import SemanticSegmenter

    rgb = skimage_data.astronaut()
    segmenter = SemanticSegmenter.from_file(onnx_model, threads=2)
    person = segmenter.infer(rgb).labels == PERSON

    interpreter = Interpreter(model_path=str(SELFIE))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    interpreter.set_tensor(inp["index"], x[None])
    interpreter.invoke()
    probability = cv2.resize(interpreter.get_tensor(out["index"])[0, ..., 0], rgb.shape[1::-1])
    reference = probability > 0.5
    iou = np.sum(person & reference) / np.sum(person | reference)
    assert 0.1 < reference.mean() < 0.9
    assert iou >= 0.7


@pytest.mark.slow
def test_command_line(tmp_path, capsys):
    out = tmp_path / "voc.onnx"
    assert deeplab_main(["--tflite", str(DEEPLAB), "--onnx", str(out), "--height", "129", "--width", "161"]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["input"]["height"] == 129
    assert deeplab_main(["--tflite", str(tmp_path / "missing.tflite"), "--onnx", str(out)]) == 1
    assert "error" in capsys.readouterr().err
