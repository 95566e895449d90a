"""Ctrl-C inside a database statement: the transaction's error is the interrupt itself (not SQLAlchemy's
``PendingRollbackError``), nothing is stored and the database stays usable; a writing command says so in one line
and exits 130."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event, text
from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.store.db import make_engine, make_sessionmaker, transaction
from tests.unit.test_datasets import latbench_pickle


@contextmanager
def ctrl_c_at(statement_start: str, target: type[Engine] | Engine = Engine) -> Iterator[None]:
    """Ctrl-C (``KeyboardInterrupt``) inside the first statement of ``target``'s (every engine's by default) that
    starts with ``statement_start``, as the driver is about to run it."""
    armed = [True]

    def _ctrl_c(_conn, _cursor, statement: str, *_) -> None:
        if armed[0] and statement.lstrip().upper().startswith(statement_start):
            armed[0] = False
            raise KeyboardInterrupt

    event.listen(target, "before_cursor_execute", _ctrl_c)
    try:
        yield
    finally:
        event.remove(target, "before_cursor_execute", _ctrl_c)
    assert not armed[0], f"no {statement_start} statement ran"


def test_ctrl_c_inside_a_statement_raises_itself_and_stores_nothing(db_url):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE numbers (n integer)"))
    sessions = make_sessionmaker(engine)
    with pytest.raises(KeyboardInterrupt), ctrl_c_at("INSERT", engine), transaction(sessions) as session:
        session.execute(text("INSERT INTO numbers VALUES (1)"))
        session.execute(text("INSERT INTO numbers VALUES (2)"))
    with transaction(sessions) as session:  # the write turn (SQLite) was handed back
        assert session.scalar(text("SELECT count(*) FROM numbers")) == 0
        session.execute(text("INSERT INTO numbers VALUES (3)"))
    engine.dispose()


def test_ctrl_c_during_import_says_so_in_one_line_exits_130_and_imports_nothing(tmp_path):
    data_dir = tmp_path / "data"
    dataset = tmp_path / "phone.pickle"
    latbench_pickle(dataset, n=5)
    command = ["import", str(dataset), "--format", "latbench", "--device", "phone", "--data-dir", str(data_dir)]
    runner = CliRunner()
    with ctrl_c_at("INSERT INTO MEASUREMENTS"):
        stopped = runner.invoke(app, command)
    assert stopped.exit_code == 130, stopped.output
    assert stopped.output.strip() == f"latfarm import: interrupted; nothing was imported from {dataset}"
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "imported 5 new measurements" in again.output


def test_ctrl_c_in_any_other_command_says_so_in_one_line_and_exits_130(tmp_path):
    with ctrl_c_at("CREATE TABLE"):
        stopped = CliRunner().invoke(app, ["migrate", "--data-dir", str(tmp_path / "data")], prog_name="latfarm")
    assert stopped.exit_code == 130, stopped.output
    assert stopped.output.strip() == "latfarm migrate: interrupted"
