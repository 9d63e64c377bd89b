"""The README's demo, end to end: camera and node processes, PNGs, an .mcap bag, a summary."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_demo_runs_and_writes_its_outputs(ros_env, tmp_path):
    """On the clip bundled in the package (what a fresh machine without ../shared gets), the
    default model marks road scenes: road, sky and cars take their share of the pixels."""
    from openpixel_ros.frame_sources import BUNDLED_CLIP
    demo = Path(sys.executable).parent / "openpixel_demo"
    result = subprocess.run([str(demo), "--duration", "3", "--out", str(tmp_path), "--pngs", "2",
                             "--source", str(BUNDLED_CLIP), "--rate", "12.5"],
                            env=ros_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fps" in result.stdout and "latency" in result.stdout and "dropped" in result.stdout
    assert "class share" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_segmented"] > 5 and summary["fps"] > 1
    share = summary["class_share"]
    assert abs(sum(share.values()) - 1.0) < 1e-3
    assert share["Road"] > 0.15 and share["Sky"] > 0.05 and share["Car"] > 0.002, share
    assert sorted(p.name for p in tmp_path.glob("overlay_*.png")) == ["overlay_00.png", "overlay_01.png"]

    from rosbags.highlevel import AnyReader
    with AnyReader([tmp_path / "outputs_bag"]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics["/openpixel/label"] == "sensor_msgs/msg/Image"
        labels = [reader.deserialize(raw, c.msgtype) for c, _, raw in
                  reader.messages(connections=[c for c in reader.connections if c.topic == "/openpixel/label"])]
    assert len(labels) >= 5
    first = labels[0]
    assert first.encoding == "mono8" and first.header.frame_id == "camera"
    values = np.frombuffer(first.data, np.uint8)
    assert values.size == first.height * first.step and set(np.unique(values)) <= set(range(11))


def test_bundled_clip_is_real_dashcam_footage():
    """The package's own clip: 75 frames of 480x270 video, readable by OpenCV, with its licence notice."""
    from openpixel_ros.frame_sources import BUNDLED_CLIP, iter_frames
    frames = list(iter_frames(str(BUNDLED_CLIP), loop=False))
    assert len(frames) == 75 and frames[0].shape == (270, 480, 3)
    assert "MIT License" in (BUNDLED_CLIP.parent / "NOTICE.md").read_text()


def test_sample_camera_works_without_shared_data():
    """The demo's fallback source: real photographs bundled in scikit-image, no download."""
    from openpixel_ros.frame_sources import iter_frames, sample_images
    frames = sample_images()
    assert len(frames) >= 4 and all(f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8 for f in frames)
    looped = iter_frames("samples", loop=True, size=(320, 240))
    assert all(next(looped).shape == (240, 320, 3) for _ in range(2 * len(frames)))
