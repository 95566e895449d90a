"""The same figures never come in twice: an import skips, and counts as present, every arch the device already has a
row of under the same conditions, whatever file, format or dataset name brings it (``datasets.rows.add_rows``)."""

from __future__ import annotations

import hashlib
import pickle
import threading

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from latfarm.predictor import nb201
from latfarm.services import datasets
from latfarm.services.cli import app
from latfarm.services.core.config import Settings
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.models import Device, ImportedFile, Measurement, Source
from tests.unit.test_datasets import help_subset, latbench_pickle


def rows_of(session, device: str) -> list[tuple]:
    """(arch_id, source, dataset, latency_ms, quarantined, conditions_key) of every row of ``device``, by id."""
    return session.execute(
        select(
            Measurement.arch_id,
            Measurement.source,
            Measurement.dataset,
            Measurement.latency_ms,
            Measurement.quarantined,
            Measurement.conditions_key,
        )
        .join(Device)
        .where(Device.name == device)
        .order_by(Measurement.id)
    ).all()


def test_a_latbench_export_of_a_help_device_imports_back_as_present(sessions, help_dir, tmp_path):
    """HELP rows are dataset help-nb201, a LatBench file's are latbench: the figures are the same ones."""
    folder = help_subset(help_dir, tmp_path / "help", ["samsung_s7"])
    with sessions() as session, session.begin():
        assert datasets.import_help(session, folder, progress=False) == datasets.Imported(nb201.NUM_ARCHS)
        exported = datasets.to_latbench(datasets.device_rows(session, "samsung_s7", own_conditions=True))
    path = tmp_path / "another-name.pickle"
    path.write_bytes(pickle.dumps(exported))
    with sessions() as session:
        before = rows_of(session, "samsung_s7")
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, path, "samsung_s7") == datasets.Imported(0, nb201.NUM_ARCHS)
    with sessions() as session:
        assert rows_of(session, "samsung_s7") == before


def test_a_device_two_datasets_hold_gets_each_figure_once(sessions, help_dir, tmp_path):
    """HW-NAS-Bench's pixel3 and HELP's pixel3 (whose figures originate in HW-NAS-Bench) are one device under the
    same conditions: the second import adds only the archs the first lacked."""
    first = {index: 1.0 + index / 1e4 for index in range(0, nb201.NUM_ARCHS, 100)}
    path = tmp_path / "hw.pickle"
    path.write_bytes(pickle.dumps({"nasbench201": {"cifar10": {"pixel3_latency": first}}}))
    folder = help_subset(help_dir, tmp_path / "help", ["pixel3"])
    with sessions() as session, session.begin():
        assert datasets.import_hwnasbench(session, path) == datasets.Imported(len(first))
        help_rows = datasets.import_help(session, folder, progress=False)
    assert help_rows == datasets.Imported(nb201.NUM_ARCHS - len(first), len(first))
    with sessions() as session:
        rows = rows_of(session, "pixel3")
        by_dataset = dict(
            session.execute(select(Measurement.dataset, func.count()).group_by(Measurement.dataset)).all()
        )
    assert len(rows) == len({arch_id for arch_id, *_ in rows}) == nb201.NUM_ARCHS
    assert by_dataset == {datasets.HWNASBENCH: len(first), datasets.HELP: nb201.NUM_ARCHS - len(first)}
    kept = {latency for _, _, dataset, latency, *_ in rows if dataset == datasets.HWNASBENCH}
    assert kept == set(first.values())  # the first figure stays; the import changes no row


def test_agent_rows_and_quarantined_rows_count_as_present_and_are_kept(sessions, tmp_path):
    """An arch an agent measured under the device's conditions, or whose imported row an admin quarantined, is
    present: the import neither adds beside it nor touches it. A row under other conditions (batch 4) is another
    figure."""
    data = latbench_pickle(tmp_path / "dev.pickle", n=6, seed=4)
    archs = [nb201.to_string(ops) for ops in data]  # A, B imported first (A then quarantined); C, D agent-measured
    (tmp_path / "first.pickle").write_bytes(pickle.dumps(dict(list(data.items())[:2])))
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, tmp_path / "first.pickle", "dev") == datasets.Imported(2)
        device = device_by_name(session, "dev")
        ids = ensure_archs(session, archs)
        session.execute(update(Measurement).where(Measurement.arch_id == ids[archs[0]]).values(quarantined=True))
        own, other = conditions_of(device), Conditions(batch_size=4)
        for arch, conditions in ((archs[2], own), (archs[3], other)):
            session.add(
                Measurement(
                    device_id=device.id,
                    arch_id=ids[arch],
                    source=Source.measured,
                    latency_ms=7.0,
                    median_ms=7.5,
                    conditions=conditions.to_dict(),
                    conditions_key=conditions.key,
                )
            )
    with sessions() as session:
        before = rows_of(session, "dev")
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, tmp_path / "dev.pickle", "dev") == datasets.Imported(3, 3)
    with sessions() as session:
        after = rows_of(session, "dev")
    assert after[: len(before)] == before
    assert {(arch_id, source, dataset, key) for arch_id, source, dataset, _, _, key in after[len(before) :]} == {
        (ids[arch], Source.imported, datasets.LATBENCH, own.key) for arch in archs[3:]
    }


def test_cli_round_trip_export_and_import_back_adds_nothing(help_dir, tmp_path):
    """``latfarm import`` a HELP device, ``export data --format latbench``, import the file back under the device:
    nothing is added, the line says how many were already present, and the device's rows are as before."""
    folder = help_subset(help_dir, tmp_path / "help", ["samsung_s7"])
    store = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    first = runner.invoke(app, ["import", str(folder), "--format", "help", *store])
    assert first.exit_code == 0, first.output
    assert f"imported {nb201.NUM_ARCHS} new measurements from {folder} (help-nb201)" in first.output
    assert "already present" not in first.output
    out = tmp_path / "s7.pickle"
    exported = runner.invoke(app, ["export", "data", "samsung_s7", "--format", "latbench", "--out", str(out), *store])
    assert exported.exit_code == 0, exported.output
    csv_before = tmp_path / "before.csv"
    result = runner.invoke(app, ["export", "data", "samsung_s7", "--format", "csv", "--out", str(csv_before), *store])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["import", str(out), "--format", "latbench", "--device", "samsung_s7", *store])
    assert again.exit_code == 0, again.output
    assert f"imported 0 new measurements from {out} (latbench)" in again.output
    assert f"; {nb201.NUM_ARCHS} already present (the device has a row of the arch under the same conditions)" in (
        again.output
    )
    csv_after = tmp_path / "after.csv"
    result = runner.invoke(app, ["export", "data", "samsung_s7", "--format", "csv", "--out", str(csv_after), *store])
    assert result.exit_code == 0, result.output
    assert csv_after.read_text() == csv_before.read_text()
    assert len(csv_after.read_text().splitlines()) == nb201.NUM_ARCHS + 1


def test_imports_beside_each_other_take_turns(sessions, tmp_path):
    """An import of one device's figures under another dataset name, started while the first is still open, waits
    for it and adds nothing (PostgreSQL: the import lock; SQLite: the write turn)."""
    data = latbench_pickle(tmp_path / "dev.pickle", n=5, seed=5)
    table = {nb201.official_index(ops): seconds * 1000 for ops, seconds in data.items()}
    (tmp_path / "hw.pickle").write_bytes(pickle.dumps({"nasbench201": {"cifar10": {"dev_latency": table}}}))
    with sessions() as session, session.begin():  # the device and archs exist: only the rows are in contention
        datasets.ensure_device(session, "dev", datasets.LATBENCH)
        ensure_archs(session, [nb201.to_string(ops) for ops in data])
    second: list[datasets.Imported] = []

    def import_second() -> None:
        with sessions() as session, session.begin():
            second.append(datasets.import_hwnasbench(session, tmp_path / "hw.pickle"))

    with sessions() as first:
        first.begin()
        assert datasets.import_latbench(first, tmp_path / "dev.pickle", "dev") == datasets.Imported(len(data))
        beside = threading.Thread(target=import_second)
        beside.start()
        beside.join(timeout=1.0)
        assert beside.is_alive()  # waiting for the first to end
        first.commit()
    beside.join(timeout=30.0)
    assert second == [datasets.Imported(0, len(data))]
    with sessions() as session:
        assert len(rows_of(session, "dev")) == len(data)


def test_one_file_under_two_device_names_is_refused_unless_copy(tmp_path):
    """A LatBench or CSV file imported as one device is refused under another name (a renamed copy of the file
    too), naming the device it was imported as, with nothing stored; again under that device it adds what it
    lacks; ``--copy`` imports it under the other name too."""
    data = tmp_path / "data"
    latbench_pickle(tmp_path / "phone.pickle", n=8, seed=7)
    (tmp_path / "renamed.pickle").write_bytes((tmp_path / "phone.pickle").read_bytes())
    runner = CliRunner()

    def run(path, *extra):
        args = ["import", str(path), "--format", "latbench", "--data-dir", str(data), *extra]
        return runner.invoke(app, args)

    assert run(tmp_path / "phone.pickle").exit_code == 0
    for path, extra, name in (("phone.pickle", ["--device", "tablet"], "tablet"), ("renamed.pickle", [], "renamed")):
        refused = run(tmp_path / path, *extra)
        assert refused.exit_code == 1, refused.output
        assert refused.output.strip().splitlines() == [
            f"latfarm import: {tmp_path / path}: imported before as device 'phone'; one file's figures belong to one "
            f"device: import it as 'phone' again (--device phone), or pass --copy to import it as {name!r} too"
        ]
    again = run(tmp_path / "renamed.pickle", "--device", "phone")
    assert again.exit_code == 0 and "imported 0 new measurements" in again.output
    assert run(tmp_path / "phone.pickle", "--device", "tablet", "--copy").exit_code == 0
    third = run(tmp_path / "phone.pickle", "--device", "watch")
    assert third.exit_code == 1 and "imported before as device 'phone' and 'tablet'" in third.output
    engine = make_engine(Settings(data_dir=data).database_url)
    try:
        with make_sessionmaker(engine)() as session:
            counts = dict(
                session.execute(
                    select(Device.name, func.count(Measurement.id)).join(Measurement).group_by(Device.name)
                ).all()
            )
            sources = set(session.scalars(select(Measurement.provenance["file"].as_string())))
    finally:
        engine.dispose()
    assert counts == {"phone": 8, "tablet": 8}
    assert sources == {"phone.pickle"}


def test_a_csv_under_a_second_name_is_refused_and_copy_is_for_single_device_files(help_dir, tmp_path):
    data = tmp_path / "data"
    path = tmp_path / "phone.csv"
    path.write_text(
        "arch,nb201_index,latency_ms,batch_size,precision,graph,resolution,classes\n"
        f"{nb201.to_string(nb201.from_official_index(3))},3,2.5,1,fp32,reference,32,10\n"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["import", str(path), "--data-dir", str(data)]).exit_code == 0
    refused = runner.invoke(app, ["import", str(path), "--device", "tablet", "--data-dir", str(data)])
    assert refused.exit_code == 1 and "imported before as device 'phone'" in refused.output
    usage = runner.invoke(app, ["import", str(help_dir), "--format", "help", "--copy", "--data-dir", str(data)])
    assert usage.exit_code == 2 and "--copy is for a LatBench or CSV file" in " ".join(
        usage.output.replace("│", " ").split()
    )


def files_of(session) -> list[tuple]:
    """(sha256, device name, format, space, file) of every imported file's record, by device name."""
    return session.execute(
        select(ImportedFile.sha256, Device.name, ImportedFile.format, ImportedFile.space, ImportedFile.file)
        .join(Device)
        .order_by(Device.name)
    ).all()


def test_a_file_that_added_no_row_is_still_claimed_by_its_device(sessions, tmp_path):
    """A file all of whose figures the device had adds no row but is recorded as imported as that device, in the
    import's transaction: under another name it is refused, and the refusal stores nothing."""
    data = latbench_pickle(tmp_path / "phone.pickle", n=8, seed=8)
    part = tmp_path / "part.pickle"  # other bytes, figures the device already has
    part.write_bytes(pickle.dumps(dict(list(data.items())[:3])))
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, tmp_path / "phone.pickle") == datasets.Imported(8)
        assert datasets.import_latbench(session, part, "phone") == datasets.Imported(0, 3)
    digest = hashlib.sha256(part.read_bytes()).hexdigest()
    with sessions() as session:
        before = files_of(session)
        assert (digest, "phone", "latbench", "nb201", "part.pickle") in before
    refused = pytest.raises(datasets.DatasetError, match="imported before as device 'phone'")
    with refused, sessions() as session, session.begin():
        datasets.import_latbench(session, part, "tablet")
    with sessions() as session:
        assert files_of(session) == before
        assert device_by_name(session, "tablet") is None
    with sessions() as session, session.begin():
        assert datasets.import_latbench(session, part, "tablet", copy=True) == datasets.Imported(3)
    with sessions() as session:
        assert [row for row in files_of(session) if row[0] == digest] == [
            (digest, "phone", "latbench", "nb201", "part.pickle"),
            (digest, "tablet", "latbench", "nb201", "part.pickle"),
        ]


def test_one_file_as_two_devices_beside_each_other_is_refused_once_the_first_ends(sessions, tmp_path):
    """The check reads the records in the import's turn: an import of the file as another device, started while
    the first is still open, waits for it and is then refused."""
    latbench_pickle(tmp_path / "phone.pickle", n=4, seed=9)
    refused: list[str] = []

    def import_as_tablet() -> None:
        try:
            with sessions() as session, session.begin():
                datasets.import_latbench(session, tmp_path / "phone.pickle", "tablet")
        except datasets.DatasetError as err:
            refused.append(err.message)

    with sessions() as first:
        first.begin()
        assert datasets.import_latbench(first, tmp_path / "phone.pickle") == datasets.Imported(4)
        beside = threading.Thread(target=import_as_tablet)
        beside.start()
        beside.join(timeout=1.0)
        assert beside.is_alive()  # waiting for the first to end
        first.commit()
    beside.join(timeout=30.0)
    assert len(refused) == 1 and "imported before as device 'phone'" in refused[0]
    with sessions() as session:
        assert [name for _, name, *_ in files_of(session)] == ["phone"]
        assert device_by_name(session, "tablet") is None
