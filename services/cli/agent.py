"""``latfarm agent``: the device agent's command. It imports nothing beyond the agent itself, so the agent-only
install (no torch, web stack, SQL or pydantic-settings) runs it.

Its options read their own ``LATFARM_AGENT_*`` variables through typer (``envvar=``): the agent has no Settings,
which are the server's and need the server extra. Every other command reads ``LATFARM_*`` only through
``services/core/config.py``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from latfarm.agents.measurement import MeasureConfig

PROTOCOL = MeasureConfig()  # the agent's measurement defaults, for the help texts


def agent(
    server: str = typer.Option(..., "--server", help="gRPC address of the server, HOST:PORT."),
    tls: bool = typer.Option(
        False, "--tls", envvar="LATFARM_AGENT_TLS", help="Connect over TLS, trusting the system's root certificates."
    ),
    ca_cert: Path = typer.Option(
        None,
        "--ca-cert",
        envvar="LATFARM_AGENT_CA_CERT",
        help="Trust this CA or self-signed certificate (PEM) instead of the system's; implies --tls.",
    ),
    enroll: str = typer.Option(None, "--enroll", help="Enrollment token (first run only)."),
    state_dir: Path = typer.Option(Path("latfarm-agent"), "--state-dir", help="Credential, cache, logs."),
    name: str = typer.Option(None, "--name", help="A name for this agent [hostname]."),
    threads: int = typer.Option(1, "--threads", help="Inference threads per model."),
    affinity: str = typer.Option(None, "--affinity", help="CPUs to pin to, e.g. '0' or '2-3'."),
    cache_mb: int = typer.Option(512, "--cache-mb", help="Artifact cache size bound."),
    cooldown_s: float = typer.Option(0.0, "--cooldown", help="Seconds to rest between batches (phones)."),
    once: bool = typer.Option(False, "--once", help="Exit when the queue is empty."),
    warmup: int = typer.Option(
        PROTOCOL.warmup_runs, "--warmup", min=0, envvar="LATFARM_AGENT_WARMUP", help="Untimed runs per model per round."
    ),
    runs: int = typer.Option(
        0, "--runs", envvar="LATFARM_AGENT_RUNS", help=f"Timed runs per round (default {PROTOCOL.runs_per_round})."
    ),
    rounds: int = typer.Option(
        0, "--rounds", envvar="LATFARM_AGENT_ROUNDS", help=f"Interleaved rounds (default {PROTOCOL.rounds})."
    ),
    statistic: str = typer.Option(
        PROTOCOL.statistic,
        "--statistic",
        envvar="LATFARM_AGENT_STATISTIC",
        help="Headline figure: 'min' (fastest run; repeatable on shared machines) or 'median' (of round medians).",
    ),
    retries: int = typer.Option(
        PROTOCOL.retries,
        "--retries",
        min=0,
        envvar="LATFARM_AGENT_RETRIES",
        help="Re-measurements of a model whose round medians spread > 5% (0: flag at once; saves time on noisy hosts).",
    ),
    timeout: float = typer.Option(
        0.0, "--timeout", envvar="LATFARM_AGENT_TIMEOUT", help=f"Model time limit, s ({PROTOCOL.timeout_s:g})."
    ),
    provider: str = typer.Option(None, "--provider", help="onnxruntime execution provider (default CPU)."),
    max_jobs: int = typer.Option(0, "--max-jobs", help="Jobs per lease (default: the server's)."),
) -> None:
    """Run a device agent: register, lease jobs, measure, report."""
    from latfarm.agents.main import run_agent

    run_agent(
        server=server,
        enroll=enroll,
        state_dir=state_dir,
        name=name,
        threads=threads,
        affinity=affinity,
        cache_mb=cache_mb,
        cooldown_s=cooldown_s,
        once=once,
        warmup=warmup,
        runs=runs,
        rounds=rounds,
        statistic=statistic,
        retries=retries,
        timeout_s=timeout,
        provider=provider,
        max_jobs=max_jobs,
        tls=tls,
        ca_cert=ca_cert,
    )
