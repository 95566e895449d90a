"""``latfarm up``: the whole service on this machine, on the embedded default (SQLite, no Redis).

It runs ``latfarm serve`` and ``latfarm agent`` as child processes (logs in ``<data-dir>/logs``), registers this
machine as a device, adapts the predictor to it from K measurements and R calibrating ones (reused on the next run),
prints where everything is and serves until Ctrl-C. A second run re-uses the data folder: nothing is measured again.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from latfarm.agents.runtimes import ONNXRUNTIME
from latfarm.agents.state import load_state
from latfarm.common.lock import check, hold
from latfarm.services.cli.database import reachable_database, server_lock
from latfarm.services.cli.errors import INTERRUPTED, locked
from latfarm.services.cli.measure_results import adapted
from latfarm.services.client import Client, LatfarmError
from latfarm.services.core.config import Settings, env_name
from latfarm.services.core.lifetime import die_with_parent
from latfarm.services.core.security import new_secret
from latfarm.services.domain.samples import DEFAULT_SAMPLES

console = Console()
UP_LOCK = "up.lock"  # in the data folder: one ``up`` per folder
START_TIMEOUT_S = 180.0
ENROLL_TOKEN_S = 600  # the local agent's enrollment token: used at once
ENROLL_ENV = "LATFARM_AGENT_ENROLL"  # ``latfarm agent --enroll``'s variable


def agent_known(client: Client, device: str, agent_dir: Path) -> bool:
    """Whether the agent saved in ``agent_dir`` is registered with this server."""
    try:
        state = load_state(agent_dir)
    except ValueError:  # a corrupt state file: the agent says so when it starts
        return True
    return state is not None and state.agent_id in {agent["id"] for agent in client.agents(device)}


def admin_key(settings: Settings) -> str:
    """The admin key: ``LATFARM_ADMIN_KEY`` (exits 1 when it was revoked), else the one kept in
    ``<data-dir>/admin.key`` (mode 600), made anew when missing or revoked: a revoked key stays revoked."""
    path = settings.data_dir / "admin.key"
    if settings.admin_key:
        if _revoked(settings, settings.admin_key):
            raise SystemExit(
                "latfarm up: LATFARM_ADMIN_KEY was revoked: set it to a new secret, or unset it "
                f"(up then keeps its own key in {path})"
            )
        return settings.admin_key
    if path.exists():
        key = path.read_text().strip()
        if not _revoked(settings, key):
            return key
        console.print(f"the admin key in {path} was revoked: made a new one there", soft_wrap=True)
    key = new_secret("lf_admin")
    fd, temporary = tempfile.mkstemp(dir=settings.data_dir, prefix=".admin.key.")  # mode 600
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    os.replace(temporary, path)
    return key


def _revoked(settings: Settings, key: str) -> bool:
    """Whether the database has ``key`` as a revoked key (one line and exit 1 when it cannot be read)."""
    from latfarm.services.api.auth import key_revoked
    from latfarm.services.store.db import make_engine, make_sessionmaker

    with reachable_database("latfarm up", settings.database_url):
        engine = make_engine(settings.database_url)
        try:
            return key_revoked(make_sessionmaker(engine), key)
        finally:
            engine.dispose()


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


# the lines ``serve`` prints once it listens (``cli.serve.serve``), with the ports it took: port 0 is its own pick
_SERVED = (re.compile(r"^latfarm REST\s+http://\S+:(\d+)", re.M), re.compile(r"^latfarm gRPC\s+\S+:(\d+)", re.M))


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while ``up`` was starting."""


class Children:
    """Child processes started by ``up``, stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start ``latfarm <args>`` as child ``name``, its output appended to ``<logs>/<name>.log``."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "latfarm.services.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches ``up`` only; it stops children in order
            preexec_fn=die_with_parent,  # a SIGKILLed ``up`` cannot stop them: the kernel does
        )
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        """Raise ``RuntimeError`` with the end of its log when a child has exited."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with code {proc.returncode}; end of its log:\n{tail}")

    def stop(self) -> None:
        """Stop the children, newest first: SIGTERM, then SIGKILL after 20 s."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _starting(children: Children, stop: threading.Event) -> Iterator[None]:
    """A step each time a starting server is polled, until ``START_TIMEOUT_S`` has passed: ``_Interrupted`` when
    ``stop`` is set, ``RuntimeError`` when a child exited (``Children.check``)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if stop.is_set():
            raise _Interrupted
        children.check()
        yield


def _served_ports(log: Path, since: int, children: Children, stop: threading.Event) -> tuple[int, int]:
    """The REST and gRPC ports the server printed to ``log`` after its byte ``since`` (where its start began);
    ``_Interrupted`` when ``stop`` is set, ``RuntimeError`` when the server exits or prints none within
    ``START_TIMEOUT_S``."""
    for _ in _starting(children, stop):
        with log.open("rb") as printed:
            printed.seek(since)
            text = printed.read().decode(errors="replace")
        found = [pattern.search(text) for pattern in _SERVED]
        if found[0] and found[1]:
            return int(found[0][1]), int(found[1][1])
        time.sleep(0.2)
    raise RuntimeError(f"the server did not say its ports within {START_TIMEOUT_S:.0f} s")


def _wait_healthy(client: Client, children: Children, stop: threading.Event) -> None:
    """Return once the server answers /healthz; ``_Interrupted`` when ``stop`` is set, ``RuntimeError`` when the
    server exits or does not answer within ``START_TIMEOUT_S``."""
    for _ in _starting(children, stop):
        try:
            client.health()
            return
        except (LatfarmError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer /healthz within {START_TIMEOUT_S:.0f} s")


def _ensure_device(client: Client, device: str) -> None:
    try:
        client.device(device)
    except LatfarmError as err:
        if err.status != 404:
            raise
        uname = platform.uname()
        client.create_device(
            device,
            description=f"this machine ({uname.node}), registered by latfarm up",
            hardware=f"{platform.processor() or uname.machine}, {os.cpu_count()} cores, {uname.system}",
            runtime=ONNXRUNTIME,
        )


def _nb201_predictor(client: Client, device: str) -> dict:
    """The device's latest NB201 adaptation (``{"state": "none"}`` when it has none)."""
    return client.device(device).get("predictors", {}).get("nb201", {"state": "none"})


def _adapt(
    client: Client,
    device: str,
    samples: int | None,
    calibration: int | None,
    children: Children,
    stop: threading.Event,
) -> dict | None:
    """Adapt the NB201 predictor to ``device`` from ``samples`` archs and ``calibration`` random calibrating ones
    unless it already has an active one fitted under its conditions (from ``samples`` and ``calibration`` archs,
    those given), whatever adaptation came after it (a cancelled or failed one leaves it active); one in progress is
    followed. One not given (None) is the active adaptation's, else ``DEFAULT_SAMPLES`` and 0. A progress bar while
    measuring; ``stop`` set while it measures (Ctrl-C) cancels the adaptation and returns None."""
    answer = client.device(device)
    state = answer.get("predictors", {}).get("nb201", {"state": "none"})
    active = answer.get("active", {}).get("nb201")
    if state["state"] not in ("measuring", "training") and active is not None:
        changed = _changed(active, samples, calibration)
        if active["current"] and not changed:
            archs = f"{active['samples']} samples" + (
                f" + {active['calibration']} calibrating" if active["calibration"] else ""
            )
            console.print(f"predictor for [bold]{device}[/] already adapted ({archs}): reused")
            return active
        if not active["current"]:  # predictions no longer use it
            console.print(
                f"predictor for [bold]{device}[/] was adapted under {active['conditions_key']}: adapting again"
            )
        else:
            console.print(f"predictor for [bold]{device}[/] was adapted {changed}")
    if samples is None:
        samples = active["samples"] if active is not None else DEFAULT_SAMPLES
    if calibration is None:
        calibration = active["calibration"] if active is not None else 0
    if state["state"] not in ("measuring", "training"):
        state = client.adapt(device, samples=samples, calibration=calibration, wait=False)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
    )
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as bar:
        total = state.get("samples", samples) + state.get("calibration", 0)
        task = bar.add_task(f"measuring {total} archs on {device}", total=total)
        while state["state"] in ("measuring", "training"):
            children.check()
            if stop.is_set() and state["state"] == "measuring":
                _cancel(client, device)
                return None
            counts = state.get("progress") or {}
            bar.update(task, completed=counts.get("done", 0) + counts.get("failed", 0), total=counts.get("total"))
            if state["state"] == "training":
                bar.update(task, description=f"adapting the predictor to {device}")
            time.sleep(0.5)
            state = _nb201_predictor(client, device)
        bar.update(task, completed=bar.tasks[0].total, description=f"predictor for {device}: {state['state']}")
    if state["state"] != "active":
        raise RuntimeError(f"adaptation of {device} ended {state['state']}: {state.get('error')}")
    return state


def _changed(active: dict, samples: int | None, calibration: int | None) -> str:
    """How the given ``samples`` and ``calibration`` differ from the active adaptation's, e.g. ``from 4 samples:
    adapting again from 5 (--samples)``; empty when they do not (None: not given, any)."""
    if samples is not None and active["samples"] != samples:
        return f"from {active['samples']} samples: adapting again from {samples} (--samples)"
    if calibration is not None and active["calibration"] != calibration:
        return f"with {active['calibration']} calibrating archs: adapting again with {calibration} (--calibrate)"
    return ""


def _cancel(client: Client, device: str) -> None:
    """Cancel the device's NB201 adaptation on Ctrl-C and say so (its measurements may have just come in)."""
    try:
        state = client.cancel_adaptation(device)
    except LatfarmError as err:
        console.print(f"interrupted: {err.message}")
        return
    jobs = (state.get("progress") or {}).get("cancelled", 0)
    console.print(
        f"interrupted: cancelled adaptation {state['id']} of {device} and {jobs} unfinished job(s)", soft_wrap=True
    )


def run_up(
    settings: Settings, *, device: str = "local", samples: int | None = None, calibration: int | None = None
) -> None:
    """Start everything, adapt to this machine (from ``samples`` archs and ``calibration`` calibrating ones:
    ``_adapt``), print the URLs, serve until Ctrl-C; a port in use or a datasets folder that is not a HELP folder
    exits before anything is created, and so does a data folder another ``up`` uses or a SQLite database another
    server uses (``common.lock``: one ``up`` per folder). Ctrl-C before it serves (while it starts or adapts) exits
    130 once it stopped; one while it serves, or SIGTERM, ends it normally. Port 0 is any free port: ``serve`` binds
    one and prints it, and this reads it back (no window in which another process could take it)."""
    if settings.datasets_dir:
        from latfarm.services.datasets.help import latency_files
        from latfarm.services.datasets.rows import DatasetError

        try:
            latency_files(settings.datasets_dir)
        except DatasetError as err:
            # a --datasets given is refused as the command line is read: only the variable's reaches this
            raise SystemExit(f"latfarm up: {env_name('datasets_dir')}: {err}") from err
    own = (settings.data_dir / UP_LOCK, str(settings.data_dir))
    with reachable_database("latfarm up", settings.database_url):  # an unparsable URL: one line
        server = server_lock(settings.database_url)  # its server's, on SQLite: another `serve` may hold it
    for path, place in filter(None, (own, server)):  # before anything is created: creates nothing
        locked("latfarm up", lambda: check(path, place))  # noqa: B023 - called at once
    for port, flag in ((settings.http_port, "--http-port"), (settings.grpc_port, "--grpc-port")):
        if port and not _free(port):
            raise SystemExit(f"latfarm up: port {port} is in use (is latfarm up already running? use {flag})")
    with locked("latfarm up", lambda: hold(own[0], "latfarm up", own[1])):  # until up ends, however it ends
        _run(settings, device, samples, calibration)


def _run(settings: Settings, device: str, samples: int | None, calibration: int | None) -> None:
    """``run_up`` once its checks passed and it holds the data folder."""
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    key = admin_key(settings)
    tls = [name for name in ("grpc_tls_cert", "grpc_tls_key") if getattr(settings, name)]
    if tls:  # the agent below talks to its own server on 127.0.0.1
        names = " and ".join(env_name(name) for name in tls)
        console.print(f"note: {names} ignored: `latfarm up` serves plain gRPC; TLS is for `latfarm serve`")
    served = settings.model_copy(update={"admin_key": key, "grpc_tls_cert": None, "grpc_tls_key": None})
    env = {**os.environ, **served.to_env()}  # the children read exactly these settings
    children = Children(logs)
    stop, received = threading.Event(), []  # the signals that stop it
    serving = False  # a Ctrl-C before it serves interrupted the start or the adaptation: exit 130

    def stopping(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with console.status(f"starting the server (SQLite in {settings.data_dir})"):
            log = logs / "server.log"
            since = log.stat().st_size if log.exists() else 0
            children.start("server", ["serve"], env)  # port 0: serve binds a free one and prints it
            http_port, grpc_port = _served_ports(log, since, children, stop)
            base = f"http://127.0.0.1:{http_port}"
            client = Client(base, key)
            _wait_healthy(client, children, stop)
        grpc = f"127.0.0.1:{grpc_port}"
        console.print(f"server up: {base} (agents' gRPC: {grpc}; log: {logs / 'server.log'})", soft_wrap=True)
        if settings.datasets_dir:
            from latfarm.services.cli.data import import_dataset
            from latfarm.services.datasets.help import folder_space

            space = folder_space(settings.datasets_dir) or "nb201"  # none: the NB201 import says what is missing
            import_dataset(settings, settings.datasets_dir, fmt="help", space=space)
        _ensure_device(client, device)
        agent_dir = settings.data_dir / f"agent-{device}"
        agent_args = ["agent", "--server", grpc, "--state-dir", str(agent_dir)]
        agent_env = dict(env)  # secrets go by environment, never on a command line (``ps`` shows those to all)
        if not agent_known(client, device, agent_dir):  # first run, or a new database
            agent_env[ENROLL_ENV] = client.enroll(device, expires_in_s=ENROLL_TOKEN_S, max_uses=1)
        children.start("agent", agent_args, agent_env)
        console.print(f"agent for device [bold]{device}[/] started (log: {logs / 'agent.log'})", soft_wrap=True)
        if stop.is_set():
            raise _Interrupted
        state = _adapt(client, device, samples, calibration, children, stop)
        if state is not None:
            _summary(base, key, device, state)
        serving = not stop.is_set()
        while not stop.wait(1.0):
            children.check()
    except _Interrupted:
        pass
    except RuntimeError as err:
        console.print(f"[red]latfarm up: {err}[/]")
        raise SystemExit(1) from err
    except LatfarmError as err:  # the server refused up's own request: its key revoked while it ran, most likely
        revoked = err.code == "unauthenticated"
        again = "set LATFARM_ADMIN_KEY to a new secret" if settings.admin_key else "run it again: it makes a new one"
        hint = f" (its admin key was revoked? {again})" if revoked else ""
        console.print(f"[red]latfarm up: {err}{hint}[/]", soft_wrap=True)
        raise SystemExit(1) from err
    finally:
        console.print("stopping ...")
        children.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("latfarm stopped")
    if received[:1] == [signal.SIGINT] and not serving:
        raise SystemExit(INTERRUPTED)


def _summary(base: str, key: str, device: str, state: dict) -> None:
    console.print(
        f"\n[bold green]latfarm is up.[/] Predictions for all 15,625 NB201 archs on [bold]{device}[/] are served.\n"
        f"  API docs   {base}/docs\n"
        f"  admin UI   {base}/admin\n"
        f"  admin key  {key}\n"
        f"  predictor  {adapted(state, 'this machine')}\n"
        f"  try        curl -s -H 'Authorization: Bearer {key}' -H 'content-type: application/json' "
        f"""-d '{{"device": "{device}", "archs": [0, 1, 2]}}' {base}/v1/predict\n"""
        "Ctrl-C stops everything.",
        soft_wrap=True,
    )
