"""Commands that only read the database never create one, and say which database they read."""

from __future__ import annotations

import pickle

from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.cli.database import describe, sqlite_file
from latfarm.services.client import Client
from tests.api_support import ADMIN_KEY, add_device, add_measurements
from tests.unit.test_datasets import latbench_pickle


def test_export_data_without_a_database_names_the_path_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["export", "data", "local", "--space", "fbnet", "--format", "latbench", "--out", "local.pickle"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert str(tmp_path / "latfarm-data" / "latfarm.db") in message
    assert "--data-dir" in message and "--db" in message
    # the REST command writes the same file: the same format and space
    remote = "latfarm export device local --format latbench --space fbnet --out local.pickle"
    assert message.endswith(f"(away from the server: {remote})")
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
    assert f"wrote 5 measurements of phone (nb201) from {database} to {out}" in written.output


def test_database_descriptions_hide_passwords():
    assert (
        describe("postgresql+psycopg://latfarm:s3cret@db:5432/latfarm")
        == "postgresql+psycopg://latfarm:***@db:5432/latfarm"
    )
    assert sqlite_file("sqlite://") is None and sqlite_file("postgresql://h/db") is None
    assert sqlite_file("sqlite:///rel/x.db").is_absolute()


def _export_device(url: str, *args: str, key: str = ADMIN_KEY):
    command = ["export", "device", *args, "--server", url, "--key", key]
    return CliRunner().invoke(app, command, env={"COLUMNS": "400"})  # no path wrapped inside rich's box


def test_export_device_writes_what_the_server_serves(live_api, tmp_path):
    """``latfarm export device`` reads over REST (no database here): the file holds the server's export, and one
    line says how many measurements of which device and space, from which server, where."""
    from fastapi.testclient import TestClient

    url, server = live_api
    with TestClient(server) as api:
        add_device(api, "phone")
        add_measurements(api, "phone", {1: 2.0, 2: 3.0, 3: 4.0})
    out = tmp_path / "phone.csv"
    result = _export_device(url, "phone", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote 3 measurements of phone (nb201) from {url} to {out}"
    with Client(url, ADMIN_KEY) as client:
        assert out.read_bytes() == client.export("phone")
    pickled = tmp_path / "phone.pickle"
    with TestClient(server) as api:
        add_measurements(api, "phone", {1: 2.2})  # arch 1 measured twice: one LatBench entry, their median
    result = _export_device(url, "phone", "--format", "latbench", "--out", str(pickled))
    assert result.exit_code == 0, result.output
    assert len(pickle.loads(pickled.read_bytes())) == 3  # what the line counts: entries written, not rows read
    line = f"wrote 3 archs (each the median of its measurements) of phone (nb201) from {url} to {pickled}"
    assert result.output.strip() == line


def test_export_device_errors_are_one_line_and_write_nothing(live_api, tmp_path):
    """An unknown device, space or format, a missing key or an --out no file can be written to: one line (a usage
    error for --out, before any request), exit status 1 (2), no file."""
    from fastapi.testclient import TestClient

    url, server = live_api
    with TestClient(server) as api:
        add_device(api, "phone")
    out = tmp_path / "x.csv"
    for args, key, status, says in [
        (["nowhere", "--out", str(out)], ADMIN_KEY, 1, "unknown device 'nowhere'; known devices: phone"),
        (["phone", "--space", "nope", "--out", str(out)], ADMIN_KEY, 2, "'--space': unknown search space 'nope'"),
        (["phone", "--format", "xml", "--out", str(out)], ADMIN_KEY, 2, "'--format': must be one of csv, latbench"),
        (["phone", "--out", str(out)], "", 1, "no API key"),
        (["phone", "--out", str(tmp_path / "missing" / "x.csv")], ADMIN_KEY, 2, f"no folder {tmp_path / 'missing'}"),
    ]:
        result = _export_device(url, *args, key=key)
        assert result.exit_code == status, (args, result.output)
        assert says in " ".join(result.output.replace("│", " ").split()), (args, result.output)
        if status == 1:
            assert len(result.output.strip().splitlines()) == 1, result.output
        assert not out.exists()
