"""Model export (ONNX, TFLite) and the content-addressed artifact store.

An artifact's bytes depend only on (arch, format, settings, torch version): weights are seeded and the ONNX
producer fields are fixed, so any server replica re-exports the same file. Files live at
``root/<sha[:2]>/<sha>.<format>``; ``root/index/`` maps (arch, format, settings) to the sha256 so a second
export of the same model does no work. The ``Artifact`` row is the shared record replicas agree on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.store.models import Arch, Artifact

FORMATS = ("onnx", "tflite")
TFLITE_HINT = "TFLite export needs the 'tflite' extra (litert-torch, ~1.2 GB): pip install 'latfarm[tflite]'"
_export_lock = threading.Lock()  # the TorchScript exporter keeps global state: one export at a time


class ExportUnavailable(RuntimeError):
    """The exporter for a format is not installed; the message says how to install it."""


class ArtifactError(RuntimeError):
    """An artifact that cannot be produced or does not match its recorded sha256."""


@dataclass(frozen=True)
class ExportSettings:
    resolution: int = 32
    channels: int = 16
    classes: int = 10
    opset: int = 17
    batch_size: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExportSettings:
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
            buf,
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


EXPORTERS = {"onnx": export_onnx, "tflite": export_tflite}


def export(ops_or_arch: str | tuple[int, ...], fmt: str, settings: ExportSettings = ExportSettings()) -> bytes:
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown model format {fmt!r}; expected one of {FORMATS}")
    return EXPORTERS[fmt](ops_or_arch, settings)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Exported models on disk, content-addressed, with their ``Artifact`` rows."""

    def __init__(self, root: Path, settings: ExportSettings = ExportSettings()) -> None:
        self.root = Path(root)
        self.settings = settings
        self._known: dict[str, str] = {}  # index key -> sha256, this process
        self._lock = threading.Lock()  # concurrent requests for one model: the second finds the first's file

    def path(self, sha256: str, fmt: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{fmt}"

    def _key(self, arch: str, fmt: str) -> str:
        text = json.dumps({"arch": arch, "format": fmt, "settings": self.settings.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _produce(self, arch: str, fmt: str, settings: ExportSettings | None = None) -> tuple[str, Path, int]:
        """Export (unless indexed and on disk) and store; returns (sha256, path, size)."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown model format {fmt!r}; expected one of {FORMATS}")
        with self._lock:  # exports run one at a time anyway (_export_lock)
            return self._produce_locked(nb201.canonical(arch), fmt, settings)

    def _produce_locked(self, arch: str, fmt: str, settings: ExportSettings | None) -> tuple[str, Path, int]:
        settings = settings or self.settings
        key = self._key(arch, fmt) if settings == self.settings else None
        index = self.root / "index" / f"{key}.sha256" if key else None
        sha = self._known.get(key) if key else None
        if sha is None and index is not None and index.exists():
            sha = index.read_text().strip()
        if sha is not None and (path := self.path(sha, fmt)).exists():
            return sha, path, path.stat().st_size
        data = export(arch, fmt, settings)
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha, fmt)
        if not path.exists():
            _write_atomic(path, data)
        if key:
            _write_atomic(index, sha.encode())
            self._known[key] = sha
        return sha, path, len(data)

    def export_file(self, arch: str, fmt: str) -> tuple[str, Path]:
        """Export to the store without a database (CLI, benchmarks); returns (sha256, path)."""
        sha, path, _ = self._produce(arch, fmt)
        return sha, path

    def ensure(self, session: Session, arch: Arch, fmt: str) -> Artifact:
        """The artifact of ``arch`` in ``fmt`` with this store's settings: exported, on disk and recorded."""
        wanted = self.settings.to_dict()
        rows = session.scalars(select(Artifact).where(Artifact.arch_id == arch.id, Artifact.format == fmt))
        for row in rows:
            if row.settings == wanted:
                if not self.path(row.sha256, fmt).exists():
                    self._restore(row)
                return row
        sha, _, size = self._produce(arch.arch, fmt)
        existing = session.get(Artifact, sha)
        if existing is not None:
            return existing
        row = Artifact(sha256=sha, arch_id=arch.id, format=fmt, settings=wanted, size_bytes=size)
        try:
            with session.begin_nested():  # another replica may record the same sha at the same time
                session.add(row)
        except IntegrityError:
            return session.get(Artifact, sha, populate_existing=True)
        return row

    def open(self, session: Session, sha256: str) -> BinaryIO | None:
        """The artifact's bytes, re-exported and verified if this replica lacks the file; None if unknown."""
        row = session.get(Artifact, sha256)
        if row is None:
            return None
        path = self.path(sha256, row.format)
        if not path.exists():
            self._restore(row)
        return path.open("rb")

    def _restore(self, row: Artifact) -> None:
        settings = ExportSettings.from_dict(row.settings)
        sha, path, _ = self._produce(row.arch.arch, row.format, settings)
        if sha != row.sha256:
            path.unlink(missing_ok=True)  # a different file: do not let it shadow anything
            raise ArtifactError(
                f"re-exporting artifact {row.sha256[:12]} ({row.format}, {row.arch.arch}) gave {sha[:12]}: "
                "the exporter (torch/onnx version) differs from the one that made it"
            )


def parse_arch_arg(value: str) -> str:
    """An arch string, or an official NB201 index given as digits, as a canonical arch string."""
    value = value.strip()
    if value.isdigit():
        return nb201.to_string(nb201.from_official_index(int(value)))
    return nb201.canonical(value)


def export_cli(archs: list[str], fmt: str, out: Path, resolution: int = 32, classes: int = 10) -> None:
    """``latfarm export model``: export each arch into ``out`` and print its sha256 and path."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    try:
        canonical_archs = [parse_arch_arg(a) for a in archs]  # fail on bad input before exporting anything
    except nb201.ArchError as err:
        raise SystemExit(f"error: {err}") from err
    if fmt not in FORMATS:
        raise SystemExit(f"error: unknown model format {fmt!r}; expected one of {FORMATS}")
    store = ArtifactStore(out, ExportSettings(resolution=resolution, classes=classes))
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"exporting {fmt}", total=len(canonical_archs))
        for arch in canonical_archs:
            try:
                results.append((arch, *store.export_file(arch, fmt)))
            except ExportUnavailable as err:
                raise SystemExit(f"error: {err}") from err
            progress.advance(task)
    for arch, sha, path in results:
        console.print(f"{sha}  {path}  {arch}", highlight=False, soft_wrap=True)


__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "ExportSettings",
    "ExportUnavailable",
    "export",
    "export_cli",
    "export_onnx",
    "export_tflite",
]
