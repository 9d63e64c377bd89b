"""The OpenPixel segmentation model and the DeepLabV3-MobileNetV2 reference port (PyTorch).

Training and export code only: every submodule imports torch, and nothing the node runs
imports this package. The prompt maps the networks take are rendered by
:mod:`openpixel_ros.inference.prompt_maps` (numpy + OpenCV), one floor down. See docs/model.md.
"""
