"""Content-addressed artifact cache on disk: sha256-verified, bounded in size, least recently used evicted."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from latfarm.agents.state import ensure_writable


class ArtifactError(Exception):
    """An artifact could not be stored: wrong digest, or larger than the whole cache."""


class ArtifactCache:
    """Artifacts by sha256 in one folder, at most ``max_bytes`` in all."""

    def __init__(self, root: Path, max_bytes: int):
        """Use (and create) the folder ``root``; ``OSError`` when it cannot be created or written."""
        self.root = Path(root)
        self.max_bytes = max_bytes
        ensure_writable(self.root)

    def path(self, sha256: str) -> Path:
        """Where the artifact with this digest is (or would be) stored."""
        return self.root / sha256

    def get(self, sha256: str) -> Path | None:
        """The cached file for a digest (marked as just used), or None."""
        path = self.path(sha256)
        if not path.exists():
            return None
        os.utime(path)
        return path

    def put(self, sha256: str, chunks: Iterable[bytes], protect: Iterable[str] = ()) -> Path:
        """Store the bytes under their digest after checking it; evict old files to stay within the bound.
        Digests in ``protect`` (files in use by the current batch) are never evicted."""
        tmp = self.root / f".{sha256}.part"
        digest = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != sha256:
            tmp.unlink()
            raise ArtifactError(f"sha256 mismatch: expected {sha256}, got {digest.hexdigest()} ({size} bytes)")
        if size > self.max_bytes:
            tmp.unlink()
            raise ArtifactError(f"artifact {sha256} is {size} bytes, more than the cache bound {self.max_bytes}")
        self._evict(self.max_bytes - size, keep=set(protect))
        path = self.path(sha256)
        os.replace(tmp, path)
        return path

    def size(self) -> int:
        """Bytes stored."""
        return sum(f.stat().st_size for f in self._files())

    def _files(self) -> list[Path]:
        return [f for f in self.root.iterdir() if f.is_file() and not f.name.startswith(".")]

    def _evict(self, budget: int, keep: set[str]) -> None:
        files = sorted(self._files(), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for old in files:
            if total <= budget:
                break
            if old.name in keep:
                continue
            total -= old.stat().st_size
            old.unlink()
