"""Every way in validates like the REST API (issue #14): importers' runs, latency and name rules, one HELP loader,
and malformed files through ``latfarm import`` (one-line error, exit 1, nothing stored)."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import torch
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from latfarm.predictor import nb201
from latfarm.predictor.help_data import load_help
from latfarm.services import datasets
from latfarm.services.cli import app
from latfarm.services.core.config import Settings
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.core.names import refusal
from latfarm.services.datasets.hardware import describe_device
from latfarm.services.domain.names import checked_device_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Device, Measurement
from tests.api_support import add_measurements

OPS = (1, 2, 3, 4, 0, 1)
OTHER_OPS = (3, 3, 4, 1, 3, 1)


@pytest.fixture(scope="module")
def str_arch2idx(tmp_path_factory):
    """HELP's ``str_arch2idx.pt``: the official NB201 arch strings by index."""
    path = tmp_path_factory.mktemp("help") / "str_arch2idx.pt"
    table = nb201.official_ops_table()
    torch.save({nb201.to_string(table[i]): i for i in range(nb201.NUM_ARCHS)}, path)
    return path


def help_folder(root, str_arch2idx, files):
    """A HELP-layout folder with ``files`` (``{device: object torch.save'd}``) under ``latency/``."""
    (root / "latency").mkdir(parents=True)
    (root / "str_arch2idx.pt").write_bytes(str_arch2idx.read_bytes())
    for name, values in files.items():
        if isinstance(values, bytes):
            (root / "latency" / f"{name}.pt").write_bytes(values)
        else:
            torch.save(values, root / "latency" / f"{name}.pt")
    return root


def stored(settings: Settings) -> tuple[int, int]:
    """(devices, measurements) in the settings' store."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            devices = connection.scalar(select(func.count()).select_from(Device))
            rows = connection.scalar(select(func.count()).select_from(Measurement))
    finally:
        engine.dispose()
    return devices, rows


def cli_import(tmp_path, path, fmt, *extra):
    """``latfarm import`` in-process on a SQLite store under ``tmp_path``; returns (result, settings)."""
    settings = Settings(data_dir=tmp_path / "data")
    args = ["import", str(path), "--format", fmt, "--data-dir", str(settings.data_dir), *extra]
    return CliRunner().invoke(app, args), settings


def assert_refused(tmp_path, path, fmt, problem, *extra):
    """The CLI refuses ``path``: exit 1, one error line naming ``problem``, no traceback, nothing stored."""
    result, settings = cli_import(tmp_path, path, fmt, *extra)
    assert result.exit_code == 1, result.output
    *progress, error = result.output.strip().splitlines()  # HELP imports draw a progress bar first
    assert error.startswith("latfarm import: ") and problem in error, result.output
    assert not any(line.startswith("latfarm import") or "Traceback" in line for line in progress), result.output
    assert stored(settings) == (0, 0)


# --- case 1: LatBench values that are runs -------------------------------------------------------------------
def test_latbench_runs_are_summarised_by_their_median_and_counted(sessions, tmp_path):
    path = tmp_path / "phone.pickle"
    runs = np.array([0.0031, 0.0030, 0.0035])
    path.write_bytes(pickle.dumps({OTHER_OPS: [[0.0021, 0.0022], [0.0023, 0.0021]], OPS: runs, (0,) * 6: 0.004}))
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, path) == datasets.Imported(3)
    with sessions() as session:
        by_arch = {
            nb201.to_string(nb201.from_official_index(r["nb201_index"])): r["latency_ms"]
            for r in datasets.device_rows(session, "phone")
        }
        counts = sorted(session.execute(select(Measurement.latency_ms, Measurement.runs)).all())
    assert by_arch == pytest.approx(
        {nb201.to_string(OTHER_OPS): 2.15, nb201.to_string(OPS): 3.1, nb201.to_string((0,) * 6): 4.0}
    )
    assert [runs for _, runs in counts] == [4, 3, 1]  # 2.15, 3.1 and 4.0 ms


@pytest.mark.parametrize("value", [[], np.array([]), [[], []]])
def test_latbench_empty_runs_name_the_key(tmp_path, value):
    path = tmp_path / "phone.pickle"
    path.write_bytes(pickle.dumps({OPS: 0.002, OTHER_OPS: value}))
    assert_refused(tmp_path, path, "latbench", f"key {OTHER_OPS!r}: no runs")


# --- case 4: zero latencies: one rule for importers and the predictor -----------------------------------------
def test_zero_latency_is_refused_by_importers_and_the_predictor_alike(tmp_path):
    from latfarm.predictor.model import Predictor

    path = tmp_path / "phone.pickle"
    path.write_bytes(pickle.dumps({OPS: 0.002, (0,) * 6: 0.0}))
    rule = "must be between 0.0001 ms and 10000000 ms, got 0 ms"
    assert_refused(tmp_path, path, "latbench", f"entry 0 {rule}")
    with pytest.raises(ValueError, match=f"entry 1 {rule}"):
        Predictor.load().adapt([3, 4], [1.0, 0.0])


@pytest.mark.parametrize("seconds", [1e300, 1e5, 1e-11])
def test_implausible_latencies_are_refused_by_the_agents_bounds(tmp_path, seconds):
    """An importer holds a latency to the bounds an agent's report is held to (``predictor.latencies``), in ms."""
    from latfarm.common.ranges import out_of_range
    from latfarm.predictor.latencies import BOUNDS, MAX_LATENCY_MS, MIN_LATENCY_MS
    from latfarm.predictor.model import Predictor

    assert not MIN_LATENCY_MS <= seconds * 1000 <= MAX_LATENCY_MS
    path = tmp_path / "phone.pickle"
    path.write_bytes(pickle.dumps({OPS: 0.002, (0,) * 6: seconds}))
    rule = out_of_range(f"{seconds * 1000:g} ms", BOUNDS, "ms")  # in ms, as the rule is
    assert_refused(tmp_path, path, "latbench", f"entry 0 {rule}")
    with pytest.raises(ValueError, match=re.escape(f"entry 1 {rule}")):
        Predictor.load().adapt([3, 4], [1.0, seconds * 1000])


def test_rows_against_the_latency_rule_do_not_stop_a_device_predicting(api, keys):
    """Rows of 0, negative, inf (and, where the database stores it, NaN) ms stored before importers checked the rule
    are read by no fit, ranking or export: the device still predicts and ranks, and serves no 0 ms as measured."""
    from latfarm.services.store.models import Source
    from tests.api_support import add_device

    add_device(api, "phone")
    add_measurements(api, "phone", {i: 1.0 + i / 10 for i in range(6)}, source=Source.imported, dataset="latbench")
    against = {10: 0.0, 11: -1.0, 12: math.inf}
    if api.app.state.sessions.kw["bind"].dialect.name == "postgresql":  # SQLite stores NaN as NULL: refused
        against[13] = math.nan
    add_measurements(api, "phone", against, source=Source.imported, dataset="latbench")
    body = {"device": "phone", "archs": [*against, 20]}
    items = api.post("/v1/predict", json=body, headers=keys["client"]).json()["items"]
    assert [i["source"] for i in items] == ["predicted"] * len(body["archs"]), items
    assert all(0 < i["latency_ms"] < math.inf for i in items), items
    ranked = api.post("/v1/rank", json=body, headers=keys["client"])
    assert ranked.status_code == 200 and len(ranked.json()["items"]) == len(body["archs"]), ranked.text
    exported = api.get("/v1/devices/phone/export", headers=keys["client"]).text.strip().splitlines()
    assert len(exported) == 1 + 6  # the header and the rows that follow the rule
    listed = api.get("/v1/measurements", params={"device": "phone", "limit": 100}, headers=keys["client"])
    assert len(listed.json()["items"]) == 6 + len(against)  # still listed: an admin can delete or quarantine them


# --- case 2: one device-name rule; precision from the dataset name ---------------------------------------------
@pytest.mark.parametrize("name", ["Pixel7 研究室", "lab/pixel7", "", "x" * 129, "ａ", ".", "..", "..."])
def test_device_name_rule_refuses(name):
    with pytest.raises(InvalidArgument, match="ASCII letters, digits"):
        checked_device_name(name)


def test_device_name_rule_accepts():
    assert checked_device_name("pixel7-cpu_fp32.v2") == "pixel7-cpu_fp32.v2"
    assert checked_device_name(".pixel7.") == ".pixel7."  # dots, but not dots only


@pytest.mark.parametrize("name", ["Pixel7 研究室", "lab/pixel7"])
def test_import_refuses_device_names_against_the_rule(tmp_path, name):
    path = tmp_path / "phone.pickle"
    path.write_bytes(pickle.dumps({OPS: 0.002}))
    result, settings = cli_import(tmp_path, path, "latbench", "--device", name)
    shown = " ".join(result.output.replace("│", "").split())
    assert result.exit_code == 2 and f"Invalid value for '--device': {refusal(name)}" in shown, result.output
    assert not settings.data_dir.exists()  # refused before the store is touched


def test_derived_device_names_follow_the_rule(tmp_path, str_arch2idx):
    stem = tmp_path / "my phone.pickle"
    stem.write_bytes(pickle.dumps({OPS: 0.002}))
    assert_refused(tmp_path, stem, "latbench", "device name 'my phone' is not allowed")
    path = tmp_path / "hw.pickle"
    path.write_bytes(pickle.dumps({"nasbench201": {"cifar10": {"edge gpu_latency": [1.0, 2.0]}}}))
    assert_refused(tmp_path, path, "hwnasbench", "device name 'edge gpu' is not allowed")
    folder = help_folder(tmp_path / "help", str_arch2idx, {"Pixel7 研究室": [1.0] * nb201.NUM_ARCHS})
    assert_refused(tmp_path, folder, "help", "device name 'Pixel7 研究室' is not allowed")


def test_rest_uses_the_same_rule(api, keys):
    from tests.api_support import ADMIN

    for name in ("lab pixel7", "研究室"):
        assert api.post("/v1/devices", json={"name": name}, headers=ADMIN).status_code == 422


def test_export_header_is_safe_for_any_stored_name(api, keys):
    """A name stored before the rule (or by hand) still exports: ASCII ``filename`` plus RFC 5987 ``filename*``."""
    with transaction(api.app.state.sessions) as session:
        session.add(Device(name="Pixel7 研究室", runtime="tflite"))
    add_measurements(api, "Pixel7 研究室", {0: 1.5})
    response = api.get("/v1/devices/Pixel7 研究室/export", headers=keys["client"])
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Pixel7____.csv\"; filename*=UTF-8''Pixel7%20%E7%A0%94%E7%A9%B6%E5%AE%A4.csv"
    )


@pytest.mark.parametrize(
    ("name", "precision"),
    [("pixel7-int8", "int8"), ("jetson_fp16", "fp16"), ("titanx_32", "fp32"), ("edgegpu-cifar100", "fp32")],
)
def test_precision_is_taken_from_the_dataset_name(name, precision):
    assert describe_device(name)["precision"] == precision


def test_imported_int8_device_rows_carry_int8(sessions, tmp_path):
    path = tmp_path / "pixel7-int8.pickle"
    path.write_bytes(pickle.dumps({OPS: 0.002}))
    with sessions() as session, session.begin():
        datasets.import_latbench(session, path)
    with sessions() as session:
        (row,) = datasets.device_rows(session, "pixel7-int8")
    assert row["precision"] == "int8"


# --- case 3: one HELP loader for import and eval ----------------------------------------------------------------
def test_help_nan_gaps_and_numpy_files_load_alike_in_import_and_eval(tmp_path, str_arch2idx):
    gappy = np.linspace(1.0, 2.0, nb201.NUM_ARCHS)
    gappy[[0, 5, 77]] = np.nan
    folder = help_folder(tmp_path / "help", str_arch2idx, {"pixel3": gappy, "raspi4": np.full(nb201.NUM_ARCHS, 9.0)})
    loaded = load_help(folder)
    assert np.isnan(loaded["pixel3"]).sum() == 3 and np.all(loaded["raspi4"] == 9.0)
    result, settings = cli_import(tmp_path, folder, "help")
    assert result.exit_code == 0, result.output
    assert stored(settings) == (2, 2 * nb201.NUM_ARCHS - 3)  # NaN: not measured, skipped


# --- the fuzz-style test: malformed files through `latfarm import` ----------------------------------------------
def beyond(entry: int, ms: str) -> str:
    """How the latency rule refuses entry ``entry`` of ``ms`` milliseconds (a file's seconds converted)."""
    return f"entry {entry} must be between 0.0001 ms and 10000000 ms, got {ms} ms"


LATBENCH_CASES = {
    "not a pickle": (b"\x00garbage", "not a pickle file"),
    "a list": ([1, 2], "expected a dict"),
    "string key": ({"123401": 0.002}, "expected a tuple of 6 integers (nb201)"),
    "float key": ({(1.5, 2, 3, 4, 0, 1): 0.002}, "expected a tuple of 6 integers (nb201)"),
    "short key": ({(1, 2, 3): 0.002}, "must have 6 entries"),
    "op out of range": ({(1, 2, 3, 4, 0, 9): 0.002}, "op ids are 0..4"),
    "string value": ({OPS: "fast"}, "expected seconds or a list of runs"),
    "dict value": ({OPS: {"a": 1}}, "expected seconds or a list of runs"),
    "ragged runs": ({OPS: [[0.001, 0.002], [0.003]]}, "expected seconds or a list of runs"),
    "bool value": ({OPS: True}, "expected seconds or a list of runs in seconds, found True"),
    "numeric text": ({OPS: "0.002"}, "expected seconds or a list of runs in seconds, found '0.002'"),
    "text run": ({OPS: [0.002, "0.003"]}, "expected seconds or a list of runs"),
    "bool array": ({OPS: np.array([True, True])}, "expected seconds or a list of runs"),
    "bytes": ({OPS: b"\x00"}, "expected seconds or a list of runs"),
    "complex": ({OPS: 0.002 + 1j}, "expected seconds or a list of runs"),
    "none": ({OPS: None}, beyond(0, "nan")),
    "nan": ({OPS: math.nan}, beyond(0, "nan")),
    "inf run": ({OPS: [0.001, math.inf]}, beyond(1, "inf")),
    "negative": ({OPS: -0.001}, beyond(0, "-1")),  # seconds in the file
    "zero": ({OPS: 0.0}, beyond(0, "0")),
}
HWNAS_CASES = {
    "a list": ([1], "expected a dict with key 'nasbench201'"),
    "no nasbench201": ({"nb301": {}}, "expected a dict with key 'nasbench201'"),
    "datasets as a list": ({"nasbench201": [1]}, "map each dataset to a dict of metrics"),
    "metrics as a list": ({"nasbench201": {"cifar10": [1]}}, "map each dataset to a dict of metrics"),
    "table as a string": ({"nasbench201": {"cifar10": {"fpga_latency": "1,2"}}}, "expected a list or"),
    "string index": ({"nasbench201": {"cifar10": {"fpga_latency": {"7": 1.0}}}}, "index '7' is not an integer"),
    "index out of range": (
        {"nasbench201": {"cifar10": {"fpga_latency": {99999: 1.0}}}},
        "nb201: reference position 99999 is outside 0..15624",
    ),
    "nested rows": ({"nasbench201": {"cifar10": {"fpga_latency": [[1.0, 2.0]]}}}, "expected a flat list"),
    "text latency": ({"nasbench201": {"cifar10": {"fpga_latency": ["x"]}}}, "latencies must be numbers"),
    "numeric text": (
        {"nasbench201": {"cifar10": {"fpga_latency": [1.0, "1.5"]}}},
        "entry 1 is '1.5'; latencies must be numbers",
    ),
    "bool latency": ({"nasbench201": {"cifar10": {"fpga_latency": {4: True}}}}, "entry 0 is True"),
    "none latency": ({"nasbench201": {"cifar10": {"fpga_latency": [None]}}}, beyond(0, "nan")),
    "empty table": ({"nasbench201": {"cifar10": {"fpga_latency": []}}}, "fpga_latency: no latencies"),
    "zero": ({"nasbench201": {"cifar10": {"fpga_latency": [1.0, 0.0]}}}, beyond(1, "0")),
    "negative": ({"nasbench201": {"cifar10": {"fpga_latency": [-1.0]}}}, beyond(0, "-1")),
    "nan": ({"nasbench201": {"cifar10": {"fpga_latency": [1.0, math.nan]}}}, beyond(1, "nan")),
    "inf": ({"nasbench201": {"cifar10": {"fpga_latency": {3: math.inf}}}}, beyond(0, "inf")),
}
N = nb201.NUM_ARCHS
HELP_CASES = {
    "not a torch file": (b"\x00garbage", "not a torch.save file"),
    "a string": ("fast", "found str"),
    "too short": ([1.0] * 10, "found shape (10,)"),
    "a matrix": (torch.ones(125, 125), "found shape (125, 125)"),
    "zero": ([1.0] * (N - 1) + [0.0], beyond(N - 1, "0")),
    "negative": (np.full(N, -1.0), beyond(0, "-1")),
    "inf": ([1.0, math.inf] + [1.0] * (N - 2), beyond(1, "inf")),
    "all NaN": (np.full(N, np.nan), f"no measured entries (all {N} are NaN)"),
    "numeric text": (["1.5"] * N, f"expected {N} latencies as numbers, found <U3 values"),
    "bools": (torch.ones(N, dtype=torch.bool), f"expected {N} latencies as numbers, found bool values"),
}


def _pickled(tmp_path, content):
    path = tmp_path / "input.pickle"
    path.write_bytes(content if isinstance(content, bytes) else pickle.dumps(content))
    return path


@pytest.mark.parametrize("case", LATBENCH_CASES)
def test_malformed_latbench_files_are_refused(tmp_path, case):
    content, problem = LATBENCH_CASES[case]
    if isinstance(content, dict):  # a good entry first: nothing of the file may be stored
        content = {OTHER_OPS: 0.002, **content}
    assert_refused(tmp_path, _pickled(tmp_path, content), "latbench", problem, "--device", "phone")


@pytest.mark.parametrize("fmt", ["latbench", "hwnasbench"])
def test_a_help_latency_file_given_as_a_pickle_format_points_to_format_help(tmp_path, fmt):
    import torch

    path = tmp_path / "pixel3.pt"
    torch.save([1.0] * nb201.NUM_ARCHS, path)  # a HELP folder's latency/<device>.pt
    problem = f"{path}: a torch.save file, not the pickle --format {fmt} reads"
    extra = ["--device", "phone"] if fmt == "latbench" else []
    assert_refused(tmp_path, path, fmt, f"{problem}; a HELP folder's file", *extra)
    assert_refused(tmp_path, path, fmt, "import the folder with --format help", *extra)


@pytest.mark.parametrize("case", HWNAS_CASES)
def test_malformed_hwnasbench_files_are_refused(tmp_path, case):
    content, problem = HWNAS_CASES[case]
    if isinstance(content, dict) and isinstance(content.get("nasbench201"), dict):
        content["nasbench201"].setdefault("cifar10", {})
        if isinstance(content["nasbench201"]["cifar10"], dict):  # a good table first: nothing may be stored
            content["nasbench201"]["cifar10"] = {"edgegpu_latency": [1.0, 2.0], **content["nasbench201"]["cifar10"]}
    assert_refused(tmp_path, _pickled(tmp_path, content), "hwnasbench", problem)


@pytest.mark.parametrize("case", HELP_CASES)
def test_malformed_help_files_are_refused(tmp_path, str_arch2idx, case):
    content, problem = HELP_CASES[case]
    good = np.full(nb201.NUM_ARCHS, 2.0)  # sorted first: nothing of the folder may be stored
    folder = help_folder(tmp_path / "help", str_arch2idx, {"a-good": good, "z-bad": content})
    assert_refused(tmp_path, folder, "help", problem)


FBNET_REFERENCE_CASES = {  # HELP FBNet folders: the arch list their latency files follow
    "not a torch file": ("arch.pt", b"\x00garbage", "arch.pt: not a torch.save file (UnpicklingError)"),
    "metainfo without arch": ("metainfo.pt", {"x": 1}, "metainfo.pt: expected {'arch': [{'op_idx_list'"),
    "metainfo of strings": ("metainfo.pt", {"arch": ["k3"]}, "metainfo.pt: expected {'arch'"),
    "short arch": ("arch.pt", [[0] * 22, [0] * 5], "reference arch 1: fbnet: arch has 5 entries, expected 22"),
    "bool op": ("arch.pt", [[0] * 22, [True] + [0] * 21], "position 0 holds True, expected an integer"),
    "float op": ("arch.pt", [[0] * 22, [0.5] + [0] * 21], "position 0 holds 0.5, expected an integer"),
}


@pytest.mark.parametrize("case", FBNET_REFERENCE_CASES)
def test_malformed_fbnet_arch_lists_are_refused(tmp_path, case):
    name, content, problem = FBNET_REFERENCE_CASES[case]
    folder = tmp_path / "fbnet"
    (folder / "latency").mkdir(parents=True)
    torch.save([1.0, 2.0], folder / "latency" / "pixel3.pt")
    if isinstance(content, bytes):
        (folder / name).write_bytes(content)
    else:
        torch.save(content, folder / name)
    assert_refused(tmp_path, folder, "help", problem, "--space", "fbnet")
    for command in (  # the other readers of HELP folders say it alike
        ["eval", "transfer", "--train", "pixel3", "--test", "pixel3"],
        ["pretrain", "--out", str(tmp_path / "p.pt")],
    ):
        result = CliRunner().invoke(app, [*command, "--data", str(folder), "--space", "fbnet"])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and problem in lines[0], result.output


def test_malformed_help_index_file_is_refused(tmp_path, str_arch2idx):
    folder = help_folder(tmp_path / "help", str_arch2idx, {"pixel3": np.full(nb201.NUM_ARCHS, 2.0)})
    (folder / "str_arch2idx.pt").write_bytes(b"\x00garbage")
    assert_refused(tmp_path, folder, "help", "str_arch2idx.pt: not a torch.save file")
    torch.save(["not", "a", "dict"], folder / "str_arch2idx.pt")
    assert_refused(tmp_path, folder, "help", "arch indices differ from the official NB201 ones")


def test_files_with_nothing_to_import_are_refused(tmp_path):
    """A file that holds no latency at all is the wrong file, not an empty device: refused, nothing stored."""
    assert_refused(tmp_path, _pickled(tmp_path, {}), "latbench", "no entries (an empty dict)", "--device", "phone")
    no_table = {"nasbench201": {"cifar10": {"fpga_energy": [1.0]}, "cifar100": {}}}
    assert_refused(tmp_path, _pickled(tmp_path, no_table), "hwnasbench", "no '<device>_latency' table")


def test_pretrain_refuses_a_missing_folder_device_or_bad_file_in_one_line(tmp_path, str_arch2idx):
    """``pretrain`` reads HELP folders with the same loader as ``import`` and ``eval transfer``, and says so alike; a
    folder that is no HELP folder is a usage error, as ``import``'s PATH and ``up --datasets``."""
    folder = help_folder(tmp_path / "help", str_arch2idx, {"pixel3": b"\x00garbage"})
    out = str(tmp_path / "p.pt")
    not_help = CliRunner().invoke(app, ["pretrain", "--data", str(tmp_path), "--out", out], env={"COLUMNS": "300"})
    assert not_help.exit_code == 2 and "not a HELP folder (needs latency/<device>.pt)" in not_help.output  # usage
    cases = [
        (["--data", str(folder), "--devices", "pixel9"], "no latency file for device 'pixel9'"),
        (["--data", str(folder)], "pixel3.pt: not a torch.save file"),
    ]
    for args, problem in cases:
        result = CliRunner().invoke(app, ["pretrain", *args, "--out", out])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith("latfarm pretrain: ") and problem in lines[0], result.output
    assert not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize(
    ("db", "problem"),
    [
        ("postgresql+psycopg://postgres:secret@127.0.0.1:1/test", "postgres:***@127.0.0.1:1/test: connection failed"),
        ("nosuch://x", "nosuch://x: Can't load plugin: sqlalchemy.dialects:nosuch"),
        ("not a url", "at an unparsable URL: Could not parse"),
    ],
)
def test_database_commands_say_in_one_line_when_the_database_cannot_be_used(tmp_path, db, problem):
    """import, export data, migrate and serve against a database that is down or a URL SQLAlchemy cannot use: one line
    naming it (password hidden) and the options, exit 1, no traceback."""
    path = tmp_path / "phone.pickle"
    path.write_bytes(pickle.dumps({OPS: 0.002}))
    commands = {
        "latfarm import": ["import", str(path), "--format", "latbench"],
        "latfarm export data": ["export", "data", "phone", "--format", "csv", "--out", str(tmp_path / "o.csv")],
        "latfarm migrate": ["migrate"],
        "latfarm serve": ["serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(tmp_path / "data")],
    }
    for prefix, command in commands.items():
        result = CliRunner().invoke(app, [*command, "--db", db])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith(f"{prefix}: cannot use the database ") and problem in lines[0], result.output
        assert lines[0].endswith("(--db / LATFARM_DB_URL)") and "secret" not in lines[0]
