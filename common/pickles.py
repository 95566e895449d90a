"""The one reader of pickled dataset files: plain data only, so a file handed over by anyone runs no code.

A dataset pickle (LatBench, HW-NAS-Bench; HELP's ``torch.save`` files) may hold dicts, lists, tuples, sets, str,
bytes, numbers, bools, None and numpy arrays, scalars and dtypes; any other global it names (a function, a class)
is refused before anything is called, with ``RefusedGlobal`` naming it. ``load_plain`` reads a pickle with an
unpickler that resolves only the names of ``allowed()``; ``load_torch`` reads a ``torch.save`` file with torch's
``weights_only`` loader (tensors and plain data) plus the same numpy names. numpy's pickles name ``numpy._core``
(numpy 2) or ``numpy.core`` (numpy 1); both spellings resolve to the installed numpy's objects.

Dependency-free at import: numpy (and torch, for ``load_torch``) are imported when a file is read.
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

PLAIN = "dict, list, tuple, set, str, bytes, numbers, bool, None, numpy arrays"


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global outside ``allowed()``; ``name`` is it as ``module.name``, the message says so."""

    def __init__(self, name: str) -> None:
        super().__init__(f"latfarm refuses to load {name!r}: a dataset pickle holds plain data only ({PLAIN})")
        self.name = name


def _latin1(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as pickle protocols 0-2 use it for bytes (``encode(text, 'latin1')``), no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobal(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


@lru_cache(maxsize=1)
def allowed() -> dict[str, Any]:
    """``{'module.name': object}`` of every global a plain-data pickle may name: the containers pickle writes as
    globals (sets before protocol 4, empty bytes), bytes before protocol 3 (``_codecs.encode``, latin1 only), and
    numpy's ndarray, dtype and the reconstructors its pickles call, under numpy 2's and numpy 1's module names.
    Python 2 pickles' ``__builtin__`` names map to ``builtins``."""
    import numpy as np

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    names: dict[str, Any] = {
        f"{module}.{obj.__name__}": obj
        for module in ("builtins", "__builtin__")
        for obj in (set, frozenset, bytes, bytearray, complex)
    }
    names["_codecs.encode"] = _latin1
    names.update({"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype})
    for core in ("numpy._core", "numpy.core"):
        names.update(
            {
                f"{core}.multiarray._reconstruct": multiarray._reconstruct,
                f"{core}.multiarray.scalar": multiarray.scalar,
                f"{core}.numeric._frombuffer": numeric._frombuffer,  # type: ignore[attr-defined]
            }
        )
    return names


class _PlainUnpickler(pickle.Unpickler):
    """Resolves the names of ``allowed()`` and nothing else; persistent ids are refused too (the base class)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return allowed()[f"{module}.{name}"]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load_plain(file: BinaryIO) -> Any:
    """Unpickle ``file`` holding plain data only.

    Raises ``RefusedGlobal`` for a global outside ``allowed()`` (nothing of the file's is called), or what a
    malformed pickle raises (``UnpicklingError``, ``EOFError``, or a ``TypeError`` / ``ValueError`` from an allowed
    reconstructor given bad arguments).
    """
    return _PlainUnpickler(file).load()


@lru_cache(maxsize=1)
def _torch_allows_numpy() -> None:
    """Add ``allowed()``'s numpy names, and the dtype classes a dtype's state is set on, to torch's ``weights_only``
    allowlist, once per process (a lasting addition: a ``safe_globals`` block would race with another thread's)."""
    import numpy as np
    import torch

    numpy_names = [(obj, name) for name, obj in allowed().items() if name.startswith("numpy")]
    torch.serialization.add_safe_globals([*numpy_names, *(type(np.dtype(code)) for code in np.typecodes["All"])])


def load_torch(path: Path) -> Any:
    """What ``torch.save`` wrote to ``path``, read by torch's ``weights_only`` loader (tensors and plain data) with
    ``allowed()``'s numpy names added.

    Raises ``RefusedGlobal`` for the first global outside both, else what ``torch.load`` raises for a file that is
    not its format.
    """
    import torch

    _torch_allows_numpy()
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            named = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - a file it cannot list: the load's own error stands
            raise err from None
        if refused := [name for name in named if name not in allowed()]:
            raise RefusedGlobal(refused[0]) from None
        raise
