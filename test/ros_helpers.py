"""Helpers for tests that run the real node in its own process and talk to it over DDS."""
from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from openpixel_ros.node import service_calls

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def node_command(*ros_args: str, params_file=REPO / "config" / "openpixel.yaml", executable="openpixel_node"):
    """The node's console-script entry point with --ros-args --params-file, as users run it."""
    exe = VENV_BIN / executable
    assert exe.exists(), f"{exe} missing: run scripts/bootstrap.sh"
    return [str(exe), "--ros-args", "--params-file", str(params_file), *ros_args]


class NodeProcess:
    def __init__(self, cmd, env):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._output = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(subprocess.signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._output is None:
            self._output = self.proc.stdout.read() if self.proc.stdout else ""
        return self._output


class Probe:
    """A test-side rclpy node: publishers, subscribers that record, and a spin-until helper."""

    def __init__(self, name="test_probe"):
        self.node: Node = rclpy.create_node(name)
        self.received = {}

    def subscribe(self, msg_type, topic, reliable=True):
        self.received[topic] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(msg_type, topic, self.received[topic].append, qos)
        return self.received[topic]

    def spin_until(self, condition, timeout=15.0, every=None, period=0.2) -> bool:
        """Spin until ``condition()`` is true; call ``every()`` each ``period`` s (e.g. to republish)."""
        end = time.monotonic() + timeout
        next_call = 0.0
        while time.monotonic() < end:
            if every is not None and time.monotonic() >= next_call:
                every()
                next_call = time.monotonic() + period
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if condition():
                return True
        return condition()

    def wait_for_subscriber(self, publisher, timeout=15.0) -> bool:
        return self.spin_until(lambda: publisher.get_subscription_count() > 0, timeout)

    def publisher(self, msg_type, topic, depth=10, timeout=15.0):
        """A publisher on ``topic``, returned once something (the node under test) subscribes to it."""
        publisher = self.node.create_publisher(msg_type, topic, depth)
        assert self.wait_for_subscriber(publisher, timeout), f"nothing subscribed to {topic} within {timeout} s"
        return publisher

    def call(self, client, request, timeout=20.0, resend_after=5.0):
        """The answer of an idempotent service call (None if none came within ``timeout`` s); see
        ``call_until_answered``."""
        return call_until_answered(self.node, client, request, timeout, resend_after)

    def await_answers(self, client, harmless_request, timeout=20.0, node=None):
        """Return once answers reach ``client`` (a client of ``node``, by default this probe's):
        ``harmless_request``, one that changes nothing on the server, is sent until it is answered.
        Do this before a call that must not be sent twice (a lifecycle transition, a counted burst):
        its answer can then no longer be lost to discovery."""
        answer = call_until_answered(node or self.node, client, harmless_request, timeout)
        assert answer is not None, f"{client.srv_name} never answered within {timeout} s"
        return answer

    def destroy(self):
        self.node.destroy_node()


def call_until_answered(node, client, request, timeout=20.0, resend_after=5.0):
    """``service_calls.call_until_answered`` spinning ``node``: the answer of an idempotent call made
    on it, resent while rmw may drop answers to a new client (None if none came in ``timeout`` s)."""
    return service_calls.call_until_answered(client, request, lambda t: rclpy.spin_once(node, timeout_sec=t),
                                             timeout, resend_after)


@contextmanager
def running_process(cmd, env, probe="test_probe"):
    """A ROS process ``cmd`` (a node under test) and a ``Probe`` named ``probe`` to talk to it:
    ``with running_process(cmd, ros_env) as (proc, probe):``. Needs rclpy initialised (the ``rcl``
    fixture). On leaving, the probe goes, the process stops and its log is printed (pytest shows it when
    the test fails); ``proc.stop()`` returns that log again for checks on it."""
    proc = NodeProcess(cmd, env)
    try:
        test_probe = Probe(probe)
        try:
            yield proc, test_probe
        finally:
            test_probe.destroy()
    finally:
        print(proc.stop())


def running_node(env, *ros_args, probe="test_probe", **command):
    """``running_process`` for the node's entry point: ``node_command(*ros_args, **command)``.
    ``with running_node(ros_env, "-p", "model_path:=...", probe="test_x") as (proc, probe):``"""
    return running_process(node_command(*ros_args, **command), env, probe)
