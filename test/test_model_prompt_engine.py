"""The "openpixel" prompt engine over an exported encoder/decoder pair (ONNX Runtime, no torch at run time):
a user's export of a checkpoint with a trained click head (the packaged road model has no decoder)."""
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


def channel_mix_decoder(path, weights, bias):
    """A stand-in decoder whose mask logit is ``sum_c weights[c] * prompts[c] + bias`` (a 1x1
    convolution over the positive, negative, previous-mask and box maps)."""
    import onnx

    nodes = [helper.make_node("Conv", ["prompts", "weight", "bias"], ["mask_logits"]),
             helper.make_node("ReduceMax", ["mask_logits"], ["peak"], keepdims=0),
             helper.make_node("Reshape", ["peak", "shape11"], ["score"])]
    inits = [numpy_helper.from_array(np.asarray(weights, np.float32).reshape(1, 4, 1, 1), "weight"),
             numpy_helper.from_array(np.asarray([bias], np.float32), "bias"),
             numpy_helper.from_array(np.array([1, 1], np.int64), "shape11")]
    graph = helper.make_graph(nodes, "channel_mix", [
        helper.make_tensor_value_info("features_s4", TensorProto.FLOAT, [1, 48, "gh", "gw"]),
        helper.make_tensor_value_info("features_s8", TensorProto.FLOAT, [1, 64, "h8", "w8"]),
        helper.make_tensor_value_info("prompts", TensorProto.FLOAT, [1, 4, "gh", "gw"])],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, [1, 1, "gh", "gw"]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({"format": DECODER_FORMAT, "click_sigma": 8.0}))
    return path


def positive_channel_decoder(path):
    """A stand-in decoder whose mask logit is the positive-click map minus 0.5, so the mask is the
    disc of cells near a positive click: it checks the engine's coordinate mapping and upsampling."""
    return channel_mix_decoder(path, (1.0, 0.0, 0.0, 0.0), -0.5)


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


@pytest.mark.parametrize("frame_hw", [(H, W), (2 * H, 2 * W)])
def test_a_clicked_pixel_means_the_same_point_in_training_and_in_the_engine(pair, tmp_path, frame_hw):
    """Issue 12, item 3: the protocol and GUIs send integer pixel indices; training renders the click
    at that pixel's centre (Click.xy). The engine must feed the decoder the same prompt map, which
    it did not when it took the integer as a continuous coordinate (the pixel's corner)."""
    from openpixel_ros.inference.prompt_maps import render_prompt_maps
    from openpixel_ros.inference.click_simulation import Click

    encoder, _ = pair
    decoder = positive_channel_decoder(tmp_path / "stand_in.decoder.onnx")
    # The whole-frame pass itself (zoom_first would decode a small first mask again in its window).
    engine = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1, zoom_first=False)
    fh, fw = frame_hw
    engine.set_image(np.zeros((fh, fw, 3), np.uint8), key=str(frame_hw))
    scale = fh // H
    for col, row in [(13, 7), (50, 40), (0, 0), (W - 1, H - 1)]:
        x, y = col * scale, row * scale  # a pixel of the frame whose centre lands on pixel (col, row)'s
        result = engine.predict(ClickPrompt.from_lists([(x, y)], [1], image_size=frame_hw))
        seen = result.low_res_logits[0, 0] + np.float32(0.5)  # the stand-in returns the positive map - 0.5
        # Pixel (x, y) of a 2x frame has its centre at x + 0.5 = 2 * (col + 0.25): a quarter pixel
        # left of the model pixel's centre, as resizing puts it.
        centre = ((x + 0.5) / scale, (y + 0.5) / scale)
        trained = render_prompt_maps((H, W), [centre], sigma=8.0)[0]
        if scale == 1:
            assert centre == Click(row, col, True).xy
        np.testing.assert_allclose(seen, trained, atol=1e-6)


def test_scribbles_reach_the_decoder_where_they_were_drawn(pair, tmp_path):
    encoder, _ = pair
    decoder = positive_channel_decoder(tmp_path / "stand_in.decoder.onnx")
    engine = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1, zoom_first=False)
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


def test_a_reduced_precision_encoder_finds_the_decoder_its_contract_names(pair):
    """X.fp16.encoder.onnx (and X.int8.encoder.onnx) has no decoder of its own: its contract names the
    FP32 export's, which the engine loads (the name rule alone would look for X.fp16.decoder.onnx)."""
    from openpixel_ros.export.quantize import convert_fp16
    from openpixel_ros.interactive import create_prompt_engine

    encoder, decoder = pair
    fp16 = convert_fp16(encoder)
    engine = create_prompt_engine("openpixel", str(fp16), threads=1)
    assert isinstance(engine, OpenPixelPromptEngine) and engine.decoder_path == decoder
    engine.set_image(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8))
    assert engine.predict(ClickPrompt.from_lists([(40, 30)], [1], image_size=(H, W))).mask.shape == (H, W)
    engine.close()


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


def test_zoom_window_holds_the_object_and_the_clicks_at_the_model_aspect():
    from openpixel_ros.interactive.openpixel_engine import zoom_window
    region = np.zeros((480, 640), bool)
    region[200:260, 300:340] = True
    window = zoom_window(region, np.array([[290.0, 270.0]]), aspect=4 / 3)
    x0, y0, x1, y1 = window
    assert x0 <= 290 < x1 and y0 <= 270 < y1 and x0 <= 300 and x1 >= 340 and y0 <= 200 and y1 >= 260
    assert (x1 - x0) / (y1 - y0) == pytest.approx(4 / 3, abs=0.02)
    assert 0 <= x0 and 0 <= y0 and x1 <= 640 and y1 <= 480
    edge = np.zeros((480, 640), bool)
    edge[0:30, 600:640] = True  # at the corner: shifted into the frame, not cut
    ex0, ey0, ex1, ey1 = zoom_window(edge, np.zeros((0, 2)), aspect=4 / 3)
    assert ex1 == 640 and ey0 == 0 and (ex1 - ex0) > 40
    big = np.ones((480, 640), bool)
    assert zoom_window(big, np.zeros((0, 2)), aspect=4 / 3) is None  # nothing to gain


def test_zoom_in_decodes_around_the_object_and_reuses_its_window(pair, tmp_path):
    encoder, _ = pair
    decoder = positive_channel_decoder(tmp_path / "stand_in.decoder.onnx")
    engine = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1, refine="none",
                                              zoom_first=False)
    runs = []
    real_run = engine.encoder.run
    engine.encoder.run = lambda feeds: runs.append(feeds) or real_run(feeds)
    frame = np.zeros((240, 480, 3), np.uint8)
    engine.set_image(frame, key="frame")
    first = engine.predict(ClickPrompt.from_lists([(300, 120)], [1], image_size=(240, 480)))
    assert first.timings["zoom"] == 0.0 and len(runs) == 1
    previous = np.zeros((240, 480), bool)
    previous[100:140, 280:320] = True
    prompt = ClickPrompt.from_lists([(300, 120), (310, 125)], [1, 1], image_size=(240, 480), previous_mask=previous)
    zoomed = engine.predict(prompt)
    assert zoomed.timings["zoom"] == 1.0 and len(runs) == 2 and zoomed.low_res_logits is None
    # The stand-in's mask is a disc of about one grid cell around each click, so in the window it is
    # smaller than on the whole frame, and it still sits on the clicked pixels.
    assert zoomed.mask[120, 300] and zoomed.mask[125, 310]
    assert 0 < zoomed.mask.sum() < first.mask.sum() * 0.8
    rows, cols = np.nonzero(zoomed.mask)
    assert abs(cols.mean() - 305) < 4 and abs(rows.mean() - 122.5) < 4
    engine.predict(prompt)
    assert len(runs) == 2  # same window: the cached features are reused
    off = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1, zoom_in=False)
    off.set_image(frame)
    assert off.predict(prompt).timings["zoom"] == 0.0


def test_a_small_first_mask_is_decoded_again_in_its_window(pair, tmp_path):
    """zoom_first: the first prompt's whole-frame mask places a window (as the next click's would), and
    the prompt is decoded again there; not for a box, not without zoom-in."""
    encoder, _ = pair
    decoder = positive_channel_decoder(tmp_path / "stand_in.decoder.onnx")
    engines = {first: OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1, refine="none",
                                                       zoom_first=first) for first in (True, False)}
    runs = []
    real_run = engines[True].encoder.run
    engines[True].encoder.run = lambda feeds: runs.append(feeds) or real_run(feeds)
    frame = np.zeros((240, 480, 3), np.uint8)
    click = ClickPrompt.from_lists([(300, 120)], [1], image_size=(240, 480))
    for engine in engines.values():
        engine.set_image(frame, key="frame")
    whole, zoomed = engines[False].predict(click), engines[True].predict(click)
    assert whole.timings["zoom"] == 0.0 and zoomed.timings["zoom"] == 1.0 and len(runs) == 2
    assert zoomed.low_res_logits is None and zoomed.mask[120, 300]
    # The stand-in's disc is about one grid cell: in the window that is fewer frame pixels.
    assert 0 < zoomed.mask.sum() < whole.mask.sum() * 0.8
    rows, cols = np.nonzero(zoomed.mask)
    assert abs(cols.mean() - 300.5) < 4 and abs(rows.mean() - 120.5) < 4
    boxed = ClickPrompt.from_lists([(300, 120)], [1], box=(200, 60, 400, 200), image_size=(240, 480))
    assert engines[True].predict(boxed).timings["zoom"] == 0.0
    off = OpenPixelPromptEngine.from_files(encoder, decoder=str(decoder), threads=1, zoom_in=False)
    off.set_image(frame)
    assert off.predict(click).timings["zoom"] == 0.0 and off.zoom_first
    for engine in (*engines.values(), off):
        engine.close()


def test_a_click_the_previous_mask_outvotes_is_decoded_again_without_it(pair, tmp_path):
    """retry_ignored_click: when the mask contradicts the newest click although a previous mask came
    with it, the view is decoded once more with the previous-mask channel empty, and that mask is
    taken only if it obeys the click; an obeyed click, or one without a previous mask, is one pass."""
    encoder, _ = pair
    # The previous mask outvotes a negative click (3 > 1) but not a positive one.
    outvoting = channel_mix_decoder(tmp_path / "outvoting.decoder.onnx", (2.0, -1.0, 3.0, 0.0), -0.5)
    engines = {retry: OpenPixelPromptEngine.from_files(encoder, decoder=str(outvoting), threads=1, refine="none",
                                                       zoom_in=False, retry_ignored_click=retry)
               for retry in (True, False)}
    runs = []
    real_run = engines[True].decoder.run
    engines[True].decoder.run = lambda feeds: runs.append(feeds) or real_run(feeds)
    frame = np.zeros((240, 480, 3), np.uint8)
    previous = np.zeros((240, 480), bool)
    previous[60:180, 120:360] = True
    correction = ClickPrompt.from_lists([(240, 120), (330, 160)], [1, 0], previous_mask=previous,
                                        image_size=(240, 480))
    for engine in engines.values():
        engine.set_image(frame, key="frame")
    ignored = engines[False].predict(correction)
    assert ignored.mask[160, 330] and ignored.timings["retry"] == 0.0  # the click changed nothing there
    obeyed = engines[True].predict(correction)
    assert not obeyed.mask[160, 330] and obeyed.mask[120, 240] and obeyed.timings["retry"] == 1.0
    assert len(runs) == 2 and not runs[1]["prompts"][0, 2].any() and runs[0]["prompts"][0, 2].any()
    runs.clear()
    outside = ClickPrompt.from_lists([(240, 120), (40, 20)], [1, 0], previous_mask=previous, image_size=(240, 480))
    assert engines[True].predict(outside).timings["retry"] == 0.0 and len(runs) == 1
    # A decoder that ignores clicks altogether: the second pass obeys no better, so the first mask stays.
    deaf = channel_mix_decoder(tmp_path / "deaf.decoder.onnx", (0.0, 0.0, 3.0, 0.0), -0.5)
    engine = OpenPixelPromptEngine.from_files(encoder, decoder=str(deaf), threads=1, refine="none", zoom_in=False)
    engine.set_image(frame, key="frame")
    grow = ClickPrompt.from_lists([(240, 120), (420, 200)], [1, 1], previous_mask=previous, image_size=(240, 480))
    kept = engine.predict(grow)
    assert kept.timings["retry"] == 0.0 and not kept.mask[200, 420] and kept.mask[120, 240]
    for each in (*engines.values(), engine):
        each.close()


def test_engine_options_are_checked(pair):
    encoder, _ = pair
    with pytest.raises(EngineError, match="refine"):
        OpenPixelPromptEngine.from_files(encoder, threads=1, refine="crf")
    with pytest.raises(EngineError, match="zoom_expansion"):
        OpenPixelPromptEngine.from_files(encoder, threads=1, zoom_expansion=float("nan"))
