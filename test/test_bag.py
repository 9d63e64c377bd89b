"""openpixel_bag on a rosbag2 file written here from real CamVid frames and their labels."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from conftest import shared_path
from onnx_models import linear_classifier
from openpixel_ros.eval.common import load_labels, load_rgb, pair_by_stem
from openpixel_ros.inference.confusion_matrix import ConfusionMatrix
from openpixel_ros.image_codec import decode_raw, encode_compressed
from openpixel_ros.segmentor import Segmentor

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
FRAMES = 6
RATE_HZ = 15.0
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
Image = TYPESTORE.types["sensor_msgs/msg/Image"]
CompressedImage = TYPESTORE.types["sensor_msgs/msg/CompressedImage"]
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]


@pytest.fixture(scope="module")
def camvid():
    root = shared_path("datasets", "camvid")
    pairs = pair_by_stem(root / "val", root / "valannot", limit=FRAMES)
    return [(load_rgb(image), load_labels(label)) for _, image, label in pairs]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # A per-pixel colour classifier over the 11 CamVid classes: not a good model, a deterministic one.
    rng = np.random.default_rng(13)
    path = tmp_path_factory.mktemp("model") / "camvid_linear.onnx"
    linear_classifier(path, rng.normal(0, 3, (11, 3)), rng.normal(0, 1, 11), classes=CAMVID_CLASSES)
    return path


def _header(i: int):
    return Header(stamp=Time(sec=1000 + i, nanosec=i * 1000), frame_id="camvid")


def _raw(array: np.ndarray, header, encoding: str):
    array = np.ascontiguousarray(array)
    return Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0,
                 step=array.strides[0], data=array.view(np.uint8).ravel())


def _write_bag(path: Path, camvid, compressed: bool, storage: StoragePlugin) -> None:
    with Writer(path, version=9, storage_plugin=storage) as writer:
        image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        images = writer.add_connection("/camera/image", image_type, typestore=TYPESTORE)
        labels = writer.add_connection("/camera/labels", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        other = writer.add_connection("/odom_like", "std_msgs/msg/Header", typestore=TYPESTORE)
        for i, (rgb, gt) in enumerate(camvid):
            t = int(i / RATE_HZ * 1e9) + 5
            if compressed:
                msg = CompressedImage(header=_header(i), format="png",
                                      data=np.frombuffer(encode_compressed(rgb, "png"), np.uint8))
            else:
                msg = _raw(rgb[..., ::-1], _header(i), "bgr8")  # a camera's usual order
            writer.write(images, t, TYPESTORE.serialize_cdr(msg, image_type))
            # Labels arrive after their frame for some messages and before it for others.
            writer.write(labels, t + (1 if i % 2 else -1), TYPESTORE.serialize_cdr(
                _raw(gt, _header(i), "mono8"), "sensor_msgs/msg/Image"))
            writer.write(other, t, TYPESTORE.serialize_cdr(_header(i), "std_msgs/msg/Header"))


def _read(path: Path) -> dict:
    topics = {}
    with AnyReader([path], default_typestore=TYPESTORE) as reader:
        for connection, timestamp, raw in reader.messages():
            topics.setdefault(connection.topic, []).append((timestamp, reader.deserialize(raw, connection.msgtype)))
    return topics


def _run(*args) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "openpixel_bag"
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("compressed,storage", [(False, StoragePlugin.SQLITE3), (True, StoragePlugin.MCAP)])
def test_bag_is_segmented_like_the_node_with_summary_and_miou(tmp_path, camvid, model, compressed, storage):
    source = tmp_path / "drive"
    _write_bag(source, camvid, compressed, storage)
    out = tmp_path / "segmented"
    result = _run(source, out, "--topic", "/camera/image", "--model", model, "--labels-topic", "/camera/labels",
                  "--ignore-index", 11, "--storage", "sqlite3" if compressed else "mcap")
    assert result.returncode == 0, result.stderr
    assert f"openpixel_bag: {FRAMES}/{FRAMES} frames" in result.stderr  # progress on the console
    assert "mIoU" in result.stdout

    # What the library gives on the same frames, in the same order (lighting adaptation keeps state).
    reference = Segmentor(model)
    expected = [reference.segment(rgb).labels for rgb, _ in camvid]
    confusion = ConfusionMatrix(len(CAMVID_CLASSES), ignore_index=11)
    for labels, (_, gt) in zip(expected, camvid):
        confusion.update(gt, labels)

    topics = _read(out)
    assert set(topics) == {"/camera/image", "/openpixel/label", "/openpixel/mask", "/openpixel/color",
                           "/openpixel/overlay"}
    for name in ("label", "mask", "color", "overlay"):
        messages = topics[f"/openpixel/{name}"]
        assert len(messages) == FRAMES
        for i, (timestamp, msg) in enumerate(messages):
            assert timestamp == topics["/camera/image"][i][0]
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1000 + i, i * 1000,
                                                                                              "camvid")
            assert (msg.height, msg.width) == camvid[i][0].shape[:2]
    for i, (_, msg) in enumerate(topics["/openpixel/label"]):
        got = decode_raw(msg.encoding, msg.height, msg.width, msg.step, False, bytes(msg.data))
        np.testing.assert_array_equal(got, expected[i])

    summary = json.loads((tmp_path / "segmented.summary.json").read_text())
    assert summary["frames"] == FRAMES and summary["labelled_frames"] == FRAMES
    assert summary["input_rate_hz"] == pytest.approx(RATE_HZ, rel=1e-6)
    assert summary["processed_rate_hz"] > 0
    assert 0 < summary["engine_ms"]["p50"] <= summary["engine_ms"]["p95"]
    assert summary["miou"] == pytest.approx(confusion.miou(), abs=1e-6)
    counts = np.bincount(np.concatenate([e.ravel() for e in expected]), minlength=11)
    for name, n in zip(CAMVID_CLASSES, counts):
        assert summary["class_share"][name] == pytest.approx(n / counts.sum(), abs=1e-6)
    assert summary["backend"] == "onnxruntime" and summary["model"] == str(model)


def test_bag_errors_are_one_line(tmp_path, camvid, model):
    source = tmp_path / "drive"
    _write_bag(source, camvid[:1], False, StoragePlugin.SQLITE3)
    result = _run(source, tmp_path / "out", "--topic", "/nope", "--model", model)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("openpixel_bag: topic /nope is not in")
    result = _run(source, tmp_path / "out2", "--topic", "/odom_like", "--model", model)
    assert result.returncode == 1 and "std_msgs/msg/Header" in result.stderr
    result = _run(source, tmp_path / "out3", "--topic", "/camera/image", "--model", tmp_path / "missing.onnx")
    assert result.returncode == 1 and "cannot load the model" in result.stderr


# -- bad frames and unmatched labels (issue 17, fault 8): synthetic frames, no ../shared needed --------
def _synthetic_bag(path: Path, frames: int, bad: dict, label_offset_s: int = 0) -> None:
    """``frames`` PNG frames of 48x64; ``bad``: index -> payload replacing that frame's PNG;
    a labels topic stamped ``label_offset_s`` seconds off its frames (never matching when non-zero)."""
    rng = np.random.default_rng(2)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        images = writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage",
                                       typestore=TYPESTORE)
        labels = writer.add_connection("/camera/labels", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        for i in range(frames):
            rgb = rng.integers(0, 255, (48, 64, 3), np.uint8)
            payload = bad.get(i, encode_compressed(rgb, "png"))
            msg = CompressedImage(header=_header(i), format="png", data=np.frombuffer(payload, np.uint8))
            writer.write(images, i * 10**8, TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
            gt = _raw(np.zeros((48, 64), np.uint8), _header(i + label_offset_s), "mono8")
            writer.write(labels, i * 10**8 + 1, TYPESTORE.serialize_cdr(gt, "sensor_msgs/msg/Image"))


def test_corrupt_frames_are_skipped_counted_and_the_bag_finished(tmp_path, model):
    """One corrupt frame used to end the run with a traceback, exit 1, a partial bag and no
    summary. Now a corrupt PNG and a decompression bomb (12 MP at an 8-MP budget) are skipped."""
    from image_bombs import png_bomb
    good = encode_compressed(np.zeros((48, 64, 3), np.uint8), "png")
    source, out = tmp_path / "drive", tmp_path / "out"
    _synthetic_bag(source, 20, {7: good[:len(good) // 2], 12: png_bomb(4000, 3000)})
    result = _run(source, out, "--topic", "/camera/image/compressed", "--model", model,
                  "--labels-topic", "/camera/labels", "--max-image-pixels", "8000000")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "2 bad frames skipped" in result.stdout, result.stdout
    summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert (summary["frames"], summary["bad_frames"], summary["labelled_frames"]) == (18, 2, 18)
    assert "bag time 700000000" in summary["bad_frame_errors"][0] and "corrupt" in summary["bad_frame_errors"][0]
    assert "4000x3000 (12.0 MP), over the pixel budget of 8.0 MP" in summary["bad_frame_errors"][1]
    written = _read(out)
    assert len(written["/openpixel/label"]) == 18 and len(written["/camera/image/compressed"]) == 20


def test_labels_that_never_match_are_held_in_a_bounded_buffer(tmp_path, model):
    """A labels topic whose stamps never match grew memory with the bag (513 MB at 150 frames)."""
    from openpixel_ros.bag import BagSegmenter
    source = tmp_path / "drive"
    _synthetic_bag(source, 30, {}, label_offset_s=500)
    segmentor = Segmentor(model, adaptation=None)
    try:
        summary = BagSegmenter(segmentor).run(source, tmp_path / "out", "/camera/image/compressed",
                                              labels_topic="/camera/labels", progress=False, pairing_buffer=4)
    finally:
        segmentor.close()
    assert summary["frames"] == 30 and summary["labelled_frames"] == 0
    assert summary["unpaired_frames"] == 30 and summary["unpaired_labels"] == 30


def test_the_pairing_buffer_drops_its_oldest_entry():
    from openpixel_ros.bag import _Bounded
    buffer = _Bounded(3)
    for i in range(10):
        buffer.put(i, np.zeros(4))
        assert len(buffer) <= 3
    assert list(buffer) == [7, 8, 9] and buffer.evicted == 7
