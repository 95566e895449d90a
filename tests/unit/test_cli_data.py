"""Commands that only read the database never create one, and say which database they read."""

from __future__ import annotations

from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.cli.database import describe, sqlite_file
from tests.unit.test_datasets import latbench_pickle


def test_export_data_without_a_database_names_the_path_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "data", "local", "--out", "local.csv"])
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert str(tmp_path / "latfarm-data" / "latfarm.db") in message
    assert "--data-dir" in message and "--db" in message
    assert list(tmp_path.iterdir()) == []  # no latfarm-data/, no empty latfarm.db, no output file


def test_export_data_names_the_database_it_read(tmp_path):
    data_dir = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(app, ["migrate", "--data-dir", str(data_dir)]).exit_code == 0
    database = str((data_dir / "latfarm.db").resolve())
    unknown = runner.invoke(
        app, ["export", "data", "local", "--out", str(tmp_path / "x.csv"), "--data-dir", str(data_dir)]
    )
    assert unknown.exit_code == 1
    assert "unknown device 'local'" in unknown.output and f"(database {database})" in unknown.output
    assert not (tmp_path / "x.csv").exists()
    latbench_pickle(tmp_path / "phone.pickle", n=5)
    imported = runner.invoke(
        app,
        [
            "import",
            str(tmp_path / "phone.pickle"),
            "--format",
            "latbench",
            "--device",
            "phone",
            "--data-dir",
            str(data_dir),
        ],
    )
    assert imported.exit_code == 0, imported.output
    out = tmp_path / "phone.csv"
    written = runner.invoke(app, ["export", "data", "phone", "--out", str(out), "--data-dir", str(data_dir)])
    assert written.exit_code == 0, written.output
    assert f"wrote 5 measurements of phone from {database} to {out}" in written.output


def test_database_descriptions_hide_passwords():
    assert (
        describe("postgresql+psycopg://latfarm:s3cret@db:5432/latfarm")
        == "postgresql+psycopg://latfarm:***@db:5432/latfarm"
    )
    assert sqlite_file("sqlite://") is None and sqlite_file("postgresql://h/db") is None
    assert sqlite_file("sqlite:///rel/x.db").is_absolute()
