"""``latfarm key create``, ``key list`` and ``key revoke``: API keys, managed with an admin key against a running
server (REST: ``POST /v1/keys``, ``GET /v1/keys``, ``DELETE /v1/keys/{id}``)."""

from __future__ import annotations

import typer

from latfarm.common.ranges import out_of_range, within
from latfarm.services.cli.options import among, bounded, span
from latfarm.services.cli.output import JsonOption, show_rows
from latfarm.services.cli.remote import ApiKey, ServerUrl, client_for, explained
from latfarm.services.core.security import KEY_NAME_BOUNDS, SCOPES

KEY_COLUMNS = ("id", "name", "scopes", "created_at", "revoked")


def _scopes(values: list[str]) -> list[str]:
    """Each ``--scope`` one of ``SCOPES``, else a usage error listing them."""
    check = among(SCOPES)
    for value in values:
        check(value)
    return values


def _key_name(name: str) -> str:
    """A key name of ``KEY_NAME_BOUNDS`` characters (the server's field), else a usage error."""
    if not within(len(name), KEY_NAME_BOUNDS):
        raise typer.BadParameter(f"its length {out_of_range(len(name), KEY_NAME_BOUNDS)}")
    return name


def key_create(
    name: str = typer.Argument(
        ...,
        callback=_key_name,
        help=f"The key's name: the audit log names its actions by it; unique, {span(KEY_NAME_BOUNDS)} characters.",
    ),
    scopes: list[str] = typer.Option(
        ...,
        "--scope",
        metavar="SCOPE",
        callback=_scopes,
        help=f"{' | '.join(SCOPES)}; repeat for several (docs/api.md: scopes).",
    ),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Create an API key (an admin key).

    Stdout is the new key alone (shown once: store it); stderr says its id, name and scopes."""
    client = client_for(server, key, "latfarm key create")
    with client, explained("latfarm key create", client):
        created = client.new_key(name, scopes)
    typer.echo(created["key"])
    typer.echo(f"created key {created['id']} {created['name']!r} ({', '.join(created['scopes'])})", err=True)


def key_list(json_out: bool = JsonOption, server: str = ServerUrl, key: str = ApiKey) -> None:
    """List the API keys, revoked ones too, without their secrets (an admin key)."""
    client = client_for(server, key, "latfarm key list")
    with client, explained("latfarm key list", client):
        keys = client.keys()
    show_rows(keys, KEY_COLUMNS, json_out, none="no keys")


def key_revoke(
    key_id: int = typer.Argument(
        ..., metavar="ID", callback=bounded({"ge": 1}), help="The key's id (key list shows it)."
    ),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Revoke an API key (an admin key): requests with it are refused from then on. The last admin key cannot be
    revoked."""
    client = client_for(server, key, "latfarm key revoke")
    with client, explained("latfarm key revoke", client):
        client.revoke_key(key_id)
    typer.echo(f"revoked key {key_id}")
