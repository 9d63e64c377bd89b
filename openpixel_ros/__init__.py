"""openpixel_ros: camera segmentation for ROS 2 (rclpy node, engines, adaptation, interfaces).

The library part needs no ROS: ``from openpixel_ros import Segmentor``.
"""

# The generated interface modules (openpixel_ros.msg, openpixel_ros.srv) are installed by CMake
# into site-packages, while this package may be imported from the source tree (pip install -e):
# extend the package path so both halves are found.
__path__ = __import__('pkgutil').extend_path(__path__, __name__)


def __getattr__(name):
    # Lazy, so importing openpixel_ros.msg does not pull in onnxruntime/opencv.
    if name in ("Segmentor", "SegmentationResult"):
        from . import segmentor
        return getattr(segmentor, name)
    raise AttributeError(name)


__all__ = ["Segmentor", "SegmentationResult"]
