"""The runtimes agents measure with, by name (each backend's ``runtime``): a device registered for agents runs one.

Dependency-free: the CLI and the REST schema check a new device's runtime against ``RUNTIMES``.
"""

from __future__ import annotations

ONNXRUNTIME = "onnxruntime"  # ``backends.onnx``: "onnx" artifacts; a new device's default
LITERT = "litert"  # ``backends.litert``: "tflite" artifacts
RUNTIMES = (ONNXRUNTIME, LITERT)
# artifact format -> the package extra an agent runs it with (``backends.available_backends``); onnx needs none
AGENT_EXTRAS = {"tflite": LITERT}
