"""``latfarm device add``, ``device enroll`` and ``latfarm results`` against a live server: a device registered and
an enrollment token made without curl (the token in a file of mode 600), a ``--no-wait`` batch's results read as
``measure`` shows them."""

from __future__ import annotations

import csv
import stat

import httpx
import pytest
from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.store.models import Device, Enrollment
from tests.api_support import ADMIN_KEY, LIVE_GRPC_PORT, app_on, arch, make_settings, serving
from tests.unit.test_cli_measure import LATENCY_MS, add_device_live, finish_batch

NOWHERE = "http://127.0.0.1:9"  # no server: a command that asks one says so


def _invoke(url: str, *args: str):
    return CliRunner().invoke(app, [*args, "--server", url, "--key", ADMIN_KEY], env={"COLUMNS": "400"})


def test_device_add_registers_it_with_its_conditions_and_refuses_a_taken_name(live_api):
    url, server = live_api
    added = _invoke(url, "device", "add", "pixel7-cpu", "--hardware", "Tensor G2", "--precision", "fp16")
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == (
        "registered device pixel7-cpu (precision fp16, batch_size 1, resolution 32, classes 10); "
        "enroll its agents: latfarm device enroll pixel7-cpu"
    )
    with server.state.sessions() as session:
        device = session.query(Device).filter_by(name="pixel7-cpu").one()
        assert (device.hardware, device.precision, device.runtime) == ("Tensor G2", "fp16", "onnxruntime")
    again = _invoke(url, "device", "add", "pixel7-cpu")
    assert again.exit_code == 1 and again.output.strip() == (
        "latfarm device add: NAME: device 'pixel7-cpu' already exists"
    ), again.output
    bad = _invoke(url, "device", "add", "pixel7-cpu2", "--precision", "fp64")
    assert bad.exit_code == 2 and "Invalid value for '--precision'" in bad.output  # refused before any request
    with server.state.sessions() as session:
        assert session.query(Device).filter_by(name="pixel7-cpu2").count() == 0


def test_device_enroll_writes_the_token_readable_by_its_owner_only(live_api, tmp_path):
    url, server = live_api
    add_device_live(server)
    token_file = tmp_path / "gpu-b2.token"
    token_file.write_text("old")
    token_file.chmod(0o644)  # a file that was there is made private too
    enrolled = _invoke(url, "device", "enroll", "gpu-b2", "--max-uses", "1", "--out", str(token_file))
    assert enrolled.exit_code == 0, enrolled.output
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("lf_enroll_") and token not in enrolled.output
    assert (
        f"LATFARM_AGENT_ENROLL=$(cat {token_file.name}) latfarm agent --server HOST:{LIVE_GRPC_PORT}" in enrolled.stdout
    )
    printed = _invoke(url, "device", "enroll", "gpu-b2", "--expires-in", "600")
    assert printed.exit_code == 0 and printed.stdout.startswith("lf_enroll_") and len(printed.stdout.split()) == 1
    with server.state.sessions() as session:
        assert sorted(e.max_uses or 0 for e in session.query(Enrollment)) == [0, 1]
    nowhere = _invoke(url, "device", "enroll", "gpu-b2", "--out", str(tmp_path / "no" / "token"))
    assert nowhere.exit_code == 2 and "(no token was made)" in nowhere.output
    with server.state.sessions() as session:
        assert session.query(Enrollment).count() == 2  # refused before any request


def test_results_of_a_no_wait_batch_as_measure_shows_them(live_api, tmp_path):
    url, server = live_api
    add_device_live(server)
    queued = _invoke(url, "measure", "gpu-b2", "9", "3", "--no-wait")
    assert queued.exit_code == 0, queued.output
    batch = queued.stdout.split()[2]
    assert queued.stdout.strip().endswith(f"its results: latfarm results {batch}")

    pending = _invoke(url, "results", batch, "--no-wait")
    assert pending.exit_code == 1, pending.output  # no arch measured yet
    fp16 = "conditions: precision fp16 (nb201/32px/10cls/b1/fp16/reference)"  # the device's, not the defaults
    assert pending.stdout.splitlines()[0] == fp16
    assert [line.split()[0] for line in pending.stdout.strip().splitlines()[1:]] == ["queued", "queued"]

    finish_batch(server, batch)  # arch 9 measured, arch 3 failed
    shown = _invoke(url, "results", batch)
    assert shown.exit_code == 0, shown.output
    fp16_line, *lines = shown.stdout.strip().splitlines()
    assert fp16_line == fp16
    assert lines[0].startswith(f"{LATENCY_MS[9]:.4f} ms median") and lines[0].endswith(arch(9))
    assert lines[1].startswith("failed") and arch(3) in lines[1]
    out = tmp_path / "results.csv"
    written = _invoke(url, "results", batch, "--out", str(out))
    assert written.exit_code == 0 and written.stdout.splitlines() == [fp16, f"1 measured, 1 failed: {out}"]
    with out.open() as file:
        assert [row["nb201_index"] for row in csv.DictReader(file)] == ["9", "3"]


def test_results_of_an_unknown_batch_is_one_line(live_api):
    url, _ = live_api
    unknown = _invoke(url, "results", "0123456789abcdef0123456789abcdef")
    assert unknown.exit_code == 1, unknown.output  # no progress bar was drawn
    assert unknown.output == "latfarm results: unknown job batch '0123456789abcdef0123456789abcdef'\n"


@pytest.mark.parametrize("command", ["results", "cancel"])
@pytest.mark.parametrize("batch", ["../etc", "nope", "a/b", "a#b", "0123456789ABCDEF0123456789ABCDEF"])
def test_a_malformed_batch_id_is_refused_before_any_request(command, batch):
    """In a URL path it would name another route (a 404 that blamed --server); the server is never asked."""
    refused = _invoke(NOWHERE, command, batch)
    shown = " ".join(refused.output.replace("│", "").split())
    assert refused.exit_code == 2, refused.output  # a usage error, as tests/unit/test_cli.py's table
    assert f"Invalid value for 'BATCH...': not a job batch id: {batch!r} (a batch id is 32 hex digits)" in shown


def test_device_adds_refusal_of_a_field_names_its_flag_or_argument(live_api):
    url, server = live_api
    cases = [
        (["p9", "--resolution", "17"], "--resolution: 17px with 10 classes is not an input variant of nb201; known: "),
    ]
    for args, line in cases:
        refused = _invoke(url, "device", "add", *args)
        assert refused.exit_code == 1 and refused.output.startswith(f"latfarm device add: {line}"), refused.output
        assert len(refused.output.strip().splitlines()) == 1
    with server.state.sessions() as session:
        assert session.query(Device).count() == 0
    added = _invoke(url, "device", "add", "pixel7-litert", "--runtime", "litert")
    assert added.exit_code == 0, added.output
    with server.state.sessions() as session:
        assert session.query(Device).filter_by(name="pixel7-litert").one().runtime == "litert"


class _OldServer:
    """An older server's client: its ``/healthz`` answer has no ``grpc_port``."""

    def health(self) -> dict:
        return {"status": "ok", "database": "ok"}


def test_agent_hint_falls_back_to_the_default_grpc_port_for_an_older_server():
    from latfarm.services.cli.remote import agent_command

    assert agent_command(_OldServer()) == "latfarm agent --server HOST:50051"  # type: ignore[arg-type]


def test_agent_hints_add_tls_when_the_servers_grpc_port_serves_it(tmp_path, sqlite_url):
    """``/healthz`` says ``grpc_tls`` (true with a certificate set; the REST app never reads the PEM files), and
    each hint to start an agent (``device enroll --out``, no agent online) then carries ``--tls``; without TLS the
    other tests see the plaintext command."""
    pem = {"grpc_tls_cert": tmp_path / "cert.pem", "grpc_tls_key": tmp_path / "key.pem"}
    settings = make_settings(tmp_path, sqlite_url, grpc_port=LIVE_GRPC_PORT, **pem)
    with app_on(settings) as server, serving(server) as url:
        assert CliRunner().invoke(app, ["device", "add", "gpu-b2", "--server", url, "--key", ADMIN_KEY]).exit_code == 0
        health = httpx.get(f"{url}/healthz").json()
        assert (health["grpc_port"], health["grpc_tls"]) == (LIVE_GRPC_PORT, True)
        agent = f"latfarm agent --server HOST:{LIVE_GRPC_PORT} --tls"
        enrolled = _invoke(url, "device", "enroll", "gpu-b2", "--out", str(tmp_path / "gpu-b2.token"))
        assert enrolled.exit_code == 0 and enrolled.stdout.rstrip().endswith(agent), enrolled.output
        offline = _invoke(url, "measure", "gpu-b2", "0")
        assert offline.exit_code == 1 and f"{agent} (a token: latfarm device enroll gpu-b2)" in offline.output
