"""Model export: PyTorch checkpoint -> ONNX (``onnx_export``), ONNX -> TensorRT engine (``tensorrt``)."""
