"""Dataset pickles are a trust boundary: ``latfarm import`` reads plain data only (``common.pickles``), so a file
naming a function or class runs nothing and is refused in one line, while real files (numpy included, numpy 1's
module names too) still import."""

from __future__ import annotations

import io
import os
import pickle
import re

import numpy as np
import pytest
import torch

from latfarm.common.pickles import PLAIN as PLAIN_WORDS
from latfarm.common.pickles import RefusedGlobal, load_plain
from latfarm.predictor import nb201
from latfarm.predictor.help_data import load_torch, read_latency_file
from latfarm.predictor.spaces.fbnet import load_reference
from tests.unit.test_import_validation import OPS, assert_refused, cli_import, help_folder, stored, str_arch2idx  # noqa: F401


class Payload:
    """Unpickled by ``pickle.load``, runs ``os.system(command)``: what a hostile dataset file does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def hostile(tmp_path) -> tuple[Payload, object]:
    """A payload that writes a marker file, and the marker (absent unless something ran it)."""
    marker = tmp_path / "ran"
    return Payload(f"touch {marker}"), marker


SYSTEM = f"latfarm refuses to load '{os.system.__module__}.system': a dataset pickle holds plain data only"


@pytest.mark.parametrize("fmt", ["latbench", "hwnasbench"])
def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path, fmt):
    payload, marker = hostile(tmp_path)
    data = {OPS: 0.002, (0,) * 6: payload} if fmt == "latbench" else {"nasbench201": {"cifar10": payload}}
    path = tmp_path / "colleague.pickle"
    path.write_bytes(pickle.dumps(data))
    extra = ["--device", "phone"] if fmt == "latbench" else []
    assert_refused(tmp_path, path, fmt, f"{path}: {SYSTEM}", *extra)
    assert not marker.exists()


def test_a_help_file_that_runs_code_is_refused_unrun(tmp_path, str_arch2idx):  # noqa: F811
    payload, marker = hostile(tmp_path)
    folder = help_folder(tmp_path / "help", str_arch2idx, {"pixel3": [1.0] * (nb201.NUM_ARCHS - 1) + [payload]})
    result, _ = cli_import(tmp_path, folder, "help")
    assert result.output.strip().splitlines()[-1].endswith(f"pixel3.pt: {SYSTEM} ({PLAIN_WORDS})")
    assert_refused(tmp_path, folder, "help", f"pixel3.pt: {SYSTEM}")
    assert not marker.exists()
    with pytest.raises(ValueError, match="pixel3.pt: latfarm refuses to load"):  # pretrain's and eval's reader
        read_latency_file(folder / "latency" / "pixel3.pt")
    torch.save({"arch": [{"op_idx_list": payload}]}, tmp_path / "help" / "str_arch2idx.pt")
    assert_refused(tmp_path, folder, "help", f"str_arch2idx.pt: {SYSTEM}")
    assert not marker.exists()


def test_an_fbnet_arch_list_that_runs_code_is_refused_unrun(tmp_path):
    payload, marker = hostile(tmp_path)
    (tmp_path / "fbnet" / "latency").mkdir(parents=True)
    torch.save([[0] * 22, payload], tmp_path / "fbnet" / "arch.pt")
    torch.save([1.0, 2.0], tmp_path / "fbnet" / "latency" / "pixel3.pt")
    assert_refused(tmp_path, tmp_path / "fbnet", "help", f"arch.pt: {SYSTEM}", "--space", "fbnet")
    with pytest.raises(ValueError, match="arch.pt: latfarm refuses to load"):
        load_reference(tmp_path / "fbnet")
    assert not marker.exists()


PLAIN = [
    {(1, 2): [1.5, None, True], "b": b"\x00\xff", "s": {1, 2}, "f": frozenset({3}), "c": 1 + 2j},
    np.arange(6.0).reshape(2, 3),
    np.arange(4, dtype=np.int32)[::2],
    np.array([1.0, 2.0], dtype=">f8"),
    np.float64(1.5),
    np.int64(7),
    np.dtype("float32"),
    {"runs": np.array([[0.002, 0.003]]), "scalar": np.float32(0.5)},
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_and_numpy_load_in_every_protocol(protocol):
    """What ``pickle.loads`` makes of plain data, ``load_plain`` makes too."""
    for value in PLAIN:
        written = pickle.dumps(value, protocol=protocol)
        loaded, expected = load_plain(io.BytesIO(written)), pickle.loads(written)
        assert type(loaded) is type(expected)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded, expected)
            assert loaded.dtype == expected.dtype
        elif isinstance(value, dict) and "runs" in value:
            np.testing.assert_array_equal(loaded["runs"], expected["runs"])
            assert loaded["scalar"] == expected["scalar"]
        else:
            assert loaded == expected


@pytest.mark.parametrize("protocol", [0, 2])
def test_numpy_1_pickles_load(protocol):
    """numpy 1.x wrote ``numpy.core`` where numpy 2 writes ``numpy._core`` (text names in protocols 0-2)."""
    value = {"a": np.arange(3.0), "s": np.float64(2.5)}
    written = pickle.dumps(value, protocol=protocol).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray" in written
    loaded = load_plain(io.BytesIO(written))
    np.testing.assert_array_equal(loaded["a"], value["a"])
    assert loaded["s"] == 2.5


@pytest.mark.parametrize(
    "value, name",
    [
        (Payload("true"), f"{os.system.__module__}.system"),
        (np.ma.masked_array([1.0]), "numpy.ma.core._mareconstruct"),
        (np.array([Payload("true")], dtype=object), "numpy dtype |O"),  # an object array: refused at its dtype
        (Payload, "tests.unit.test_import_pickles.Payload"),
    ],
)
def test_any_other_global_is_refused(value, name):
    with pytest.raises(RefusedGlobal, match=f"refuses to load '{name}'"):
        load_plain(io.BytesIO(pickle.dumps(value, protocol=2)))


def _reconstruct_of_numpy():
    """numpy's ``_reconstruct``, as its array pickles name it."""
    return np.ndarray.__reduce__(np.zeros(1))[0]


class Reduced:
    """Pickled as ``callable(*args)`` then, if given, ``BUILD`` with ``state``: numpy's names called as a crafted
    file calls them."""

    def __init__(self, callable, args, state=None) -> None:
        self.reduced = (callable, args) if state is None else (callable, args, state)

    def __reduce__(self):
        return self.reduced


FRESH_F8 = np.dtype("f8").__reduce__()[2]


@pytest.mark.parametrize(
    "crafted, refusal",
    [
        # ndarray(shape, dtype, buffer): items read from the file's bytes; for an object dtype, pointers
        (Reduced(np.ndarray, ((2,), np.dtype("f8"), b"A" * 16)), "numpy.ndarray called directly"),
        # a dtype's state other than a fresh one's: flags saying it holds objects, fields, another item size
        (Reduced(np.dtype, ("S4", False, True), (3, "|", None, None, None, -1, -1, 63)), "numpy dtype state"),
        (
            Reduced(np.dtype, ("f8", False, True), (*FRESH_F8[:3], ("a",), {"a": (np.dtype("f8"), 0)}, 8, 8, 16)),
            "numpy dtype state",
        ),
        (Reduced(np.dtype, ("f8", False, True), (*FRESH_F8[:5], 1 << 40, -1, 0)), "numpy dtype state"),
        (Reduced(np.dtype, ("O8", False, True)), "numpy dtype |O"),
        (Reduced(np.dtype, ("V8", False, True)), "numpy dtype |V8"),
        # an array whose bytes are not its shape's, or whose state is not an array's
        (
            Reduced(_reconstruct_of_numpy(), (np.ndarray, (0,), b"b"), (1, (4,), np.dtype("f8"), False, b"abc")),
            "numpy array data that is not its shape's bytes",
        ),
        (
            Reduced(_reconstruct_of_numpy(), (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("f8"), False, [1, 2])),
            "numpy array data that is not its shape's bytes",
        ),
        (Reduced(set, ([1],), {"x": 1}), "a state set on set"),
    ],
)
def test_numpy_is_given_plain_data_only(crafted, refusal):
    """numpy's reconstructors would take raw memory and any dtype state from the file (an object dtype's items are
    pointers: a crash or a write at an address the file picks); the plain reader builds arrays itself and refuses
    all else, in every protocol."""
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(RefusedGlobal, match=re.escape(refusal)):
            load_plain(io.BytesIO(pickle.dumps(crafted, protocol=protocol)))


def test_a_help_file_of_a_crafted_numpy_array_is_refused(tmp_path):
    path = tmp_path / "pixel3.pt"
    torch.save([Reduced(np.ndarray, ((2,), np.dtype("f8"), b"A" * 16))], path)
    with pytest.raises(RefusedGlobal, match="numpy.ndarray called directly"):
        load_torch(path)


def test_codecs_only_decode_bytes_as_latin1():
    """Protocols 0-2 write bytes as ``_codecs.encode(text, 'latin1')``; another codec is not plain data."""
    crafted = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(RefusedGlobal, match="_codecs.encode with 'rot13'"):
        load_plain(io.BytesIO(crafted))


def test_an_hwnasbench_like_pickle_of_numpy_tables_imports(tmp_path):
    """HW-NAS-Bench's layout with numpy tables and scalars, written with protocol 2 as older Pythons did."""
    table = np.linspace(1.0, 3.0, 20)
    data = {"nasbench201": {"cifar10": {"edgegpu_latency": table, "fpga_latency": [np.float64(2.0)] * 5}}}
    path = tmp_path / "HW-NAS-Bench-v1_0.pickle"
    path.write_bytes(pickle.dumps(data, protocol=2))
    result, settings = cli_import(tmp_path, path, "hwnasbench")
    assert result.exit_code == 0, result.output
    assert stored(settings) == (2, 25)


def test_a_help_file_of_a_numpy_array_imports(tmp_path, str_arch2idx):  # noqa: F811
    values = np.linspace(1.0, 2.0, nb201.NUM_ARCHS)
    folder = help_folder(tmp_path / "help", str_arch2idx, {"pixel3": values})
    np.testing.assert_array_equal(read_latency_file(folder / "latency" / "pixel3.pt"), values)
    result, settings = cli_import(tmp_path, folder, "help")
    assert result.exit_code == 0, result.output
    assert stored(settings) == (1, nb201.NUM_ARCHS)
