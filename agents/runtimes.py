"""The runtimes agents measure with, by name (each backend's ``runtime``): a device registered for agents runs one,
and its jobs' model format follows from it (``job_format``).

Dependency-free: the CLI and the REST schema check a new device's runtime against ``RUNTIMES``.
"""

from __future__ import annotations

ONNXRUNTIME = "onnxruntime"  # ``backends.onnx``: "onnx" artifacts; a new device's default
LITERT = "litert"  # ``backends.litert``: "tflite" artifacts
RUNTIMES = (ONNXRUNTIME, LITERT)
# runtime -> the model format a device of that runtime is measured in
RUNTIME_FORMATS = {ONNXRUNTIME: "onnx", LITERT: "tflite"}
# artifact format -> the package extra an agent runs it with (``backends.available_backends``); onnx needs none
AGENT_EXTRAS = {"tflite": LITERT}


def job_format(runtime: str, requested: str | None = None) -> str:
    """The model format of a job on a device of ``runtime``: its runtime's (``RUNTIME_FORMATS``) when ``requested``
    is None; ``ValueError`` when ``requested`` is another, since its results would be another runtime's figures
    under the device's name. A runtime no agent has (a dataset's label, e.g. ``tensorrt``) fixes no format: the
    requested one, else onnx."""
    runs = RUNTIME_FORMATS.get(runtime)
    if runs is None:
        return requested or RUNTIME_FORMATS[ONNXRUNTIME]
    if requested is not None and requested != runs:
        raise ValueError(
            f"{runtime} devices are measured in {runs} models, not {requested}: omit the format, or measure "
            f"{requested} models on a device of runtime {_runtime_of(requested)}"
        )
    return runs


def _runtime_of(fmt: str) -> str:
    """The runtime whose devices are measured in ``fmt`` models."""
    return next((runtime for runtime, runs in RUNTIME_FORMATS.items() if runs == fmt), "?")
