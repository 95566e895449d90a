"""NB201 networks as model files: ONNX and TFLite bytes, identical for identical inputs.

A file's bytes depend only on (arch, format, settings, torch version): weights are seeded and the ONNX producer
fields are fixed, so any server replica re-exports the same file.
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

from latfarm.predictor import nb201
from latfarm.services.core.errors import InvalidArgument, Unsupported

TFLITE_HINT = "TFLite export needs the 'tflite' extra (litert-torch, ~1.2 GB): pip install 'latfarm[tflite]'"
_export_lock = threading.Lock()  # the TorchScript exporter keeps global state: one export at a time


class ExportUnavailable(Unsupported):
    """The exporter for a format is not installed; the message says how to install it."""


@dataclass(frozen=True)
class ExportSettings:
    """How an NB201 arch is exported: input resolution, width, classes, ONNX opset, batch size."""

    resolution: int = 32
    channels: int = 16
    classes: int = 10
    opset: int = 17
    batch_size: int = 1

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (how an ``Artifact`` row records them)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExportSettings:
        """Settings from ``to_dict``'s form; ``ValueError`` on unknown keys."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown export settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


def _network(ops_or_arch, settings: ExportSettings):
    import torch

    from latfarm.predictor.network import build

    with _export_lock:  # seeded weights come from the global RNG: concurrent builds would mix their draws
        net = build(ops_or_arch, channels=settings.channels, classes=settings.classes)
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
    """ONNX bytes (input ``input`` NCHW float32, output ``logits``), identical for identical inputs."""
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
    model.producer_name, model.producer_version, model.doc_string = "latfarm", "", ""
    for node in model.graph.node:
        node.doc_string = ""
    meta = {"latfarm.arch": nb201.to_string(net.ops), "latfarm.settings": json.dumps(settings.to_dict())}
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def export_tflite(ops_or_arch: str | tuple[int, ...], settings: ExportSettings = ExportSettings()) -> bytes:
    """TFLite flatbuffer via litert-torch; raises ``ExportUnavailable`` when the ``tflite`` extra is missing."""
    try:
        import litert_torch
    except ImportError as err:
        raise ExportUnavailable(TFLITE_HINT) from err
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


def check_format(fmt: str) -> None:
    """Raise ``InvalidArgument`` naming the known formats unless ``fmt`` is one of them."""
    if fmt not in EXPORTERS:
        raise InvalidArgument(f"unknown model format {fmt!r}; expected one of {FORMATS}")


def export(ops_or_arch: str | tuple[int, ...], fmt: str, settings: ExportSettings = ExportSettings()) -> bytes:
    """The model file of ``ops_or_arch`` in ``fmt`` (one of ``FORMATS``)."""
    check_format(fmt)
    return EXPORTERS[fmt](ops_or_arch, settings)


__all__ = [
    "EXPORTERS",
    "FORMATS",
    "TFLITE_HINT",
    "ExportSettings",
    "ExportUnavailable",
    "check_format",
    "export",
    "export_onnx",
    "export_tflite",
]
