"""Click prompts between ROS messages and the library: ``SegmentAtPoints`` requests and click points
become a :class:`ClickPrompt`; a click result (``Segmentor.segment_clicks``) becomes the response
or the click outputs.

No node here: every function takes and returns messages, so each is testable without a ROS graph.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from sensor_msgs.msg import Image, RegionOfInterest

from ..image_codec import decode_raw
from ..image_header import check_pixels
from ..interactive import ClickPrompt
from ..interactive.prompts import MAX_POINTS
from ..segmentor import SegmentationResult
from ..srv import SegmentAtPoints
from ..visualize import colorize, overlay
from .image_messages import array_to_image_msg, image_msg_to_rgb

# Click overlay colours (background, clicked object): green after a positive click, orange after a negative one.
CLICK_PALETTES = {1: np.array([(0, 0, 0), (0, 255, 0)], np.uint8), 0: np.array([(0, 0, 0), (255, 128, 0)], np.uint8)}


def refusal(reason: str) -> SegmentAtPoints.Response:
    """A request not answered with a mask: success=false and why."""
    return SegmentAtPoints.Response(success=False, message=reason)


def too_many_points(request) -> Optional[str]:
    """Why ``request`` is refused before it is queued, or None."""
    if len(request.points) > MAX_POINTS:
        return f"{len(request.points)} points; a prompt holds at most {MAX_POINTS}"
    return None


def request_image(image: Image, max_pixels: int) -> Optional[tuple]:
    """(header, rgb) of the request's own image; None when it has none (the latest camera frame is meant)."""
    if not (image.width and image.height):
        return None
    check_pixels(image.width, image.height, max_pixels, "request image")
    return image.header, image_msg_to_rgb(image)


def request_prompt(request, image_size: tuple) -> ClickPrompt:
    """The request's points, labels, box, scribbles and previous mask as a prompt on a frame of
    ``image_size`` (height, width). Raises PromptError or ValueError naming what is wrong."""
    box = None
    if request.box.width and request.box.height:
        b = request.box
        box = (b.x_offset, b.y_offset, b.x_offset + b.width, b.y_offset + b.height)
    previous = None
    if request.previous_mask.width and request.previous_mask.height:
        pm = request.previous_mask
        if pm.encoding != "mono8":
            raise ValueError(f"previous_mask must be mono8, got {pm.encoding!r}")
        previous = decode_raw("mono8", pm.height, pm.width, pm.step, False, pm.data) > 127
    return ClickPrompt.from_lists([(p.x, p.y) for p in request.points], list(request.labels), box=box,
                                  previous_mask=previous, image_size=image_size,
                                  scribbles=[[(p.x, p.y) for p in s.points] for s in request.scribbles],
                                  scribble_labels=[s.label for s in request.scribbles])


def bbox_roi(bbox: Optional[tuple]) -> RegionOfInterest:
    """``PromptResult.bbox`` (x, y, width, height) as a RegionOfInterest; all zero for an empty mask."""
    if bbox is None:
        return RegionOfInterest()
    x, y, width, height = bbox
    return RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height)


def fill_response(response, result: SegmentationResult, header, multimask: bool, engine_name: str,
                  service_ms: float):
    """The successful answer: mask, score, area, bbox (the engine's PromptResult.area and .bbox,
    carried by Segmentor.segment_clicks), and the candidates when asked for."""
    response.success = True
    response.mask = array_to_image_msg(result.mask, header, "mono8")
    response.score = float(result.score)
    response.area = result.area
    response.bbox = bbox_roi(result.bbox)
    if multimask:
        response.candidate_masks = [array_to_image_msg(m, header, "mono8") for m, _ in result.candidates]
        response.candidate_scores = [float(sc) for _, sc in result.candidates]
    # Timings in a fixed format: bench/bench_service.py reads them.
    response.message = (f"{engine_name}: area {response.area} px, score {response.score:.2f}, engine "
                        f"{result.timings.get('total_ms', 0.0):.2f} ms, service {service_ms:.2f} ms")
    return response


def click_point(msg) -> tuple:
    """(x, y) of a click: geometry_msgs PointStamped or Point (click.message_type)."""
    point = getattr(msg, "point", msg)
    return point.x, point.y


def click_overlay(rgb: np.ndarray, mask: np.ndarray, label: int, alpha: float) -> np.ndarray:
    """The frame with the clicked object tinted: green after a positive click, orange after a negative one."""
    selected = mask // 255
    return overlay(rgb, colorize(selected, CLICK_PALETTES[label]), alpha, selected)
