"""The one reader of pickled dataset files: plain data only, so a file handed over by anyone runs no code.

A dataset pickle (LatBench, HW-NAS-Bench; HELP's ``torch.save`` files) may hold dicts, lists, tuples, sets, str,
bytes, numbers, bools, None and numpy arrays, scalars and dtypes of numbers, bools and text; any other global it
names (a function, a class) is refused before anything is called, with ``RefusedGlobal`` naming it.

numpy's own reconstructors take raw memory and a dtype state from the file (an object dtype's items are pointers),
so they are never handed out: the names a numpy pickle uses resolve to the rebuilders here, which accept a dtype
only as ``np.dtype`` spells it afresh (byte order aside) and only of kinds holding no objects, and build each array
or scalar by copying its bytes (``np.frombuffer``). numpy's pickles name ``numpy._core`` (numpy 2) or
``numpy.core`` (numpy 1); both spellings resolve here.

Dependency-free at import: numpy is imported when a file is read. ``torch.save`` files are read by torch's own
loader, with ``PLAIN_PICKLE`` as its pickle module for files of numpy (``predictor.help_data.load_torch``).
"""

from __future__ import annotations

import math
import pickle
import struct
import types
from functools import lru_cache
from typing import Any, BinaryIO

PLAIN = "dict, list, tuple, set, str, bytes, numbers, bool, None, numpy arrays"
DATA_KINDS = "biufcUSmM"  # numpy dtype kinds of plain values: no objects ('O'), no structured or void ('V')


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global outside ``allowed()``, or gives numpy what plain data never does; ``name`` says
    which, the message says so."""

    def __init__(self, name: str) -> None:
        super().__init__(f"latfarm refuses to load {name!r}: a dataset pickle holds plain data only ({PLAIN})")
        self.name = name


def _latin1(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as pickle protocols 0-2 use it for bytes (``encode(text, 'latin1')``), no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobal(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name ``_reconstruct`` expects, never called itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RefusedGlobal("numpy.ndarray called directly")


NDARRAY = _NdarrayName()


def _plain_dtype(spec: Any, align: Any = False, copy: Any = False) -> Any:
    """``numpy.dtype(spec)`` for a type string of a plain kind (``'f8'``, ``'<U4'``); ``RefusedGlobal`` else."""
    import numpy as np

    if not isinstance(spec, str):
        raise RefusedGlobal(f"numpy.dtype of {type(spec).__name__}")
    try:
        dtype = np.dtype(spec)
    except TypeError as err:
        raise RefusedGlobal(f"numpy.dtype {spec!r}") from err
    return _checked(dtype)


def _checked(dtype: Any) -> Any:
    """``dtype`` if it holds plain values (a kind of ``DATA_KINDS``, no fields, no sub-array); ``RefusedGlobal``."""
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in DATA_KINDS or dtype.hasobject or dtype.fields:
        raise RefusedGlobal(f"numpy dtype {getattr(dtype, 'str', dtype)}")
    if dtype.subdtype is not None:
        raise RefusedGlobal(f"numpy dtype {dtype.str}")
    return dtype


def _dtype_with_state(dtype: Any, state: Any) -> Any:
    """``dtype`` with the pickled ``state`` applied, which may only change its byte order: any other difference from
    the state a fresh ``np.dtype`` of the same type writes (flags, item size, fields) is refused."""
    fresh = dtype.__reduce__()[2]
    if not isinstance(state, tuple) or len(state) != len(fresh) or len(state) < 2:
        raise RefusedGlobal(f"numpy dtype state {state!r}")
    endian = state[1]
    if endian not in ("<", ">", "|", "="):
        raise RefusedGlobal(f"numpy dtype byte order {endian!r}")
    same = dtype.newbyteorder(endian) if endian in "<>" and dtype.byteorder != "|" else dtype
    if tuple(state[2:]) != tuple(same.__reduce__()[2][2:]):
        raise RefusedGlobal(f"numpy dtype state {state!r}")
    return _checked(same)


def _array(dtype: Any, shape: Any, data: Any, fortran: bool = False) -> Any:
    """An array of ``shape`` copied from the bytes ``data`` as ``dtype``; ``RefusedGlobal`` when they disagree."""
    import numpy as np

    _checked(dtype)
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise RefusedGlobal(f"numpy array shape {shape!r}")
    size = math.prod(shape) * dtype.itemsize
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes) or len(data) != size:
        raise RefusedGlobal("numpy array data that is not its shape's bytes")
    flat = np.frombuffer(data, dtype=dtype).copy() if size else np.zeros(0, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran else "C")


class _PendingArray:
    """What ``_reconstruct`` returns: the array its ``BUILD`` state describes, built then."""


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _PendingArray:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an array to come from the state that follows."""
    if subtype is not NDARRAY:
        raise RefusedGlobal(f"numpy _reconstruct of {subtype!r}")
    return _PendingArray()


def _scalar(dtype: Any, data: Any = b"") -> Any:
    """numpy's ``scalar(dtype, bytes)``: the one value of ``dtype`` in ``data``."""
    if isinstance(data, str):  # protocols 0-2 of Python 2 wrote the bytes as latin1 text
        data = data.encode("latin1")
    return _array(dtype, (), data)[()]


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> Any:
    """numpy's ``_frombuffer`` (protocol 5 pickles' arrays): ``data`` as ``dtype`` in ``shape``."""
    if order not in ("C", "F"):
        raise RefusedGlobal(f"numpy array order {order!r}")
    return _array(dtype, tuple(shape) if isinstance(shape, (tuple, list)) else shape, data, order == "F")


@lru_cache(maxsize=1)
def allowed() -> dict[str, Any]:
    """``{'module.name': object}`` of every global a plain-data pickle may name: the containers pickle writes as
    globals (sets before protocol 4, empty bytes), bytes before protocol 3 (``_codecs.encode``, latin1 only), and
    numpy's ndarray, dtype and reconstructors (as the checked rebuilders above) under numpy 2's and numpy 1's module
    names. Python 2 pickles' ``__builtin__`` names map to ``builtins``."""
    names: dict[str, Any] = {
        f"{module}.{obj.__name__}": obj
        for module in ("builtins", "__builtin__")
        for obj in (set, frozenset, bytes, bytearray, complex)
    }
    names["_codecs.encode"] = _latin1
    names.update({"numpy.ndarray": NDARRAY, "numpy.dtype": _plain_dtype})
    for core in ("numpy._core", "numpy.core"):
        names.update(
            {
                f"{core}.multiarray._reconstruct": _reconstruct,
                f"{core}.multiarray.scalar": _scalar,
                f"{core}.numeric._frombuffer": _frombuffer,
            }
        )
    return names


class PlainUnpickler(pickle._Unpickler):  # the Python one: its BUILD is ours
    """Resolves the names of ``allowed()`` and nothing else, and sets a state (``BUILD``) only on what numpy's
    rebuilders returned, as they check it; persistent ids are refused (the base class)."""

    dispatch = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # the unpickler's own, set as it loads

    def load(self) -> Any:
        """The unpickled object; ``UnpicklingError`` for bytes that are no pickle, as the C unpickler says it (the
        Python one lets an unknown opcode's ``KeyError`` or a short read's ``IndexError`` / ``struct.error`` out)."""
        try:
            return super().load()
        except (KeyError, IndexError, struct.error) as err:
            raise pickle.UnpicklingError(f"not a pickle ({type(err).__name__}: {err})") from None

    def find_class(self, module: str, name: str) -> Any:
        """The object ``allowed()`` has for ``module.name``; ``RefusedGlobal`` for any other."""
        try:
            return allowed()[f"{module}.{name}"]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def load_build(self) -> None:
        """``BUILD``: a numpy dtype's or array's state, checked; any other object's is refused."""
        import numpy as np

        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, np.dtype):
            self.stack[-1] = _dtype_with_state(target, state)
        elif isinstance(target, _PendingArray):
            if not isinstance(state, tuple) or len(state) != 5:
                raise RefusedGlobal(f"numpy array state of {len(state) if isinstance(state, tuple) else state!r}")
            _version, shape, dtype, fortran, data = state
            if isinstance(data, str):  # protocols 0-2 of Python 2: bytes as latin1 text
                data = data.encode("latin1")
            built = _array(dtype, shape, data, bool(fortran))
            self.stack[-1] = built.astype(built.dtype.newbyteorder("="))  # native order, as numpy's own loader
        else:
            raise RefusedGlobal(f"a state set on {type(target).__name__}")

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]  # the table's stub names the base class


def load_plain(file: BinaryIO) -> Any:
    """Unpickle ``file`` holding plain data only.

    Raises ``RefusedGlobal`` for a global outside ``allowed()`` or numpy data that is not plain (nothing of the
    file's is called), or what a malformed pickle raises (``UnpicklingError``, ``EOFError``, or a ``TypeError`` /
    ``ValueError`` / ``IndexError`` from an allowed rebuilder given bad arguments).
    """
    return PlainUnpickler(file).load()


PLAIN_PICKLE = types.ModuleType("latfarm_plain_pickle", "pickle, reading plain data only (``torch.load``'s module)")
PLAIN_PICKLE.Unpickler = PlainUnpickler  # type: ignore[attr-defined]
PLAIN_PICKLE.load = lambda file, **kwargs: PlainUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
