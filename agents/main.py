"""``latfarm agent``: register once (credential kept in the state folder), then lease, measure and report until
SIGINT/SIGTERM, which hands the current lease back and exits cleanly."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import grpc

from latfarm.agents.backends import available_backends
from latfarm.agents.cache import ArtifactCache
from latfarm.agents.connection import Connection
from latfarm.agents.descriptor import describe
from latfarm.agents.errors import AgentError, Stopped, Unauthenticated
from latfarm.agents.loop import AgentLoop
from latfarm.agents.options import AgentOptions
from latfarm.agents.state import STATE_LOCK, AgentState, ensure_writable, load_state, save_state
from latfarm.common.lock import Held, hold

DEFAULT_HEARTBEAT_S = 10
# How to hand the agent a token: the variable keeps it off the command line (and out of `ps`).
TOKEN_FORM = "LATFARM_AGENT_ENROLL=TOKEN (or --enroll TOKEN)"
ENROLL_COMMAND = "latfarm device enroll DEVICE"  # what makes a token (an admin or the device's owner key)


def log(message: str) -> None:
    """One timestamped line on stderr."""
    print(f"{time.strftime('%H:%M:%S')} [latfarm-agent] {message}", file=sys.stderr, flush=True)


def parse_cpus(spec: str | None) -> list[int]:
    """'0', '0,2', '2-3' -> CPU numbers; empty for None. ``ValueError`` for another form or a range whose end is
    below its start."""
    cpus: set[int] = set()
    for part in filter(None, (spec or "").replace(" ", "").split(",")):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()) or int(last or first) < int(first):
            raise ValueError(f"bad CPU list {spec!r}: use e.g. '0', '0,2' or '2-3'")
        cpus.update(range(int(first), int(last or first) + 1))
    return sorted(cpus)


def cpu_ranges(cpus: Iterable[int]) -> str:
    """CPU numbers in ``--affinity``'s form, runs as ranges: ``[0, 1, 2, 5]`` -> ``'0-2,5'``."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def pinnable_cpus(spec: str | None) -> list[int]:
    """``--affinity``'s CPUs (``parse_cpus``), each one this process may run on; ``ValueError`` naming those it may
    not (with those it may), or saying that this platform cannot pin a process."""
    cpus = parse_cpus(spec)
    if not cpus:
        return cpus
    if not hasattr(os, "sched_getaffinity"):
        raise ValueError(f"{spec!r}: this platform cannot pin a process to CPUs; leave --affinity out")
    allowed = os.sched_getaffinity(0)
    if missing := [cpu for cpu in cpus if cpu not in allowed]:
        raise ValueError(
            f"{spec!r}: CPU {cpu_ranges(missing)} is not available to this process; it may use {cpu_ranges(allowed)}"
        )
    return cpus


def read_ca_cert(path: Path | None) -> bytes | None:
    """The PEM bytes of ``--ca-cert`` (None without one)."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read --ca-cert {path}: {err.strerror or err}") from err


def install_signal_handlers(stop: threading.Event) -> None:
    """The first SIGINT/SIGTERM asks for a clean stop; a second one ends the process at once."""

    def handle(signum: int, _frame) -> None:
        log(f"{signal.Signals(signum).name}: finishing up (send again to exit at once)")
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def register(conn: Connection, options: AgentOptions) -> tuple[AgentState, int]:
    """Register with the enrollment token and save the credential; the state and the server's heartbeat interval.

    A token the server refuses as expired or revoked (``PERMISSION_DENIED``) raises ``AgentError`` saying so.
    """
    if not options.enroll:
        raise AgentError(f"registering needs an enrollment token: {TOKEN_FORM} ({ENROLL_COMMAND} makes one)")
    try:
        response = conn.register(options.enroll, describe(), options.name or socket.gethostname())
    except Unauthenticated as err:
        raise AgentError(f"the server rejected the enrollment token ({err}); check the token") from err
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        raise AgentError(
            f"the server refused the enrollment token ({err.details()}); ask the server's owner for a new one "
            f"({ENROLL_COMMAND}) and pass it as {TOKEN_FORM}"
        ) from err
    state = AgentState(response.agent_id, response.credential, response.device)
    save_state(options.state_dir, state)
    log(f"registered as agent {state.agent_id} of device {state.device!r}")
    return state, response.heartbeat_interval_s or DEFAULT_HEARTBEAT_S


def _unwritable(what: str, folder: Path, err: OSError) -> AgentError:
    return AgentError(
        f"the {what} {folder} is not writable ({err.strerror or err}): fix its permissions or pass another --state-dir"
    )


def run_agent(options: AgentOptions) -> None:
    """Run the agent until stopped (or, with ``options.once``, until the queue is empty); ``AgentError`` when it
    cannot (bad option, unreadable certificate, not registered, a state folder another agent uses, rejected by the
    server)."""
    state_dir = Path(options.state_dir)
    try:
        root_certificates = read_ca_cert(options.ca_cert)
        cpus = pinnable_cpus(options.affinity)
        if cpus:
            os.sched_setaffinity(0, cpus)
        backends = available_backends(options.provider)
        state = load_state(state_dir)
    except (ValueError, OSError) as err:
        raise AgentError(str(err)) from err
    if state is None and not options.enroll:
        raise AgentError(
            f"not registered yet (no state in {state_dir}): give an enrollment token as {TOKEN_FORM} "
            f"({ENROLL_COMMAND} makes one)"
        )
    try:  # before any lease or registration: a credential or an artifact that cannot be saved fails here
        ensure_writable(state_dir)
    except OSError as err:
        raise _unwritable("state folder", state_dir, err) from err
    try:  # the state's one user: two agents resuming one credential would lease as one
        held = hold(state_dir / STATE_LOCK, "latfarm agent", str(state_dir))
    except Held as err:
        raise AgentError(f"{err}: one agent per state folder (--state-dir)") from err
    except OSError as err:
        raise _unwritable("state folder", state_dir, err) from err
    with held:  # until the agent ends, however it ends
        try:
            cache = ArtifactCache(state_dir / "cache", options.cache_mb << 20)
        except OSError as err:
            raise _unwritable("artifact cache", state_dir / "cache", err) from err
        stop = threading.Event()
        install_signal_handlers(stop)
        credential = state.credential if state else None
        conn = Connection(options.server, stop, credential, log, tls=options.tls, root_certificates=root_certificates)

        def serve(heartbeat_s: float) -> None:
            loop = AgentLoop(conn, backends, cache, options, stop, heartbeat_s, cpus, log)
            loop.run()
            log(f"stopped after processing {loop.processed} job(s)")

        def register_anew() -> None:
            new, heartbeat_s = register(conn, options)
            conn.credential = new.credential
            serve(heartbeat_s)

        try:
            if state is None:
                register_anew()
            else:
                log(f"resuming as agent {state.agent_id} of device {state.device!r}")
                try:
                    serve(DEFAULT_HEARTBEAT_S)
                except Unauthenticated as err:
                    if not options.enroll:
                        raise
                    log(f"the server no longer knows this agent ({err}); registering again with --enroll")
                    register_anew()
        except Stopped:
            log("stopped")
        except Unauthenticated as err:  # its credential, not a token: ``register`` says that of a token
            raise AgentError(
                f"the server rejected this agent ({err}): an admin deleted it, or the server's database is another; "
                f"to register anew, give an enrollment token as {TOKEN_FORM} "
                f"({ENROLL_COMMAND} makes one)"
            ) from err
        finally:
            conn.close()
