"""Pre/post-processing of SemanticSegmenter against tiny models with known weights."""
import json

import numpy as np
import pytest

from onnx_models import expected_linear_labels, linear_classifier
from openpixel_ros.latest_frame import LatestFrameSlot
from openpixel_ros.model_contract import ContractError
from openpixel_ros.segmentor import Segmentor
from openpixel_ros.semantic import SemanticSegmenter
from openpixel_ros.visualize import colorize, foreground_mask, overlay

W = [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0], [-2.0, -2.0, 4.0]]
B = [0.0, 0.1, 0.0]


def blocks(h=60, w=80):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 3, 0] = 220
    rgb[:, w // 3: 2 * w // 3, 1] = 220
    rgb[:, 2 * w // 3:, 2] = 220
    return rgb


def test_dynamic_model_labels_match_hand_computation(tmp_path):
    linear_classifier(tmp_path / "m.onnx", W, B)
    seg = SemanticSegmenter.from_file(tmp_path / "m.onnx")
    rgb = (np.random.default_rng(1).random((30, 40, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(seg.infer(rgb).labels, expected_linear_labels(rgb, W, B))


@pytest.mark.parametrize("upsampling", ["bilinear", "nearest"])
def test_fixed_size_model_upsamples_back(tmp_path, upsampling):
    linear_classifier(tmp_path / "m.onnx", W, B, height=30, width=40)
    seg = SemanticSegmenter.from_file(tmp_path / "m.onnx", label_upsampling=upsampling)
    labels = seg.infer(blocks()).labels
    assert labels.shape == (60, 80)
    # Away from the block edges, each block is its own class.
    assert (labels[:, 2:22] == 0).all() and (labels[:, 30:50] == 1).all() and (labels[:, 58:78] == 2).all()


def test_letterbox_keeps_geometry(tmp_path):
    contract = linear_classifier(tmp_path / "m.onnx", W, B, height=64, width=64)
    contract["input"]["resize"] = "letterbox"
    (tmp_path / "m.json").write_text(json.dumps(contract))
    seg = SemanticSegmenter.from_file(tmp_path / "m.onnx")
    tensor, geom = seg.preprocess(blocks(40, 80))
    assert tensor.shape == (1, 3, 64, 64) and (geom.top, geom.height, geom.width) == (16, 32, 64)
    assert np.all(tensor[0, :, :16] == 0)  # padding rows
    labels = seg.infer(blocks(40, 80)).labels
    assert labels.shape == (40, 80)
    assert (labels[:, 2:22] == 0).all() and (labels[:, 30:50] == 1).all() and (labels[:, 58:78] == 2).all()


def test_embedded_metadata_is_read(tmp_path):
    linear_classifier(tmp_path / "m.onnx", W, B, embed_metadata=True, classes=["a", "b", "c"])
    assert not (tmp_path / "m.json").exists()
    assert SemanticSegmenter.from_file(tmp_path / "m.onnx").contract.classes == ("a", "b", "c")


def test_contract_violations(tmp_path):
    contract = linear_classifier(tmp_path / "m.onnx", W, B, height=30, width=40)
    for change, message in [
        (lambda c: c["input"].update(height=31), "disagrees"),
        (lambda c: c.update(classes=["a", "b"], colors=None), "channels"),
        (lambda c: c["input"].update(name="x"), "no input"),
        (lambda c: c.update(format="v0"), "format"),
        (lambda c: c["output"].update(kind="heatmap"), "kind"),
    ]:
        broken = json.loads(json.dumps(contract))
        change(broken)
        (tmp_path / "m.json").write_text(json.dumps(broken))
        with pytest.raises(ContractError, match=message):
            SemanticSegmenter.from_file(tmp_path / "m.onnx")


def test_probability_model_thresholds_at_half(tmp_path):
    linear_classifier(tmp_path / "p.onnx", [[10.0, -10.0, 0.0]], [0.0], kind="probability")
    seg = Segmentor(tmp_path / "p.onnx", adaptation=False)  # thresholding only
    rgb = blocks()
    r = seg.infer(rgb)
    assert (r.labels[:, :20] == 1).all() and (r.labels[:, 30:] == 0).all()
    assert np.array_equal(r.mask, foreground_mask(r.labels, [1]))
    assert 0.5 < r.score <= 1.0 and r.timings["engine_ms"] > 0


def test_conditioning_vector_reaches_the_model(tmp_path):
    linear_classifier(tmp_path / "c.onnx", W, B, conditioning_size=4)
    seg = SemanticSegmenter.from_file(tmp_path / "c.onnx")
    rgb = blocks()
    base = seg.infer(rgb, conditioning=np.zeros(4)).labels
    out, _, _ = seg.run_model(rgb, np.array([5.0, 0, 0, 0]))
    out0, _, _ = seg.run_model(rgb, np.zeros(4))
    np.testing.assert_allclose(out - out0, 5.0, atol=1e-5)
    assert base.shape == (60, 80)


def test_visualization():
    labels = np.array([[0, 1], [2, 300]], np.uint16)
    palette = np.array([[0, 0, 0], [10, 20, 30], [40, 50, 60]], np.uint8)
    color = colorize(labels, palette)
    assert color[0, 1].tolist() == [10, 20, 30] and color[1, 1].tolist() == [0, 0, 0]
    rgb = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(rgb, color, 0.5, labels)
    assert out[0, 0].tolist() == [100, 100, 100] and out[0, 1].tolist() == [55, 60, 65]
    assert foreground_mask(labels, [1, 2]).tolist() == [[0, 255], [255, 0]]


def test_latest_frame_slot_drops_and_counts():
    slot = LatestFrameSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0.1) == 4 and slot.dropped == 4 and slot.received == 5
    assert slot.take(timeout=0.01) is None
    slot.close()
    assert slot.take(timeout=1.0) is None


def test_bilinear_argmax_matches_one_multichannel_resize():
    """The fast path gives the labels of upsampling every class at once and argmax (random scores:
    far more hard cells than real logits; test_label_upsampling checks real ones exactly)."""
    import cv2

    from openpixel_ros.label_upsampling import bilinear_argmax
    rng = np.random.default_rng(3)
    maps = (rng.normal(size=(11, 23, 31)) * 4).astype(np.float32)
    for hw in ((23, 31), (90, 120), (361, 479), (1080, 1920)):
        scores = cv2.resize(np.ascontiguousarray(maps.transpose(1, 2, 0)), hw[::-1], interpolation=cv2.INTER_LINEAR)
        expected = np.argmax(scores, axis=2)
        got = bilinear_argmax(maps, hw, np.uint8)
        assert got.dtype == np.uint8 and got.shape == hw
        assert (got == expected).mean() > 0.9999  # float rounding may only flip exact near-ties


def test_onnxruntime_threads_do_not_spin_and_only_the_labels_output_is_fetched(tmp_path):
    """Busy-waiting pool threads slowed the engine inside the node (docs/benchmarks.md), and the
    default model's click features (3.7 MB a frame) were fetched for nothing."""
    from openpixel_ros.engines import create_engine
    from openpixel_ros.default_model import default_model_path

    engine = create_engine("onnxruntime", default_model_path())
    options = engine._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    feeds, _ = SemanticSegmenter(engine, engine.model_contract(default_model_path())).model_input.feeds(blocks())
    every = engine.run(feeds)
    assert set(every) == {"logits", "features_s4", "features_s8"}
    only = engine.run_outputs(feeds, ["logits"])
    assert set(only) == {"logits"}
    np.testing.assert_array_equal(only["logits"], every["logits"])
