"""The ``latfarm`` command line. Each command imports its role's code lazily, so the agent-only install (no
torch, no web stack) can run ``latfarm agent``."""

from __future__ import annotations

from pathlib import Path

import typer

from latfarm.agents.measurement import MeasureSettings
from latfarm.agents.options import AgentOptions

app = typer.Typer(
    help="latfarm: on-device latency measurement and prediction for hardware-aware NAS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(help="Export models (ONNX / TFLite) or a device's measurements.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate the predictor.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(eval_app, name="eval")

DataDir = typer.Option(None, "--data-dir", help="Folder for the SQLite file, artifacts, keys [latfarm-data].")
DbUrl = typer.Option(None, "--db", help="SQLAlchemy URL; default: SQLite file in the data folder.")
ServerUrl = typer.Option("http://127.0.0.1:8000", "--server", envvar="LATFARM_SERVER", help="REST base URL.")
ApiKey = typer.Option(None, "--key", envvar="LATFARM_API_KEY", help="API key (Bearer).")


@app.command()
def serve(
    db: str = DbUrl,
    redis: str = typer.Option(None, "--redis", help="Redis URL (optional): wakes agents, caches predictions."),
    http_port: int = typer.Option(None, "--http-port", help="REST port [8000]."),
    grpc_port: int = typer.Option(None, "--grpc-port", help="gRPC port for agents [50051]."),
    grpc_tls_cert: Path = typer.Option(None, "--grpc-tls-cert", help="PEM certificate: TLS on the gRPC port."),
    grpc_tls_key: Path = typer.Option(None, "--grpc-tls-key", help="PEM private key of --grpc-tls-cert."),
    data_dir: Path = DataDir,
) -> None:
    """Run the central server: REST for NAS clients and admins, gRPC for device agents."""
    from latfarm.services.cli.serve import serve as run_server
    from latfarm.services.core.config import Settings

    run_server(
        Settings.from_env(
            db_url=db,
            redis_url=redis,
            http_port=http_port,
            grpc_port=grpc_port,
            grpc_tls_cert=grpc_tls_cert,
            grpc_tls_key=grpc_tls_key,
            data_dir=data_dir,
        )
    )


@app.command()
def migrate(db: str = DbUrl, data_dir: Path = DataDir) -> None:
    """Create or upgrade the database schema (idempotent); run once before starting server replicas."""
    from latfarm.services.core.config import Settings
    from latfarm.services.store.migrate import upgrade

    settings = Settings.from_env(db_url=db, data_dir=data_dir)
    if settings.db_url is None:  # the default SQLite file lives in the data folder
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    typer.echo("schema up to date")


MEASURE = MeasureSettings()  # the agent's measurement defaults, for the help texts


@app.command()
def agent(
    server: str = typer.Option(..., "--server", help="gRPC address of the server, HOST:PORT."),
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
    enroll: str = typer.Option(AgentOptions.enroll, "--enroll", help="Enrollment token (first run only)."),
    state_dir: Path = typer.Option(AgentOptions.state_dir, "--state-dir", help="Credential, cache, logs."),
    name: str = typer.Option(AgentOptions.name, "--name", help="A name for this agent [hostname]."),
    threads: int = typer.Option(MEASURE.threads, "--threads", help="Inference threads per model."),
    affinity: str = typer.Option(AgentOptions.affinity, "--affinity", help="CPUs to pin to, e.g. '0' or '2-3'."),
    cache_mb: int = typer.Option(AgentOptions.cache_mb, "--cache-mb", help="Artifact cache size bound."),
    cooldown_s: float = typer.Option(
        AgentOptions.cooldown_s, "--cooldown", help="Seconds to rest between batches (phones)."
    ),
    once: bool = typer.Option(AgentOptions.once, "--once", help="Exit when the queue is empty."),
    warmup: int = typer.Option(
        MEASURE.warmup_runs, "--warmup", min=0, envvar="LATFARM_AGENT_WARMUP", help="Untimed runs per model per round."
    ),
    runs: int = typer.Option(
        0, "--runs", envvar="LATFARM_AGENT_RUNS", help=f"Timed runs per round (default {MEASURE.runs_per_round})."
    ),
    rounds: int = typer.Option(
        0, "--rounds", envvar="LATFARM_AGENT_ROUNDS", help=f"Interleaved rounds (default {MEASURE.rounds})."
    ),
    statistic: str = typer.Option(
        MEASURE.statistic,
        "--statistic",
        envvar="LATFARM_AGENT_STATISTIC",
        help="Headline figure: 'min' (fastest run; repeatable on shared machines) or 'median' (of round medians).",
    ),
    retries: int = typer.Option(
        MEASURE.retries,
        "--retries",
        min=0,
        envvar="LATFARM_AGENT_RETRIES",
        help=f"Re-measurements of a model whose round medians spread > {MEASURE.spread_threshold:.0%} (0: flag at once;"
        " saves time on noisy hosts).",
    ),
    timeout: float = typer.Option(
        0.0, "--timeout", envvar="LATFARM_AGENT_TIMEOUT", help=f"Model time limit, s ({MEASURE.timeout_s:g})."
    ),
    provider: str = typer.Option(
        AgentOptions.provider, "--provider", help="onnxruntime execution provider (default CPU)."
    ),
    max_jobs: int = typer.Option(AgentOptions.max_jobs, "--max-jobs", help="Jobs per lease (default: the server's)."),
) -> None:
    """Run a device agent: register, lease jobs, measure, report."""
    from latfarm.agents.main import run_agent

    try:  # zero --runs, --rounds and --timeout keep the default measurement settings
        measure = MeasureSettings(threads=threads, statistic=statistic, retries=retries, warmup_runs=warmup).override(
            runs_per_round=runs, rounds=rounds, timeout_s=timeout
        )
    except ValueError as err:
        raise SystemExit(f"latfarm agent: {err}") from err
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
            max_jobs=max_jobs,
            measure=measure,
        )
    )


@app.command()
def up(
    device: str = typer.Option("local", "--device", help="Device name for this machine."),
    samples: int = typer.Option(10, "--samples", help="K archs to measure for adapting the predictor."),
    http_port: int = typer.Option(None, "--http-port"),
    grpc_port: int = typer.Option(None, "--grpc-port"),
    data_dir: Path = DataDir,
    datasets: Path = typer.Option(None, "--datasets", help="HELP-layout folder to import, if any."),
) -> None:
    """Everything on this machine: server, a local agent, predictor adapted to this machine."""
    from latfarm.services.cli.up import run_up
    from latfarm.services.core.config import Settings

    settings = Settings.from_env(http_port=http_port, grpc_port=grpc_port, data_dir=data_dir, datasets_dir=datasets)
    run_up(settings, device=device, samples=samples)


@app.command("import")
def import_(
    path: Path = typer.Argument(..., help="Dataset folder or file."),
    fmt: str = typer.Option("help", "--format", help="help | latbench | hwnasbench"),
    device: str = typer.Option(None, "--device", help="Device name (LatBench: one file per device)."),
    db: str = DbUrl,
    data_dir: Path = DataDir,
) -> None:
    """Import a latency dataset into the store (idempotent)."""
    from latfarm.services.core.config import Settings
    from latfarm.services.datasets import import_dataset

    import_dataset(Settings.from_env(db_url=db, data_dir=data_dir), path, fmt=fmt, device=device)


@export_app.command("model")
def export_model(
    archs: list[str] = typer.Argument(..., help="Arch strings or NB201 indices."),
    fmt: str = typer.Option("onnx", "--format", help="onnx | tflite"),
    out: Path = typer.Option(Path("artifacts"), "--out", help="Output folder (content-addressed cache)."),
    resolution: int = typer.Option(32, "--resolution"),
    classes: int = typer.Option(10, "--classes"),
) -> None:
    """Export NB201 networks to ONNX or TFLite."""
    from latfarm.services.domain.artifacts import export_cli

    export_cli(archs, fmt=fmt, out=out, resolution=resolution, classes=classes)


@export_app.command("data")
def export_data(
    device: str = typer.Argument(..., help="Device name."),
    fmt: str = typer.Option("csv", "--format", help="csv | latbench"),
    out: Path = typer.Option(..., "--out", help="Output file."),
    db: str = DbUrl,
    data_dir: Path = DataDir,
) -> None:
    """Export a device's measurements as CSV or a LatBench pickle."""
    from latfarm.services.core.config import Settings
    from latfarm.services.datasets import export_dataset

    export_dataset(Settings.from_env(db_url=db, data_dir=data_dir), device, fmt=fmt, out=out)


@app.command()
def predict(
    device: str = typer.Argument(...),
    archs: list[str] = typer.Argument(..., help="Arch strings."),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Ask the server for latencies (measured, else predicted) of archs on a device."""
    from latfarm.services.client import Client

    for item in Client(server, key).predict(device, archs):
        if item["latency_ms"] is None:
            typer.echo(f"no estimate  {item['arch']}: {item['message']}")
            continue
        typer.echo(f"{item['latency_ms']:.4f} ms  {item['source']:<9}  {item['arch']}")


@app.command()
def measure(
    device: str = typer.Argument(...),
    archs: list[str] = typer.Argument(None, help="Arch strings or NB201 indices."),
    from_file: Path = typer.Option(None, "--from", help="Also the archs in this file (one per line, # comments)."),
    sample: int = typer.Option(0, "--random", min=0, help="Also measure N random NB201 archs."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random."),
    fmt: str = typer.Option("onnx", "--format", help="onnx or tflite."),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Protocol for these jobs (default: each agent's)."),
    runs: int = typer.Option(None, "--runs", min=1, help="Timed runs per round."),
    warmup: int = typer.Option(None, "--warmup", min=0, help="Untimed runs per model per round."),
    statistic: str = typer.Option(None, "--statistic", help="Headline figure: min or median."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the results (a progress bar shows them)."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds to wait at most."),
    out: Path = typer.Option(None, "--out", help="Write the results as CSV here."),
    server: str = ServerUrl,
    key: str = ApiKey,
) -> None:
    """Measure archs on a device's agents: queue the jobs, wait with a progress bar, print or save the results."""
    import random

    from latfarm.predictor import nb201
    from latfarm.services.client import Client, LatfarmError

    given = [*(archs or []), *(read_archs(from_file) if from_file else [])]
    chosen: list[str | int] = [int(a) if a.isdigit() else a for a in given]
    chosen += random.Random(seed).sample(range(nb201.NUM_ARCHS), sample)
    if not chosen:
        raise typer.BadParameter("give archs, or --random N", param_hint="ARCHS")
    settings = {"rounds": rounds, "runs_per_round": runs, "warmup_runs": warmup, "statistic": statistic}
    protocol = {name: value for name, value in settings.items() if value is not None} or None
    try:
        with Client(server, key) as client:
            result = _measure_with_progress(client, device, chosen, fmt, wait, timeout, protocol)
    except (LatfarmError, TimeoutError) as err:
        raise SystemExit(f"latfarm measure: {err}") from err
    if not wait:
        typer.echo(f"queued batch {result['id']} ({len(chosen)} jobs); progress: GET /v1/jobs/{result['id']}")
        return
    items = result.get("items", [])
    if out:
        import csv

        with out.open("w", newline="") as file:
            writer = csv.DictWriter(file, ["arch", "state", "latency_ms", "attempts", "error"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(items)
        typer.echo(f"{result['done']} measured, {result['failed']} failed: {out}")
        return
    for item in items:
        figure = f"{item['latency_ms']:.4f} ms" if item.get("latency_ms") is not None else item["state"]
        typer.echo(f"{figure:<12} {item['arch']}" + (f"  ({item['error']})" if item.get("error") else ""))


def read_archs(path: Path) -> list[str]:
    """Arch strings or NB201 indices, one per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise typer.BadParameter(f"cannot read {path}: {err.strerror or err}", param_hint="--from") from err
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _measure_with_progress(client, device, archs, fmt, wait, timeout, protocol) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not wait:
        return client.measure(device, archs, fmt=fmt, wait=False, protocol=protocol)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"measuring on {device}", total=len(archs))

        def show(progress: dict) -> None:
            bar.update(task, completed=progress["done"] + progress["failed"])

        return client.measure(device, archs, fmt=fmt, timeout=timeout, protocol=protocol, on_progress=show)


@app.command()
def adapt(
    device: str = typer.Argument(...),
    samples: int = typer.Option(10, "--samples", help="K archs to measure."),
    server: str = ServerUrl,
    key: str = ApiKey,
    wait: bool = typer.Option(True, "--wait/--no-wait"),
) -> None:
    """Adapt the predictor to a device from K measurements by its agents."""
    from latfarm.services.client import Client

    Client(server, key).adapt(device, samples=samples, wait=wait, progress=True)


@app.command()
def pretrain(
    data: Path = typer.Option(..., "--data", help="HELP-layout folder."),
    devices: str = typer.Option(None, "--devices", help="Comma-separated devices [all in the folder]."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Pretrain the latency predictor on many devices (reproduces the shipped checkpoint)."""
    from latfarm.predictor.pretrain import pretrain_cli

    pretrain_cli(data, devices=devices.split(",") if devices else None, out=out, seed=seed)


@eval_app.command("transfer")
def eval_transfer(
    data: Path = typer.Option(..., "--data", help="HELP-layout folder."),
    train: str = typer.Option(..., "--train", help="Comma-separated pretraining devices."),
    test: str = typer.Option(..., "--test", help="Comma-separated unseen devices."),
    samples: str = typer.Option("5,10,20", "--samples"),
    trials: int = typer.Option(5, "--trials"),
    seed: int = typer.Option(0, "--seed"),
    json_out: Path = typer.Option(None, "--json"),
    dump: Path = typer.Option(None, "--dump", help="Write <device>_k<K>_t<trial>.npz per run."),
) -> None:
    """Pretrain on --train devices, adapt to each --test device from K samples, score on the rest."""
    from latfarm.predictor.evaluate import eval_transfer_cli

    eval_transfer_cli(
        data,
        train=train.split(","),
        test=test.split(","),
        samples=[int(k) for k in samples.split(",")],
        trials=trials,
        seed=seed,
        json_out=json_out,
        dump=dump,
    )
