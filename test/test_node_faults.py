"""Fuzz the running node with every class of bad input; after each, a good frame must still give
the correct label, and the node must never print a traceback. Start-up faults end in one FATAL
line and exit code 1."""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from openpixel_ros.image_codec import SUPPORTED_ENCODINGS, encode_compressed, encode_raw
from openpixel_ros.log_text import MAX_LINE
from openpixel_ros.node.image_messages import array_to_image_msg, byte_array
from openpixel_ros.node.parameters import all_parameters
from openpixel_ros.semantic import SemanticSegmenter
from openpixel_ros.srv import SegmentAtPoints
from ros_helpers import NodeProcess, Probe, node_command
from test_node import make_frame, model  # noqa: F401 (model: fixture)

H, W = 48, 64


class Harness:
    """A node process, a probe publishing to it, and the good-frame check."""

    def __init__(self, ros_env, model, name, transport="raw"):  # noqa: F811 (fixture)
        self.name = name
        self.proc = NodeProcess(node_command(
            "-p", f"model_path:={model}", "-r", f"__node:={name}", "-r", f"image:=/{name}_cam/image",
            "-p", "adaptation.enabled:=false", "-p", "diagnostics_period:=0.1",
            "-p", f"input_transport:={transport}"), ros_env)
        self.probe = Probe(f"fuzz_{name}")
        self.labels = self.probe.subscribe(Image, f"/{name}/label")
        self.diagnostics = self.probe.subscribe(DiagnosticArray, "/diagnostics")
        topic, kind = (f"/{name}_cam/image/compressed", CompressedImage) if transport == "compressed" else \
            (f"/{name}_cam/image", Image)
        self.pub = self.probe.publisher(kind, topic)
        self.transport = transport
        self.reference = SemanticSegmenter.from_file(model)
        self.frame = make_frame(H, W)
        self.stamp = 10_000
        self.good_checks = 0

    def diag(self) -> dict:
        values = [{kv.key: kv.value for kv in s.values} for d in self.diagnostics for s in d.status
                  if s.name == f"/{self.name}: segmentation"]
        return values[-1] if values else {}

    def counter(self, key) -> int:
        return int(self.diag().get(key, 0))

    def header(self):
        self.stamp += 1
        h = Header(frame_id="fuzz")
        h.stamp.sec = self.stamp
        return h

    def send_bad_frame(self, msg, what):
        """Publish a bad frame once (reliable: it arrives) and wait until it is counted as a decode error."""
        msg.header = self.header()
        before = self.counter("frames_dropped_decode_error")
        assert self.probe.spin_until(lambda: self.counter("frames_dropped_decode_error") > before, timeout=10,
                                     every=lambda: self.pub.publish(msg), period=3.0), \
            f"{what}: never counted as a decode error"
        last_error = self.diag().get("last_error", "")
        assert 0 < len(last_error) <= MAX_LINE and "\n" not in last_error, (what, last_error)
        return last_error

    def assert_good_frame_labelled(self, what):
        """A good frame after the fault still gives exactly the engine's labels."""
        header = self.header()
        if self.transport == "compressed":
            msg = CompressedImage(header=header, format="png")
            msg.data = byte_array(encode_compressed(self.frame, "png"))
        else:
            msg = array_to_image_msg(self.frame, header)
        stamp = header.stamp.sec
        assert self.probe.spin_until(lambda: any(m.header.stamp.sec == stamp for m in self.labels), timeout=15,
                                     every=lambda: self.pub.publish(msg), period=1.0), \
            f"no label for a good frame after: {what}"
        label = next(m for m in self.labels if m.header.stamp.sec == stamp)
        got = np.frombuffer(bytes(label.data), np.uint8).reshape(H, W)
        np.testing.assert_array_equal(got, self.reference.infer(self.frame).labels, err_msg=what)
        assert self.proc.alive(), f"node died after: {what}"
        self.labels.clear()
        self.good_checks += 1

    def close(self) -> str:
        self.probe.destroy()
        return self.proc.stop()


def _assert_clean(log: str):
    """0 unhandled exceptions: no traceback, no 'unexpected error', every line bounded."""
    assert "Traceback" not in log and "unexpected error" not in log, log
    long_lines = [line for line in log.splitlines() if len(line) > MAX_LINE + 80]  # + the logger's prefix
    assert not long_lines, long_lines


def _raw_faults():
    """(description, Image) for every encoding x step/size fault, and unknown encodings."""
    rgb = make_frame(H, W)
    for encoding in SUPPORTED_ENCODINGS:
        good = array_to_image_msg(encode_raw(rgb, encoding), None, encoding)
        data = bytes(good.data)

        def image(**fields):
            msg = Image(height=good.height, width=good.width, encoding=encoding, step=good.step,
                        is_bigendian=good.is_bigendian)
            msg.data = byte_array(fields.pop("data", data))
            for k, v in fields.items():
                setattr(msg, k, v)
            return msg
        yield f"{encoding} data one byte short", image(data=data[:-1])
        yield f"{encoding} data one byte long", image(data=data + b"\0")
        yield f"{encoding} step below the row size", image(step=good.step - 1)
        yield f"{encoding} zero height", image(height=0, data=b"")
        yield f"{encoding} width larger than the data", image(width=good.width * 2)
    yield "unknown encoding 32FC1", Image(height=H, width=W, encoding="32FC1", step=W * 4,
                                          data=byte_array(bytes(H * W * 4)))
    yield "empty encoding", Image(height=H, width=W, encoding="", step=W * 3, data=byte_array(bytes(H * W * 3)))
    yield "a 5,000-character encoding", Image(height=H, width=W, encoding="x" * 5000, step=W * 3,
                                              data=byte_array(bytes(H * W * 3)))
    yield "odd width yuv422", Image(height=H, width=W - 1, encoding="yuv422", step=(W - 1) * 2,
                                    data=byte_array(bytes(H * (W - 1) * 2)))


def _compressed_faults():
    rgb = make_frame(H, W)
    jpeg, png = encode_compressed(rgb, "jpeg"), encode_compressed(rgb, "png")
    bmp = cv2.imencode(".bmp", rgb)[1].tobytes()
    tiff = cv2.imencode(".tiff", rgb)[1].tobytes()
    rng = np.random.default_rng(0)
    for fmt, data, what in [
        ("jpeg", jpeg[:40], "truncated jpeg"), ("png", png[:60], "truncated png"),
        ("jpeg", b"", "empty payload"), ("jpeg", bmp, "BMP labelled jpeg"), ("png", tiff, "TIFF labelled png"),
        ("jpeg", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(), "random bytes"),
        ("jpeg", b"\xff\xd8\xff" + bytes(500), "jpeg signature, then zeros"),
        ("tiff", tiff, "format tiff"), ("h264", jpeg, "format h264"), ("x" * 5000, jpeg, "5,000-character format"),
    ]:
        msg = CompressedImage(format=fmt)
        msg.data = byte_array(data)
        yield what, msg


def _set_parameter(probe, node_name, name, value: ParameterValue):
    client = probe.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    answer = probe.call(client, SetParameters.Request(parameters=[Parameter(name=name, value=value)]))
    assert answer is not None, f"no answer from /{node_name}/set_parameters"
    probe.node.destroy_client(client)
    return answer.results[0]


def _bad_requests():
    good_point = [Point(x=10.0, y=10.0)]
    mask = array_to_image_msg(np.zeros((H, W), np.uint8), None, "mono8")
    small_mask = array_to_image_msg(np.zeros((4, 4), np.uint8), None, "mono8")
    rgb_mask = array_to_image_msg(np.zeros((H, W, 3), np.uint8), None, "rgb8")
    bad_image = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=byte_array(bytes(10)))
    return [
        ("no points, no scribbles and no box", dict()),
        ("NaN point", dict(points=[Point(x=float("nan"), y=1.0)], labels=[1])),
        ("inf point", dict(points=[Point(x=float("inf"), y=1.0)], labels=[1])),
        ("point at x = 1e300", dict(points=[Point(x=1e300, y=1.0)], labels=[1])),
        ("negative point", dict(points=[Point(x=-5.0, y=1.0)], labels=[1])),
        ("labels/points mismatch", dict(points=good_point, labels=[1, 0])),
        ("label 2", dict(points=good_point, labels=[2])),
        ("degenerate box", dict(box=RegionOfInterest(x_offset=5, y_offset=5, width=0, height=3), labels=[])),
        ("box outside", dict(box=RegionOfInterest(x_offset=1000, y_offset=1000, width=5, height=5))),
        ("previous_mask rgb8", dict(points=good_point, labels=[1], previous_mask=rgb_mask)),
        ("previous_mask wrong size", dict(points=good_point, labels=[1], previous_mask=small_mask)),
        ("request image too short", dict(image=bad_image, points=good_point, labels=[1])),
        ("request image 32FC1", dict(image=Image(height=H, width=W, encoding="32FC1", step=W * 4,
                                                 data=byte_array(bytes(H * W * 4))), points=good_point,
                                     labels=[1])),
        ("5,000 points outside", dict(points=[Point(x=1e9, y=1e9)] * 5000, labels=[1] * 5000)),
    ], mask


def test_raw_node_survives_every_bad_input(ros_env, model, rcl):  # noqa: F811 (fixture)
    h = Harness(ros_env, model, "fuzz_raw")
    try:
        h.assert_good_frame_labelled("start")
        raw_faults = list(_raw_faults())
        for what, msg in raw_faults:
            error = h.send_bad_frame(msg, what)
            if "data one byte" in what:  # docs/nodes.md: data must be exactly step*height bytes
                assert "needs exactly" in error, error
            h.assert_good_frame_labelled(what)

        # Bad service requests: success=false with one bounded line, then the frame path is intact.
        client = h.probe.node.create_client(SegmentAtPoints, "/fuzz_raw/segment_at_points")
        assert client.wait_for_service(timeout_sec=10)
        requests, _ = _bad_requests()
        for what, fields in requests:
            request = SegmentAtPoints.Request()
            for k, v in fields.items():
                setattr(request, k, v)
            response = h.probe.call(client, request)  # refused, so idempotent: resent if lost
            assert response is not None, f"{what}: no answer"
            assert not response.success, what
            assert 0 < len(response.message) <= MAX_LINE and "\n" not in response.message, (what, response.message)
            h.assert_good_frame_labelled(f"request: {what}")

        # Bad clicks on ~/click: counted as errors, bounded text.
        click_pub = h.probe.node.create_publisher(PointStamped, "/fuzz_raw/click", 10)
        assert h.probe.wait_for_subscriber(click_pub)
        for x in (float("nan"), 1e300, -1.0, float("inf")):
            before = h.counter("errors")
            click = PointStamped(header=Header(frame_id="fuzz"), point=Point(x=x, y=5.0))
            assert h.probe.spin_until(lambda: h.counter("errors") > before, timeout=10,
                                      every=lambda: click_pub.publish(click), period=3.0), f"click x={x}"
            assert len(h.diag()["last_error"]) <= MAX_LINE
            h.assert_good_frame_labelled(f"click at x={x}")

        # Bad parameters at run time: every float parameter refuses NaN and +-inf; wrong types; ranges.
        for spec in all_parameters():
            bad = []
            if isinstance(spec.default, float) and not spec.read_only:
                bad += [ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
                        for v in (float("nan"), float("inf"), float("-inf"))]
            if not isinstance(spec.default, str):
                bad.append(ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="abc"))
            if spec.max is not None and not spec.read_only:
                bad.append(ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=spec.max * 2 + 1)
                           if isinstance(spec.default, float) else
                           ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(spec.max) * 2 + 1))
            for value in bad:
                result = _set_parameter(h.probe, "fuzz_raw", spec.name, value)
                assert not result.successful, (spec.name, value)
                assert len(result.reason) <= MAX_LINE, result.reason
        h.assert_good_frame_labelled("bad parameters")
        assert h.good_checks == 1 + len(raw_faults) + len(requests) + 4 + 1
        print(f"fuzz raw node: {len(raw_faults)} bad frames, {len(requests)} bad requests, 4 bad clicks, "
              f"bad parameters; {h.good_checks} good-frame checks passed")
    finally:
        log = h.close()
    _assert_clean(log)


def test_compressed_node_survives_junk(ros_env, model, rcl):  # noqa: F811 (fixture)
    h = Harness(ros_env, model, "fuzz_c", transport="compressed")
    try:
        h.assert_good_frame_labelled("start")
        for what, msg in _compressed_faults():
            error = h.send_bad_frame(msg, what)
            if what == "BMP labelled jpeg":  # docs/nodes.md: jpeg and png payloads only
                assert "a BMP payload; supported: jpeg, png" in error, error
            h.assert_good_frame_labelled(what)
    finally:
        log = h.close()
    _assert_clean(log)


STARTUP_FAULTS = {
    "wrong type (string for double)": (["-p", "overlay_alpha:=abc"], "overlay_alpha must be a double"),
    "integer for double": (["-p", "max_rate_hz:=5"], "write 5.0"),
    "double for integer": (["-p", "threads:=1.5"], "threads must be an integer"),
    "string for string array": (["-p", "foreground_classes:=abc"], "must be a string array"),
    "NaN alpha": (["-p", "overlay_alpha:=.nan"], "overlay_alpha must be a finite number"),
    "NaN diagnostics period": (["-p", "diagnostics_period:=.nan"], "diagnostics_period must be a finite"),
    "inf timeout": (["-p", "input_timeout:=.inf"], "input_timeout must be a finite"),
    "NaN adaptation": (["-p", "adaptation.smoothing:=.nan"], "adaptation.smoothing must be a finite"),
    "out of range": (["-p", "qos.depth:=0"], "qos.depth must be >= 1"),
    "unknown choice": (["-p", "input_transport:=h264"], "input_transport must be one of"),
    "missing model": (["-p", "model_path:=/nonexistent/model.onnx"], "not found"),
    "missing SAM model": (["-p", "prompt_engine:=sam", "-p", "prompt_model:=/nonexistent/sam.encoder.onnx"],
                          "prompt model file not found"),
    "SAM without a model": (["-p", "prompt_engine:=sam"], "needs model="),
    # the road model's click decoder is retired: naming the road model points at the click network
    "road model as prompt model": (["-p", "prompt_engine:=openpixel", "-p", "prompt_model:=openpixel_road"],
                                   "use the click network openpixel_click"),
    "tensorrt on cpu": (["-p", "engine:=tensorrt", "-p", "device:=cpu"], "engine tensorrt needs device cuda"),
    "bad adaptation combination": (["-p", "adaptation.release_score:=0.5"], "release_score < activation_score"),
    "unknown mask class": (["-p", "foreground_classes:=[nope]"], "unknown class 'nope'"),
    "missing params file": (["--params-file", "/nonexistent/params.yaml"], "No such file"),
    # Ranges a 4K frame can afford (issue 17): these values used to be accepted and stop inference.
    "denoise diameter beyond the range": (["-p", "adaptation.denoise_diameter:=1001"],
                                          "adaptation.denoise_diameter must be <= 15"),
    "CLAHE tiles 2^63-1": (["-p", "adaptation.clahe_tiles:=9223372036854775807"],
                           "adaptation.clahe_tiles must be <= 64"),
    "zero daylight luminance": (["-p", "adaptation.daylight_luminance_low:=0.0"],
                                "adaptation.daylight_luminance_low must be >= 0.001"),
}


@pytest.mark.parametrize("case", list(STARTUP_FAULTS))
def test_startup_fault_gives_one_fatal_line(ros_env, model, case):  # noqa: F811 (fixture)
    args, expect = STARTUP_FAULTS[case]
    extra = [] if "model_path" in " ".join(args) else ["-p", f"model_path:={model}"]
    result = subprocess.run(node_command(*extra, *args), env=ros_env, capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1, lines
    assert len(lines) == 1 and "FATAL" in lines[0] and expect in lines[0], lines
    assert len(lines[0]) <= MAX_LINE + 80


def test_diagnostics_period_changes_at_run_time(ros_env, model, rcl):  # noqa: F811 (fixture)
    """The diagnostics timer follows diagnostics_period (it used to keep its start-up period)."""
    h = Harness(ros_env, model, "fuzz_period")
    try:
        def rate(seconds):
            start = len(h.diagnostics)
            h.probe.spin_until(lambda: False, timeout=seconds)
            return [d for d in h.diagnostics[start:] if any(s.name == "/fuzz_period: segmentation" for s in d.status)]
        assert len(rate(1.5)) >= 8  # started at 0.1 s
        result = _set_parameter(h.probe, "fuzz_period", "diagnostics_period",
                                ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.0))
        assert result.successful, result.reason
        h.probe.spin_until(lambda: False, timeout=1.2)  # let the old period's last message pass
        assert 1 <= len(rate(3.5)) <= 4
    finally:
        h.close()


def test_a_model_declaring_an_absurd_input_is_one_fatal_line(ros_env, tmp_path):
    """Issue 17: metadata declaring a 30000x30000 input made every frame try to allocate 10 GiB."""
    from onnx_models import linear_classifier
    huge = tmp_path / "huge.onnx"
    linear_classifier(huge, np.eye(2, 3), np.zeros(2), height=30000, width=30000)
    result = subprocess.run(node_command("-p", f"model_path:={huge}"), env=ros_env, capture_output=True, text=True,
                            timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "FATAL" in lines[0], lines
    assert "input size 30000x30000 is outside what a frame can afford" in lines[0], lines
