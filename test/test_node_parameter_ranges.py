"""Every numeric parameter has a range a 4K frame can afford (issue 17, fault 2): a running node
refuses values outside it with one bounded line and keeps segmenting; ros2 param describe shows
the ranges and read-only flags; a worker stuck in one stage turns diagnostics ERROR, naming it."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters

from openpixel_ros.log_text import MAX_LINE
from openpixel_ros.node.image_messages import array_to_image_msg
from openpixel_ros.node.parameters import all_parameters
from test_node import model  # noqa: F401 (fixture)
from test_node_faults import Harness, _set_parameter


def _value(v) -> ParameterValue:
    if isinstance(v, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
    if isinstance(v, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
    if isinstance(v, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
    if isinstance(v, list):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=v)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)


def _call(h, srv_type, service, request):
    client = h.probe.node.create_client(srv_type, f"/{h.name}/{service}")
    answer = h.probe.call(client, request)
    assert answer is not None, f"{service}: no answer"
    h.probe.node.destroy_client(client)
    return answer


# (parameter, value): each used to be accepted and then stopped or broke inference, or (the long
# strings) was refused with a reason as long as the value.
REFUSED = [
    ("adaptation.denoise_diameter", 1001),          # the worker sat in cv2.bilateralFilter for good
    ("adaptation.denoise_diameter", 2 ** 63 - 1),
    ("adaptation.clahe_tiles", 2000),               # RSS 309 -> 1291 MB
    ("adaptation.clahe_tiles", 2 ** 63 - 1),
    ("adaptation.daylight_luminance_low", 0.0),     # every frame failed (log of 0)
    ("adaptation.stats_max_side", 2 ** 40),
    ("adaptation.noise_crop", 10 ** 9),
    ("adaptation.mode", "x" * 1_000_000),
    ("foreground_classes", ["y" * 1_000_000]),
    ("label_upsampling", "z" * 1_000_000),
]


def test_out_of_range_values_are_refused_in_one_line_and_inference_goes_on(ros_env, model, rcl):  # noqa: F811
    h = Harness(ros_env, model, "ranges")
    try:
        h.assert_good_frame_labelled("start")
        for name, value in REFUSED:
            result = _set_parameter(h.probe, h.name, name, _value(value))
            shown = value if not isinstance(value, (str, list)) else f"a {len(str(value))}-character value"
            assert not result.successful, f"{name} accepted {shown}"
            assert 0 < len(result.reason) <= MAX_LINE and "\n" not in result.reason, (name, len(result.reason))
            h.assert_good_frame_labelled(f"{name} := {shown}")
        got = _call(h, GetParameters, "get_parameters", GetParameters.Request(
            names=["adaptation.denoise_diameter", "adaptation.clahe_tiles"]))
        assert [v.integer_value for v in got.values] == [9, 8], "a refused value was stored"
    finally:
        log = h.close()
    assert "Traceback" not in log, log


def test_descriptors_carry_the_table_ranges_and_read_only(ros_env, model, rcl):  # noqa: F811
    """ros2 param describe: each numeric parameter's range and each start-up parameter's read_only
    come from the one table (parameters.py)."""
    h = Harness(ros_env, model, "describe")
    try:
        specs = all_parameters()
        answer = _call(h, DescribeParameters, "describe_parameters",
                       DescribeParameters.Request(names=[s.name for s in specs]))
        assert len(answer.descriptors) == len(specs)
        numeric = 0
        for spec, d in zip(specs, answer.descriptors):
            assert d.name == spec.name and d.read_only == spec.read_only, spec.name
            assert d.description.startswith(spec.description[:40]), spec.name
            if isinstance(spec.default, bool) or not isinstance(spec.default, (int, float)):
                assert not d.integer_range and not d.floating_point_range, spec.name
                continue
            numeric += 1
            ranges = d.integer_range if isinstance(spec.default, int) else d.floating_point_range
            assert len(ranges) == 1, f"{spec.name} has no range"
            assert (ranges[0].from_value, ranges[0].to_value) == (spec.min, spec.max), spec.name
        assert numeric >= 40
    finally:
        h.close()


def test_a_worker_stuck_in_one_stage_turns_diagnostics_error_naming_it(ros_env, model, rcl):  # noqa: F811
    h = Harness(ros_env, model, "stuck")
    try:
        h.assert_good_frame_labelled("start")
        for name, value in (("diagnostics.stuck_timeout", 1.0), ("debug.engine_delay_ms", 6000.0)):
            result = _set_parameter(h.probe, h.name, name, _value(value))
            assert result.successful, (name, result.reason)

        def status():
            found = [s for d in h.diagnostics for s in d.status if s.name == f"/{h.name}: segmentation"]
            return found[-1] if found else None
        msg = array_to_image_msg(h.frame, h.header())
        assert h.probe.spin_until(lambda: status() is not None and status().level == DiagnosticStatus.ERROR,
                                  timeout=20, every=lambda: h.pub.publish(msg), period=2.0), \
            f"no ERROR while the worker sleeps 6 s per frame: {status()}"
        assert "stuck in inference" in status().message, status().message
        assert _set_parameter(h.probe, h.name, "debug.engine_delay_ms", _value(0.0)).successful
        h.assert_good_frame_labelled("after the stall")  # and it recovers
        assert h.probe.spin_until(lambda: status().level != DiagnosticStatus.ERROR, timeout=20)
    finally:
        h.close()
