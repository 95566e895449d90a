"""``latfarm key create``, ``key list``, ``key revoke`` and ``device list`` against a live server: an admin's keys
managed and its devices listed without curl; refusals are one line (usage: exit 2, the server's: exit 1)."""

from __future__ import annotations

import json
from datetime import timedelta

from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.core.clock import utcnow
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Agent, ApiKey
from tests.api_support import ADMIN_KEY


def _invoke(url: str, *args: str, key: str = ADMIN_KEY, columns: int = 200):
    return CliRunner().invoke(app, [*args, "--server", url, "--key", key], env={"COLUMNS": str(columns)})


def test_keys_are_created_listed_and_revoked(live_api):
    url, server = live_api
    created = _invoke(url, "key", "create", "nas", "--scope", "client", "--scope", "owner")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("lf_client_") and "\n" not in secret  # stdout: the key alone
    assert created.stderr == "created key 2 'nas' (client, owner)\n"
    assert _invoke(url, "device", "list", key=secret).exit_code == 0  # the key works
    again = _invoke(url, "key", "create", "nas", "--scope", "client")
    assert again.exit_code == 1
    assert again.output == "latfarm key create: NAME: an unrevoked key is called 'nas': pick another name\n"
    listed = _invoke(url, "key", "list", columns=40)  # piped: every row on one line, however narrow the terminal
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.strip().splitlines()
    assert header.split() == ["id", "name", "scopes", "created", "at", "revoked"]
    assert [row.split()[:2] for row in rows] == [["1", "bootstrap-admin"], ["2", "nas"]]
    assert "client, owner" in rows[1] and rows[1].split()[-1] == "no"
    revoked = _invoke(url, "key", "revoke", "2")
    assert revoked.exit_code == 0 and revoked.stdout == "revoked key 2\n"
    answer = json.loads(_invoke(url, "key", "list", "--json").stdout)
    assert [(k["id"], k["name"], k["scopes"], k["revoked"]) for k in answer] == [
        (1, "bootstrap-admin", ["admin"], False),
        (2, "nas", ["client", "owner"], True),
    ]
    refused = _invoke(url, "device", "list", key=secret)
    assert refused.exit_code == 1 and refused.output.startswith("latfarm device list: invalid or revoked API key"), (
        refused.output
    )


def test_key_refusals_are_one_line(live_api):
    url, server = live_api
    cases = [
        (("key", "revoke", "99"), 1, "latfarm key revoke: unknown key id 99"),
        (
            ("key", "revoke", "1"),
            1,
            "latfarm key revoke: key 1 is the last admin key: create another admin key before revoking it",
        ),
    ]
    for args, code, start in cases:
        result = _invoke(url, *args)
        assert result.exit_code == code and result.output.startswith(start), (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
    for args in (("key", "revoke", "x"), ("key", "revoke", "0"), ("key", "create", "n", "--scope", "root")):
        usage = _invoke(url, *args)
        assert usage.exit_code == 2, (args, usage.output)
    assert (
        "must be one of client, owner, admin, got 'root'"
        in _invoke(url, "key", "create", "n", "--scope", "root").output
    )
    client = _invoke(url, "key", "create", "reader", "--scope", "client").stdout.strip()
    denied = _invoke(url, "key", "list", key=client)
    assert denied.exit_code == 1 and "lacks permission 'keys'" in denied.output, denied.output
    with server.state.sessions() as session:
        assert [k.name for k in session.query(ApiKey).order_by(ApiKey.id)] == ["bootstrap-admin", "reader"]


def test_device_list_shows_the_devices_as_a_table_or_json(live_api):
    url, server = live_api
    empty = _invoke(url, "device", "list")
    assert empty.exit_code == 0 and empty.stdout == "no devices yet: latfarm device add NAME registers one\n"
    assert _invoke(url, "device", "add", "pixel7", "--runtime", "litert", "--precision", "fp16").exit_code == 0
    assert _invoke(url, "device", "add", "jetson").exit_code == 0
    with transaction(server.state.sessions) as session:  # pixel7: one agent online, one silent too long
        pixel7 = device_by_name(session, "pixel7").id
        for agent_id, silent_s in (("a1", 0), ("a2", 3600)):
            heartbeat = utcnow() - timedelta(seconds=silent_s)
            session.add(Agent(id=agent_id, device_id=pixel7, credential_hash=agent_id, last_heartbeat=heartbeat))
    table = _invoke(url, "device", "list", columns=40)
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.strip().splitlines()
    assert header.split() == [
        *("name", "runtime", "precision", "batch", "size", "resolution", "classes"),
        *("owner", "key", "id", "agents", "online"),
    ]
    assert [row.split() for row in rows] == [
        ["jetson", "onnxruntime", "fp32", "1", "32", "10", "1", "0"],
        ["pixel7", "litert", "fp16", "1", "32", "10", "1", "1"],
    ]
    answer = json.loads(_invoke(url, "device", "list", "--json").stdout)
    assert [(d["name"], d["runtime"], d["owner_key_id"], d["agents_online"]) for d in answer] == [
        ("jetson", "onnxruntime", 1, 0),
        ("pixel7", "litert", 1, 1),
    ]
