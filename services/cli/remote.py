"""``latfarm predict``, ``measure`` and ``adapt``: the REST client commands, against a running server."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from latfarm.agents.measurement import BOUNDS as PROTOCOL
from latfarm.agents.runtimes import AGENT_EXTRAS, RUNTIME_FORMATS, job_format
from latfarm.common.words import counted, named_batches
from latfarm.proto.v1.names import STATISTICS
from latfarm.services.cli.errors import exit_on_error, interrupted
from latfarm.services.cli.options import (
    ARCHS_HELP,
    MODEL_FORMATS_MODULE,
    Calibrate,
    DeviceName,
    Samples,
    WaitTimeout,
    among,
    batch_arguments,
    bounded,
    bounded_option,
    check_graph,
    checked_archs,
    condition_option,
    one_of,
    precision_option,
    refuse_beside,
    space_option,
)

if TYPE_CHECKING:
    from latfarm.services.client import Client, LatfarmError

# A flag not given is None: the client settings (core/config.py) fill it in, from LATFARM_SERVER / LATFARM_API_KEY
# or their defaults; the help texts name both as typer would.
ServerUrl = typer.Option(
    None, "--server", help=r"REST base URL. \[env var: LATFARM_SERVER] \[default: http://127.0.0.1:8000]"
)
ApiKey = typer.Option(None, "--key", help=r"API key (Bearer). \[env var: LATFARM_API_KEY]")


AGENTS = "each agent's"  # the measurement protocol a job leaves unset is the measuring agent's
DEVICES = "the device's"  # the conditions a job leaves unset are its device's


SpaceOption = space_option("Search space of the archs")


def predict(
    device: str = DeviceName,
    archs: list[str] = typer.Argument(..., help=ARCHS_HELP),
    space: str = SpaceOption,
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Ask the server for latencies (measured, else predicted) of archs of a space on a device.

    A prediction shows its standard deviation (± ms); a measurement whose repeatability check failed is marked
    UNSTABLE; exit status 1 when no arch has an estimate."""
    from latfarm.services.cli.measure_results import arch_values, prediction_line

    given = arch_values(archs)
    checked_archs(given, space)  # a bad arch is refused before any request
    client = client_for(server, key, "latfarm predict")
    with explained("latfarm predict", client):
        items = client.predict(device, given, space=space)
    for item in items:
        if item["latency_ms"] is None:  # the server names its REST route; a CLI user gets the command
            message = re.sub(
                r"POST /v1/devices/[^ )]+/adapt", adapt_command(device, space, "--samples K"), item["message"]
            )
            typer.echo(f"no estimate  {item['arch']}: {message}")
            continue
        typer.echo(prediction_line(item))
    if all(item["latency_ms"] is None for item in items):
        raise typer.Exit(1)


@contextmanager
def explained(command: str, client: Client) -> Iterator[None]:
    """Run the block; a client error exits with one line: the server's message (an unknown device's names the
    known ones) and what to do about it (start the server / check ``--server``, pass a key)."""
    from latfarm.services.client import LatfarmError

    try:
        yield
    except LatfarmError as err:
        raise SystemExit(f"{command}: {_as_flag(err)}{_what_to_do(err, client)}") from err


def _what_to_do(err: LatfarmError, client: Client) -> str:
    """The hint for a client error's code ('' when the message says it all)."""
    if err.code == "unavailable" and _not_http1(err):
        return (
            f"; {client.base_url} does not answer HTTP/1.1 (the agents' gRPC port?): --server / LATFARM_SERVER is "
            "the server's REST base URL, http://HOST:PORT"
        )
    if err.code == "unavailable":
        return f"; is the server running at {client.base_url}? (--server / LATFARM_SERVER)"
    if err.code in ("unauthenticated", "permission_denied"):
        return "; pass an API key that may do this in LATFARM_API_KEY (or --key)"
    if _no_route(err):
        root = "the server's REST base URL, http://HOST:PORT with no path"
        return f" at {client.base_url}: --server / LATFARM_SERVER is {root}"
    return ""


def _not_http1(err: LatfarmError) -> bool:
    """Whether the answer to ``err``'s request was no HTTP/1 at all (h11 finds no status line: "illegal ..."), as a
    gRPC port's HTTP/2 frames; a server that closed the connection without answering is not that."""
    import httpx

    return isinstance(err.__cause__, httpx.RemoteProtocolError) and str(err.__cause__).startswith("illegal")


def _no_route(err: LatfarmError) -> bool:
    """Whether ``err`` is a 404 for a path no route serves (latfarm names the ``path``; another server's has no
    ``not_found`` code), not for a resource: the base URL is no REST root."""
    return err.status == 404 and (err.code != "not_found" or err.field == "path")


# The command-line flag or argument of each request field the commands set, for the messages naming a field: the
# server's to measure and predict (``POST /v1/jobs``, ``/v1/predict``), adapt and device add (``POST /v1/devices``),
# and the conditions' own (``domain.conditions``) to export model.
FLAGS = {
    "device": "DEVICE",
    "format": "--format",
    "protocol.rounds": "--rounds",
    "protocol.runs_per_round": "--runs",
    "protocol.warmup_runs": "--warmup",
    "protocol.statistic": "--statistic",
    "conditions.batch_size": "--batch-size",
    "conditions.precision": "--precision",
    "conditions.graph": "--graph",
    "space": "--space",
    "samples": "--samples",
    "calibration": "--calibrate",
    "name": "NAME",
    "description": "--description",
    "hardware": "--hardware",
    "runtime": "--runtime",
    "precision": "--precision",
    "batch_size": "--batch-size",
    "resolution": "--resolution",
    "classes": "--classes",
    "graph": "--graph",
}


def field_message(err: LatfarmError) -> str:
    """``err``'s message without the name of the field it concerns leading it (``protocol.statistic: ...``,
    ``resolution must ...``), for a flag's or argument's name to lead it instead."""
    field = err.field or ""
    return err.message.removeprefix(f"{field}: ").removeprefix(f"{field} ") if field else err.message


def _as_flag(err: LatfarmError) -> str:
    """The server's message, led by the flag or argument of the field it names (``--statistic: ...`` for
    ``protocol.statistic: ...``, ``NAME: ...`` for ``name: ...``); unchanged for a field no flag sets."""
    flag = FLAGS.get(err.field or "")
    return err.message if flag is None else f"{flag}: {field_message(err)}"


_RUNS = ", ".join(f"{runtime}: {fmt}" for runtime, fmt in RUNTIME_FORMATS.items())
FormatOption = typer.Option(
    None,
    "--format",
    callback=one_of(MODEL_FORMATS_MODULE, "FORMATS"),
    show_default="the device's runtime's",
    help=f"onnx | tflite: the archs' model format; a device takes only its runtime's ({_RUNS}).",
)


def measure(
    ctx: typer.Context,
    device: str = DeviceName,
    archs: list[str] = typer.Argument(None, help=ARCHS_HELP),
    space: str = SpaceOption,
    from_file: Path = typer.Option(None, "--from", help="Also the archs in this file (one per line, # comments)."),
    sample: int = typer.Option(
        None,
        "--random",
        "--sample",
        callback=bounded({"ge": 1}),
        show_default="none",
        help="Also measure N random archs of the space: distinct archs of its reference set "
        "(NB201: official indices; FBNet: HELP's 5,000), else uniform draws. They are queued as their own batch, "
        "marked drawn at random (archs given: another batch, chosen), so their measurements calibrate adaptations' "
        "spread; waiting, progress and results cover both as one run.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of --random: a seed draws the same archs each run (a smaller N its first ones)."
    ),
    fmt: str | None = FormatOption,
    rounds: int = bounded_option(
        None, "--rounds", PROTOCOL["rounds"], "Interleaved rounds per model", show_default=AGENTS
    ),
    runs: int = bounded_option(None, "--runs", PROTOCOL["runs_per_round"], "Timed runs per round", show_default=AGENTS),
    warmup: int = bounded_option(
        None, "--warmup", PROTOCOL["warmup_runs"], "Untimed runs per model per round", show_default=AGENTS
    ),
    statistic: str = typer.Option(
        None,
        "--statistic",
        callback=among(STATISTICS),
        show_default=AGENTS,
        help="Headline figure: min | median.",
    ),
    batch_size: int = condition_option("batch_size", "Images per inference", show_default=DEVICES),
    precision: str = precision_option(show_default=DEVICES),
    graph: str = typer.Option(
        None,
        "--graph",
        show_default="reference",
        help="One of the space's graphs: reference (the benchmark's network) | pruned (NB201: none ops removed).",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the results (a progress bar shows them)."),
    wait_for_agent: bool = typer.Option(
        False,
        "--wait-for-agent",
        help="Queue and wait even when no agent of the device is online (else: exit 1, nothing queued).",
    ),
    timeout: float = WaitTimeout,
    out: Path = typer.Option(None, "--out", help="Write the results as CSV here."),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Measure archs on a device's agents: queue the jobs, wait with a progress bar, print or save the results.

    With no agent of the device online (or none that runs --format's models) it says so and exits 1 without
    queueing (unless --wait-for-agent or --no-wait); Ctrl-C while waiting cancels its unfinished jobs (exit 130).
    Exit status 1 when no arch was measured (every job failed)."""
    from latfarm.services.cli import measure_results

    if not wait:
        refuse_beside(ctx, "--no-wait", ["timeout", "wait_for_agent"], "--no-wait waits for nothing")
    if not sample:
        refuse_beside(ctx, "--seed", ["seed"], "--seed draws nothing without --random N")
    check_graph(space, graph)
    given = [*(archs or []), *(read_archs(from_file) if from_file else [])]
    chosen = measure_results.arch_values(given)
    drawn: list[str | int] = random_archs(space, sample or 0, seed)
    if not chosen and not drawn:
        raise typer.BadParameter("give archs, --from FILE or --random N", param_hint="'ARCHS...'")
    hint = "'ARCHS...' / '--from'" if from_file else "'ARCHS...'"
    strings = checked_archs([*chosen, *drawn], space, hint)  # a bad arch is refused before any request
    if out:
        check_out(out, wait)
    drawn_strings = set(strings[len(chosen) :])  # an arch both given and drawn is measured once, as drawn
    chosen = [arch for arch, string in zip(chosen, strings[: len(chosen)], strict=True) if string not in drawn_strings]
    parts = [(part, random) for part, random in ((chosen, False), (drawn, True)) if part]
    settings = {"rounds": rounds, "runs_per_round": runs, "warmup_runs": warmup, "statistic": statistic}
    protocol = {name: value for name, value in settings.items() if value is not None} or None
    overrides = {"batch_size": batch_size, "precision": precision, "graph": graph}
    conditions = {name: value for name, value in overrides.items() if value is not None} or None
    request = {"space": space, "fmt": fmt, "protocol": protocol, "conditions": conditions}
    try:
        with client_for(server, key, "latfarm measure") as client, explained("latfarm measure", client):
            offline = _check_agents(client, device, "latfarm measure", refuse=wait and not wait_for_agent, fmt=fmt)
            batch_ids = _queue(client, device, parts, request)
            _note(offline)
            if not wait:
                typer.echo(_queued(batch_ids, parts))
                return
            batches = _wait_or_cancel(client, device, batch_ids, timeout, out)
    except TimeoutError as err:
        raise SystemExit(f"latfarm measure: {err}") from err
    show_results("latfarm measure", batches, out)


def _queue(client: Client, device: str, parts: list[tuple[list, bool]], request: dict) -> list[str]:
    """Queue one batch per part (its archs, whether they were drawn at random: the API's ``drawn_at_random`` is a
    request's, and only archs drawn at random calibrate adaptations), with ``request`` (``Client.submit``'s other
    keyword arguments); their ids. A part refused cancels the batches queued before it (nothing is left waiting)."""
    batch_ids: list[str] = []
    try:
        for archs, random in parts:
            batch_ids.append(client.submit(device, archs, drawn_at_random=random, **request))
    except BaseException:
        for batch_id in batch_ids:
            client.cancel(batch_id)
        raise
    return batch_ids


def _queued(batch_ids: list[str], parts: list[tuple[list, bool]]) -> str:
    """What ``measure --no-wait`` queued, in one line: each batch, its jobs (those drawn at random said so), and the
    command that shows their results."""
    described = []
    for batch_id, (archs, random) in zip(batch_ids, parts, strict=True):
        jobs = counted(len(archs), "job") + (", drawn at random" if random else "")
        described.append(f"batch {batch_id} ({jobs})")
    whose = "its" if len(batch_ids) == 1 else "their"
    return f"queued {' and '.join(described)}; {whose} results: {results_command(batch_ids)}"


def results_command(batch_ids: list[str], out: Path | str | None = None) -> str:
    """The ``latfarm results`` command line that shows the batches' results (as CSV at ``out``, when given)."""
    return f"latfarm results {' '.join(batch_ids)}" + (f" --out {out}" if out else "")


def show_results(command: str, batches: list[dict], out: Path | None) -> None:
    """The batches' items (``GET /v1/jobs/{id}?items=true``, one run: in order) as lines, or as CSV at ``out`` with
    a one-line summary, led by a line of their conditions that are not the defaults (``conditions_line``); exit 1
    when no arch was measured (none done), or when the CSV cannot be written (saying where the results are)."""
    from latfarm.services.cli import measure_results

    items = [item for batch in batches for item in batch.get("items", [])]
    conditions = batches[0].get("conditions") or {}  # one request's conditions
    if out:
        try:
            measure_results.write_csv(out, items, conditions)
        except OSError as err:
            stored = f"the results are stored: {results_command([batch['id'] for batch in batches], 'FILE')}"
            raise SystemExit(f"{command}: cannot write {out}: {err.strerror or err}; {stored}") from err
        shown = [f"{measure_results.summary(items)}: {out}"]
    else:
        shown = measure_results.lines(items)
    for line in [measure_results.conditions_line(conditions), *shown]:
        if line:
            typer.echo(line)
    if not any(item.get("state") == "done" for item in items):
        raise typer.Exit(1)


def client_for(server: str | None, key: str | None, command: str) -> Client:
    """A REST client for the flags given, else for the client settings (``command``: the error lines' prefix); a
    server given without a scheme is ``http://``. No key at all exits 1 before any request: every route they call
    takes one."""
    from latfarm.services.cli.errors import settings_from_env
    from latfarm.services.client import Client
    from latfarm.services.core.config import ClientSettings

    settings = settings_from_env(ClientSettings, command, server=server, api_key=key)
    if not settings.api_key:
        raise SystemExit(
            f"{command}: no API key: set LATFARM_API_KEY (or pass --key); "
            "latfarm up keeps its admin key in <data-dir>/admin.key (latfarm-data/admin.key by default)"
        )
    url = settings.server if "://" in settings.server else f"http://{settings.server}"  # HOST:PORT is taken too
    return Client(
        url,
        settings.api_key,
        wait_retry_s=settings.wait_retry_s,
        notify=lambda line: typer.echo(f"{command}: {line}", err=True),
    )


@contextmanager
def resumable(command: str, goes_on: str) -> Iterator[None]:
    """Run a wait for work the server does; when the server does not answer for ``LATFARM_WAIT_RETRY_S`` (the
    client's ``unavailable``), exit 1 with one line: why, then ``goes_on``: that the work goes on on the server and
    the command that picks it up."""
    from latfarm.services.client import LatfarmError

    try:
        yield
    except LatfarmError as err:
        if err.code != "unavailable":
            raise
        raise SystemExit(f"{command}: {err.message}; {goes_on}") from err


def check_out(path: Path, wait: bool = True, before: str = "nothing was queued") -> None:
    """Refuse ``--out`` before any request (``typer.BadParameter``, ending in ``(<before>)``) where no file would be
    written: with ``--no-wait`` (no results to write), at a folder, or in a folder that does not exist or is not
    writable."""
    if not wait:
        problem = "--no-wait does not wait for the results it would write; drop one of them"
    elif path.is_dir():
        problem = f"{path} is a folder; give a file name"
    elif not path.parent.is_dir():
        problem = f"{path}: no folder {path.parent}"
    elif not os.access(path if path.exists() else path.parent, os.W_OK):
        problem = f"{path}: not writable"
    else:
        return
    raise typer.BadParameter(f"{problem} ({before})", param_hint="--out")


def read_archs(path: Path) -> list[str]:
    """Archs in any of the command line's forms, one per line; blank lines and ``#`` comments are skipped. A usage
    error for a file that cannot be read or holds no arch."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise typer.BadParameter(f"cannot read {path}: {err.strerror or err}", param_hint="--from") from err
    except UnicodeDecodeError as err:  # e.g. a dataset pickle given for the archs' list
        raise typer.BadParameter(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); one arch per line", param_hint="--from"
        ) from err
    archs = [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    if not archs:
        raise typer.BadParameter(f"{path} holds no arch (one per line, # comments)", param_hint="--from")
    return archs


def agent_command(client: Client) -> str:
    """``latfarm agent --server HOST:PORT``, with ``--tls`` when the port serves TLS: PORT and TLS as the server's
    ``/healthz`` says (HOST: the address devices reach it by, which only the user knows); a server whose
    ``/healthz`` predates the fields: the default port, plaintext."""
    from latfarm.services.core.config import Settings

    health = client.health()
    port = health.get("grpc_port", Settings.model_fields["grpc_port"].default)
    return f"latfarm agent --server HOST:{port}" + (" --tls" if health.get("grpc_tls") else "")


def _check_agents(client: Client, device: str, command: str, refuse: bool, fmt: str | None = None) -> str:
    """When no agent of ``device`` that runs ``fmt`` models (None: its runtime's) is online, and how to start one
    (with the enrollment step only when the device has no agent yet): with ``refuse``, exit 1 saying so; else the
    line to print once its jobs are queued (a refusal of the request then leaves nothing waiting). '' when such an
    agent is online (an agent that does not list its formats counts). A ``fmt`` the device's runtime does not run
    is a usage error of ``--format`` (``runtimes.job_format``), before anything is queued."""
    found = client.device(device)
    try:
        fmt = job_format(found["runtime"], fmt)
    except ValueError as err:
        raise typer.BadParameter(f"{err} (nothing was queued)", param_hint="--format") from err
    if found["agents_online"]:
        online = [agent for agent in client.agents(device) if agent.get("online")]
        formats = [(agent.get("descriptor") or {}).get("formats") for agent in online]
        if not online or any(runs is None or fmt in runs for runs in formats):
            return ""
        runs = ", ".join(sorted({f for runs in formats for f in runs or ()})) or "none"
        problem = f"no agent of device {device!r} online runs {fmt} models (they run: {runs})"
        extra = f"an agent with the {AGENT_EXTRAS[fmt]} extra runs them, " if fmt in AGENT_EXTRAS else ""
        start = f"{extra}docs/agents.md#tflite-models"
    else:
        agent = agent_command(client)
        if found["agents"]:
            start = f"start its agent: {agent} --state-dir DIR (the folder with its credential)"
        else:
            enroll = f"(a token: latfarm device enroll {device})"
            start = f"start one on the device: LATFARM_AGENT_ENROLL=TOKEN {agent} {enroll}"
        problem = f"no agent of device {device!r} is online"
    if refuse:
        raise SystemExit(f"{command}: {problem}; nothing was queued; {start}; --wait-for-agent queues and waits anyway")
    return f"{command}: {problem}, so its jobs wait queued until one connects; {start}"


def _note(line: str) -> None:
    """Print ``line`` on stderr, unless it is ''."""
    if line:
        typer.echo(line, err=True)


def random_archs(space: str, n: int, seed: int) -> list[str | int]:
    """``n`` random archs of ``space``, seeded: distinct positions of its reference set where it has one (NB201's
    official indices, FBNet's 5,000 HELP archs: results match the dataset's), else ``space.sample`` drawn as strings.
    ``UnknownSpace`` for an unknown space; a usage error of ``--random`` for more archs than the reference set
    holds."""
    import random

    from latfarm.predictor.spaces import get_space

    searched = get_space(space)
    reference = searched.reference_set()
    if not reference:
        return [searched.to_string(encoding) for encoding in searched.sample(n, seed)]
    if n > len(reference):
        raise typer.BadParameter(
            f"must be at most {len(reference)}, the size of the {space} reference set, got {n}",
            param_hint="'--random' / '--sample'",
        )
    return list(random.Random(seed).sample(range(len(reference)), n))


def wait_with_progress(client: Client, batch_ids: list[str], timeout: float, title: str = "measuring") -> list[dict]:
    """Wait for the batches' unfinished jobs under one progress bar (``title``, done and failed of all); returns each
    batch with ``items``. ``TimeoutError`` after ``timeout`` s (their jobs stay queued)."""
    from latfarm.services.core.progress import count_bar

    with count_bar(transient=True) as bar:
        task = bar.add_task(title, total=None)

        def show(progress: dict) -> None:
            finished = progress["done"] + progress["failed"] + progress["cancelled"]
            bar.update(task, completed=finished, total=finished + progress["queued"] + progress["running"])

        return client.wait_all(batch_ids, timeout=timeout, on_progress=show)


def _wait_or_cancel(
    client: Client, device: str, batch_ids: list[str], timeout: float, out: Path | None = None
) -> list[dict]:
    """``wait_with_progress`` for the batches of one ``measure``; Ctrl-C cancels their unfinished jobs (exit 130);
    a server gone for good says how to pick up their results (as CSV at ``out``, when given)."""
    try:
        with resumable("latfarm measure", picked_up(batch_ids, out)):
            return wait_with_progress(client, batch_ids, timeout, f"measuring on {device}")
    except KeyboardInterrupt:
        cancelled = sum(client.cancel(batch_id)["cancelled_now"] for batch_id in batch_ids)
        raise interrupted(
            f"latfarm measure: interrupted; cancelled {cancelled} unfinished job(s) of {named_batches(batch_ids)}"
        ) from None


def picked_up(batch_ids: list[str], out: Path | None) -> str:
    """What becomes of batches whose wait gave up, and how to pick up their results (as CSV at ``out``)."""
    return f"the jobs go on on the server; their results: {results_command(batch_ids, out)}"


def cancel(
    batches: list[str] = batch_arguments("Batch ids (printed by measure --no-wait; POST /v1/jobs answers one)."),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Cancel measurement batches' queued and running jobs; done and failed ones keep their results. One line per
    batch."""
    from latfarm.services.client import LatfarmError

    client = client_for(server, key, "latfarm cancel")
    with explained("latfarm cancel", client):
        for batch in batches:
            try:
                answer = client.cancel(batch)
            except LatfarmError as err:
                if err.code == "not_found" and not _no_route(err):  # an adaptation id is no batch id
                    err.message += "; to cancel an adaptation: latfarm adapt DEVICE --cancel"
                raise
            progress = answer["progress"]
            typer.echo(
                f"cancelled {answer['cancelled_now']} job(s) of batch {batch}; "
                f"{progress['done']} done, {progress['failed']} failed, {progress['cancelled']} cancelled"
            )


START_OPTIONS = ("samples", "calibration", "fmt", "wait", "wait_for_agent")  # ``adapt``'s, for a new adaptation


def adapt(
    ctx: typer.Context,
    device: str = DeviceName,
    samples: int = Samples,
    calibration: int = Calibrate,
    space: str = space_option("Search space whose predictor is adapted"),
    fmt: str | None = FormatOption,
    server: str = ServerUrl,
    key: str = ApiKey,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the adaptation (progress lines show it)."),
    wait_for_agent: bool = typer.Option(
        False,
        "--wait-for-agent",
        help="Start and wait even when no agent of the device is online (else: exit 1, nothing queued).",
    ),
    cancel: bool = typer.Option(False, "--cancel", help="Cancel the device's adaptation that is measuring."),
    status: bool = typer.Option(
        False, "--status", help="Show the device's latest adaptation (of --space) in one line; start none."
    ),
) -> None:
    """Adapt a space's predictor to a device from K new measurements by its agents.

    Always a new adaptation, even when one of the same K is active (latfarm up reuses it). It takes the device's
    owner's key or an admin key. With no agent of the device online it says so and exits 1 without starting (unless
    --wait-for-agent or --no-wait); Ctrl-C while waiting cancels the adaptation and its unfinished jobs (exit 130).
    Once active it prints the measured archs and the fit error. --status and --cancel act on the latest adaptation
    instead of starting one."""
    from latfarm.services.cli.measure_results import adapted

    if status and cancel:
        raise typer.BadParameter(
            "--cancel acts on the adaptation it would show; drop one of them", param_hint="--status"
        )
    if status or cancel:
        mode = "--status" if status else "--cancel"
        refuse_beside(ctx, mode, START_OPTIONS, f"{mode} starts no adaptation")
    elif not wait:
        refuse_beside(ctx, "--no-wait", ["wait_for_agent"], "--no-wait waits for nothing")
    client = client_for(server, key, "latfarm adapt")
    with exit_on_error("latfarm adapt"), explained("latfarm adapt", client):
        if cancel:
            typer.echo(_cancelled(client.cancel_adaptation(device, space), device))
            return
        if status:
            state = client.adaptation(device, space)
            serving = None if state["state"] in ("none", "active") else client.device(device)["active"].get(space)
            typer.echo(_status(state, device, space, serving))
            return
        offline = _check_agents(client, device, "latfarm adapt", refuse=wait and not wait_for_agent, fmt=fmt)
        started = client.adapt(device, samples=samples, calibration=calibration, wait=False, space=space, fmt=fmt)
        _note(offline)
        if not wait:
            progress, stop = adapt_command(device, space, "--status"), adapt_command(device, space, "--cancel")
            typer.echo(
                f"adaptation {started['id']} of {device} started ({samples + calibration} archs queued); "
                f"progress: {progress}; cancel: {stop}"
            )
            return
        try:
            status_command = adapt_command(device, space, "--status")
            with resumable("latfarm adapt", f"the adaptation goes on on the server; its state: {status_command}"):
                state = client.wait_adaptation(device, space, progress=True)
        except TimeoutError as err:
            stop = adapt_command(device, space, "--cancel")
            raise SystemExit(f"latfarm adapt: {err}; it goes on ({stop} stops it)") from err
        except KeyboardInterrupt:
            cancelled = _cancelled(client.cancel_adaptation(device, space), device)
            raise interrupted(f"latfarm adapt: interrupted; {cancelled}") from None
        typer.echo(f"{space} predictor of {device} active: {adapted(state)}")


def adapt_command(device: str, space: str, flags: str) -> str:
    """The ``latfarm adapt`` command line for ``device`` with ``flags``, and ``--space`` for a space but NB201."""
    return f"latfarm adapt {device} {flags}" + ("" if space == "nb201" else f" --space {space}")


def _status(state: dict, device: str, space: str, serving: dict | None = None) -> str:
    """The device's latest adaptation of ``space`` (``GET /v1/devices/{name}/adapt``) in one line: its state, its
    measured archs while measuring, its error once failed (or why it was cancelled), what it fitted once active; and
    the active adaptation that still predicts meanwhile (``serving``: the device's ``active`` one of ``space``)."""
    from latfarm.services.cli.measure_results import adapted

    if state["state"] == "none":
        return f"no {space} adaptation of {device} yet; start one: {adapt_command(device, space, '--samples K')}"
    if state["state"] == "active":
        return f"{space} predictor of {device} active: {adapted(state)}"
    line = f"{space} adaptation {state['id']} of {device}: {state['state']}"
    progress = state.get("progress")
    if state["state"] == "measuring" and progress:
        line += f" ({progress['done']}/{progress['total']} measured, {progress['failed']} failed)"
    line += f": {state['error']}" if state.get("error") else ""
    if serving is not None and serving.get("current"):
        line += f"; the active {space} predictor (adaptation {serving['id']}) still predicts"
    return line


def _cancelled(state: dict, device: str) -> str:
    """What a cancelled adaptation's answer says, in one line."""
    jobs = (state.get("progress") or {}).get("cancelled", 0)
    stays = "; the active predictor stays" if state.get("active_in_use") else ""
    return f"cancelled adaptation {state['id']} of {device} and {jobs} unfinished job(s){stays}"
