"""Settings: one declaration per ``LATFARM_*`` variable, read from the environment, documented in docs/operations.md."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer.main

from latfarm.services.cli import app
from latfarm.services.core.config import ClientSettings, Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "operations.md"
TABLE = re.compile(r"<!-- settings table.*?-->\n(.*?)<!-- end of the settings table -->", re.S)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("LATFARM_")]:
        monkeypatch.delenv(name)


def settings_table() -> str:
    """The settings table of docs/operations.md, rendered from the declarations."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for settings in (Settings, ClientSettings):
        for name, field in settings.model_fields.items():
            default = "unset" if field.default is None else f"`{field.default}`"
            rows.append(f"| `{env_name(name)}` | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


def agent_env_options() -> dict[str, str]:
    """The ``latfarm agent`` options that read a variable of their own: variable -> flag."""
    agent = typer.main.get_command(app).commands["agent"]
    return {param.envvar: param.opts[0] for param in agent.params if getattr(param, "envvar", None)}


def test_documented_settings_table_matches_the_declarations():
    match = TABLE.search(SETTINGS_DOC.read_text())
    assert match, "docs/operations.md has no settings table between its markers"
    assert match.group(1) == settings_table(), f"docs/operations.md's settings table should read:\n{settings_table()}"


def test_docs_name_the_agents_own_variables():
    text = SETTINGS_DOC.read_text()
    section = TABLE.search(text).group(0)
    after = " ".join(text[text.index(section) + len(section) :].split("\n\n", 2)[1].split())
    for variable, flag in agent_env_options().items():
        assert f"`{variable}` (`{flag}`)" in after, (
            f"docs/operations.md: the paragraph after the settings table lacks {variable}"
        )


def test_every_setting_is_declared_with_a_meaning():
    for settings in (Settings, ClientSettings):
        for name, field in settings.model_fields.items():
            assert field.description and "|" not in field.description, name


def test_environment_defaults_and_flags(monkeypatch):
    assert Settings() == Settings.from_env()
    assert (Settings().http_port, Settings().grpc_port, Settings().data_dir) == (8000, 50051, Path("latfarm-data"))
    env = {"LATFARM_HTTP_PORT": "9001", "LATFARM_DB_URL": "", "LATFARM_GRPC_TLS_CERT": "cert.pem"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(http_port=None, grpc_port=7, data_dir=Path("d"))
    assert settings.http_port == 9001  # a flag not given (None) leaves the variable
    assert settings.grpc_port == 7  # a flag given wins
    assert settings.db_url is None  # an empty variable counts as unset
    assert settings.grpc_tls_cert == Path("cert.pem") and settings.grpc_tls_key is None


def test_derived_paths():
    settings = Settings(data_dir=Path("somewhere"))
    assert settings.database_url == f"sqlite:///{(Path('somewhere') / 'latfarm.db').resolve()}"
    assert settings.artifacts_dir == Path("somewhere") / "artifacts"
    assert Settings(db_url="postgresql://x/y").database_url == "postgresql://x/y"


def test_to_env_hands_a_child_process_exactly_these_settings(monkeypatch):
    monkeypatch.setenv("LATFARM_REDIS_URL", "redis://elsewhere")  # overridden below by an empty variable
    settings = Settings(data_dir=Path("d"), http_port=0, admin_key="lf_admin_x", export_poll_s=0.5)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_client_settings(monkeypatch):
    assert (ClientSettings().server, ClientSettings().api_key) == ("http://127.0.0.1:8000", None)
    monkeypatch.setenv("LATFARM_SERVER", "http://h:1")
    monkeypatch.setenv("LATFARM_API_KEY", "lf_x")
    settings = ClientSettings.from_env(server=None, api_key="lf_flag")
    assert (settings.server, settings.api_key) == ("http://h:1", "lf_flag")


def test_cli_help_names_the_declared_defaults():
    commands = typer.main.get_command(app).commands

    def param_of(command: str, flag: str):
        return next(param for param in commands[command].params if flag in param.opts)

    def help_of(command: str, flag: str) -> str:
        return param_of(command, flag).help

    defaults = Settings()
    for command in ("serve", "up"):  # shown as [default: (X)]: the flag's own default is None, "the settings'"
        assert param_of(command, "--http-port").show_default == str(defaults.http_port)
        assert param_of(command, "--grpc-port").show_default == str(defaults.grpc_port)
        assert param_of(command, "--data-dir").show_default == str(defaults.data_dir)
    server = ClientSettings.model_fields["server"].default
    assert f"{env_name('server')}] \\[default: {server}]" in help_of("predict", "--server")
    assert env_name("api_key") in help_of("predict", "--key")


def test_settings_are_read_only():
    with pytest.raises(ValueError):
        Settings().http_port = 1  # type: ignore[misc]


def test_a_lease_holds_no_more_jobs_than_a_report_can_carry(monkeypatch):
    """A lease's worth of results, each as big as the limits let it be, makes a report under the 4 MiB limit."""
    from latfarm.proto.v1 import agent_pb2
    from latfarm.proto.v1.limits import LISTS, MAX_MESSAGE_BYTES, string_limit

    most = Settings.model_fields["max_jobs_per_lease"].metadata
    limit = next(m.le for m in most if hasattr(m, "le"))
    strings = {name: "s" * string_limit(name) for name in ("job_id", "runtime", "runtime_version", "provider")}
    result = agent_pb2.Result(
        ok=True,
        error_message="e" * string_limit("error_message"),
        stats=agent_pb2.Stats(round_medians_ms=[1.0] * LISTS["round_medians_ms"], median_ms=1.0),
        affinity=list(range(LISTS["affinity"])),
        artifact_sha256="0" * 64,
        **strings,
    )
    assert agent_pb2.ReportRequest(results=[result] * limit).ByteSize() < MAX_MESSAGE_BYTES
    monkeypatch.setenv(env_name("max_jobs_per_lease"), str(limit + 1))
    with pytest.raises(ValueError, match="max_jobs_per_lease"):
        Settings()
