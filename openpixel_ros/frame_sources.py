"""Where demo and benchmark frames come from: a video file, an image folder, or sample photos.

``auto`` picks ``../shared/video/solidWhiteRight.mp4`` (real dash-cam footage) when it
exists, otherwise the 6-second clip of it bundled in the package (``openpixel_ros/data``,
MIT licence, see its NOTICE.md), so the demo shows road scenes on a fresh machine.
``samples`` gives real photographs shipped inside the scikit-image wheel.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# Bundled in the scikit-image wheel (no download): real photographs, two with a person.
_SKIMAGE_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def shared_dir() -> Optional[Path]:
    """``../shared`` next to the repository (or $OPENPIXEL_SHARED), if present."""
    candidates = [os.environ.get("OPENPIXEL_SHARED"), Path.cwd().parent / "shared",
                  Path(__file__).resolve().parents[2] / "shared"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


BUNDLED_CLIP = Path(__file__).resolve().parent / "data" / "dashcam_solidwhiteright.mp4"


def default_source() -> str:
    shared = shared_dir()
    if shared and (shared / "video" / "solidWhiteRight.mp4").is_file():
        return str(shared / "video" / "solidWhiteRight.mp4")
    if BUNDLED_CLIP.is_file():
        return str(BUNDLED_CLIP)
    return "samples"


def _video_frames(path: str) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def _folder_frames(path: Path) -> Iterator[np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {path}")
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is not None:
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_images() -> list:
    """Real photographs from scikit-image's bundled data, as RGB uint8."""
    from skimage import data
    frames = []
    for name in _SKIMAGE_SAMPLES:
        img = getattr(data, name)()
        if isinstance(img, tuple):  # stereo pairs
            img = img[0]
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        frames.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return frames


def iter_frames(source: str = "auto", loop: bool = True, size: Optional[tuple] = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames from ``source`` ("auto", "samples", a video file or an image folder).

    ``size`` = (width, height) resizes every frame. With ``loop`` the source repeats forever.
    """
    if source == "auto":
        source = default_source()

    def once():
        if source == "samples":
            return iter(sample_images())
        path = Path(source)
        if path.is_dir():
            return _folder_frames(path)
        if not path.is_file():
            raise FileNotFoundError(f"frame source {source} does not exist")
        return _video_frames(str(path))

    frames = itertools.chain.from_iterable(once() for _ in itertools.count()) if loop else once()
    for frame in frames:
        if size is not None and (frame.shape[1], frame.shape[0]) != tuple(size):
            frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA)
        yield frame
