"""The OpenPixel segmentation model and the DeepLabV3-MobileNetV2 reference port (PyTorch).

Training and export code: every submodule imports torch except ``prompt_maps``
(numpy + OpenCV), which the node's prompt engine shares. See docs/model.md.
"""
