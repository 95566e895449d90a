"""onnxruntime backend: CPU by default, or any installed execution provider (CUDA, TensorRT, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as NoKernel

from latfarm.agents.backends import Unsupported, fit_input, make_input
from latfarm.agents.runtimes import ONNXRUNTIME

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _static(shape: list) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in shape]


class OnnxModel:
    """An ONNX model in an onnxruntime session (sequential, ``threads`` intra-op threads) with a fixed input."""

    def __init__(self, path: Path, threads: int, input_shape: list[int], providers: list[str], batch_size: int = 0):
        """Build the session on the first available of ``providers``; the input's shape by ``fit_input`` and its
        element type as the model declares it (float16 for a float16-input model). ``Unsupported`` when no provider
        has a kernel for an op (onnxruntime's NOT_IMPLEMENTED; note the CPU provider runs float16 ops it has no
        float16 kernel for through inserted casts to float32, so only ops with no kernel at all get here)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except NoKernel as err:
            raise Unsupported(str(err)) from err
        self.provider = self.session.get_providers()[0]
        first = self.session.get_inputs()[0]
        shape = fit_input(_static(first.shape), input_shape, batch_size)
        self.feed = {first.name: make_input(shape, DTYPES.get(first.type, np.float32))}
        self.batch = shape[0] if shape else None
        self.declared = [_static(o.shape) for o in self.session.get_outputs()]
        self.run_options = ort.RunOptions()

    def run(self) -> list[np.ndarray]:
        """One inference; the outputs."""
        return self.session.run(None, self.feed, self.run_options)

    def cancel(self) -> bool:
        """onnxruntime checks the terminate flag between nodes: the running inference raises soon after."""
        self.run_options.terminate = True
        return True

    def close(self) -> None:
        """Free the session."""
        del self.session


class OnnxBackend:
    """Runs "onnx" artifacts with onnxruntime: the CPU provider, or ``provider`` first when given."""

    format = "onnx"
    runtime = ONNXRUNTIME

    def __init__(self, provider: str | None = None):
        """Read the installed runtime; ``ValueError`` when ``provider`` is not available here."""
        self.version = ort.__version__
        self.build = ort.capi._pybind_state.get_build_info()
        self.device = ort.get_device()
        self.providers = ort.get_available_providers()
        if provider and provider not in self.providers:
            raise ValueError(f"execution provider {provider!r} is not available here: {self.providers}")
        self.session_providers = [provider, "CPUExecutionProvider"] if provider else ["CPUExecutionProvider"]

    def load(self, path: Path, threads: int, input_shape: list[int], batch_size: int = 0) -> OnnxModel:
        """The model at ``path``, ready to run (errors: ``Backend.load``)."""
        return OnnxModel(path, threads, input_shape, self.session_providers, batch_size)
