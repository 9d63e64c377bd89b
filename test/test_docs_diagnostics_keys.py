"""Every diagnostics key that docs/ (and the README) name is one the running node publishes.

docs/troubleshooting.md once sent users looking for `frames_skipped_no_subscribers`; the key is
`frames_dropped_no_subscribers`.
"""
from __future__ import annotations

import re

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from onnx_models import linear_classifier
from openpixel_ros.node.image_messages import array_to_image_msg
from ros_helpers import REPO, running_node

# What a diagnostics key looks like in the docs: the families the node's keys belong to.
# (Parameters such as `max_rate_hz` or `click.queue_size` are not in these families.)
KEY_PATTERN = re.compile(r"`((?:frames|prompt_requests|clicks|latency|camera_info)_[a-z0-9_]+|"
                         r"engine_(?:p\d+|median)_ms|(?:input|processed)_rate_hz|adaptation_(?:score|active))`")


def documented_keys() -> dict:
    """key -> the files that name it."""
    found = {}
    for path in sorted(REPO.glob("docs/**/*.md")) + [REPO / "README.md"]:
        for key in KEY_PATTERN.findall(path.read_text()):
            found.setdefault(key, set()).add(str(path.relative_to(REPO)))
    return found


def test_the_pattern_finds_the_documented_keys():
    keys = documented_keys()
    # The test must look at something: the docs name these today.
    assert {"frames_dropped_no_subscribers", "engine_p50_ms", "input_rate_hz", "clicks_dropped_busy"} <= set(keys)
    assert KEY_PATTERN.search("`frames_skipped_no_subscribers`")  # the old typo would be caught


def test_every_documented_diagnostics_key_exists(ros_env, rcl, tmp_path):
    model = tmp_path / "rgb.onnx"
    linear_classifier(model, [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0]], [0.0, 0.0], classes=["red", "green"])
    with running_node(ros_env, "-p", f"model_path:={model}", "-p", "diagnostics_period:=0.2",
                      "-r", "image:=/keys/image", probe="test_docs_keys") as (proc, probe):
        diagnostics = probe.subscribe(DiagnosticArray, "/diagnostics")
        labels = probe.subscribe(Image, "/openpixel/label")
        pub = probe.node.create_publisher(Image, "/keys/image", 10)
        msg = array_to_image_msg(np.full((8, 12, 3), 200, np.uint8), None, "rgb8")
        published = set()

        def keys_after_a_frame():
            # Keys from a message sent after a frame was processed (adaptation keys appear then).
            if labels and diagnostics:
                published.update(kv.key for kv in diagnostics[-1].status[0].values)
            return "adaptation_score" in published

        assert probe.spin_until(keys_after_a_frame, timeout=60, every=lambda: pub.publish(msg)), proc.stop()
    missing = {key: files for key, files in documented_keys().items() if key not in published}
    assert not missing, f"docs name diagnostics keys the node does not publish: {missing}; it publishes " \
                        f"{sorted(published)}"
