"""LiteRT backend (``ai_edge_litert.interpreter``) with its default XNNPACK CPU delegate.

Raises ImportError at import when LiteRT is not installed, so the agent simply does not offer "tflite"."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from latfarm.agents.backends import Unsupported, fit_input, make_input
from latfarm.agents.runtimes import LITERT

# What LiteRT says when its op resolver has no kernel for an op (at construction or at allocate_tensors)
NO_KERNEL = ("Didn't find op for builtin opcode", "Encountered unresolved custom op")


class LiteRTModel:
    """A TFLite model in a LiteRT interpreter, its input resized to the job's shape and filled once."""

    provider = "xnnpack"

    def __init__(self, path: Path, threads: int, input_shape: list[int], batch_size: int = 0):
        """Build the interpreter with ``threads`` threads, its input resized to ``fit_input``'s shape; ``Unsupported``
        when LiteRT has no kernel for an op of the model."""
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            first = self.interpreter.get_input_details()[0]
            declared = [int(d) if d > 0 else None for d in first["shape_signature"]]
            shape = fit_input(declared, input_shape, batch_size)
            if list(first["shape"]) != shape:
                self.interpreter.resize_tensor_input(first["index"], shape)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as err:
            if any(sign in str(err) for sign in NO_KERNEL):
                raise Unsupported(str(err)) from err
            raise
        self.interpreter.set_tensor(first["index"], make_input(shape, first["dtype"]))
        self.batch = shape[0] if shape else None
        outputs = self.interpreter.get_output_details()
        self.output_indices = [o["index"] for o in outputs]
        self.declared = [[int(d) if d > 0 else None for d in o["shape_signature"]] for o in outputs]

    def run(self) -> list[np.ndarray]:
        """One inference; the output tensors."""
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i) for i in self.output_indices]

    def cancel(self) -> bool:
        """The Python interpreter API has no cancellation."""
        return False

    def close(self) -> None:
        """Free the interpreter."""
        del self.interpreter


class LiteRTBackend:
    """Runs "tflite" artifacts with LiteRT on the CPU (XNNPACK)."""

    format = "tflite"
    runtime = LITERT
    device = "CPU"
    providers = ["xnnpack"]

    def __init__(self):
        """Read the installed LiteRT version."""
        self.version = version("ai-edge-litert")
        self.build = f"ai-edge-litert {self.version}"

    def load(self, path: Path, threads: int, input_shape: list[int], batch_size: int = 0) -> LiteRTModel:
        """The model at ``path``, ready to run (errors: ``Backend.load``)."""
        return LiteRTModel(path, threads, input_shape, batch_size)
