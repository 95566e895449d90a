"""Dataset import (HELP, LatBench, HW-NAS-Bench) and export (CSV, LatBench pickle) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import pickle
import shutil
import statistics

import pytest
import torch
from sqlalchemy import func, select

from latfarm.predictor import nb201
from latfarm.predictor.spaces import get_space
from latfarm.services import datasets
from latfarm.services.cli.data import export_dataset, import_dataset
from latfarm.services.core.config import Settings
from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.models import Arch, Device, Measurement, Source

PG_HELP_DEVICES = ("pixel3", "titanx_32", "gold_6240")


def count(session, **where) -> int:
    query = select(func.count()).select_from(Measurement).join(Device)
    for key, value in where.items():
        query = query.where(getattr(Device, key) == value if key == "name" else getattr(Measurement, key) == value)
    return session.scalar(query)


def help_subset(help_dir, tmp_path, devices):
    """A HELP-layout folder holding only ``devices`` (to keep PostgreSQL runs short)."""
    (tmp_path / "latency").mkdir(parents=True)
    shutil.copy(help_dir / "str_arch2idx.pt", tmp_path)
    for name in devices:
        shutil.copy(help_dir / "latency" / f"{name}.pt", tmp_path / "latency")
    return tmp_path


def test_import_help(sessions, db_url, help_dir, tmp_path):
    on_sqlite = db_url.startswith("sqlite")
    folder = help_dir if on_sqlite else help_subset(help_dir, tmp_path, PG_HELP_DEVICES)
    devices = sorted(p.stem for p in (folder / "latency").glob("*.pt"))
    with sessions() as session, session.begin():
        added = datasets.import_help(session, folder, progress=False).added
    assert added == len(devices) * nb201.NUM_ARCHS
    if on_sqlite:
        assert len(devices) == 21
    with sessions() as session:
        assert count(session, dataset=datasets.HELP, source=Source.imported) == added
        assert session.scalar(select(func.count()).select_from(Arch)) == nb201.NUM_ARCHS
        titanx = session.scalars(select(Device).where(Device.name == "titanx_32")).one()
        assert titanx.batch_size == 32 and "Titan X" in titanx.hardware
        gold = session.scalars(select(Device).where(Device.name == "gold_6240")).one()
        assert gold.batch_size == 1 and "Xeon Gold 6240" in gold.hardware
        # HELP's conditions: the batch size its device names carry, fp32, the reference graph
        keys = dict(session.execute(select(Device.name, Measurement.conditions_key).join(Device).distinct()).all())
        assert keys["titanx_32"] == "nb201/32px/10cls/b32/fp32/reference"
        assert keys["gold_6240"] == keys["pixel3"] == "nb201/32px/10cls/b1/fp32/reference"
        assert count(session, name="titanx_32", conditions_key=keys["titanx_32"]) == nb201.NUM_ARCHS
        (conditions,) = session.scalars(
            select(Measurement.conditions).join(Device).where(Device.name == "titanx_32").limit(1)
        )
        assert conditions == Conditions(batch_size=32).to_dict()
        for name in ("pixel3", "titanx_32"):
            expected = torch.load(folder / "latency" / f"{name}.pt")
            for index in (0, 1, 4321, nb201.NUM_ARCHS - 1):
                got = session.execute(
                    select(Measurement.latency_ms, Measurement.median_ms)
                    .join(Device)
                    .join(Arch, Measurement.arch_id == Arch.id)
                    .where(Device.name == name, Arch.nb201_index == index)
                ).one()
                assert tuple(got) == pytest.approx((expected[index], expected[index]))
    with sessions() as session, session.begin():
        assert datasets.import_help(session, folder, progress=False) == datasets.Imported(0, added)  # idempotent
    with sessions() as session:
        assert count(session) == added


def test_import_help_rejects_a_non_help_folder(sessions, tmp_path):
    with sessions() as session, pytest.raises(datasets.DatasetError, match="not a HELP folder"):
        datasets.import_help(session, tmp_path, progress=False)


def latbench_pickle(path, n=50, seed=0):
    import random

    rng = random.Random(seed)
    data = {}
    while len(data) < n:
        data[tuple(rng.randrange(5) for _ in range(6))] = rng.uniform(0.001, 0.05)
    path.write_bytes(pickle.dumps(data))
    return data


def test_latbench_round_trip(sessions, tmp_path):
    data = latbench_pickle(tmp_path / "desktop-cpu.pickle")
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, tmp_path / "desktop-cpu.pickle") == datasets.Imported(len(data))
        assert datasets.import_latbench(session, tmp_path / "desktop-cpu.pickle") == datasets.Imported(0, len(data))
    with sessions() as session:
        rows = datasets.device_rows(session, "desktop-cpu")
    assert len(rows) == len(data)
    assert {tuple(r["ops"]): r["latency_ms"] for r in rows} == pytest.approx({k: v * 1000 for k, v in data.items()})
    assert all(r["median_ms"] == r["latency_ms"] and r["statistic"] == "" for r in rows)
    assert all(r["source"] == "imported" and r["dataset"] == datasets.LATBENCH for r in rows)
    assert {(r["batch_size"], r["precision"], r["graph"], r["resolution"], r["classes"]) for r in rows} == {
        (1, "fp32", "reference", 32, 10)  # LatBench: the reference network, at the device's batch size and precision
    }
    assert [r["nb201_index"] for r in rows] == sorted(nb201.official_index(k) for k in data)
    back = datasets.to_latbench(rows)
    assert back == pytest.approx(data)


def test_fbnet_latbench_round_trip(sessions, tmp_path):
    """``export data --space fbnet --format latbench`` writes FBNet's 22-index keys; they import back as FBNet."""
    fbnet = get_space("fbnet")
    data = {encoding: 0.01 + i * 1e-3 for i, encoding in enumerate(fbnet.sample(5, seed=3))}
    path = tmp_path / "phone.pickle"
    path.write_bytes(pickle.dumps(data))
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, path, space="fbnet") == datasets.Imported(len(data))
        assert datasets.import_latbench(session, path, space="fbnet") == datasets.Imported(0, len(data))
        with pytest.raises(datasets.DatasetError, match="op vector must have 6 entries, got 22"):
            datasets.import_latbench(session, path)  # NB201's layout
    with sessions() as session:
        rows = datasets.device_rows(session, "phone", own_conditions=True, space="fbnet")
    assert {(r["resolution"], r["classes"]) for r in rows} == {(32, 100)}  # the device's FBNet variant
    assert datasets.to_latbench(rows) == pytest.approx(data)
    nb201_file = tmp_path / "nb201.pickle"
    nb201_file.write_bytes(pickle.dumps({(1, 2, 3, 4, 0, 1): 0.003}))
    with sessions() as session, pytest.raises(datasets.DatasetError, match="arch has 6 entries, expected 22"):
        datasets.import_latbench(session, nb201_file, space="fbnet")


def test_exported_times_are_utc_with_z_on_either_database(sessions, tmp_path):
    """An export's ``created_at`` reads as every time the API returns (SQLite hands back naive datetimes,
    PostgreSQL aware ones: both are written ``...Z``)."""
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps({(1, 2, 3, 4, 0, 1): 0.003}))
    with sessions() as session, session.begin():
        datasets.import_latbench(session, path, device="my-phone")
        (row,) = datasets.device_rows(session, "my-phone")
    assert row["created_at"].endswith("Z") and "+" not in row["created_at"], row["created_at"]
    (written,) = csv.DictReader(io.StringIO(datasets.to_csv([row])))
    assert written["created_at"] == row["created_at"]


def test_latbench_named_device_and_bad_input(sessions, tmp_path):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps({(1, 2, 3, 4, 0, 1): [0.002, 0.004, 0.003]}))
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, path, device="my-phone") == datasets.Imported(1)
        (row,) = datasets.device_rows(session, "my-phone")
        assert (row["latency_ms"], row["median_ms"]) == pytest.approx((3.0, 3.0))
    path.write_bytes(pickle.dumps({(1, 2, 3): 0.1}))
    with sessions() as session, pytest.raises(datasets.DatasetError, match="6 entries"):
        datasets.import_latbench(session, path)
    path.write_bytes(pickle.dumps({(1, 2, 3, 4, 0, 1): -1.0}))
    with (
        sessions() as session,
        pytest.raises(datasets.DatasetError, match="must be between 0.0001 ms and 10000000 ms, got -1000 ms"),
    ):
        datasets.import_latbench(session, path)


def test_hwnasbench_import(sessions, tmp_path):
    edgegpu = [0.5 + i * 1e-3 for i in range(300)]  # a list: position = NB201 index
    raspi4 = {i: 10.0 + i % 7 for i in range(0, 15625, 500)}
    data = {
        "nasbench201": {
            "cifar10": {"edgegpu_latency": edgegpu, "raspi4_latency": raspi4, "edgegpu_energy": [1.0] * 300},
            "ImageNet16-120": {"edgegpu_latency": [2.0] * 10},
        }
    }
    path = tmp_path / "HW-NAS-Bench-v1_0.pickle"
    path.write_bytes(pickle.dumps(data))
    with sessions() as session, session.begin():
        added = datasets.import_hwnasbench(session, path).added
    assert added == len(edgegpu) + len(raspi4) + 10
    with sessions() as session, session.begin():
        assert datasets.import_hwnasbench(session, path) == datasets.Imported(0, added)
    with sessions() as session:
        names = set(session.scalars(select(Device.name)))
        assert names == {"edgegpu", "raspi4", "edgegpu-ImageNet16-120"}
        keys = dict(session.execute(select(Device.name, Measurement.conditions_key).join(Measurement.device)).all())
        # the reference graph, the devices' batch size and precision, each dataset's input variant
        assert keys == {
            "edgegpu": Conditions().key,
            "raspi4": Conditions().key,
            "edgegpu-ImageNet16-120": Conditions(resolution=16, classes=120).key,
        }
        assert {r["latency_ms"] for r in datasets.device_rows(session, "edgegpu-ImageNet16-120")} == {2.0}
        assert count(session, name="edgegpu", dataset=datasets.HWNASBENCH) == len(edgegpu)
        rows = {r["nb201_index"]: r["latency_ms"] for r in datasets.device_rows(session, "raspi4")}
        assert rows == pytest.approx(raspi4)
        rows = datasets.device_rows(session, "edgegpu")
        assert {r["nb201_index"]: r["latency_ms"] for r in rows} == pytest.approx(dict(enumerate(edgegpu)))
        assert all(r["median_ms"] == r["latency_ms"] for r in rows)
    path.write_bytes(pickle.dumps({"nasbench201": {"cifar10": {"fpga_latency": {99999: 1.0}}}}))
    with (
        sessions() as session,
        pytest.raises(datasets.DatasetError, match="nb201: reference position 99999 is outside 0\\.\\.15624"),
    ):
        datasets.import_hwnasbench(session, path)


def test_csv_export_and_unknown_device(sessions, tmp_path):
    data = latbench_pickle(tmp_path / "dev.pickle", n=5, seed=1)
    with sessions() as session, session.begin():
        datasets.import_latbench(session, tmp_path / "dev.pickle")
        rows = datasets.device_rows(session, "dev")
        with pytest.raises(datasets.DatasetError, match="unknown device 'nope'.*dev"):
            datasets.device_rows(session, "nope")
    parsed = list(csv.DictReader(io.StringIO(datasets.to_csv(rows))))
    assert [tuple(int(c) for c in r["ops"]) for r in parsed] == [tuple(r["ops"]) for r in rows]
    assert {r["arch"] for r in parsed} == {nb201.to_string(k) for k in data}
    assert list(parsed[0])[3:6] == ["latency_ms", "statistic", "median_ms"]
    for column in ("batch_size", "precision", "graph", "resolution", "classes", "session_create_ms"):
        assert column in parsed[0] and "first_inference_ms" in parsed[0]
    assert {(r["batch_size"], r["precision"], r["graph"]) for r in parsed} == {("1", "fp32", "reference")}
    assert [float(r["latency_ms"]) for r in parsed] == pytest.approx([r["latency_ms"] for r in rows])
    assert [float(r["median_ms"]) for r in parsed] == pytest.approx([r["median_ms"] for r in rows])
    assert {r["source"] for r in parsed} == {"imported"}


def test_exports_keep_every_rows_conditions_and_latbench_only_the_devices(sessions, tmp_path):
    """A row measured under other conditions (an agent's batch-1 pruned figure) is in the CSV with its conditions
    and cold-start figures, but not in the LatBench pickle, which has no room for conditions."""
    data = latbench_pickle(tmp_path / "dev.pickle", n=3, seed=2)
    with sessions() as session, session.begin():
        datasets.import_latbench(session, tmp_path / "dev.pickle")
        device = session.scalars(select(Device).where(Device.name == "dev")).one()
        other = Conditions(batch_size=4, graph="pruned")
        arch_id = session.scalars(select(Measurement.arch_id).where(Measurement.device_id == device.id).limit(1)).one()
        session.add(
            Measurement(
                device_id=device.id,
                arch_id=arch_id,
                source=Source.measured,
                latency_ms=123.0,
                median_ms=124.0,
                session_create_ms=55.0,
                first_inference_ms=7.5,
                conditions=other.to_dict(),
                conditions_key=other.key,
            )
        )
    with sessions() as session:
        everything = datasets.device_rows(session, "dev")
        own = datasets.device_rows(session, "dev", own_conditions=True)
    parsed = list(csv.DictReader(io.StringIO(datasets.to_csv(everything))))
    (agent,) = [r for r in parsed if r["source"] == "measured"]
    assert (agent["batch_size"], agent["graph"], agent["session_create_ms"], agent["first_inference_ms"]) == (
        "4",
        "pruned",
        "55.0",
        "7.5",
    )
    assert len(own) == len(data) and all(r["latency_ms"] != 123.0 for r in own)
    assert datasets.to_latbench(own) == pytest.approx(data)


def test_latbench_export_takes_the_median_latency_per_arch():
    ops = (3, 3, 3, 3, 3, 3)
    rows = [{"ops": ops, "latency_ms": ms, "median_ms": 9.0} for ms in (1.0, 5.0, 2.0)]
    rows.append({"ops": (1,) * 6, "latency_ms": 4.0, "median_ms": 9.0})
    back = datasets.to_latbench(rows)
    assert back == pytest.approx({ops: statistics.median([1.0, 5.0, 2.0]) / 1000, (1,) * 6: 0.004})


def test_import_and_export_commands(help_dir, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    folder = help_subset(help_dir, tmp_path / "help", ["samsung_s7"])
    summary = import_dataset(settings, folder, fmt="help")
    assert summary["rows_added"] == nb201.NUM_ARCHS
    assert import_dataset(settings, folder, fmt="help")["rows_added"] == 0
    out = tmp_path / "out" / "s7.pickle"
    export_dataset(settings, "samsung_s7", fmt="latbench", out=out)
    exported = pickle.loads(out.read_bytes())
    expected = torch.load(folder / "latency" / "samsung_s7.pt")
    assert len(exported) == nb201.NUM_ARCHS
    assert exported[nb201.from_official_index(42)] * 1000 == pytest.approx(expected[42])
    with pytest.raises(SystemExit, match="unknown dataset format"):
        import_dataset(settings, folder, fmt="nope")
    with pytest.raises(SystemExit, match="not a HELP folder"):
        import_dataset(settings, tmp_path, fmt="help")
    with pytest.raises(SystemExit, match="unknown device"):
        export_dataset(settings, "nope", fmt="csv", out=tmp_path / "x.csv")


def test_store_functions_raise_and_commands_exit(tmp_path, capsys):
    settings = Settings(data_dir=tmp_path / "data")
    data = latbench_pickle(tmp_path / "phone.pickle", n=20)
    summary = datasets.import_into_store(settings, tmp_path / "phone.pickle", fmt="latbench", device="my-phone")
    assert (summary["dataset"], summary["rows_added"]) == (datasets.LATBENCH, len(data))
    again = import_dataset(settings, tmp_path / "phone.pickle", fmt="latbench", device="my-phone")
    assert again["rows_added"] == 0
    assert datasets.export_from_store(settings, "my-phone", fmt="csv", out=tmp_path / "out" / "p.csv") == len(data)
    export_dataset(settings, "my-phone", fmt="latbench", out=tmp_path / "p.pickle")
    assert pickle.loads((tmp_path / "p.pickle").read_bytes()) == pytest.approx(data)
    assert f"wrote {len(data)} archs (each the median of its measurements) of my-phone" in capsys.readouterr().out
    with pytest.raises(datasets.DatasetError, match="unknown dataset format"):
        datasets.import_into_store(settings, tmp_path, fmt="nope")
    with pytest.raises(datasets.DatasetError, match="unknown export format"):
        datasets.export_from_store(settings, "my-phone", fmt="xml", out=tmp_path / "x")
    with pytest.raises(
        SystemExit,
        match=r"^latfarm export data: unknown export format 'xml'; expected one of csv, latbench \(database ",
    ):
        export_dataset(settings, "my-phone", fmt="xml", out=tmp_path / "x")


def test_import_says_folder_or_file_for_a_path_of_the_wrong_kind(sessions, tmp_path):
    """#15 item 5: a folder given to a pickle format, a file given to HELP, and a path that does not exist."""
    (tmp_path / "a.pickle").write_bytes(b"")
    cases = [
        (lambda s: datasets.import_latbench(s, tmp_path), f"{tmp_path} is a folder; --format latbench reads a pickle"),
        (
            lambda s: datasets.import_hwnasbench(s, tmp_path),
            "is a folder; --format hwnasbench reads a pickle file; for",
        ),
        (lambda s: datasets.import_help(s, tmp_path / "a.pickle", progress=False), "a.pickle is a file; --format help"),
        (lambda s: datasets.import_help(s, tmp_path / "nope", progress=False), f"{tmp_path / 'nope'}: no such folder"),
    ]
    for run, message in cases:
        with sessions() as session, pytest.raises(datasets.DatasetError) as err:
            run(session)
        assert message in str(err.value)
