"""``latfarm serve``, ``migrate`` and ``up``: the commands that run the service. Flags override the ``LATFARM_*``
settings; the processes themselves live in serve.py and up.py, imported when a command runs."""

from __future__ import annotations

from pathlib import Path

import typer

from latfarm.services.cli.options import (
    DataDir,
    DbUrl,
    UpCalibrate,
    UpSamples,
    device_names,
    help_folder,
    setting_bounds,
)

HttpPort = typer.Option(
    None,
    "--http-port",
    callback=setting_bounds("http_port"),
    show_default="8000",
    help="REST port (also the admin UI's); 0: any free port.",
)
GrpcPort = typer.Option(
    None,
    "--grpc-port",
    callback=setting_bounds("grpc_port"),
    show_default="50051",
    help="gRPC port for agents; 0: any free port.",
)


def serve(
    db: str = DbUrl,
    redis: str = typer.Option(None, "--redis", help="Redis URL (optional): wakes agents, caches predictions."),
    http_port: int = HttpPort,
    grpc_port: int = GrpcPort,
    grpc_processes: int = typer.Option(
        None,
        "--grpc-processes",
        callback=setting_bounds("grpc_processes"),
        show_default="0",
        help="Processes serving the gRPC port (more than 1: child processes, REST alone in this one); 0: one per CPU"
        " up to 4 on PostgreSQL with Redis, else 1.",
    ),
    grpc_tls_cert: Path = typer.Option(None, "--grpc-tls-cert", help="PEM certificate: TLS on the gRPC port."),
    grpc_tls_key: Path = typer.Option(None, "--grpc-tls-key", help="PEM private key of --grpc-tls-cert."),
    data_dir: Path = DataDir,
) -> None:
    """Run the central server: REST for NAS clients and admins, gRPC for device agents."""
    from latfarm.services.cli.errors import settings_from_env
    from latfarm.services.cli.serve import serve as run_server
    from latfarm.services.core.config import Settings

    run_server(
        settings_from_env(
            Settings,
            "latfarm serve",
            db_url=db,
            redis_url=redis,
            http_port=http_port,
            grpc_port=grpc_port,
            grpc_processes=grpc_processes,
            grpc_tls_cert=grpc_tls_cert,
            grpc_tls_key=grpc_tls_key,
            data_dir=data_dir,
        )
    )


def migrate(db: str = DbUrl, data_dir: Path = DataDir) -> None:
    """Create or upgrade the database schema (idempotent); run once before starting server replicas."""
    from latfarm.services.cli.database import reachable_database
    from latfarm.services.cli.errors import settings_from_env
    from latfarm.services.core.config import Settings
    from latfarm.services.store.migrate import upgrade

    settings = settings_from_env(Settings, "latfarm migrate", db_url=db, data_dir=data_dir)
    if settings.db_url is None:  # the default SQLite file lives in the data folder
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    with reachable_database("latfarm migrate", settings.database_url):
        upgrade(settings.database_url)
    typer.echo("schema up to date")


def up(
    device: str = typer.Option("local", "--device", callback=device_names, help="Device name for this machine."),
    samples: int = UpSamples,
    calibration: int = UpCalibrate,
    http_port: int = HttpPort,
    grpc_port: int = GrpcPort,
    data_dir: Path = DataDir,
    datasets: Path = typer.Option(
        None, "--datasets", callback=help_folder, help="HELP-layout folder to import, if any."
    ),
) -> None:
    """Everything on this machine: server, a local agent, predictor adapted to this machine."""
    from latfarm.services.cli.errors import settings_from_env
    from latfarm.services.cli.up import run_up
    from latfarm.services.core.config import Settings

    settings = settings_from_env(
        Settings, "latfarm up", http_port=http_port, grpc_port=grpc_port, data_dir=data_dir, datasets_dir=datasets
    )
    run_up(settings, device=device, samples=samples, calibration=calibration)
