"""latfarm's own CSV export imports back (``datasets.csvrows``): same figures under the rows' conditions, once, and
a bad file refused whole, naming its line and column."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from latfarm.predictor.spaces import get_space
from latfarm.services import datasets
from latfarm.services.cli import app
from latfarm.services.core.config import Settings
from latfarm.services.datasets.writers import CONDITION_FIELDS
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.results import FIGURES, FIRST_USE, SETUP
from latfarm.services.store.db import make_engine, make_sessionmaker, transaction
from latfarm.services.store.models import Base, Device, Measurement, Source
from tests.api_support import add_device, add_measurements
from tests.unit.test_datasets import latbench_pickle

FIGURE = ("arch", "latency_ms", "batch_size", "precision", "graph", "resolution", "classes")


def figures(rows: list[dict]) -> list[tuple]:
    """A device's figures as a CSV import keeps them: the arch, its latency and the row's conditions."""
    return sorted(tuple(row[name] for name in FIGURE) for row in rows)


def add_agent_rows(session, device_name: str, ms: tuple[float, ...], conditions: Conditions) -> None:
    """Agent rows of the device's first arch under ``conditions``, one per figure in ``ms``."""
    device = session.scalars(select(Device).where(Device.name == device_name)).one()
    arch_id = session.scalars(select(Measurement.arch_id).where(Measurement.device_id == device.id).limit(1)).one()
    for value in ms:
        session.add(
            Measurement(
                device_id=device.id,
                arch_id=arch_id,
                source=Source.measured,
                latency_ms=value,
                median_ms=value,
                conditions=conditions.to_dict(),
                conditions_key=conditions.key,
            )
        )


def test_csv_export_imports_back_under_another_name_once(sessions, tmp_path):
    """Every row's conditions as written; two agent rows of one arch under the same conditions come in as their
    median; the same file again, or as a copy under the exported device's own name, adds nothing."""
    latbench_pickle(tmp_path / "dev.pickle", n=20, seed=4)
    other = Conditions(batch_size=4, graph="pruned")
    with sessions() as session, session.begin():
        datasets.import_latbench(session, tmp_path / "dev.pickle")
        add_agent_rows(session, "dev", (7.0, 9.0, 8.0), other)
    with sessions() as session:
        original = datasets.device_rows(session, "dev")
    path = tmp_path / "copy.csv"
    path.write_text(datasets.to_csv(original))
    with sessions() as session, session.begin():
        assert datasets.import_csv(session, path) == datasets.Imported(21)
        assert datasets.import_csv(session, path) == datasets.Imported(0, 21)
        with pytest.raises(datasets.DatasetError, match="imported before as device 'copy'"):
            datasets.import_csv(session, path, "dev")  # one file's figures belong to one device
        assert datasets.import_csv(session, path, "dev", copy=True) == datasets.Imported(0, 21)
    with sessions() as session:
        copy = datasets.device_rows(session, "copy")
        assert session.scalar(select(func.count()).select_from(Measurement)) == 20 + 3 + 21
    expected = [row for row in figures(original) if row[1] not in (7.0, 9.0)]  # the three agent rows: their median
    assert figures(copy) == expected
    assert {(row["source"], row["dataset"]) for row in copy} == {("imported", "csv")}
    with sessions() as session:  # one dataset holds the first arch under two conditions (uq_measurements_dataset)
        keys = session.scalars(select(Measurement.conditions_key).where(Measurement.dataset == "csv"))
        assert set(keys) == {Conditions().key, other.key}


def test_fbnet_csv_names_its_space(sessions, tmp_path):
    fbnet = get_space("fbnet")
    archs = [fbnet.to_string(encoding) for encoding in fbnet.sample(4, seed=5)]
    conditions = {"batch_size": 1, "precision": "fp16", "graph": "reference", "resolution": 32, "classes": 100}
    rows = [{"arch": arch, "latency_ms": 10.0 + i, **conditions} for i, arch in enumerate(archs)]
    path = tmp_path / "phone.csv"
    path.write_text(datasets.to_csv([{**row, "ops": fbnet.parse(row["arch"])} for row in rows], space="fbnet"))
    with sessions() as session, session.begin():
        assert datasets.import_csv(session, path) == datasets.Imported(4)
    with sessions() as session:
        back = datasets.device_rows(session, "phone", space="fbnet")
    assert figures(back) == figures(rows)


def test_import_command_detects_a_csv_into_a_fresh_database(tmp_path):
    """``latfarm import FILE.csv`` with no --format: a CSV export moves a device to another server's database."""
    first = Settings(data_dir=tmp_path / "first")
    latbench_pickle(tmp_path / "phone.pickle", n=30, seed=6)
    datasets.import_into_store(first, tmp_path / "phone.pickle", fmt="latbench")
    out = tmp_path / "phone.csv"
    datasets.export_from_store(first, "phone", fmt="csv", out=out)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["import", str(out), "--db", fresh, "--device", "phone-2"])
    assert result.exit_code == 0, result.output
    assert f"imported 30 new measurements from {out} (csv)" in result.output
    again = runner.invoke(app, ["import", str(out), "--db", fresh, "--device", "phone-2"])
    assert "imported 0 new measurements" in again.output and "30 already present" in again.output
    engine = make_engine(fresh)
    try:
        with make_sessionmaker(engine)() as session:
            copied = datasets.device_rows(session, "phone-2")
    finally:
        engine.dispose()
    engine = make_engine(first.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            assert figures(copied) == figures(datasets.device_rows(session, "phone"))
    finally:
        engine.dispose()


ROUND_TRIP = ("arch", "nb201_index", "ops", "latency_ms", "statistic", *FIGURES, *CONDITION_FIELDS, *SETUP, *FIRST_USE)


def read_store(url: str, device: str, **how) -> list[dict]:
    """``datasets.device_rows`` of the store at ``url``."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return datasets.device_rows(session, device, **how)
    finally:
        engine.dispose()


def test_rest_exports_import_back_into_a_fresh_store_with_the_same_figures(api, keys, tmp_path):
    """``GET /v1/devices/{name}/export`` as CSV and LatBench, each imported into a fresh store: every figure, the
    statistic, the setup and first-use timings come back; the origin (agent, job, time) in the rows' provenance."""
    add_device(api, "phone")
    add_measurements(api, "phone", {0: 1.5, 7: 3.0, 99: 4.25}, std=0.1, drawn_at_random=True)
    add_measurements(api, "phone", {5: 2.0}, conditions=Conditions(batch_size=4), unstable=True, statistic="median")
    with transaction(api.app.state.sessions) as session:
        session.execute(
            Measurement.__table__.update().values(
                runs=50,
                mean_ms=Measurement.median_ms,
                p90_ms=Measurement.median_ms + 1,
                runtime="onnxruntime",
                runtime_version="1.20.1",
                provider="CPUExecutionProvider",
                threads=4,
                session_create_ms=12.5,
                first_inference_ms=0.0,
            )
        )
    original = read_store(api.app.state.settings.database_url, "phone")
    exported = api.get("/v1/devices/phone/export?format=csv", headers=keys["client"])
    (tmp_path / "phone.csv").write_bytes(exported.content)
    pickled = api.get("/v1/devices/phone/export?format=latbench", headers=keys["client"])
    (tmp_path / "phone.pickle").write_bytes(pickled.content)

    fresh = f"sqlite:///{tmp_path / 'csv.db'}"
    result = CliRunner().invoke(app, ["import", str(tmp_path / "phone.csv"), "--db", fresh])
    assert result.exit_code == 0, result.output
    back = read_store(fresh, "phone")
    assert [[row[name] for name in ROUND_TRIP] for row in back] == [
        [row[name] for name in ROUND_TRIP] for row in original
    ]
    assert {(row["source"], row["dataset"]) for row in back} == {("imported", "csv")}
    engine = make_engine(fresh)
    try:
        with make_sessionmaker(engine)() as session:
            origins = [row["origin"] for row in session.scalars(select(Measurement.provenance))]
    finally:
        engine.dispose()
    assert sorted(origin["job_id"] for origin in origins if "job_id" in origin) == sorted(
        row["job_id"] for row in original if row["job_id"]
    )
    assert {origin["source"] for origin in origins} == {"measured"}

    fresh = f"sqlite:///{tmp_path / 'latbench.db'}"
    args = ["import", str(tmp_path / "phone.pickle"), "--format", "latbench", "--db", fresh]
    assert CliRunner().invoke(app, args).exit_code == 0
    own = read_store(api.app.state.settings.database_url, "phone", own_conditions=True)
    assert datasets.to_latbench(read_store(fresh, "phone")) == pytest.approx(datasets.to_latbench(own))


def test_space_that_contradicts_a_csv_is_a_usage_error(tmp_path):
    """A CSV names its space; ``--space`` another is refused (exit 2), nothing created; its own is fine. So is
    another space than NB201 for HW-NAS-Bench."""
    path = tmp_path / "phone.csv"
    path.write_text(f"{GOOD}\n{ROW}\n")
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["import", str(path), "--space", "fbnet", "--data-dir", str(data)])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.replace("│", " ").split())  # the file's path may wrap mid-name in the box
    assert "holds nb201 data (its nb201_index column); drop --space or give --space nb201" in shown
    assert not data.exists()
    with pytest.raises(datasets.DatasetError, match="--space fbnet: .*holds nb201 data"):
        datasets.import_into_store(Settings(data_dir=data), path, fmt="csv", space="fbnet")
    assert not data.exists()
    result = CliRunner().invoke(app, ["import", str(path), "--space", "nb201", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    hwnas = CliRunner().invoke(app, ["import", str(path), "--format", "hwnasbench", "--space", "fbnet"])
    assert hwnas.exit_code == 2 and "hwnasbench data is nb201 data, not fbnet" in hwnas.output


GOOD = "arch,nb201_index,ops,latency_ms,batch_size,precision,graph,resolution,classes"
LINE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ROW = f"{LINE},,,2.5,1,fp32,reference,32,10"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (f"{GOOD}\n", "no rows below the header"),
        (GOOD.replace("nb201_index", "index") + f"\n{ROW}\n", "line 1: expected one of the columns"),
        (f"{GOOD},colour\n{ROW},red\n", "line 1: unknown column 'colour'"),
        (GOOD.replace(",graph", "") + "\n" + ROW.replace(",reference", ""), "line 1: missing column 'graph'"),
        (f"{GOOD},arch\n{ROW},x\n", "line 1: column 'arch' appears more than once"),
        (f"{GOOD}\n{ROW}\n{ROW.replace('nor_conv_3x3~0', 'conv9~0')}\n", "line 3, column arch: "),
        (f"{GOOD}\n{ROW}\n{ROW.replace(',,,', ',,999999,')}\n", "line 3, column ops: '999999' is not the encoding"),
        (f"{GOOD}\n{ROW}\n{ROW.replace('2.5', '0')}\n", "line 3, column latency_ms"),
        (f"{GOOD}\n{ROW}\n{ROW.replace('2.5', '-1')}\n", "line 3, column latency_ms"),
        (f"{GOOD}\n{ROW}\n{ROW.replace('2.5', 'nan')}\n", "line 3, column latency_ms: must be between .* got nan ms"),
        (f"{GOOD}\n{ROW}\n{ROW.replace('2.5', 'fast')}\n", "line 3, column latency_ms: 'fast' is not a number"),
        (f"{GOOD}\n{ROW}\n{ROW.replace(',1,fp32', ',one,fp32')}\n", "line 3, column batch_size: 'one' is not an"),
        (f"{GOOD}\n{ROW}\n{ROW.replace('fp32', 'fp8')}\n", "line 3, column precision"),
        (f"{GOOD}\n{ROW}\n{ROW.replace(',32,10', ',224,10')}\n", "line 3, column resolution"),
        (f"{GOOD}\n{ROW}\n{ROW.removesuffix(',10')}\n", "line 3: expected 9 fields"),
        (f"{GOOD}\n{ROW}\n{ROW},extra\n", "line 3: expected 9 fields"),
    ],
)
def test_a_bad_csv_is_refused_whole_naming_line_and_column(sqlite_url, tmp_path, text, message):
    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    path = tmp_path / "bad.csv"
    path.write_text(text)
    try:
        with pytest.raises(datasets.DatasetError, match=message), sessions() as session, session.begin():
            datasets.import_csv(session, path)
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Measurement)) == 0
            assert session.scalar(select(func.count()).select_from(Device)) == 0
    finally:
        engine.dispose()


def test_import_command_refuses_a_bad_csv_in_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(f"{GOOD}\n{ROW.replace('2.5', '0')}\n")
    result = CliRunner().invoke(app, ["import", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"latfarm import: {path}: line 2, column latency_ms")
