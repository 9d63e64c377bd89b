"""The GPU-ready export (export/frame_labels.py): labels of a fixed camera frame size computed in the
graph. Checked here with ONNX Runtime on the CPU against the host path's exact labels; its speed can
only be measured on a GPU (docs/tensorrt.md)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from openpixel_ros.default_model import default_model_path
from openpixel_ros.export.frame_labels import add_frame_labels
from openpixel_ros.frame_sources import iter_frames
from openpixel_ros.model_io import ModelInput
from openpixel_ros.semantic import SemanticSegmenter
from test_label_upsampling import assert_only_ties_differ


def _copy_default(folder, resize="stretch"):
    src = default_model_path()
    dst = folder / src.name
    shutil.copy(src, dst)
    contract = json.loads(src.with_suffix(".json").read_text())
    contract["input"]["resize"] = resize
    dst.with_suffix(".json").write_text(json.dumps(contract))
    return dst


def _frames(width, height, n=3):
    source = iter_frames("auto", loop=True, size=(width, height))
    frames = []
    for _ in range(n):
        for _ in range(40):
            frame = next(source)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("resize,frame_wh", [("stretch", (1920, 1080)), ("stretch", (640, 480)),
                                             ("letterbox", (1920, 1080)), ("letterbox", (500, 700))])
def test_graph_labels_equal_the_host_path(tmp_path, resize, frame_wh):
    width, height = frame_wh
    path = add_frame_labels(_copy_default(tmp_path, resize), (height, width))
    graph = SemanticSegmenter.from_file(path)
    graph.graph_labels = True  # on the CPU the host path is the default; force the graph's
    host = SemanticSegmenter(graph.engine, graph.contract, graph_labels=False)
    assert graph.frame_labels == ("frame_labels", (height, width))
    for frame in _frames(width, height):
        got = graph.infer(frame).labels
        expected = host.infer(frame).labels
        assert got.dtype == expected.dtype == np.uint8 and got.shape == (height, width)
        out, placement, _ = host.run_model(frame)
        maps = np.ascontiguousarray(ModelInput.crop(out[0], placement))
        assert_only_ties_differ(got, expected, maps, (height, width))
        assert len(np.unique(got)) > 3  # real frames: a real mix of classes


def test_other_frame_sizes_and_cpu_use_the_host_path(tmp_path):
    path = add_frame_labels(_copy_default(tmp_path), (1080, 1920))
    auto = SemanticSegmenter.from_file(path)
    assert auto.graph_labels is False  # CPU engine: corner agreement on the host is cheaper
    forced = SemanticSegmenter(auto.engine, auto.contract, graph_labels=True)
    frame = _frames(640, 480, 1)[0]
    np.testing.assert_array_equal(forced.infer(frame).labels, auto.infer(frame).labels)
    # A shrunk copy of a 1080p frame (lighting adaptation) gets the graph labels of the frame's size.
    big = cv2.resize(frame, (1920, 1080))
    small = cv2.resize(big, (480, 360), interpolation=cv2.INTER_AREA)
    assert forced.infer(small, frame_hw=(1080, 1920)).labels.shape == (1080, 1920)


def test_export_cli_writes_the_model_and_its_contract(tmp_path):
    model = _copy_default(tmp_path)
    run = subprocess.run([sys.executable, "-m", "openpixel_ros.export", "--onnx", str(model),
                          "--frame-labels", "1280x720"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = model.with_name(f"{model.stem}.frame_labels_1280x720.onnx")
    assert out.is_file()
    contract = json.loads(out.with_suffix(".json").read_text())
    assert contract["frame_labels"] == {"name": "frame_labels", "height": 720, "width": 1280}
    bad = subprocess.run([sys.executable, "-m", "openpixel_ros.export", "--onnx", str(model),
                          "--frame-labels", "big"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--frame-labels big" in bad.stderr


def test_gpu_engines_use_the_graph_labels(tmp_path):
    """TensorRT and ONNX Runtime CUDA report a cuda device: the contract's frame_labels are then
    fetched instead of upsampling on the host (an ONNX Runtime CPU engine stands in for the GPU)."""
    from openpixel_ros.engines import create_engine

    path = add_frame_labels(_copy_default(tmp_path), (480, 640))
    engine = create_engine("onnxruntime", path)
    asked = []

    class OnGpu(type(engine)):
        device = "cuda:0"

        def run_outputs(self, feeds, names):
            asked.append(list(names))
            return super().run_outputs(feeds, names)

    engine.__class__ = OnGpu
    seg = SemanticSegmenter(engine, engine.model_contract(path))
    assert seg.graph_labels is True
    frame = _frames(640, 480, 1)[0]
    labels = seg.infer(frame).labels
    assert asked[-1] == ["logits", "frame_labels"]
    host = SemanticSegmenter(engine, seg.contract, graph_labels=False)
    out, placement, _ = host.run_model(frame)
    assert_only_ties_differ(labels, host.infer(frame).labels, np.ascontiguousarray(out[0]), (480, 640))
    seg.infer(cv2.resize(frame, (320, 240)))  # another size: logits only, labels on the host
    assert asked[-1] == ["logits"]
