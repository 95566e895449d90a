"""The networks of any registered search space as model files: ONNX and TFLite bytes, identical for identical inputs.

A file's bytes depend only on (arch, format, settings, torch/onnx/onnxruntime versions): weights are seeded, int8
calibration data is seeded and the ONNX producer fields are fixed, so any server replica re-exports the same file.

Settings follow the measurement conditions (``services.domain.conditions``): input ``[batch_size, 3, resolution,
resolution]``, ``classes`` logits, a graph variant of the space (``SearchSpace.export_network`` builds the network),
and a precision:
- ``fp32``: the network as traced.
- ``fp16``: onnxruntime's float16 tool (``onnxruntime.transformers.float16``), weights and compute in float16, the
  input and output kept float32 (``keep_io_types``) so agents feed and read the same tensors at every precision.
- ``int8``: onnxruntime's static quantization, QDQ format, per-tensor, int8 weights and activations, MinMax
  calibration on ``CALIBRATION_BATCHES`` batches of standard-normal inputs drawn with seed ``CALIBRATION_SEED``
  (the networks have random weights: no data set calibrates them better than a stated random one).
TFLite exports fp32 only; fp16 and int8 TFLite raise ``Unsupported``.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from latfarm.predictor.spaces import get_space
from latfarm.services.core.errors import InvalidArgument, Unsupported
from latfarm.services.core.extras import install_command
from latfarm.services.domain.conditions import DEFAULT_SPACE, GRAPHS, PRECISIONS, SPACES, Conditions

if TYPE_CHECKING:
    import onnx

CALIBRATION_BATCHES = 16  # int8 calibration: this many input batches ...
CALIBRATION_SEED = 0  # ... of standard-normal values from numpy's default_rng(CALIBRATION_SEED)
LEGACY_SETTINGS = {"precision": "fp32", "graph": "pruned"}  # what artifacts recorded before #13 were exported as
_export_lock = threading.Lock()  # the TorchScript exporter keeps global state: one export at a time


class ExportUnavailable(Unsupported):
    """The exporter for a format is not installed; the message says how to install it."""


@dataclass(frozen=True)
class ExportSettings:
    """How an arch is exported: input resolution (pixels), width (NB201's first-stage channels, recorded: 16),
    classes, ONNX opset, batch size, precision (``fp32`` | ``fp16`` | ``int8``), graph and search space.

    The defaults are the default conditions'; ``ValueError`` on an unknown precision, graph or space. ``to_dict``
    records ``space`` for every space but the default (NB201), whose artifacts were recorded before spaces were a
    setting: NB201 files and their content addresses stay what they were.
    """

    resolution: int = 32
    channels: int = 16
    classes: int = 10
    opset: int = 17
    batch_size: int = 1
    precision: str = "fp32"
    graph: str = "reference"
    space: str = DEFAULT_SPACE

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.graph not in GRAPHS:
            raise ValueError(f"graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(SPACES)}, got {self.space!r}")

    @classmethod
    def from_conditions(cls, conditions: Conditions) -> ExportSettings:
        """The export of a network measured under ``conditions`` (default width and opset)."""
        return cls(
            resolution=conditions.resolution,
            classes=conditions.classes,
            batch_size=conditions.batch_size,
            precision=conditions.precision,
            graph=conditions.graph,
            space=conditions.space,
        )

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (how an ``Artifact`` row records them; ``space`` left out for NB201)."""
        data = asdict(self)
        if self.space == DEFAULT_SPACE:
            del data["space"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ExportSettings:
        """Settings from ``to_dict``'s form; ``ValueError`` on unknown keys. A row recorded before precision and
        graph were settings was exported in fp32 on the pruned graph (``LEGACY_SETTINGS``)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(sorted(cls.__dataclass_fields__))
            raise ValueError(f"unknown export settings {', '.join(sorted(unknown))}; known: {known}")
        return cls(**{**LEGACY_SETTINGS, **data})


def _network(arch: str | tuple[int, ...], settings: ExportSettings):
    """The settings' space's network of ``arch`` and a sample input; ``InvalidArgument`` when the resolution and
    classes are not one of the space's input variants."""
    import torch

    space = get_space(settings.space)
    variant = space.variant_at(settings.resolution, settings.classes)
    if variant is None:
        raise InvalidArgument(
            f"{space.name} has no input variant of {settings.resolution}px and {settings.classes} classes",
            field="resolution",
        )
    with _export_lock:  # seeded weights come from the global RNG: concurrent builds would mix their draws
        net = space.export_network(arch, variant, settings.graph)
        sample = torch.randn(settings.batch_size, 3, settings.resolution, settings.resolution)
    return net, sample


@contextmanager
def _one_thread() -> Iterator[None]:
    """Trace on one thread: the traced forward is tiny, and extra threads only contend (2-3x slower when busy)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def export_onnx(ops_or_arch: str | tuple[int, ...], settings: ExportSettings = ExportSettings()) -> bytes:
    """ONNX bytes, identical for identical inputs: input ``input`` float32 ``[batch_size, 3, resolution,
    resolution]``, output ``logits`` float32 ``[batch_size, classes]``, at the settings' precision (module
    docstring)."""
    import onnx
    import torch

    net, sample = _network(ops_or_arch, settings)
    buf = io.BytesIO()
    with _export_lock, _one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not gone
        torch.onnx.export(
            net,
            (sample,),
            buf,  # type: ignore[arg-type]  # the stub names paths only; the exporter also writes file objects
            dynamo=False,
            opset_version=settings.opset,
            input_names=["input"],
            output_names=["logits"],
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    if settings.precision == "fp16":
        model = _to_fp16(model)
    elif settings.precision == "int8":
        model = _to_int8(model, settings)
    model.producer_name, model.producer_version, model.doc_string = "latfarm", "", ""
    for node in model.graph.node:
        node.doc_string = ""
    arch = get_space(settings.space).canonical(ops_or_arch)
    meta = {"latfarm.arch": arch, "latfarm.settings": json.dumps(settings.to_dict())}
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and compute, float32 input and output (onnxruntime's float16 tool)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def _to_int8(model: onnx.ModelProto, settings: ExportSettings) -> onnx.ModelProto:
    """Static int8 quantization, QDQ, per-tensor, calibrated as the module docstring states."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    rng = np.random.default_rng(CALIBRATION_SEED)
    shape = (settings.batch_size, 3, settings.resolution, settings.resolution)
    batches = [{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(CALIBRATION_BATCHES)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(
            src,
            dst,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(dst)


def export_tflite(ops_or_arch: str | tuple[int, ...], settings: ExportSettings = ExportSettings()) -> bytes:
    """TFLite flatbuffer via litert-torch, fp32 only: ``Unsupported`` for another precision, ``ExportUnavailable``
    when the ``tflite`` extra is missing."""
    if settings.precision != "fp32":
        raise Unsupported(
            f"TFLite export is fp32 only; {settings.precision} TFLite models are not made (use the ONNX format)"
        )
    try:
        import litert_torch
    except ImportError as err:
        raise ExportUnavailable(
            f"TFLite export needs the 'tflite' extra (litert-torch, ~0.9 GB): {install_command('tflite')}"
        ) from err
    net, sample = _network(ops_or_arch, settings)
    with _export_lock, _one_thread(), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        litert_torch.convert(net, (sample,)).export(str(path))
        return path.read_bytes()


EXPORTERS: dict[str, Callable[[str | tuple[int, ...], ExportSettings], bytes]] = {
    "onnx": export_onnx,
    "tflite": export_tflite,
}
FORMATS = tuple(EXPORTERS)  # the model formats latfarm serves, in the order clients list them
# the formats a lease call may export in (an ONNX export takes a fraction of a second); the others (a TFLite conversion
# takes tens of seconds, past an agent's lease deadline) are exported only by the export worker, which fails their
# jobs when it fails
INLINE_FORMATS = ("onnx",)


def check_format(fmt: str) -> None:
    """Raise ``InvalidArgument`` naming the known formats unless ``fmt`` is one of them."""
    if fmt not in EXPORTERS:
        raise InvalidArgument(f"unknown model format {fmt!r}; expected one of {', '.join(FORMATS)}")


def export(ops_or_arch: str | tuple[int, ...], fmt: str, settings: ExportSettings = ExportSettings()) -> bytes:
    """The model file of ``ops_or_arch`` in ``fmt`` (one of ``FORMATS``)."""
    check_format(fmt)
    return EXPORTERS[fmt](ops_or_arch, settings)


__all__ = [
    "CALIBRATION_BATCHES",
    "CALIBRATION_SEED",
    "EXPORTERS",
    "FORMATS",
    "INLINE_FORMATS",
    "ExportSettings",
    "ExportUnavailable",
    "check_format",
    "export",
    "export_onnx",
    "export_tflite",
]
