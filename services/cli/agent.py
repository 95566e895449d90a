"""``latfarm agent``: the device agent's command. It imports nothing beyond the agent itself and the command line's
shared options, so the agent-only install (no torch, web stack, SQL or pydantic-settings) runs it.

Its options read their own ``LATFARM_AGENT_*`` variables through typer (``envvar=``): the agent has no Settings,
which are the server's and need the server extra. Every other command reads ``LATFARM_*`` only through
``services/core/config.py``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from latfarm.agents.measurement import BOUNDS, MeasureSettings
from latfarm.agents.options import AgentOptions
from latfarm.proto.v1.names import STATISTICS
from latfarm.services.cli.options import among, bounded, bounded_option

MEASURE = MeasureSettings()  # the agent's measurement defaults, for the help texts


def _checked_server(server: str) -> str:
    """``--server`` as ``connection.server_address`` takes it; a usage error (exit 2) otherwise."""
    from latfarm.agents.connection import server_address

    try:
        return server_address(server)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def _checked_affinity(spec: str | None) -> str | None:
    """``--affinity`` as ``main.pinnable_cpus`` takes it: CPUs this process may run on; a usage error (exit 2)
    otherwise."""
    from latfarm.agents.main import pinnable_cpus

    try:
        pinnable_cpus(spec)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    return spec


def agent(
    server: str = typer.Option(
        ...,
        "--server",
        callback=_checked_server,
        help="gRPC address of the server, HOST:PORT (the server's default gRPC port: 50051).",
    ),
    tls: bool = typer.Option(
        AgentOptions.tls,
        "--tls",
        envvar="LATFARM_AGENT_TLS",
        help="Connect over TLS, trusting the system's root certificates.",
    ),
    ca_cert: Path = typer.Option(
        AgentOptions.ca_cert,
        "--ca-cert",
        envvar="LATFARM_AGENT_CA_CERT",
        help="Trust this CA or self-signed certificate (PEM) instead of the system's; implies --tls.",
    ),
    enroll: str = typer.Option(
        AgentOptions.enroll,
        "--enroll",
        envvar="LATFARM_AGENT_ENROLL",
        help="Enrollment token (first run only); the variable keeps it out of the process list.",
    ),
    state_dir: Path = typer.Option(AgentOptions.state_dir, "--state-dir", help="Credential, cache, logs."),
    name: str = typer.Option(AgentOptions.name, "--name", show_default="hostname", help="A name for this agent."),
    threads: int = bounded_option(
        MEASURE.threads,
        "--threads",
        BOUNDS["threads"],
        "Inference threads per model",
    ),
    affinity: str = typer.Option(
        AgentOptions.affinity,
        "--affinity",
        callback=_checked_affinity,
        show_default="not pinned",
        help="CPUs to pin to, e.g. '0' or '2-3'.",
    ),
    cache_mb: int = typer.Option(AgentOptions.cache_mb, "--cache-mb", help="Artifact cache size bound."),
    cooldown_s: float = typer.Option(
        AgentOptions.cooldown_s, "--cooldown", help="Seconds to rest between batches (phones)."
    ),
    once: bool = typer.Option(AgentOptions.once, "--once", help="Exit when the queue is empty."),
    warmup: int = bounded_option(
        MEASURE.warmup_runs,
        "--warmup",
        BOUNDS["warmup_runs"],
        "Untimed runs per model per round",
        envvar="LATFARM_AGENT_WARMUP",
    ),
    runs: int | None = bounded_option(
        None,
        "--runs",
        BOUNDS["runs_per_round"],
        "Timed runs per round",
        envvar="LATFARM_AGENT_RUNS",
        show_default=str(MEASURE.runs_per_round),
    ),
    rounds: int | None = bounded_option(
        None,
        "--rounds",
        BOUNDS["rounds"],
        "Interleaved rounds",
        envvar="LATFARM_AGENT_ROUNDS",
        show_default=str(MEASURE.rounds),
    ),
    statistic: str = typer.Option(
        MEASURE.statistic,
        "--statistic",
        callback=among(STATISTICS),
        envvar="LATFARM_AGENT_STATISTIC",
        help="Headline figure: 'min' (fastest run; repeatable on shared machines) or 'median' (of round medians).",
    ),
    retries: int = typer.Option(
        MEASURE.retries,
        "--retries",
        callback=bounded({"ge": 0}),
        envvar="LATFARM_AGENT_RETRIES",
        help=f"Re-measurements of a model whose round medians spread > {MEASURE.spread_threshold:.0%} (0: flag at once;"
        " saves time on noisy hosts).",
    ),
    timeout: float | None = bounded_option(
        None,
        "--timeout",
        BOUNDS["timeout_s"],
        "Time limit per model, s",
        envvar="LATFARM_AGENT_TIMEOUT",
        show_default=f"{MEASURE.timeout_s:g}",
    ),
    provider: str = typer.Option(
        AgentOptions.provider, "--provider", show_default="CPU", help="onnxruntime execution provider."
    ),
    max_jobs: int | None = typer.Option(
        None, "--max-jobs", callback=bounded({"ge": 1}), show_default="the server's limit", help="Jobs per lease."
    ),
) -> None:
    """Run a device agent: register, lease jobs, measure, report."""
    from latfarm.agents.errors import AgentError
    from latfarm.agents.main import run_agent
    from latfarm.services.cli.errors import exit_on_error

    with exit_on_error("latfarm agent"):
        try:  # --runs, --rounds and --timeout not given keep the default measurement settings
            measure = MeasureSettings(
                threads=threads, statistic=statistic, retries=retries, warmup_runs=warmup
            ).override(runs_per_round=runs or 0, rounds=rounds or 0, timeout_s=timeout or 0.0)
        except ValueError as err:
            raise AgentError(str(err)) from err
        run_agent(
            AgentOptions(
                server=server,
                enroll=enroll,
                state_dir=state_dir,
                name=name,
                tls=tls,
                ca_cert=ca_cert,
                affinity=affinity,
                cache_mb=cache_mb,
                cooldown_s=cooldown_s,
                once=once,
                provider=provider,
                max_jobs=max_jobs or AgentOptions.max_jobs,
                measure=measure,
            )
        )
