"""Alembic migrations build exactly the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from latfarm.services import datasets
from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.migrate import alembic_config, upgrade
from latfarm.services.store.models import Base
from tests.unit.test_datasets import latbench_pickle


def _insert_device(conn, now: datetime) -> None:
    """Device 1, ``dev``, by the columns every revision of the schema has."""
    conn.execute(
        text(
            "insert into devices (id, name, description, hardware, runtime, precision, batch_size, created_at)"
            " values (1, 'dev', '', '', 'onnxruntime', 'fp32', 1, :now)"
        ),
        {"now": now},
    )


def test_upgrade_head_matches_models_and_is_idempotent(db_url):
    upgrade(db_url)
    upgrade(db_url)  # a second run finds nothing to do
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() is not None
            tables = set(inspect(conn).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
    finally:
        engine.dispose()


def test_lease_indexes_exist(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("jobs")}
    finally:
        engine.dispose()
    assert indexes["ix_jobs_queue"] == ["device_id", "state", "created_at", "id"]
    assert indexes["ix_jobs_expiry"] == ["state", "lease_expires_at"]
    assert indexes["ix_jobs_ready"] == ["device_id", "created_at", "id"]


def test_latency_ms_is_filled_from_median_ms(db_url):
    """0002 gives rows stored before it their median as the headline latency."""
    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            now = datetime.now(timezone.utc)
            _insert_device(conn, now)
            conn.execute(text("insert into archs (id, space, arch) values (1, 'nb201', 'a'), (2, 'nb201', 'b')"))
            conn.execute(
                text(
                    "insert into measurements (device_id, arch_id, source, protocol, median_ms, round_medians_ms,"
                    " unstable, provenance, created_at) values"
                    " (1, 1, 'measured', '{}', 2.5, '[]', false, '{}', :now),"
                    " (1, 2, 'imported', '{}', 4.0, '[]', false, '{}', :now)"
                ),
                {"now": now},
            )
        upgrade(db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("select arch_id, latency_ms, median_ms from measurements order by arch_id"))
            assert [tuple(r) for r in rows] == [(1, 2.5, 2.5), (2, 4.0, 4.0)]
    finally:
        engine.dispose()


def test_existing_rows_keep_their_true_conditions(db_url):
    """0004: agent rows were measured on the pruned graph at batch 1 in fp32; imported rows on the reference graph
    at their device's batch size; an adaptation keeps the conditions of the figures it was fitted on."""
    upgrade(db_url, "0003")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            now = datetime.now(timezone.utc)
            conn.execute(
                text(
                    "insert into devices (id, name, description, hardware, runtime, precision, batch_size, created_at)"
                    " values (1, 'local', '', '', 'onnxruntime', 'fp32', 1, :now),"
                    " (2, 'titanx_32', '', '', 'pytorch', 'fp32', 32, :now)"
                ),
                {"now": now},
            )
            conn.execute(text("insert into archs (id, space, arch) values (1, 'nb201', 'a')"))
            conn.execute(
                text(
                    "insert into measurements (device_id, arch_id, source, dataset, protocol, latency_ms, median_ms,"
                    " round_medians_ms, unstable, provenance, created_at) values"
                    " (1, 1, 'measured', NULL, '{}', 2.5, 2.5, '[]', false, '{}', :now),"
                    " (2, 1, 'imported', 'help-nb201', '{}', 9.8, 9.8, '[]', false, '{}', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "insert into adaptations (id, device_id, state, samples, strategy, sample_archs, params, metrics,"
                    " created_at) values ('a1', 1, 'active', 5, '', '[]', '{}', '{}', :now),"
                    " ('a2', 2, 'active', 5, '', '[]', '{}', '{}', :now)"
                ),
                {"now": now},
            )
        upgrade(db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("select device_id, conditions_key from measurements order by device_id"))
            assert [tuple(r) for r in rows] == [
                (1, "nb201/32px/10cls/b1/fp32/pruned"),
                (2, "nb201/32px/10cls/b32/fp32/reference"),
            ]
            adapted = conn.execute(text("select id, conditions_key from adaptations order by id"))
            assert [tuple(r) for r in adapted] == [
                ("a1", "nb201/32px/10cls/b1/fp32/pruned"),
                ("a2", "nb201/32px/10cls/b32/fp32/reference"),
            ]
    finally:
        engine.dispose()


def test_existing_devices_get_no_owner_and_keep_their_measurements(db_url):
    """0007: devices from before owners are admin-only (owner NULL); adding the column copies no table, so nothing
    that cascades from devices is lost."""
    upgrade(db_url, "0004")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            now = datetime.now(timezone.utc)
            conn.execute(
                text(
                    "insert into devices (id, name, description, hardware, runtime, precision, batch_size, created_at)"
                    " values (1, 'old', '', '', 'onnxruntime', 'fp32', 1, :now)"
                ),
                {"now": now},
            )
            conn.execute(text("insert into archs (id, space, arch) values (1, 'nb201', 'a')"))
            conn.execute(
                text(
                    "insert into measurements (device_id, arch_id, source, protocol, latency_ms, median_ms,"
                    " round_medians_ms, unstable, provenance, created_at)"
                    " values (1, 1, 'measured', '{}', 2.5, 2.5, '[]', false, '{}', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "insert into enrollments (device_id, token_hash, created_at, revoked, uses)"
                    " values (1, 'h', :now, false, 0)"
                ),
                {"now": now},
            )
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("select owner_key_id from devices")).all() == [(None,)]
            assert conn.execute(text("select max_uses from enrollments")).all() == [(None,)]
            assert conn.execute(text("select count(*) from measurements")).scalar_one() == 1
    finally:
        engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def test_jobs_drawn_at_random_are_an_adaptations_calibrating_archs_and_downgrade_keeps_the_rest(db_url):
    """0012: of the jobs before it, those of a calibrated adaptation's batch that are not its samples were drawn at
    random; the rest were chosen. Its downgrade drops the column in place (measurements keep their job)."""
    upgrade(db_url, "0011")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            now = datetime.now(timezone.utc)
            _insert_device(conn, now)
            conn.execute(
                text(
                    "insert into archs (id, space, arch, reference_index)"
                    " values (1, 'nb201', 'a', 1), (2, 'nb201', 'b', 2), (3, 'nb201', 'c', 3)"
                )
            )
            conn.execute(
                text(
                    "insert into job_batches (id, device_id, space, format, protocol, conditions, created_at)"
                    " values ('adapted', 1, 'nb201', 'onnx', '{}', '{}', :now), ('asked', 1, 'nb201', 'onnx', '{}',"
                    " '{}', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "insert into jobs (id, batch_id, device_id, arch_id, format, state, attempts, created_at) values"
                    " ('sample', 'adapted', 1, 1, 'onnx', 'done', 1, :now),"
                    " ('extra', 'adapted', 1, 2, 'onnx', 'done', 1, :now),"
                    " ('chosen', 'asked', 1, 3, 'onnx', 'done', 1, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "insert into adaptations (id, device_id, state, samples, calibration, strategy, sample_archs,"
                    " params, metrics, batch_id, created_at)"
                    " values ('a1', 1, 'active', 1, 10, '', '[1]', '{}', '{}', 'adapted', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "insert into measurements (device_id, arch_id, job_id, source, protocol, latency_ms, median_ms,"
                    " round_medians_ms, unstable, provenance, created_at)"
                    " values (1, 2, 'extra', 'measured', '{}', 2.5, 2.5, '[]', false, '{}', :now)"
                ),
                {"now": now},
            )
        upgrade(db_url)
        with engine.connect() as conn:
            drawn = conn.execute(text("select id, drawn_at_random from jobs order by id")).all()
            assert [(job, bool(flag)) for job, flag in drawn] == [("chosen", False), ("extra", True), ("sample", False)]
        _downgrade(db_url, "0011")
        with engine.connect() as conn:
            assert "drawn_at_random" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.execute(text("select job_id from measurements")).all() == [("extra",)]
        upgrade(db_url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_the_indexes_by_holder_and_their_downgrades(db_url):
    """0013: ``ix_jobs_held``, the jobs on lease by holder (``queue.release_all``). 0015 replaces it with
    ``ix_jobs_holder``, every job an agent held by holder and lease, and adds ``ix_measurements_agent``: the rows an
    agent's delete clears. Each downgrade gives the revision before's indexes back, and the upgrade after gives the
    models' schema again."""

    def by_holder() -> dict[str, tuple[list[str], str]]:
        """The indexes of jobs and measurements named here: (columns, condition without parentheses)."""
        engine = make_engine(db_url)
        try:
            found = [_index(ix) for table in ("jobs", "measurements") for ix in inspect(engine).get_indexes(table)]
        finally:
            engine.dispose()
        return {
            ix["name"]: (ix["column_names"], re.sub(r"[()]", "", where))
            for ix in found
            if ix["name"] in ("ix_jobs_held", "ix_jobs_holder", "ix_measurements_agent")
            for option, where in ix["dialect_options"].items()
            if option.endswith("_where")  # postgresql_where / sqlite_where
        }

    on_lease = {"ix_jobs_held": (["lease_owner"], "lease_expires_at IS NOT NULL")}
    upgrade(db_url, "0012")
    assert by_holder() == {}
    upgrade(db_url, "0013")
    assert by_holder() == on_lease
    upgrade(db_url)
    assert by_holder() == {
        "ix_jobs_holder": (["lease_owner", "lease_expires_at"], "lease_owner IS NOT NULL"),
        "ix_measurements_agent": (["agent_id"], "agent_id IS NOT NULL"),
    }
    _downgrade(db_url, "0013")
    assert by_holder() == on_lease
    _downgrade(db_url, "0012")
    assert by_holder() == {}
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def _index(found: dict) -> dict:
    """An index as ``inspect`` describes it, a partial index's condition as its SQL (not a clause object)."""
    options = found.get("dialect_options", {})
    return {**found, "dialect_options": {name: str(value) for name, value in options.items()}} if options else found


def test_replayed_upgrade_builds_the_migrated_schema(db_url, pg_admin_engine, tmp_path):
    """The ``migrated_db_url`` fixture's replay of the recorded migrations gives the schema and revision they do."""
    from tests.conftest import _pg_schema, record_upgrade, replay_upgrade

    def described(url: str) -> dict:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                found = inspect(conn)
                columns = found.get_columns
                return {
                    "revision": MigrationContext.configure(conn).get_current_revision(),
                    "tables": {
                        table: (
                            [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in columns(table)],
                            sorted(str(_index(ix)) for ix in found.get_indexes(table)),
                            sorted(str(fk) for fk in found.get_foreign_keys(table)),
                            sorted(str(uq) for uq in found.get_unique_constraints(table)),
                        )
                        for table in found.get_table_names()
                    },
                }
        finally:
            engine.dispose()

    if db_url.startswith("sqlite"):
        script = record_upgrade(f"sqlite:///{tmp_path / 'recorded.db'}")
        replay_upgrade(db_url, script)
        assert described(db_url) == described(f"sqlite:///{tmp_path / 'recorded.db'}")
    else:
        with _pg_schema(pg_admin_engine) as recorded:
            replay_upgrade(db_url, record_upgrade(recorded))
            assert described(db_url) == described(recorded)


def test_imported_copies_of_a_stored_figure_go_and_every_other_row_stays(db_url):
    """0014: an imported row repeating the figure an earlier row of its device, arch and conditions has (an agent's
    or an import's) goes, unless it is the arch's only usable copy; a differing figure, a row under other
    conditions and every agent row stay. Its downgrade keeps the rows."""
    one, four = "nb201/32px/10cls/b1/fp32/reference", "nb201/32px/10cls/b4/fp32/reference"
    rows = [  # id, arch, source, dataset, ms, quarantined, conditions key
        (1, 1, "imported", "help-nb201", 2.0, False, one),
        (2, 1, "imported", "latbench", 2.0000000000000004, False, one),  # seconds and back: goes
        (3, 2, "measured", None, 3.0, False, one),
        (4, 2, "imported", "latbench", 3.0, False, one),  # an agent's figure exported and imported back: goes
        (5, 3, "imported", "help-nb201", 4.0, False, one),
        (6, 3, "imported", "latbench", 4.5, False, one),  # another figure: stays
        (7, 4, "imported", "help-nb201", 5.0, True, one),
        (8, 4, "imported", "latbench", 5.0, False, one),  # the only usable copy: stays
        (9, 4, "imported", "hw-nas-bench", 5.0, False, one),  # a copy of 8: goes
        (10, 5, "imported", "help-nb201", 6.0, False, one),
        (11, 5, "imported", "latbench", 6.0, False, four),  # other conditions: stays
        (12, 5, "measured", None, 6.0, False, one),  # an agent's row: stays
    ]
    upgrade(db_url, "0013")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            now = datetime.now(timezone.utc)
            _insert_device(conn, now)
            for arch in range(1, 6):
                conn.execute(
                    text("insert into archs (id, space, arch) values (:id, 'nb201', :a)"), {"id": arch, "a": f"a{arch}"}
                )
            for row_id, arch, source, dataset, ms, quarantined, key in rows:
                conn.execute(
                    text(
                        "insert into measurements (id, device_id, arch_id, source, dataset, protocol, latency_ms,"
                        " median_ms, round_medians_ms, unstable, quarantined, provenance, conditions,"
                        " conditions_key, created_at) values (:id, 1, :arch, :source, :dataset, '{}', :ms, :ms, '[]',"
                        " false, :quarantined, '{}', '{}', :key, :now)"
                    ),
                    {
                        "id": row_id,
                        "arch": arch,
                        "source": source,
                        "dataset": dataset,
                        "ms": ms,
                        "quarantined": quarantined,
                        "key": key,
                        "now": now,
                    },
                )
        upgrade(db_url)
        kept = [1, 3, 5, 6, 7, 8, 10, 11, 12]
        with engine.connect() as conn:
            assert list(conn.scalars(text("select id from measurements order by id"))) == kept
        _downgrade(db_url, "0013")
        with engine.connect() as conn:
            assert list(conn.scalars(text("select id from measurements order by id"))) == kept
    finally:
        engine.dispose()


def test_unrevoked_namesakes_are_renamed_and_then_refused(db_url):
    """0016: of unrevoked keys sharing a name the first keeps it and each later one takes ``<name>-2``, ``-3`` ...,
    the first that no unrevoked key has, cut to fit 128 characters; revoked keys keep theirs. The database then
    refuses an unrevoked namesake, not a revoked one. Its downgrade drops the index and keeps the names."""
    long = "x" * 128
    rows = [  # id, name, revoked
        (1, "a", False),
        (2, "a", False),  # a-2 is taken by key 3: a-3
        (3, "a-2", False),
        (4, "a", True),
        (5, "b", True),
        (6, "b", False),  # the first unrevoked b
        (7, long, False),
        (8, long, False),
    ]
    upgrade(db_url, "0015")
    engine = make_engine(db_url)
    insert_key = text(
        "insert into api_keys (id, name, key_hash, scopes, created_at, revoked)"
        " values (:id, :name, :hash, '[]', :now, :revoked)"
    )
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            for key_id, name, revoked in rows:
                conn.execute(
                    insert_key, {"id": key_id, "name": name, "hash": f"h{key_id}", "now": now, "revoked": revoked}
                )
        upgrade(db_url)
        renamed = [(1, "a"), (2, "a-3"), (3, "a-2"), (4, "a"), (5, "b"), (6, "b"), (7, long), (8, "x" * 126 + "-2")]
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text("select id, name from api_keys order by id"))] == renamed
        with engine.begin() as conn:
            conn.execute(insert_key, {"id": 9, "name": "a", "hash": "h9", "now": now, "revoked": True})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert_key, {"id": 10, "name": "a", "hash": "h10", "now": now, "revoked": False})
        _downgrade(db_url, "0015")
        with engine.begin() as conn:
            assert [
                tuple(r) for r in conn.execute(text("select id, name from api_keys where id < 9 order by id"))
            ] == renamed
            conn.execute(insert_key, {"id": 10, "name": "a", "hash": "h10", "now": now, "revoked": False})
            conn.execute(text("delete from api_keys where id = 10"))
        upgrade(db_url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_imported_files_are_filled_from_the_rows_provenance_and_keep_the_one_device_rule(db_url, tmp_path):
    """0018: one record per file digest and device, from its earliest imported row (the name it then had, the
    dataset as the format, the arch's space, the row's time); rows naming no file add none. The store then refuses
    the file under another device and imports it again under its own, adding no record. Its downgrade drops the
    table; the rows stay."""
    latbench_pickle(tmp_path / "a.pickle", n=2, seed=18)
    pickled = hashlib.sha256((tmp_path / "a.pickle").read_bytes()).hexdigest()
    csv = "c" * 64
    rows = [  # id, device, arch, source, dataset, provenance, minutes after the first (ids past what the import takes)
        (101, 101, 101, "imported", "latbench", {"file": "a.pickle", "sha256": pickled}, 0),
        (102, 101, 102, "imported", "latbench", {"file": "b.pickle", "sha256": pickled}, 1),  # renamed, again
        (103, 102, 101, "imported", "latbench", {"file": "a.pickle", "sha256": pickled}, 1),  # --copy
        (104, 101, 103, "imported", "csv", {"file": "c.csv", "sha256": csv, "origin": {"source": "measured"}}, 2),
        (105, 101, 104, "imported", "help-nb201", {}, 3),
        (106, 101, 104, "measured", None, {}, 4),
    ]
    upgrade(db_url, "0017")
    engine = make_engine(db_url)
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            for device, name in ((101, "dev"), (102, "copy")):
                conn.execute(
                    text(
                        "insert into devices (id, name, description, hardware, runtime, precision, batch_size,"
                        " created_at) values (:id, :name, '', '', 'onnxruntime', 'fp32', 1, :now)"
                    ),
                    {"id": device, "name": name, "now": now},
                )
            for arch, space in ((101, "nb201"), (102, "nb201"), (103, "fbnet"), (104, "nb201")):
                conn.execute(
                    text("insert into archs (id, space, arch) values (:id, :space, :a)"),
                    {"id": arch, "space": space, "a": f"a{arch}"},
                )
            for row_id, device, arch, source, dataset, provenance, minutes in rows:
                conn.execute(
                    text(
                        "insert into measurements (id, device_id, arch_id, source, dataset, protocol, latency_ms,"
                        " median_ms, round_medians_ms, unstable, quarantined, provenance, conditions,"
                        " conditions_key, created_at) values (:id, :device, :arch, :source, :dataset, '{}', 1.0, 1.0,"
                        " '[]', false, false, :provenance, '{}', '', :at)"
                    ),
                    {
                        "id": row_id,
                        "device": device,
                        "arch": arch,
                        "source": source,
                        "dataset": dataset,
                        "provenance": json.dumps(provenance),
                        "at": now + timedelta(minutes=minutes),
                    },
                )
        upgrade(db_url)
        records = text(
            "select f.sha256, f.device_id, f.format, f.space, f.file, m.id from imported_files f"
            " left join measurements m on m.device_id = f.device_id and m.created_at = f.imported_at"
            " order by f.device_id, f.format"
        )
        expected = [
            (csv, 101, "csv", "fbnet", "c.csv", 104),
            (pickled, 101, "latbench", "nb201", "a.pickle", 101),
            (pickled, 102, "latbench", "nb201", "a.pickle", 103),
        ]
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(records)] == expected
        sessions = make_sessionmaker(engine)
        refused = pytest.raises(datasets.DatasetError, match="imported before as device 'copy' and 'dev'")
        with refused, sessions() as session, session.begin():
            datasets.import_latbench(session, tmp_path / "a.pickle", "other")
        with sessions() as session, session.begin():
            assert datasets.import_latbench(session, tmp_path / "a.pickle", "dev") == datasets.Imported(2)
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(records)] == expected
        _downgrade(db_url, "0017")
        with engine.connect() as conn:
            assert "imported_files" not in inspect(conn).get_table_names()
            assert conn.execute(text("select count(*) from measurements")).scalar_one() == len(rows) + 2
    finally:
        engine.dispose()
