"""The "openpixel" prompt engine over an exported encoder/decoder pair (ONNX Runtime, no torch at run time)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from openpixel_ros.engines import EngineError  # noqa: E402
from openpixel_ros.export.onnx_export import export_openpixel  # noqa: E402
from openpixel_ros.interactive import ClickPrompt  # noqa: E402
from openpixel_ros.interactive.openpixel_engine import DECODER_FORMAT, OpenPixelPromptEngine  # noqa: E402
from openpixel_ros.model.openpixel import ModelInfo, OpenPixel, OpenPixelConfig  # noqa: E402

H, W = 64, 96  # model input; frames below have other sizes


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    model = OpenPixel(OpenPixelConfig(num_classes=3, conditioning_size=4)).eval()
    out = tmp_path_factory.mktemp("engine") / "op.onnx"
    return export_openpixel(model, ModelInfo(input_height=H, input_width=W), out)


def positive_channel_decoder(path):
    """A stand-in decoder whose mask logit is the positive-click map minus 0.5, so the mask is the
    disc of cells near a positive click: it checks the engine's coordinate mapping and upsampling."""
    grid = [1, 4, "gh", "gw"]
    nodes = [
        helper.make_node("Slice", ["prompts", "start", "end", "axis"], ["positive"]),
        helper.make_node("Sub", ["positive", "half"], ["mask_logits"]),
        helper.make_node("ReduceMax", ["positive"], ["peak"], keepdims=0),
        helper.make_node("Reshape", ["peak", "shape11"], ["score"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("start", [0]), ("end", [1]), ("axis", [1]), ("shape11", [1, 1]))]
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
    graph = helper.make_graph(nodes, "stand_in", [
        helper.make_tensor_value_info("features_s4", TensorProto.FLOAT, [1, 48, "gh", "gw"]),
        helper.make_tensor_value_info("features_s8", TensorProto.FLOAT, [1, 64, "h8", "w8"]),
        helper.make_tensor_value_info("prompts", TensorProto.FLOAT, grid)],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, [1, 1, "gh", "gw"]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({"format": DECODER_FORMAT, "click_sigma": 8.0}))
    return path


def test_real_pair_answers_clicks_boxes_and_previous_masks(pair):
    encoder, _ = pair
    engine = OpenPixelPromptEngine.from_files(encoder, threads=1)
    frame = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    engine.set_image(frame)
    prompt = ClickPrompt.from_lists([(100, 60), (10, 10)], [1, 0], box=(40, 20, 160, 110), image_size=(120, 200))
    result = engine.predict(prompt)
    assert result.mask.shape == (120, 200) and result.mask.dtype == bool
    assert 0.0 <= result.score <= 1.0
    assert result.low_res_logits.shape == (1, 1, H // 4, W // 4)
    assert result.timings["encoder_ms"] > 0 and result.timings["decoder_ms"] > 0
    again = engine.predict(ClickPrompt.from_lists([(100, 60)], [1], image_size=(120, 200),
                                                  previous_logits=result.low_res_logits))
    assert again.timings["encoder_ms"] == 0.0  # the frame's features were reused
    with_mask = engine.predict(ClickPrompt.from_lists([(100, 60)], [1], image_size=(120, 200),
                                                      previous_mask=result.mask))
    assert with_mask.mask.shape == (120, 200)
    engine.close()


def test_clicks_land_where_the_user_clicked(pair, tmp_path):
    encoder, _ = pair
    decoder = positive_channel_decoder(tmp_path / "stand_in.decoder.onnx")
    engine = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1)
    frame = np.zeros((150, 300, 3), np.uint8)  # resized (stretched) to the 64x96 model input
    engine.set_image(frame, key="frame")
    for x, y in [(150.0, 75.0), (40.0, 30.0), (270.0, 130.0)]:
        result = engine.predict(ClickPrompt.from_lists([(x, y)], [1], image_size=(150, 300)))
        rows, cols = np.nonzero(result.mask)
        assert abs(cols.mean() - x) < 6 and abs(rows.mean() - y) < 6, (x, y, cols.mean(), rows.mean())
        assert result.mask[int(y), int(x)]
    negative_only = engine.predict(ClickPrompt.from_lists([(150, 75)], [0], image_size=(150, 300)))
    assert not negative_only.mask.any()


def test_scribbles_reach_the_decoder_where_they_were_drawn(pair, tmp_path):
    encoder, _ = pair
    decoder = positive_channel_decoder(tmp_path / "stand_in.decoder.onnx")
    engine = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1)
    engine.set_image(np.zeros((150, 300, 3), np.uint8), key="frame")
    line = [(60.0, 75.0), (240.0, 75.0)]
    result = engine.predict(ClickPrompt.from_lists([], [], scribbles=[line], scribble_labels=[1],
                                                   image_size=(150, 300)))
    # The mask is the line thickened about as much as a click is: (nearly) a click's disc at each
    # end, the span between them, and about as tall as a disc. The renderer rasterises scribbles
    # on the 1/4 grid, so they sit up to a cell (here 3 frame pixels) off the exact click discs.
    ends = [engine.predict(ClickPrompt.from_lists([end], [1], image_size=(150, 300))).mask for end in line]
    assert all((result.mask & end).sum() > 0.9 * end.sum() for end in ends)
    rows, cols = np.nonzero(result.mask)
    end_rows, end_cols = np.nonzero(ends[0])
    assert abs((cols.max() - cols.min()) - (180 + end_cols.max() - end_cols.min())) < 10
    assert abs(rows.mean() - 75) < 6 and rows.max() - rows.min() <= end_rows.max() - end_rows.min() + 8
    assert result.mask[75, 60:241].all()
    # A negative scribble feeds the negative channel only, which this decoder ignores.
    negative = engine.predict(ClickPrompt.from_lists([], [], scribbles=[line], scribble_labels=[0],
                                                     image_size=(150, 300)))
    assert not negative.mask.any()


def test_conditioning_vector_is_checked(pair):
    encoder, _ = pair
    engine = OpenPixelPromptEngine.from_files(encoder, threads=1, conditioning=np.zeros(3, np.float32))
    with pytest.raises(EngineError, match="conditioning"):
        engine.set_image(np.zeros((32, 32, 3), np.uint8))
    engine.set_conditioning(np.zeros(4, np.float32))
    engine.set_image(np.zeros((32, 32, 3), np.uint8))


def test_decoder_without_metadata_is_refused(pair, tmp_path):
    encoder, decoder = pair
    bare = tmp_path / "bare.decoder.onnx"
    import onnx
    model = onnx.load(str(decoder))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    with pytest.raises(EngineError, match="metadata"):
        OpenPixelPromptEngine.from_files(encoder, decoder=str(bare))
