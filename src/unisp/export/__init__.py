"""Deployment: exported graphs (ONNX, TFLite), their parity with PyTorch, quantisation, latency.

Submodules import their runtimes (onnx, onnxruntime, litert) lazily; import what you use, e.g.
``from unisp.export.onnx import export_onnx, OnnxRunner``.
"""

#: File formats a model exports to: ONNX (ONNX Runtime) and TFLite (LiteRT); each is also the file's suffix.
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "tflite")
