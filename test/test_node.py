"""The node in its own process, started through its entry point with --params-file, over real DDS."""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from onnx_models import linear_classifier
from openpixel_ros.image_codec import SUPPORTED_ENCODINGS, decode_raw, decode_raw_rgb8, encode_compressed, encode_raw
from openpixel_ros.node.image_messages import array_to_image_msg, byte_array
from openpixel_ros.semantic import SemanticSegmenter
from openpixel_ros.visualize import colorize
from ros_helpers import node_command, running_node

WEIGHTS = [[4.0, -2.0, -2.0], [-2.0, 4.0, -2.0], [-2.0, -2.0, 4.0], [0.5, 0.5, 0.5]]
BIAS = [0.0, 0.0, 0.0, -0.9]
CLASSES = ["red", "green", "blue", "white"]


def make_frame(h=48, w=64) -> np.ndarray:
    """Smooth colour ramps with all four classes present."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = (255 * x / (w - 1)).astype(np.uint8)
    rgb[..., 1] = (255 * y / (h - 1)).astype(np.uint8)
    rgb[..., 2] = (255 * (1 - x / (w - 1))).astype(np.uint8)
    rgb[: h // 4, : w // 4] = 250
    return rgb


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "linear.onnx"
    linear_classifier(path, WEIGHTS, BIAS, classes=CLASSES)
    return path


def _running(ros_env, model, *extra, probe):
    # Exact label checks against the engine: lighting correction off (it is tested on its own).
    return running_node(ros_env, "-p", f"model_path:={model}", "-p", "foreground_classes:=[green, white]",
                        "-p", "diagnostics_period:=0.3", "-p", "adaptation.enabled:=false", *extra, probe=probe)


# Both input paths for sensor_msgs/Image: the CDR bytes parsed in place (default) and rclpy's messages.
@pytest.fixture(scope="module", params=["true", "false"], ids=["raw_cdr", "deserialised"])
def raw_node(ros_env, model, rcl, request):
    with _running(ros_env, model, "-p", f"transport.raw_cdr:={request.param}", probe="test_raw") as node:
        yield node


def _publish_until(probe, pub, msg, topics, stamp_sec, timeout=20.0):
    """Republish ``msg`` until every topic has a message with this stamp; return those messages."""
    def got():
        return all(any(m.header.stamp.sec == stamp_sec for m in probe.received[t]) for t in topics)
    assert probe.spin_until(got, timeout=timeout, every=lambda: pub.publish(msg)), \
        f"no output with stamp {stamp_sec} on {[t for t in topics]}"
    return {t: next(m for m in probe.received[t] if m.header.stamp.sec == stamp_sec) for t in topics}


def _header(sec):
    h = Header(frame_id=f"cam_{sec}")
    h.stamp.sec, h.stamp.nanosec = sec, 123
    return h


def _arr(msg):
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


OUT = ["/openpixel/label", "/openpixel/mask", "/openpixel/color", "/openpixel/overlay"]


def test_every_raw_encoding_gives_correct_outputs(raw_node, model):
    proc, probe = raw_node
    for t in OUT:
        probe.subscribe(Image, t)
    pub = probe.publisher(Image, "/image")
    reference = SemanticSegmenter.from_file(model)
    palette = reference.contract.color_table()
    rgb_true = make_frame()
    for i, encoding in enumerate(SUPPORTED_ENCODINGS, start=1):
        raw = encode_raw(rgb_true, encoding)
        msg = array_to_image_msg(raw, _header(i), encoding)
        out = _publish_until(probe, pub, msg, OUT, i)
        # What the engine gives when called directly on the same decoded array.
        rgb = decode_raw_rgb8(encoding, msg.height, msg.width, msg.step, False, msg.data)
        expected = reference.infer(rgb).labels
        for topic, m in out.items():
            assert (m.width, m.height) == (64, 48), (encoding, topic)
            assert m.header.frame_id == f"cam_{i}" and m.header.stamp.nanosec == 123, (encoding, topic)
        assert out["/openpixel/label"].encoding == "mono8"
        labels = _arr(out["/openpixel/label"])
        np.testing.assert_array_equal(labels, expected, err_msg=encoding)
        assert out["/openpixel/mask"].encoding == "mono8"
        mask = _arr(out["/openpixel/mask"])
        np.testing.assert_array_equal(mask, np.where(np.isin(labels, [1, 3]), 255, 0))
        assert out["/openpixel/color"].encoding == "rgb8"
        np.testing.assert_array_equal(_arr(out["/openpixel/color"]), colorize(labels, palette))
        overlay = _arr(out["/openpixel/overlay"]).astype(int)
        assert out["/openpixel/overlay"].encoding == "rgb8"
        bg = labels == 0
        np.testing.assert_array_equal(overlay[bg], rgb[bg])
        blend = 0.5 * rgb.astype(float) + 0.5 * colorize(labels, palette).astype(float)
        assert np.abs(overlay[~bg] - blend[~bg]).max() <= 1.0
    # The colour frame exercises all four classes, so the check above is not vacuous.
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_row_padding_and_big_endian_are_respected(raw_node, model):
    proc, probe = raw_node
    for t in OUT[:1]:
        probe.received.setdefault(t, []) or probe.subscribe(Image, t)
    pub = probe.publisher(Image, "/image")
    reference = SemanticSegmenter.from_file(model)
    rgb = make_frame()
    padded = np.zeros((48, 64 * 3 + 10), np.uint8)
    padded[:, :192] = rgb.reshape(48, -1)
    msg = Image(header=_header(100), height=48, width=64, encoding="rgb8", step=202)
    msg.data = byte_array(padded.tobytes())
    out = _publish_until(probe, pub, msg, OUT[:1], 100)
    np.testing.assert_array_equal(_arr(out["/openpixel/label"]), reference.infer(rgb).labels)
    mono16 = encode_raw(rgb, "mono16").astype(">u2")
    msg = Image(header=_header(101), height=48, width=64, encoding="mono16", step=128, is_bigendian=1)
    msg.data = byte_array(mono16.tobytes())
    out = _publish_until(probe, pub, msg, OUT[:1], 101)
    gray = (encode_raw(rgb, "mono16") >> 8).astype(np.uint8)
    np.testing.assert_array_equal(_arr(out["/openpixel/label"]),
                                  reference.infer(np.repeat(gray[..., None], 3, axis=2)).labels)


def test_bad_input_is_logged_and_the_node_keeps_running(raw_node):
    proc, probe = raw_node
    if "/openpixel/label" not in probe.received:
        probe.subscribe(Image, "/openpixel/label")
    diagnostics = probe.subscribe(DiagnosticArray, "/diagnostics")
    pub = probe.publisher(Image, "/image")
    bad = [  # with the codec's one-line reason, the same on both input paths
        (Image(header=_header(200), height=4, width=4, encoding="32FC1", step=16, data=byte_array(bytes(64))),
         "unsupported encoding '32FC1'"),
        (Image(header=_header(201), height=4, width=4, encoding="rgb8", step=12, data=byte_array(bytes(10))),
         "data has 10 bytes, rgb8 4x4 with step 12 needs exactly 48"),
        (Image(header=_header(202), height=0, width=0, encoding="rgb8", step=0), "zero-size image (0x0)"),
        (Image(header=_header(203), height=4, width=4, encoding="rgb8", step=5, data=byte_array(bytes(48))),
         "step 5 is smaller than width*3 = 12 bytes"),
    ]

    def latest(key, default="0"):
        values = [{kv.key: kv.value for kv in s.values}.get(key, default) for d in diagnostics for s in d.status]
        return values[-1] if values else default

    def errors_counted():
        return int(latest("errors"))

    # One bad frame at a time (the newest-frame policy may drop a frame that is not taken in time).
    for msg, reason in bad:
        before = errors_counted()
        assert probe.spin_until(lambda: errors_counted() > before, timeout=10, every=lambda: pub.publish(msg),
                                period=1.0), f"diagnostics never counted the bad frame {msg.encoding}"
        assert latest("last_error", "").startswith(f"dropped frame from /image: {reason}")
    assert probe.spin_until(lambda: errors_counted() >= len(bad), timeout=5)
    assert int(latest("frames_dropped_decode_error")) == errors_counted()
    assert proc.alive()
    good = array_to_image_msg(make_frame(), _header(210))
    _publish_until(probe, pub, good, ["/openpixel/label"], 210)
    assert not any(m.header.stamp.sec in (200, 201, 202, 203) for m in probe.received["/openpixel/label"])


def test_raw_cdr_refuses_other_wire_formats_as_bad_frames(raw_node, request):
    """transport.raw_cdr reads little-endian CDR only: other bytes are a counted decode error with one
    line naming the parameter, and the node goes on."""
    if request.node.callspec.id != "raw_cdr":
        pytest.skip("the deserialising path hands rclpy's own messages over")
    from rclpy.serialization import serialize_message
    proc, probe = raw_node
    diagnostics = probe.subscribe(DiagnosticArray, "/diagnostics")
    if "/openpixel/label" not in probe.received:
        probe.subscribe(Image, "/openpixel/label")
    pub = probe.publisher(Image, "/image")
    wire = bytearray(serialize_message(array_to_image_msg(make_frame(), _header(220))))
    wire[1] = 0x00  # big-endian encapsulation

    def last_error():
        values = [{kv.key: kv.value for kv in s.values}.get("last_error", "") for d in diagnostics for s in d.status]
        return values[-1] if values else ""
    assert probe.spin_until(lambda: "little-endian CDR" in last_error(), timeout=10,
                            every=lambda: pub.publish(bytes(wire)), period=1.0)
    assert "big-endian CDR; set transport.raw_cdr false" in last_error()
    good = array_to_image_msg(make_frame(), _header(221))
    _publish_until(probe, pub, good, ["/openpixel/label"], 221)
    assert proc.alive()


def _set_param(probe, name, value: ParameterValue):
    client = probe.node.create_client(SetParameters, "/openpixel/set_parameters")
    return probe.call(client, SetParameters.Request(parameters=[Parameter(name=name, value=value)])).results[0]


def test_parameters_are_validated_at_run_time(raw_node):
    _, probe = raw_node
    res = _set_param(probe, "overlay_alpha", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.5))
    assert not res.successful and "overlay_alpha" in res.reason
    res = _set_param(probe, "engine", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="tensorrt"))
    assert not res.successful
    res = _set_param(probe, "foreground_classes", ParameterValue(
        type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=["no_such_class"]))
    assert not res.successful and "no_such_class" in res.reason
    res = _set_param(probe, "foreground_classes", ParameterValue(
        type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=["red"]))
    assert res.successful
    # The new mask classes take effect on the next frame.
    if "/openpixel/mask" not in probe.received:
        probe.subscribe(Image, "/openpixel/mask")
    if "/openpixel/label" not in probe.received:
        probe.subscribe(Image, "/openpixel/label")
    pub = probe.publisher(Image, "/image")
    out = _publish_until(probe, pub, array_to_image_msg(make_frame(), _header(300)),
                         ["/openpixel/mask", "/openpixel/label"], 300)
    labels = _arr(out["/openpixel/label"])
    np.testing.assert_array_equal(_arr(out["/openpixel/mask"]), np.where(labels == 0, 255, 0))


def test_compressed_input(ros_env, model, rcl):
    with _running(ros_env, model, "-p", "input_transport:=compressed", "-r", "__node:=openpixel_c",
                  "-r", "image:=/cam/image_raw", probe="test_compressed") as (proc, probe):
        probe.subscribe(Image, "/openpixel_c/label")
        pub = probe.publisher(CompressedImage, "/cam/image_raw/compressed")  # <image>/compressed
        reference = SemanticSegmenter.from_file(model)
        rgb = make_frame()
        for i, fmt in enumerate(("png", "jpeg"), start=400):
            msg = CompressedImage(header=_header(i), format=fmt)
            msg.data = byte_array(encode_compressed(rgb, fmt))
            out = _publish_until(probe, pub, msg, ["/openpixel_c/label"], i)["/openpixel_c/label"]
            from openpixel_ros.image_codec import decode_compressed_rgb8
            expected = reference.infer(decode_compressed_rgb8(fmt, msg.data)).labels
            np.testing.assert_array_equal(_arr(out), expected)
        corrupt = CompressedImage(header=_header(450), format="jpeg")
        corrupt.data = byte_array(encode_compressed(rgb, "jpeg")[:40])
        pub.publish(corrupt)
        probe.spin_until(lambda: False, timeout=0.5)
        assert proc.alive()
        msg = CompressedImage(header=_header(451), format="png")
        msg.data = byte_array(encode_compressed(rgb, "png"))
        _publish_until(probe, pub, msg, ["/openpixel_c/label"], 451)
    log = proc.stop()
    assert "corrupt or truncated jpeg" in log


def test_more_than_255_classes_gives_mono16_labels(ros_env, tmp_path, rcl):
    rng = np.random.default_rng(0)
    n = 300
    weights, bias = rng.normal(size=(n, 3)) * 0.1, rng.normal(size=n) * 0.1
    weights[290] = [6.0, 0.0, 0.0]  # reddish pixels land beyond 255
    path = tmp_path / "many.onnx"
    linear_classifier(path, weights, bias)
    with running_node(ros_env, "-p", f"model_path:={path}", "-r", "__node:=openpixel_m",
                      "-p", "adaptation.enabled:=false", probe="test_mono16") as (_, probe):
        probe.subscribe(Image, "/openpixel_m/label")
        pub = probe.publisher(Image, "/image")
        rgb = make_frame()
        out = _publish_until(probe, pub, array_to_image_msg(rgb, _header(500)), ["/openpixel_m/label"], 500)
        msg = out["/openpixel_m/label"]
        assert msg.encoding == "mono16"
        expected = SemanticSegmenter.from_file(path).infer(rgb).labels
        assert expected.dtype == np.uint16 and expected.max() > 255
        np.testing.assert_array_equal(_arr(msg), expected)


@pytest.mark.parametrize("case", ["missing", "corrupt", "no_metadata", "wrong_output"])
def test_bad_model_stops_startup_with_one_clear_line(ros_env, tmp_path, case):
    import subprocess
    path = tmp_path / "model.onnx"
    expect = {"missing": "not found", "corrupt": "cannot load ONNX model", "no_metadata": "no model metadata",
              "wrong_output": "has no output"}[case]
    if case == "corrupt":
        path.write_bytes(b"\x08\x01garbage" * 20)
    elif case in ("no_metadata", "wrong_output"):
        contract = linear_classifier(path, WEIGHTS, BIAS)
        if case == "no_metadata":
            path.with_suffix(".json").unlink()
        else:
            import json
            contract["output"]["name"] = "logits"
            path.with_suffix(".json").write_text(json.dumps(contract))
    result = subprocess.run(node_command("-p", f"model_path:={path}"), env=ros_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "FATAL" in lines[0] and expect in lines[0], lines


def test_invalid_parameter_stops_startup(ros_env, model):
    import subprocess
    result = subprocess.run(node_command("-p", f"model_path:={model}", "-p", "overlay_alpha:=2.0"),
                            env=ros_env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "overlay_alpha must be <= 1.0" in result.stdout + result.stderr


def test_tensorrt_without_gpu_stops_with_the_fallback_named(ros_env, model):
    import subprocess
    result = subprocess.run(node_command("-p", f"model_path:={model}", "-p", "engine:=tensorrt",
                                         "-p", "device:=cuda"), env=ros_env, capture_output=True, text=True,
                            timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "engine: onnxruntime" in out, out
    assert len([line for line in out.splitlines() if line.strip()]) == 1, out


def test_missing_prompt_model_stops_startup(ros_env, model, tmp_path):
    import subprocess
    result = subprocess.run(node_command("-p", f"model_path:={model}", "-p", "prompt_engine:=sam",
                                         "-p", f"prompt_model:={tmp_path / 'absent.encoder.onnx'}"),
                            env=ros_env, capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "FATAL" in out and "absent.encoder.onnx" in out, out
