"""The content-addressed artifact store: exported model files on disk and the ``Artifact`` rows replicas share.

Files live at ``root/<sha[:2]>/<sha>.<format>``; ``root/index/`` maps (arch, format, export settings, which name the
search space) to the sha256
so a second export of the same model does no work. The export settings follow the measurement conditions
(``ExportSettings.from_conditions``): different conditions, different files and rows. A replica missing a
recorded file re-exports it (``network_export`` makes identical bytes for identical inputs) and verifies the sha256
before serving it; so does a replica whose file has the wrong size, or is found corrupt when an agent reports that
its bytes failed the sha256 check (``repair``).

An agent's call never exports a format outside ``INLINE_FORMATS`` (a TFLite conversion takes tens of seconds): such a
missing file is requested from this replica's export worker (``root/requests/<sha>``, ``requested``), and the call
answers ``ArtifactPending`` (UNAVAILABLE: the agent fetches again after a backoff) until the worker has made it, or
``ArtifactRestoreFailed`` for ``FAILED_KEEP_S`` after the worker failed to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from latfarm.predictor.checkpoint import write_atomic
from latfarm.predictor.spaces import get_space
from latfarm.services.core.errors import Internal, Unavailable
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import INLINE_FORMATS, ExportSettings, check_format, export
from latfarm.services.store.models import Arch, Artifact

SHA256 = re.compile(r"^[0-9a-f]{64}$")  # a content address as the store names it
FAILED_KEEP_S = 60.0  # a failed restore is answered for this long; the next call after it requests it again


class ArtifactNotReproducible(Internal):
    """Re-exporting a recorded artifact gave other bytes: this replica's exporter differs from the one that made it."""


class ArtifactPending(Unavailable):
    """A file in a format outside ``INLINE_FORMATS`` is missing on this replica: its export worker makes it."""


class ArtifactRestoreFailed(Internal):
    """The export worker failed to make a missing file in a format outside ``INLINE_FORMATS`` (the message says
    why)."""


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """Exported models on disk, content-addressed, with their ``Artifact`` rows."""

    def __init__(self, root: Path) -> None:
        """Store files under ``root``."""
        self.root = Path(root)
        self._known: dict[str, str] = {}  # index key -> sha256, this process
        self._lock = threading.Lock()  # concurrent requests for one model: the second finds the first's file

    def __reduce__(self) -> tuple:
        """Pickle as the root folder (the export worker's conversion processes build their own store)."""
        return type(self), (self.root,)

    def path(self, sha256: str, fmt: str) -> Path:
        """Where the artifact with this SHA-256 and format lives (it may not exist yet)."""
        return self.root / sha256[:2] / f"{sha256}.{fmt}"

    def _key(self, arch: str, fmt: str, settings: ExportSettings) -> str:
        text = json.dumps({"arch": arch, "format": fmt, "settings": settings.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _produce(self, arch: str, fmt: str, settings: ExportSettings) -> tuple[str, Path, int]:
        """Export (unless indexed and on disk) and store; returns (sha256, path, size)."""
        check_format(fmt)
        with self._lock:  # exports run one at a time anyway (network_export holds one lock)
            return self._produce_locked(get_space(settings.space).canonical(arch), fmt, settings)

    def _produce_locked(self, arch: str, fmt: str, settings: ExportSettings) -> tuple[str, Path, int]:
        key = self._key(arch, fmt, settings)
        index = self.root / "index" / f"{key}.sha256"
        sha = self._known.get(key)
        if sha is None and index.exists():
            sha = index.read_text().strip()
        if sha is not None and (path := self.path(sha, fmt)).exists():
            return sha, path, path.stat().st_size
        data = self.convert(arch, fmt, settings)
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha, fmt)
        if not path.exists():
            write_atomic(path, lambda fh: fh.write(data))
        write_atomic(index, lambda fh: fh.write(sha.encode()))
        self._known[key] = sha
        return sha, path, len(data)

    def convert(self, arch: str, fmt: str, settings: ExportSettings) -> bytes:
        """The bytes of the model file of ``arch`` in ``fmt`` (``network_export.export``): the one place the store
        makes them."""
        return export(arch, fmt, settings)

    def export_file(self, arch: str, fmt: str, conditions: Conditions) -> tuple[str, Path]:
        """Export the model of ``arch`` in ``fmt`` under ``conditions`` to the store without a database (CLI,
        benchmarks, the export worker); returns (sha256, path)."""
        sha, path, _ = self._produce(arch, fmt, ExportSettings.from_conditions(conditions))
        return sha, path

    def ensure(self, session: Session, arch: Arch, fmt: str, conditions: Conditions) -> Artifact:
        """The artifact of ``arch`` in ``fmt`` under ``conditions``: exported, on disk and recorded (its row's
        ``settings`` are the export settings)."""
        settings = ExportSettings.from_conditions(conditions)
        wanted = settings.to_dict()
        rows = session.scalars(select(Artifact).where(Artifact.arch_id == arch.id, Artifact.format == fmt))
        for row in rows:
            if row.settings == wanted:
                if not self.path(row.sha256, fmt).exists():
                    self._restore(row)
                return row
        sha, _, size = self._produce(arch.arch, fmt, settings)
        existing = session.get(Artifact, sha)
        if existing is not None:
            return existing
        row = Artifact(sha256=sha, arch_id=arch.id, format=fmt, settings=wanted, size_bytes=size)
        try:
            with session.begin_nested():  # another replica may record the same sha at the same time
                session.add(row)
        except IntegrityError:
            return session.get_one(Artifact, sha, populate_existing=True)
        return row

    def open(self, session: Session, sha256: str) -> BinaryIO | None:
        """The artifact's bytes, re-exported and verified if this replica lacks the file or it has the wrong size
        (truncated); None if unknown. Outside ``INLINE_FORMATS`` the export worker re-exports it: ``ArtifactPending``
        or ``ArtifactRestoreFailed`` (``_missing``)."""
        row = session.get(Artifact, sha256)
        if row is None:
            return None
        path = self.path(sha256, row.format)
        if not path.exists() or path.stat().st_size != row.size_bytes:
            path.unlink(missing_ok=True)
            self._missing(row)
        return path.open("rb")

    def repair(self, session: Session, sha256: str) -> bool:
        """Check the stored file against its content address and re-export it when missing or corrupt (outside
        ``INLINE_FORMATS``: request it from the export worker); returns whether it was rebuilt or requested (False:
        sound, or no such artifact). ``ArtifactRestoreFailed`` while the worker's last try is a recent failure."""
        row = session.get(Artifact, sha256)
        if row is None:
            return False
        path = self.path(sha256, row.format)
        if path.exists() and _sha256_of(path) == sha256:
            return False
        path.unlink(missing_ok=True)  # the index still names this sha: the export below rewrites the file
        with contextlib.suppress(ArtifactPending):  # requested: the jobs' next fetch waits for it
            self._missing(row)
        return True

    def _missing(self, row: Artifact) -> None:
        """Make the missing file of ``row``: at once in ``INLINE_FORMATS``; otherwise request it from the export
        worker and raise ``ArtifactPending``, or ``ArtifactRestoreFailed`` for ``FAILED_KEEP_S`` after the worker
        failed to make it."""
        if row.format in INLINE_FORMATS:
            self._restore(row)
            return
        request = self._request_path(row.sha256)
        failed = request.with_suffix(".failed")
        try:
            if time.time() - failed.stat().st_mtime < FAILED_KEEP_S:
                raise ArtifactRestoreFailed(
                    f"artifact {row.sha256[:12]} ({row.format}) could not be exported on this server: "
                    f"{failed.read_text()}"
                )
        except FileNotFoundError:
            pass
        request.parent.mkdir(parents=True, exist_ok=True)
        request.touch()
        raise ArtifactPending(
            f"artifact {row.sha256[:12]} ({row.format}) is being exported on this server by its export worker: "
            "fetch it again shortly"
        )

    def _request_path(self, sha256: str) -> Path:
        return self.root / "requests" / sha256

    def requested(self) -> list[str]:
        """The artifacts whose missing file an agent's call requested (``_missing``) and the export worker has not
        made yet, oldest request first."""
        folder = self.root / "requests"
        if not folder.is_dir():
            return []
        requests = [(p.stat().st_mtime, p.name) for p in folder.iterdir() if SHA256.match(p.name)]
        return [name for _, name in sorted(requests)]

    def restored(self, sha256: str, error: Exception | None) -> None:
        """Close a request: made, or failed with ``error`` (answered by ``_missing`` for ``FAILED_KEEP_S``)."""
        request = self._request_path(sha256)
        failed = request.with_suffix(".failed")
        if error is None:
            failed.unlink(missing_ok=True)
        else:
            write_atomic(failed, lambda fh: fh.write(f"{type(error).__name__}: {error}".encode()))
        request.unlink(missing_ok=True)

    def restore_file(self, sha256: str, arch: str, fmt: str, settings: dict) -> None:
        """Export the recorded artifact ``sha256`` again from its row's ``arch``, ``fmt`` and ``settings`` (no
        database: the export worker's conversion processes call this); ``ArtifactNotReproducible`` when the bytes
        differ."""
        sha, path, _ = self._produce(arch, fmt, ExportSettings.from_dict(settings))
        if sha != sha256:
            path.unlink(missing_ok=True)  # a different file: do not let it shadow anything
            raise ArtifactNotReproducible(
                f"re-exporting artifact {sha256[:12]} ({fmt}, {arch}) gave {sha[:12]}: "
                "the exporter (torch/onnx version) differs from the one that made it"
            )

    def _restore(self, row: Artifact) -> None:
        self.restore_file(row.sha256, row.arch.arch, row.format, row.settings)


__all__ = ["FAILED_KEEP_S", "ArtifactNotReproducible", "ArtifactPending", "ArtifactRestoreFailed", "ArtifactStore"]
