"""The generated interfaces work over DDS between two processes.

A SegmentAtPoints server (which also publishes AdaptationState) runs in one process, a client
in another; both are this file run as a script. The server echoes every request field into a
response field of the same type, so the test sees each field cross the wire in both directions.
Needs the interfaces built into the venv (scripts/bootstrap.sh).
"""
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros  # a server and a client process talk over DDS

PEER_TIMEOUT_S = 12.0

# float32 fields get values that float32 holds exactly, so the comparisons can be exact.
ADAPTATION_FIELDS = {
    'entropy': 0.625, 'mean_luminance': 0.375, 'contrast': 0.125, 'clipped_dark': 0.03125,
    'clipped_bright': 0.0625, 'score': 0.75, 'score_smoothed': 0.5, 'active': True, 'gamma': 1.5,
    'gain': 1.25, 'clahe_clip_limit': 2.0, 'denoise_strength': 0.25,
}
ADAPTATION_STAMP = (123, 456)
ADAPTATION_FRAME_ID = 'camera_optical'


def to_plain(value):
    """A message, array or scalar as JSON-ready dicts, lists and scalars."""
    if hasattr(value, 'get_fields_and_field_types'):
        return {name: to_plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple)) or type(value).__name__ in ('array', 'ndarray'):
        return [to_plain(item) for item in value]
    if isinstance(value, bytes):
        return list(value)
    return value


def build_image(width, height, first_value, encoding):
    """A small sensor_msgs/Image with distinct pixel values."""
    from sensor_msgs.msg import Image

    image = Image(width=width, height=height, encoding=encoding, step=width, is_bigendian=0)
    image.header.frame_id = 'camera_optical'
    image.header.stamp.sec, image.header.stamp.nanosec = 1700000000, 250
    image.data = [(first_value + index) % 256 for index in range(width * height)]
    return image


def build_request():
    """A SegmentAtPoints request with every field set to something other than its default."""
    from geometry_msgs.msg import Point
    from openpixel_ros.msg import Scribble
    from openpixel_ros.srv import SegmentAtPoints

    request = SegmentAtPoints.Request()
    request.image = build_image(4, 3, first_value=10, encoding='mono8')
    request.points = [Point(x=1.5, y=2.25, z=0.0), Point(x=3.0, y=0.5, z=7.0)]
    request.labels = [1, 0]
    request.scribbles = [Scribble(points=[Point(x=0.5, y=1.0), Point(x=2.0, y=2.5, z=3.0)], label=1),
                         Scribble(points=[Point(x=3.5, y=0.25)], label=0)]
    request.box.x_offset, request.box.y_offset = 1, 2
    request.box.width, request.box.height, request.box.do_rectify = 3, 1, True
    request.previous_mask = build_image(4, 3, first_value=200, encoding='mono8')
    request.multimask_output = True
    return request


def answer_request(request, response):
    """Server side: put each request field into a response field of the same type."""
    response.success = True
    scribbles = [(s.label, [(p.x, p.y, p.z) for p in s.points]) for s in request.scribbles]
    response.message = f'labels={list(request.labels)} multimask={request.multimask_output} scribbles={scribbles}'
    response.mask = request.image
    response.score = float(sum(request.labels)) / len(request.labels)
    response.bbox = request.box
    response.area = len(request.points)
    response.candidate_masks = [request.previous_mask]
    response.candidate_scores = [coordinate for point in request.points for coordinate in (point.x, point.y)]
    return response


def run_server(service_name, topic_name):
    """Serve SegmentAtPoints and publish AdaptationState every 50 ms until terminated."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from openpixel_ros.msg import AdaptationState
    from openpixel_ros.srv import SegmentAtPoints

    rclpy.init()
    node = rclpy.create_node('interfaces_test_server')
    node.create_service(SegmentAtPoints, service_name, answer_request)
    publisher = node.create_publisher(AdaptationState, topic_name, 10)
    state = AdaptationState(**ADAPTATION_FIELDS)
    state.header.stamp.sec, state.header.stamp.nanosec = ADAPTATION_STAMP
    state.header.frame_id = ADAPTATION_FRAME_ID
    node.create_timer(0.05, lambda: publisher.publish(state))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def run_client(service_name, topic_name, output_path):
    """Call the service (again if unanswered: it is idempotent), wait for one AdaptationState,
    write what was sent and received."""
    import time

    import rclpy
    from openpixel_ros.msg import AdaptationState
    from openpixel_ros.srv import SegmentAtPoints

    rclpy.init()
    node = rclpy.create_node('interfaces_test_client')
    received_states = []
    node.create_subscription(AdaptationState, topic_name, received_states.append, 10)
    client = node.create_client(SegmentAtPoints, service_name)
    if not client.wait_for_service(timeout_sec=PEER_TIMEOUT_S - 2):
        raise SystemExit('service never appeared')
    request = build_request()
    future = client.call_async(request)
    deadline = time.monotonic() + PEER_TIMEOUT_S - 2
    resend_at = time.monotonic() + 3.0
    while (not future.done() or not received_states) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if not future.done() and time.monotonic() > resend_at:  # an answer lost to discovery under load
            client.remove_pending_request(future)
            future, resend_at = client.call_async(request), time.monotonic() + 3.0
    result = {
        'request': to_plain(request),
        'response': to_plain(future.result()) if future.done() else None,
        'adaptation': to_plain(received_states[0]) if received_states else None,
    }
    Path(output_path).write_text(json.dumps(result))
    node.destroy_node()
    rclpy.shutdown()


def dds_safe_environment():
    """This process's environment with discovery kept on localhost and a private domain."""
    environment = dict(os.environ)
    environment['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    environment.pop('ROS_LOCALHOST_ONLY', None)
    environment.pop('ROS_STATIC_PEERS', None)
    environment.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
    environment['PYTHONUNBUFFERED'] = '1'
    return environment


@pytest.fixture(scope='module')
def round_trip(tmp_path_factory):
    """Run server and client processes once; return the client's record of the exchange."""
    # A unique name, so another run that shares the domain by chance cannot answer.
    namespace = f'/interfaces_test_{uuid.uuid4().hex[:12]}'
    service_name, topic_name = f'{namespace}/segment_at_points', f'{namespace}/adaptation'
    output_path = tmp_path_factory.mktemp('interfaces') / 'client.json'
    environment = dds_safe_environment()
    this_file = str(Path(__file__).resolve())
    server = subprocess.Popen([sys.executable, this_file, 'server', service_name, topic_name],
                              env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = subprocess.run([sys.executable, this_file, 'client', service_name, topic_name, str(output_path)],
                                env=environment, capture_output=True, text=True, timeout=PEER_TIMEOUT_S + 5)
    finally:
        server.terminate()
        try:
            server_output, _ = server.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server_output, _ = server.communicate()
    assert client.returncode == 0, f'client failed:\n{client.stdout}{client.stderr}\nserver:\n{server_output}'
    return json.loads(output_path.read_text())


def test_service_request_and_response_fields_survive_the_round_trip(round_trip):
    request, response = round_trip['request'], round_trip['response']
    assert response is not None, 'no service response within the timeout'
    assert request['image']['data'] == list(range(10, 22))
    assert response['success'] is True
    assert response['message'] == ('labels=[1, 0] multimask=True '
                                   'scribbles=[(1, [(0.5, 1.0, 0.0), (2.0, 2.5, 3.0)]), (0, [(3.5, 0.25, 0.0)])]')
    assert request['scribbles'][1] == {'points': [{'x': 3.5, 'y': 0.25, 'z': 0.0}], 'label': 0}
    assert response['mask'] == request['image']
    assert response['score'] == 0.5
    assert response['bbox'] == {'x_offset': 1, 'y_offset': 2, 'height': 1, 'width': 3, 'do_rectify': True}
    assert response['area'] == 2
    assert response['candidate_masks'] == [request['previous_mask']]
    assert response['candidate_masks'][0]['data'][:3] == [200, 201, 202]
    assert response['candidate_scores'] == [1.5, 2.25, 3.0, 0.5]


def test_adaptation_state_fields_survive_publishing(round_trip):
    state = round_trip['adaptation']
    assert state is not None, 'no AdaptationState received within the timeout'
    assert state['header'] == {'stamp': {'sec': ADAPTATION_STAMP[0], 'nanosec': ADAPTATION_STAMP[1]},
                               'frame_id': ADAPTATION_FRAME_ID}
    assert {name: state[name] for name in ADAPTATION_FIELDS} == ADAPTATION_FIELDS


if __name__ == '__main__':
    role, *role_args = sys.argv[1:]
    {'server': run_server, 'client': run_client}[role](*role_args)
