"""The OpenPixel segmentation model and the DeepLabV3-MobileNetV2 reference port (PyTorch).

Training and export code only: importing this package imports torch, which
the node and the engines never do. See docs/model.md.
"""
