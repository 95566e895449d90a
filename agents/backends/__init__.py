"""Runtime backends: one module per runtime, each turning an artifact file into a runnable model.

A backend is found by artifact format ("onnx", "tflite"); the runtimes are imported only when present."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class LoadedModel(Protocol):
    """A model ready to run on a fixed input; its ``declared`` output shapes and ``batch`` (when known) check the
    outputs."""

    provider: str  # execution provider / delegate actually used

    def run(self) -> list[np.ndarray]:
        """One inference on the prepared input."""

    def cancel(self) -> bool:
        """Interrupt a running inference from another thread; False when the runtime cannot."""

    def close(self) -> None:
        """Free the session / interpreter."""


class Backend(Protocol):
    """A runtime that loads artifacts of one format."""

    format: str  # artifact format it runs
    runtime: str  # one of ``runtimes.RUNTIMES``
    version: str
    build: str  # runtime build information for provenance
    device: str
    providers: list[str]  # available execution providers / delegates

    def load(self, path: Path, threads: int, input_shape: list[int], batch_size: int = 0) -> LoadedModel:
        """Build a session on the artifact and prepare a fixed random input (shape: ``fit_input``). Raises
        ``Unsupported`` when the runtime has no kernel for an op of the model, ``InputMismatch`` when the model's
        input batch is not ``batch_size``; any other runtime error when the model does not load."""


class Unsupported(Exception):
    """The runtime here has no implementation for an op (of the op's element type) in the model."""


class InputMismatch(Exception):
    """The model's declared input is not the one the job's conditions describe (its batch size)."""


def fit_input(declared: list[int | None], requested: list[int], batch_size: int = 0) -> list[int]:
    """The shape of the input a model is fed: the job's ``requested`` shape when given, else the model's
    ``declared`` one (symbolic dimensions as 1) with ``batch_size`` as its first dimension when given (0: the job
    has no conditions). Raises ``InputMismatch`` when the model declares a static batch other than ``batch_size``:
    the artifact is not the network the job describes, and feeding another batch would be a silent substitute."""
    if batch_size and declared and declared[0] is not None and declared[0] != batch_size:
        raise InputMismatch(f"the model's input batch is {declared[0]}, the job's conditions say batch {batch_size}")
    if requested:
        return list(requested)
    shape = [1 if d is None else d for d in declared]
    if batch_size and shape:
        shape[0] = batch_size
    return shape


def make_input(shape: list[int], dtype: type = np.float32) -> np.ndarray:
    """A fixed (seeded) normal input, so every run and every agent feeds the same numbers."""
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _shape_matches(declared: list[int | None], actual: tuple[int, ...]) -> bool:
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual, strict=True))


def check_outputs(outputs: list[np.ndarray], declared: list[list[int | None]], batch: int | None) -> str | None:
    """Why the outputs are wrong (shape differs from the model's declared static shape, wrong batch size,
    non-finite values), or None when they look right."""
    if not outputs:
        return "the model produced no output"
    for index, (value, shape) in enumerate(zip(outputs, declared, strict=False)):
        if shape and not _shape_matches(shape, value.shape):
            return f"output {index} has shape {list(value.shape)}, the model declares {shape}"
        if batch is not None and value.ndim and value.shape[0] != batch:
            return f"output {index} has batch size {value.shape[0]}, the input has {batch}"
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return f"output {index} has non-finite values"
    return None


def available_backends(onnx_provider: str | None = None) -> dict[str, Backend]:
    """Backends usable here, by artifact format."""
    from latfarm.agents.backends.onnx import OnnxBackend

    backends: dict[str, Backend] = {"onnx": OnnxBackend(onnx_provider)}
    try:
        from latfarm.agents.backends.litert import LiteRTBackend
    except ImportError:
        return backends
    backends["tflite"] = LiteRTBackend()
    return backends
