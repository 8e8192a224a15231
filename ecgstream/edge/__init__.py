"""The edge deployment: a self-contained bundle (ONNX models, preprocessing, checksums) that runs
with numpy, scipy and onnxruntime only, on a small device with no network."""
