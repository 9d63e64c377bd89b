"""The optional selfie (person) model on real frames, through the node's code path (Segmentor)."""
import cv2
import numpy as np
import pytest

from conftest import shared_path
from openpixel_ros.selfie_model import fetch_selfie_model
from openpixel_ros.frame_sources import iter_frames
from openpixel_ros.segmentor import Segmentor


@pytest.fixture(scope="module")
def segmentor():
    try:
        path = fetch_selfie_model()  # converts from the cached wheel, or downloads it from PyPI once
    except RuntimeError as exc:
        pytest.skip(f"selfie model unavailable: {exc}")
    seg = Segmentor(path)
    yield seg
    seg.close()


def test_person_photo_gives_a_large_connected_person_region(segmentor):
    from skimage import data
    frame = data.astronaut()  # a real portrait photograph, shipped in scikit-image
    result = segmentor.infer(frame)
    assert result.labels.shape == frame.shape[:2]
    person = result.mask > 0
    n, cc, stats, _ = cv2.connectedComponentsWithStats(person.astype(np.uint8))
    largest = stats[1:, cv2.CC_STAT_AREA].max() / person.size
    assert largest > 0.25, f"largest person region covers {largest:.1%} of the photo"
    # The astronaut sits in the middle of the frame: the region must cover the centre.
    assert person[256, 200:300].mean() > 0.8


def test_person_free_dashcam_frames_get_little_person(segmentor):
    video = shared_path("video", "solidWhiteRight.mp4")
    frames = iter_frames(str(video), loop=False)
    fractions = []
    for i, frame in enumerate(frames):
        if i % 40 == 0:
            fractions.append((segmentor.infer(frame).mask > 0).mean())
    assert len(fractions) >= 5
    # A selfie model on a highway: a few false-positive blobs, never a person-sized region.
    assert np.mean(fractions) < 0.02 and max(fractions) < 0.05, \
        f"person fraction per frame: {np.round(fractions, 4)}"


def test_bgr_and_rgb_calls_agree(segmentor):
    from skimage import data
    frame = data.astronaut()
    # Adaptation smooths its score over frames: start both calls from the same history.
    segmentor.adapter.reset()
    a = segmentor.infer(frame).labels
    segmentor.adapter.reset()
    b = segmentor.infer(np.ascontiguousarray(frame[..., ::-1]), color_order="bgr").labels
    np.testing.assert_array_equal(a, b)
