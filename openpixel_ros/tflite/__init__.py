"""TFLite support: a FlatBuffer reader and a TFLite -> ONNX converter.

Neither needs TensorFlow or the LiteRT interpreter; see docs/tflite_converter.md.
"""
from openpixel_ros.tflite.reader import (TFLiteModel, TFLiteOperator, TFLiteQuantization,
                                         TFLiteTensor)

__all__ = ["TFLiteModel", "TFLiteOperator", "TFLiteQuantization", "TFLiteTensor"]
