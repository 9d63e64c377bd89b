"""The "sam" prompt engine against tiny ONNX models of the exact Segment-Anything export signature.

The encoder average-pools the 1024x1024 input into 16x16 cells (64x64) and tiles the three
channels to 256, so the embedding of a flat-colour frame is known by hand. The decoder
draws, around the FIRST point mapped back to the original frame through ``orig_im_size``,
four discs (squared radii 110, 410, 910, 1610 original pixels, one per mask token) as
logits ``r^2 - distance^2``; as ``low_res_masks`` the same radii in 1024-frame pixels on
the 256 grid; and fixed IoU predictions (0.5, 0.9, 0.7, 0.8). A recording wrapper around each ONNX Runtime engine shows
exactly what was fed and how often each model ran.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from openpixel_ros.engines import Engine
from openpixel_ros.engines.onnxruntime_engine import OnnxRuntimeEngine
from openpixel_ros.interactive import ClickPrompt, PromptError, create_prompt_engine
from openpixel_ros.interactive.base import decoder_path_for
from openpixel_ros.interactive.sam_onnx import (BINARY_MASK_LOGIT, SAM_PIXEL_MEAN, SAM_PIXEL_STD, SamOnnxEngine,
                                                scribble_samples)

RADII_SQUARED = np.array([110.0, 410.0, 910.0, 1610.0], np.float32)
IOU = np.array([0.5, 0.9, 0.7, 0.8], np.float32)
HEIGHT, WIDTH = 480, 640  # scale 1.6 to the 1024 frame: 1024x768, exactly


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def build_encoder(path):
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Tile", ["pooled", "repeats"], ["tiled"]),
        helper.make_node("Slice", ["tiled", "zero", "c256", "one"], ["image_embeddings"]),
    ]
    graph = helper.make_graph(
        nodes, "sam_like_encoder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 1024, 1024])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64])],
        [_const("repeats", [1, 86, 1, 1], np.int64), _const("zero", [0], np.int64),
         _const("c256", [256], np.int64), _const("one", [1], np.int64)])
    _save(graph, path)


def _disc_nodes(prefix, cx, cy, height, width, radii_squared, out):
    """Nodes computing ``radii_squared[k] - ((x - cx)^2 + (y - cy)^2)`` over an HxW grid -> [1,4,H,W]."""
    return [
        helper.make_node("Range", ["f0", width, "f1"], [f"{prefix}x"]),
        helper.make_node("Range", ["f0", height, "f1"], [f"{prefix}y"]),
        helper.make_node("Sub", [f"{prefix}x", cx], [f"{prefix}dx"]),
        helper.make_node("Sub", [f"{prefix}y", cy], [f"{prefix}dy"]),
        helper.make_node("Mul", [f"{prefix}dx", f"{prefix}dx"], [f"{prefix}dx2"]),
        helper.make_node("Mul", [f"{prefix}dy", f"{prefix}dy"], [f"{prefix}dy2"]),
        helper.make_node("Reshape", [f"{prefix}dx2", "row_shape"], [f"{prefix}dx2r"]),
        helper.make_node("Reshape", [f"{prefix}dy2", "col_shape"], [f"{prefix}dy2r"]),
        helper.make_node("Add", [f"{prefix}dx2r", f"{prefix}dy2r"], [f"{prefix}d2"]),
        helper.make_node("Sub", [radii_squared, f"{prefix}d2"], [out]),
    ]


def build_decoder(path, with_orig_size=True):
    """The SAM decoder signature; ``with_orig_size=False`` gives NanoSAM's (no orig_im_size, no
    full-size masks: iou_predictions and low_res_masks only)."""
    inputs = [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64]),
              helper.make_tensor_value_info("point_coords", TensorProto.FLOAT, [1, "num_points", 2]),
              helper.make_tensor_value_info("point_labels", TensorProto.FLOAT, [1, "num_points"]),
              helper.make_tensor_value_info("mask_input", TensorProto.FLOAT, [1, 1, 256, 256]),
              helper.make_tensor_value_info("has_mask_input", TensorProto.FLOAT, [1])]
    inits = [_const("f0", 0.0), _const("f1", 1.0), _const("f1024", 1024.0), _const("f256", 256.0),
             _const("f4", 4.0), _const("f1p5", 1.5), _const("i0", 0, np.int64), _const("i1", 1, np.int64),
             _const("row_shape", [1, 1, 1, -1], np.int64), _const("col_shape", [1, 1, -1, 1], np.int64),
             _const("radii2", RADII_SQUARED.reshape(1, 4, 1, 1)),
             _const("radii2_low", (RADII_SQUARED / 16).reshape(1, 4, 1, 1)),
             _const("iou", IOU.reshape(1, 4)), _const("zero_f", 0.0)]
    nodes = [
        # First point, in the 1024 frame: px, py as [1] tensors.
        helper.make_node("Gather", ["point_coords", "i0"], ["first"], axis=1),   # [1, 2]
        helper.make_node("Gather", ["first", "i0"], ["px"], axis=1),             # [1]
        helper.make_node("Gather", ["first", "i1"], ["py"], axis=1),
        # Every input takes part (times zero) so no runtime prunes one away.
        helper.make_node("ReduceSum", ["image_embeddings"], ["sum_embed"], keepdims=0),
        helper.make_node("ReduceSum", ["point_labels"], ["sum_labels"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_input"], ["sum_mask"], keepdims=0),
        helper.make_node("ReduceSum", ["has_mask_input"], ["sum_has"], keepdims=0),
        helper.make_node("Sum", ["sum_embed", "sum_labels", "sum_mask", "sum_has"], ["sum_all"]),
        helper.make_node("Mul", ["sum_all", "zero_f"], ["nothing"]),
        helper.make_node("Add", ["iou", "nothing"], ["iou_predictions"]),
        # Low-res discs: prompt-frame point -> 256 grid, pixel centres at 4u + 1.5.
        helper.make_node("Sub", ["px", "f1p5"], ["px_shift"]),
        helper.make_node("Sub", ["py", "f1p5"], ["py_shift"]),
        helper.make_node("Div", ["px_shift", "f4"], ["lcx"]),
        helper.make_node("Div", ["py_shift", "f4"], ["lcy"]),
    ]
    nodes += _disc_nodes("low_", "lcx", "lcy", "f256", "f256", "radii2_low", "low_res_masks")
    outputs = [helper.make_tensor_value_info("iou_predictions", TensorProto.FLOAT, [1, 4]),
               helper.make_tensor_value_info("low_res_masks", TensorProto.FLOAT, [1, 4, 256, 256])]
    if with_orig_size:
        inputs.append(helper.make_tensor_value_info("orig_im_size", TensorProto.FLOAT, [2]))
        nodes += [
            helper.make_node("Gather", ["orig_im_size", "i0"], ["h"]),   # scalars
            helper.make_node("Gather", ["orig_im_size", "i1"], ["w"]),
            helper.make_node("ReduceMax", ["orig_im_size"], ["longest"], keepdims=0),
            helper.make_node("Div", ["f1024", "longest"], ["scale"]),
            helper.make_node("Div", ["px", "scale"], ["cx"]),
            helper.make_node("Div", ["py", "scale"], ["cy"]),
        ]
        nodes += _disc_nodes("full_", "cx", "cy", "h", "w", "radii2", "masks")
        outputs.insert(0, helper.make_tensor_value_info("masks", TensorProto.FLOAT, [1, 4, "H", "W"]))
    graph = helper.make_graph(nodes, "sam_like_decoder", inputs, outputs, inits)
    _save(graph, path)


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class Recording(Engine):
    """Wraps an engine; keeps every feed and counts runs."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.feeds = []
        self._inputs, self._outputs = inner.inputs, inner.outputs

    @property
    def runs(self) -> int:
        return len(self.feeds)

    def run(self, feeds):
        self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.inner.run(feeds)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam_models")
    build_encoder(folder / "tiny.encoder.onnx")
    build_decoder(folder / "tiny.decoder.onnx")
    build_decoder(folder / "nano_decoder.onnx", with_orig_size=False)
    return folder


def _engine(model_files, decoder="tiny.decoder.onnx", **options):
    encoder = Recording(OnnxRuntimeEngine(model_files / "tiny.encoder.onnx"))
    decoder = Recording(OnnxRuntimeEngine(model_files / decoder))
    return SamOnnxEngine(encoder, decoder, **options), encoder, decoder


def _frame(color=(10, 100, 200)):
    return np.tile(np.array(color, np.uint8), (HEIGHT, WIDTH, 1))


def _disc(cx, cy, radius_squared):
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    return (cols - cx) ** 2 + (rows - cy) ** 2 < radius_squared


def _prompt(points, labels, **kwargs):
    return ClickPrompt.from_lists(points, labels, image_size=(HEIGHT, WIDTH), **kwargs)


def test_encoder_input_is_resized_normalised_and_padded(model_files):
    engine, encoder, _ = _engine(model_files)
    engine.set_image(_frame())
    image = encoder.feeds[0]["images"]
    assert image.shape == (1, 3, 1024, 1024) and engine.input_size == 1024
    expected = (np.array([10, 100, 200], np.float32) - SAM_PIXEL_MEAN) / SAM_PIXEL_STD
    np.testing.assert_allclose(image[0, :, :768, :].mean(axis=(1, 2)), expected, rtol=1e-5)
    assert not image[0, :, 768:, :].any()  # 480 rows become 768; the rest is zero padding
    embedding = engine._embedding
    np.testing.assert_allclose(embedding[0, 3, :48, :], expected[0], rtol=1e-5)  # channel 3 = red again
    assert not embedding[0, :, 48:, :].any()


def test_clicks_map_to_the_1024_frame_with_a_padding_point(model_files):
    engine, _, decoder = _engine(model_files)
    engine.set_image(_frame())
    engine.predict(_prompt([(100, 50), (300.5, 200)], [1, 0]))
    feed = decoder.feeds[-1]
    np.testing.assert_allclose(feed["point_coords"], [[[160, 80], [480.8, 320], [0, 0]]], rtol=1e-6)
    np.testing.assert_array_equal(feed["point_labels"], [[1, 0, -1]])
    np.testing.assert_array_equal(feed["orig_im_size"], [480, 640])
    assert feed["has_mask_input"][0] == 0 and not feed["mask_input"].any()


def test_box_becomes_corner_labels_2_and_3_without_padding(model_files):
    engine, _, decoder = _engine(model_files)
    engine.set_image(_frame())
    engine.predict(_prompt([(100, 50)], [1], box=(10, 20, 110, 220)))
    np.testing.assert_allclose(decoder.feeds[-1]["point_coords"], [[[160, 80], [16, 32], [176, 352]]])
    np.testing.assert_array_equal(decoder.feeds[-1]["point_labels"], [[1, 2, 3]])
    engine.predict(_prompt([], [], box=(10, 20, 110, 220)))
    np.testing.assert_array_equal(decoder.feeds[-1]["point_labels"], [[2, 3]])


def test_scribble_samples_are_evenly_spaced_along_the_line():
    # An L of length 100 + 40: 8 points every 20 pixels of arc, both ends included, the corner too.
    samples = scribble_samples([(0, 0), (100, 0), (100, 40)])
    assert samples.dtype == np.float32 and samples.shape == (8, 2)
    np.testing.assert_allclose(samples, [[0, 0], [20, 0], [40, 0], [60, 0], [80, 0], [100, 0], [100, 20],
                                         [100, 40]], atol=1e-4)
    np.testing.assert_allclose(scribble_samples([(5, 5), (8, 5)]), [[5, 5], [6, 5], [7, 5], [8, 5]])  # short
    np.testing.assert_array_equal(scribble_samples([(3.5, 4.5)]), [[3.5, 4.5]])  # one point
    np.testing.assert_array_equal(scribble_samples([(3, 4), (3, 4), (3.5, 4)]), [[3, 4]])  # under a pixel long
    # Repeated vertices do not bunch the samples.
    np.testing.assert_allclose(scribble_samples([(0, 0), (0, 0), (70, 0), (70, 0)]),
                               [[10.0 * k, 0] for k in range(8)], atol=1e-4)


def test_scribbles_become_labelled_points_for_the_decoder(model_files):
    engine, _, decoder = _engine(model_files, mask_source="masks")
    engine.set_image(_frame())
    # Scribbles alone: 8 samples of the positive line, then SAM's padding point; several
    # points take SAM's single-output token 0.
    result = engine.predict(_prompt([], [], scribbles=[[(100, 50), (170, 50)]], scribble_labels=[1]))
    feed = decoder.feeds[-1]
    np.testing.assert_allclose(feed["point_coords"][0], [[1.6 * (100 + 10 * k), 80] for k in range(8)] + [[0, 0]],
                               rtol=1e-6)
    np.testing.assert_array_equal(feed["point_labels"], [[1] * 8 + [-1]])
    np.testing.assert_array_equal(result.mask, _disc(100, 50, RADII_SQUARED[0]))  # the tiny decoder: first point
    # A click, then a negative scribble, then a box.
    engine.predict(_prompt([(300, 200)], [1], scribbles=[[(10, 10), (10, 20)]], scribble_labels=[0],
                           box=(5, 5, 400, 300)))
    feed = decoder.feeds[-1]
    assert feed["point_coords"].shape == (1, 1 + 8 + 2, 2)
    np.testing.assert_array_equal(feed["point_labels"], [[1] + [0] * 8 + [2, 3]])
    np.testing.assert_allclose(feed["point_coords"][0, 1], [16, 16])
    np.testing.assert_allclose(feed["point_coords"][0, 8], [16, 32])
    # A one-point scribble is a lone click: SAM's best multimask token (IoU 0.9, token 1).
    lone = engine.predict(_prompt([], [], scribbles=[[(100, 50)]], scribble_labels=[1]))
    np.testing.assert_array_equal(decoder.feeds[-1]["point_labels"], [[1, -1]])
    assert lone.score == pytest.approx(0.9)


def test_embedding_is_computed_once_per_frame(model_files):
    engine, encoder, decoder = _engine(model_files)
    first = _frame()
    engine.set_image(first, key=1)
    results = [engine.predict(_prompt([(100, 50 + i)], [1])) for i in range(3)]
    engine.set_image(first, key=1)
    results.append(engine.predict(_prompt([(120, 60)], [1])))
    assert encoder.runs == 1 and decoder.runs == 4
    assert results[0].timings["encoder_ms"] > 0
    assert all(r.timings["encoder_ms"] == 0 for r in results[1:])
    assert all(r.timings["total_ms"] >= r.timings["decoder_ms"] > 0 for r in results)

    engine.set_image(_frame((50, 50, 50)), key=2)
    engine.predict(_prompt([(100, 50)], [1]))
    assert encoder.runs == 2
    # Without a key the content decides: the same pixels twice cost one encoder run.
    engine.set_image(first.copy())
    engine.set_image(first.copy())
    assert encoder.runs == 3


def test_single_mask_at_original_size(model_files):
    engine, _, _ = _engine(model_files, mask_source="masks")
    engine.set_image(_frame())
    one_click = engine.predict(_prompt([(100, 50)], [1]))
    # One click: SAM's rule takes the best of tokens 1..3 (IoU 0.9, token 1).
    assert one_click.mask.shape == (HEIGHT, WIDTH) and one_click.mask.dtype == bool
    np.testing.assert_array_equal(one_click.mask, _disc(100, 50, RADII_SQUARED[1]))
    assert one_click.score == pytest.approx(0.9)
    assert one_click.area == int(_disc(100, 50, RADII_SQUARED[1]).sum())
    x, y, w, h = one_click.bbox
    assert (x, y, w, h) == (80, 30, 41, 41)
    # Two clicks: token 0, the single-output mask.
    two_clicks = engine.predict(_prompt([(100, 50), (400, 400)], [1, 0]))
    np.testing.assert_array_equal(two_clicks.mask, _disc(100, 50, RADII_SQUARED[0]))
    assert two_clicks.score == pytest.approx(0.5)


def test_multimask_is_ordered_by_predicted_iou(model_files):
    engine, _, _ = _engine(model_files, mask_source="masks")
    engine.set_image(_frame())
    result = engine.predict(_prompt([(320, 240)], [1]), multimask=True)
    assert result.scores == pytest.approx([0.9, 0.8, 0.7])
    for mask, token in zip(result.masks, (1, 3, 2)):
        np.testing.assert_array_equal(mask, _disc(320, 240, RADII_SQUARED[token]))


@pytest.mark.parametrize("decoder_file", ["tiny.decoder.onnx", "nano_decoder.onnx"])
def test_low_res_masks_are_upscaled_to_the_frame(model_files, decoder_file):
    engine, _, _ = _engine(model_files, decoder=decoder_file)
    assert engine.mask_source == "low_res"
    engine.set_image(_frame())
    result = engine.predict(_prompt([(200, 150)], [1]))
    # The low-res discs have their radius in the 1024 frame: 1.6x smaller in the 640x480 frame.
    expected = _disc(200, 150, RADII_SQUARED[1] / 1.6 ** 2)
    assert result.mask.shape == (HEIGHT, WIDTH)
    intersection = np.count_nonzero(result.mask & expected)
    assert intersection / np.count_nonzero(result.mask | expected) > 0.9
    assert result.mask[150, 200] and not result.mask[150, 215]
    assert result.low_res_logits.shape == (1, 1, 256, 256)


def test_previous_mask_feeds_back_logits_or_a_binary_mask(model_files):
    engine, _, decoder = _engine(model_files)
    engine.set_image(_frame())
    first = engine.predict(_prompt([(200, 150)], [1]))
    # The engine's own last mask comes back: its low-res logits are fed, not a re-binarised copy.
    engine.predict(_prompt([(200, 150), (10, 10)], [1, 0], previous_mask=first.mask))
    np.testing.assert_array_equal(decoder.feeds[-1]["mask_input"], first.low_res_logits)
    assert decoder.feeds[-1]["has_mask_input"][0] == 1
    # Explicit logits win.
    logits = np.full((1, 1, 256, 256), 3.0, np.float32)
    engine.predict(_prompt([(200, 150)], [1], previous_logits=logits))
    np.testing.assert_array_equal(decoder.feeds[-1]["mask_input"], logits)
    # A foreign binary mask: +/- logits in the low-res grid of the 1024 frame (768/4 = 192 rows).
    foreign = np.zeros((HEIGHT, WIDTH), bool)
    foreign[:240, :320] = True
    engine.predict(_prompt([(200, 150)], [1], previous_mask=foreign))
    mask_input = decoder.feeds[-1]["mask_input"][0, 0]
    assert np.all(mask_input[:96, :128] == BINARY_MASK_LOGIT)
    assert np.all(mask_input[96:, :] == -BINARY_MASK_LOGIT) and np.all(mask_input[:, 128:] == -BINARY_MASK_LOGIT)


def test_factory_finds_the_decoder_by_name_and_checks_the_prompt_size(model_files):
    assert decoder_path_for(model_files / "tiny.encoder.onnx") == model_files / "tiny.decoder.onnx"
    engine = create_prompt_engine("sam", str(model_files / "tiny.encoder.onnx"))
    engine.set_image(_frame())
    assert engine.predict(_prompt([(100, 50)], [1])).mask.shape == (HEIGHT, WIDTH)
    wrong = ClickPrompt.from_lists([(5, 5)], [1], image_size=(100, 100))
    with pytest.raises(PromptError, match="100x100"):
        engine.predict(wrong)
    with pytest.raises(PromptError, match="no decoder found"):
        create_prompt_engine("sam", str(model_files / "nano_decoder.onnx"))
    with pytest.raises(PromptError, match="needs model"):
        create_prompt_engine("sam")


def test_predict_before_set_image_is_a_prompt_error(model_files):
    engine, _, _ = _engine(model_files)
    with pytest.raises(PromptError, match="set_image"):
        engine.predict(_prompt([(1, 1)], [1]))


def build_efficientsam_pair(folder):
    """EfficientSAM's own export signature: the encoder takes the whole frame ``batched_images``
    [1, 3, H, W] in [0, 1] (here: its channel means, tiled to 1x256x64x64); the decoder takes
    ``batched_point_coords`` [1, 1, N, 2] in original pixels and ``orig_im_size`` int64 and
    returns ``output_masks`` [1, 1, 3, H, W] (discs of tokens 1..3 here) and
    ``iou_predictions`` [1, 1, 3]."""
    encoder = helper.make_graph(
        [helper.make_node("ReduceMean", ["batched_images"], ["means"], axes=[2, 3], keepdims=1),
         helper.make_node("Tile", ["means", "repeats"], ["tiled"]),
         helper.make_node("Slice", ["tiled", "zero", "c256", "one"], ["image_embeddings"])],
        "efficientsam_like_encoder",
        [helper.make_tensor_value_info("batched_images", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64])],
        [_const("repeats", [1, 86, 64, 64], np.int64),
         _const("zero", [0], np.int64), _const("c256", [256], np.int64), _const("one", [1], np.int64)])
    _save(encoder, folder / "esam_encoder.onnx")
    nodes = [
        helper.make_node("Reshape", ["batched_point_coords", "points_shape"], ["points"]),   # [1, N, 2]
        helper.make_node("Gather", ["points", "i0"], ["first"], axis=1),
        helper.make_node("Gather", ["first", "i0"], ["cx"], axis=1),
        helper.make_node("Gather", ["first", "i1"], ["cy"], axis=1),
        helper.make_node("Cast", ["orig_im_size"], ["size_f"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["size_f", "i0"], ["h"]),
        helper.make_node("Gather", ["size_f", "i1"], ["w"]),
        helper.make_node("ReduceSum", ["image_embeddings"], ["sum_embed"], keepdims=0),
        helper.make_node("ReduceSum", ["batched_point_labels"], ["sum_labels"], keepdims=0),
        helper.make_node("Add", ["sum_embed", "sum_labels"], ["sum_all"]),
        helper.make_node("Mul", ["sum_all", "zero_f"], ["nothing"]),
        helper.make_node("Add", ["iou", "nothing"], ["iou_predictions"]),
    ] + _disc_nodes("full_", "cx", "cy", "h", "w", "radii2", "discs") + [
        helper.make_node("Unsqueeze", ["discs", "i0_axes"], ["output_masks"])]
    decoder = helper.make_graph(
        nodes, "efficientsam_like_decoder",
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 256, 64, 64]),
         helper.make_tensor_value_info("batched_point_coords", TensorProto.FLOAT, [1, 1, "num_points", 2]),
         helper.make_tensor_value_info("batched_point_labels", TensorProto.FLOAT, [1, 1, "num_points"]),
         helper.make_tensor_value_info("orig_im_size", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("output_masks", TensorProto.FLOAT, [1, 1, 3, "H", "W"]),
         helper.make_tensor_value_info("iou_predictions", TensorProto.FLOAT, [1, 1, 3])],
        [_const("points_shape", [1, -1, 2], np.int64), _const("i0", 0, np.int64), _const("i1", 1, np.int64),
         _const("i0_axes", [0], np.int64), _const("f0", 0.0), _const("f1", 1.0), _const("zero_f", 0.0),
         _const("row_shape", [1, 1, 1, -1], np.int64), _const("col_shape", [1, 1, -1, 1], np.int64),
         _const("radii2", RADII_SQUARED[1:].reshape(1, 3, 1, 1)), _const("iou", IOU[1:].reshape(1, 1, 3))])
    _save(decoder, folder / "esam_decoder.onnx")


def test_efficientsam_signature(tmp_path):
    build_efficientsam_pair(tmp_path)
    engine = create_prompt_engine("sam", str(tmp_path / "esam_encoder.onnx"))
    assert engine.flavour == "efficientsam" and engine.resize == "none"
    encoder = engine.encoder = Recording(engine.encoder)
    decoder = engine.decoder = Recording(engine.decoder)
    engine.set_image(_frame((51, 102, 255)))
    image = encoder.feeds[0]["batched_images"]
    assert image.shape == (1, 3, HEIGHT, WIDTH)  # the frame as it is, in [0, 1]
    np.testing.assert_allclose(image[0, :, 0, 0], [0.2, 0.4, 1.0], rtol=1e-6)

    result = engine.predict(_prompt([(100, 50), (300, 200)], [1, 0], box=(10, 20, 110, 220)), multimask=True)
    feed = decoder.feeds[-1]
    np.testing.assert_allclose(feed["batched_point_coords"], [[[[100, 50], [300, 200], [10, 20], [110, 220]]]])
    np.testing.assert_array_equal(feed["batched_point_labels"], [[[1, 0, 2, 3]]])  # no padding point
    np.testing.assert_array_equal(feed["orig_im_size"], [480, 640])
    assert feed["orig_im_size"].dtype == np.int64
    assert result.scores == pytest.approx([0.9, 0.8, 0.7])
    for mask, token in zip(result.masks, (1, 3, 2)):
        np.testing.assert_array_equal(mask, _disc(100, 50, RADII_SQUARED[token]))
    single = engine.predict(_prompt([(100, 50)], [1]))
    np.testing.assert_array_equal(single.mask, _disc(100, 50, RADII_SQUARED[1]))
    assert single.low_res_logits is None
