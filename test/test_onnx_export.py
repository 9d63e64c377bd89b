"""OpenPixel checkpoint -> ONNX (encoder + decoder): parity with PyTorch, fixed and dynamic sizes,
TensorRT-parser operators, metadata, and the export command line; a checkpoint whose run did not
train the click head exports its encoder alone."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from openpixel_ros.export.__main__ import build_parser, main as export_main  # noqa: E402
from openpixel_ros.export.onnx_export import (DECODER_FORMAT, TENSORRT_OPS, ExportError, export_openpixel,  # noqa: E402
                                              graph_ops, parity, run_cli)
from openpixel_ros.model.openpixel import DecoderGraph, EncoderGraph, load_checkpoint_model  # noqa: E402
from openpixel_ros.model_contract import load_contract  # noqa: E402
from openpixel_ros.training.config import config_from_dict  # noqa: E402
from openpixel_ros.training.train import Trainer  # noqa: E402

CLASSES = ["background", "road", "car"]
COLORS = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]


def tiny_checkpoint(out, clicks_enabled=True):
    """A checkpoint whose BatchNorm statistics and FiLM layer are far from their initial values,
    so that folding and conditioning are really exercised. ``clicks_enabled`` False: written by a
    run that trains the semantic head only (as config/train/road*.yaml), its click head untrained."""
    config = config_from_dict({
        "output_dir": str(out), "model": {"num_classes": 3, "conditioning_size": 10},
        "model_info": {"classes": CLASSES, "colors": COLORS, "input_height": 72, "input_width": 96},
        "clicks": {"enabled": clicks_enabled}})
    trainer = Trainer(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in trainer.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
        trainer.model.film.mlp[-1].weight.normal_(0, 0.1, generator=gen)
    return trainer.save_checkpoint(out / "model.pt")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("export"))


def feeds_for(model, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
            "conditioning": rng.normal(size=(1, model.config.conditioning_size)).astype(np.float32)}


def check_graph(path):
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert graph_ops(model) <= TENSORRT_OPS, graph_ops(model) - TENSORRT_OPS
    return model


@pytest.fixture(scope="module")
def cli_export(checkpoint):
    """``python -m openpixel_ros.export --checkpoint X.pt --onnx X.onnx``, run in-process."""
    target = checkpoint.parent / "op.onnx"
    args = build_parser().parse_args(["--checkpoint", str(checkpoint), "--onnx", str(target)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_cli(args) == 0
    encoder, decoder = target.parent / "op.encoder.onnx", target.parent / "op.decoder.onnx"
    assert args.onnx == str(encoder)  # a following --engine step builds the per-frame graph
    return encoder, decoder, printed.getvalue()


@pytest.mark.slow
def test_fixed_size_export_from_the_command_line(checkpoint, cli_export):
    """The command line writes both graphs with metadata and they match PyTorch."""
    encoder, decoder, printed = cli_export
    assert "parity logits" in printed and "argmax_agreement 1" in printed
    encoder_model = check_graph(encoder)
    check_graph(decoder)
    # Fixed sizes fold every shape computation away.
    assert not graph_ops(encoder_model) & {"Shape", "Gather", "ConstantOfShape"}
    assert [d.dim_value for d in encoder_model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 72, 96]

    contract = load_contract(encoder)
    assert list(contract.classes) == CLASSES and [list(c) for c in contract.colors] == COLORS
    assert (contract.input.height, contract.input.width) == (72, 96)
    assert contract.conditioning.name == "conditioning" and contract.conditioning.size == 10
    assert contract.extra["prompt_decoder"] == decoder.name
    embedded = {p.key: p.value for p in encoder_model.metadata_props}["openpixel"]
    assert json.loads(embedded) == json.loads(encoder.with_suffix(".json").read_text())
    decoder_meta = json.loads(decoder.with_suffix(".json").read_text())
    assert decoder_meta["format"] == DECODER_FORMAT and decoder_meta["encoder"] == encoder.name

    model, _, _ = load_checkpoint_model(checkpoint)
    feeds = feeds_for(model, 72, 96)
    report = parity(EncoderGraph(model), encoder, feeds)
    assert report["logits"]["argmax_agreement"] >= 0.999
    assert max(entry["max_abs_diff"] for entry in report.values()) < 1e-3
    with torch.no_grad():
        _, f4, f8 = EncoderGraph(model)(*(torch.from_numpy(v) for v in feeds.values()))
    prompts = np.random.default_rng(1).uniform(0, 1, (1, 4, *f4.shape[2:])).astype(np.float32)
    report = parity(DecoderGraph(model), decoder, {"features_s4": f4.numpy(), "features_s8": f8.numpy(),
                                                   "prompts": prompts})
    assert report["mask_logits"]["max_abs_diff"] < 1e-3 and report["score"]["max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_dynamic_export_runs_at_other_sizes(checkpoint, tmp_path):
    model, info, _ = load_checkpoint_model(checkpoint)
    encoder, decoder = export_openpixel(model, info, tmp_path / "dyn.onnx", dynamic=True)
    check_graph(encoder)
    check_graph(decoder)
    assert load_contract(encoder).input.height is None  # dynamic: the frame's own size
    for h, w in [(72, 96), (57, 83), (130, 64)]:
        feeds = feeds_for(model, h, w, seed=h)
        report = parity(EncoderGraph(model), encoder, feeds)
        assert report["logits"]["argmax_agreement"] >= 0.999, (h, w)
        assert max(entry["max_abs_diff"] for entry in report.values()) < 1e-3, (h, w)
        with torch.no_grad():
            _, f4, f8 = EncoderGraph(model)(*(torch.from_numpy(v) for v in feeds.values()))
        prompts = np.zeros((1, 4, *f4.shape[2:]), np.float32)
        prompts[0, 0, 2, 3] = 1.0
        report = parity(DecoderGraph(model), decoder, {"features_s4": f4.numpy(), "features_s8": f8.numpy(),
                                                       "prompts": prompts})
        assert report["mask_logits"]["max_abs_diff"] < 1e-3


def test_node_pipeline_runs_the_encoder(cli_export):
    from openpixel_ros.semantic import SemanticSegmenter

    segmenter = SemanticSegmenter.from_file(cli_export[0])
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    result = segmenter.infer(frame, conditioning=np.zeros(10, np.float32))
    assert result.labels.shape == (120, 160) and result.labels.max() < 3


def test_bad_requests_fail_cleanly(checkpoint, tmp_path, capsys):
    model, info, _ = load_checkpoint_model(checkpoint)
    with pytest.raises(ExportError, match="opset"):
        export_openpixel(model, info, tmp_path / "old.onnx", opset=13)
    assert export_main(["--checkpoint", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert "error" in capsys.readouterr().err


def test_a_checkpoint_without_a_trained_click_head_exports_its_encoder_alone(tmp_path):
    """A road run (clicks.enabled: false) never trains the click head: its decoder used to be written
    all the same, from the head's initial weights, and named by the encoder's contract."""
    from openpixel_ros.interactive import PromptError, create_prompt_engine
    from openpixel_ros.segmentor import Segmentor

    checkpoint = tiny_checkpoint(tmp_path / "run", clicks_enabled=False)
    target = tmp_path / "road.onnx"
    encoder, decoder = tmp_path / "road.encoder.onnx", tmp_path / "road.decoder.onnx"
    for stale in (decoder, decoder.with_suffix(".json")):  # an earlier export's decoder, paired by name
        stale.write_text("stale")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert export_main(["--checkpoint", str(checkpoint), "--onnx", str(target), "--variants", "fp16"]) == 0
    lines = [line for line in printed.getvalue().splitlines() if "click head" in line]
    assert len(lines) == 1 and "no decoder was written" in lines[0], printed.getvalue()
    assert encoder.is_file() and not decoder.exists() and not decoder.with_suffix(".json").exists()
    assert sorted(p.name for p in tmp_path.glob("road.*")) == [
        "road.encoder.json", "road.encoder.onnx", "road.fp16.encoder.json", "road.fp16.encoder.onnx"]
    fp16 = tmp_path / "road.fp16.encoder.onnx"
    for path in (encoder, fp16):
        contract = load_contract(path)
        assert "prompt_decoder" not in contract.extra and list(contract.classes) == CLASSES
        embedded = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["openpixel"])
        assert "prompt_decoder" not in embedded

    # The semantic model loads and segments as any other; as a prompt model it names the click network.
    frame = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    for path in (encoder, fp16):
        segmentor = Segmentor(path)
        labels = segmentor.segment(frame).labels
        assert labels.shape == (90, 120) and labels.max() < len(CLASSES)
        segmentor.close()
    with pytest.raises(PromptError, match="no click decoder.*click network openpixel_click"):
        create_prompt_engine("openpixel", str(encoder))
