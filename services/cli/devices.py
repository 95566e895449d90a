"""``latfarm device add``, ``device list``, ``device enroll``, ``results`` and ``export device``: registering and
listing devices, an enrollment token for their agents, a queued batch's results and a device's measurements, against
a running server (REST: ``POST /v1/devices``, ``GET /v1/devices``, ``POST /v1/devices/{name}/enrollments``,
``GET /v1/jobs/{id}``, ``GET /v1/devices/{name}/export``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from latfarm.agents.runtimes import RUNTIMES
from latfarm.services.cli.errors import interrupted
from latfarm.services.cli.options import (
    DeviceName,
    ExportFormat,
    ExportOut,
    ExportSpace,
    WaitTimeout,
    among,
    batch_arguments,
    bounded,
    bounded_option,
    condition_option,
    precision_option,
    refuse_beside,
    span,
)
from latfarm.services.cli.output import JsonOption, exported, show_rows
from latfarm.services.cli.remote import (
    ApiKey,
    ServerUrl,
    agent_command,
    check_out,
    client_for,
    explained,
    show_results,
)
from latfarm.services.core.security import ENROLLMENT_BOUNDS

SERVERS = "the server's"  # a device field left unset takes the server's default
SHOWN_CONDITIONS = ("precision", "batch_size", "resolution", "classes")  # the device's, shown once registered
DEVICE_COLUMNS = ("name", "runtime", *SHOWN_CONDITIONS, "owner_key_id", "agents_online")


def device_add(
    name: str = DeviceName,
    description: str = typer.Option(None, "--description", show_default="none", help="What the device is."),
    hardware: str = typer.Option(None, "--hardware", show_default="none", help="Its chip, cores, memory."),
    runtime: str = typer.Option(
        None,
        "--runtime",
        callback=among(RUNTIMES),
        show_default=SERVERS,
        help=f"{' | '.join(RUNTIMES)}: the runtime its agents measure with (its jobs: that runtime's models).",
    ),
    precision: str = precision_option(": its networks' precision.", show_default=SERVERS),
    batch_size: int = condition_option("batch_size", "Images per inference", show_default=SERVERS),
    resolution: int = condition_option(
        "resolution", "Input height and width of its networks, px", show_default=SERVERS
    ),
    classes: int = condition_option("classes", "Output classes of its networks", show_default=SERVERS),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Register a device, owned by the key that registers it (an owner or admin key).

    Its precision, batch size, resolution and classes are the conditions its archs are measured under."""
    given = {
        "description": description,
        "hardware": hardware,
        "runtime": runtime,
        "precision": precision,
        "batch_size": batch_size,
        "resolution": resolution,
        "classes": classes,
    }
    client = client_for(server, key, "latfarm device add")
    with explained("latfarm device add", client):
        created = client.create_device(name, **{field: value for field, value in given.items() if value is not None})
    conditions = ", ".join(f"{field} {created[field]}" for field in SHOWN_CONDITIONS)
    typer.echo(f"registered device {created['name']} ({conditions}); enroll its agents: latfarm device enroll {name}")


def device_list(json_out: bool = JsonOption, server: str = ServerUrl, key: str = ApiKey) -> None:
    """List the devices: their runtime, measurement conditions, owning key's id and agents online (any key)."""
    client = client_for(server, key, "latfarm device list")
    with client, explained("latfarm device list", client):
        devices = client.devices()
    show_rows(devices, DEVICE_COLUMNS, json_out, none="no devices yet: latfarm device add NAME registers one")


def device_enroll(
    device: str = DeviceName,
    out: Path = typer.Option(
        None, "--out", show_default="stdout", help="Write the token to this file, readable by you only."
    ),
    expires_in: int = typer.Option(
        None,
        "--expires-in",
        callback=bounded(ENROLLMENT_BOUNDS["expires_in_s"]),
        show_default="the server's LATFARM_ENROLLMENT_TTL_H",
        help=f"Seconds the token stays valid, {span(ENROLLMENT_BOUNDS['expires_in_s'])} (a year).",
    ),
    max_uses: int = bounded_option(
        None, "--max-uses", ENROLLMENT_BOUNDS["max_uses"], "Agents it may enroll", show_default="any number"
    ),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Make an enrollment token for the device's agents (its owner's key or an admin key).

    The token is a secret: with --out it goes to a file of mode 600 and stdout says how to start an agent with it;
    without, stdout is the token alone. An agent takes it as LATFARM_AGENT_ENROLL, not --enroll (ps shows that)."""
    if out is not None:
        check_out(out, before="no token was made")
    client = client_for(server, key, "latfarm device enroll")
    with explained("latfarm device enroll", client):
        agent = "" if out is None else agent_command(client)  # asked first: a token made is never lost
        token = client.enroll(device, expires_in_s=expires_in, max_uses=max_uses)
    if out is None:
        typer.echo(token)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as file:
        file.write(f"{token}\n")
    typer.echo(
        f"enrollment token for {device} written to {out} (readable by you only); on the device: "
        f"LATFARM_AGENT_ENROLL=$(cat {out.name}) {agent}"
    )


def results(
    ctx: typer.Context,
    batches: list[str] = batch_arguments("Batch ids (printed by measure --no-wait): shown as one run, in order."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for their unfinished jobs (a progress bar)."),
    timeout: float = WaitTimeout,
    out: Path = typer.Option(None, "--out", help="Write the results as CSV here."),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Show measurement batches' results, as measure does: printed, or as CSV with --out.

    Several batches (a measure --random N with archs given queues two) are shown as one run. It waits for
    unfinished jobs unless --no-wait (they show as queued or running). Exit status 1 when no arch was measured;
    Ctrl-C while waiting stops waiting (exit 130), the jobs stay queued."""
    from latfarm.services.cli.remote import picked_up, resumable, wait_with_progress

    if not wait:
        refuse_beside(ctx, "--no-wait", ["timeout"], "--no-wait waits for nothing")
    if out:
        check_out(out, before="nothing was read")
    client = client_for(server, key, "latfarm results")
    ids = " ".join(batches)
    try:
        with client, explained("latfarm results", client):
            answers = [client.job(batch, items=True) for batch in batches]  # an unknown batch: before a progress bar
            if wait and any(answer["queued"] + answer["running"] for answer in answers):
                with resumable("latfarm results", picked_up(batches, out)):
                    answers = wait_with_progress(client, batches, timeout)
    except TimeoutError as err:
        raise SystemExit(f"latfarm results: {err}") from err
    except KeyboardInterrupt:
        raise interrupted(
            f"latfarm results: interrupted; the jobs stay queued (latfarm cancel {ids} cancels them)"
        ) from None
    show_results("latfarm results", answers, out)


def export_device(
    device: str = DeviceName,
    fmt: str = ExportFormat,
    out: Path = ExportOut,
    space: str = ExportSpace,
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Export a device's measurements of one search space from a running server, as CSV or a LatBench pickle (what
    export data writes from the server's own database)."""
    check_out(out, before="nothing was read")
    client = client_for(server, key, "latfarm export device")
    with client, explained("latfarm export device", client):
        try:
            written = client.export_to(out, device, fmt=fmt, space=space)
        except OSError as err:
            raise SystemExit(f"latfarm export device: cannot write {out}: {err.strerror or err}") from err
    what = f"its {'measurements' if fmt == 'csv' else 'archs'}" if written is None else exported(written, fmt)
    typer.echo(f"wrote {what} of {device} ({space}) from {client.base_url} to {out}")
