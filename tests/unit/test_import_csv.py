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
from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.models import Base, Device, Measurement, Source
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
    median; the same file again, or under the exported device's own name, adds nothing."""
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
        assert datasets.import_csv(session, path, "dev") == datasets.Imported(0, 21)
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
