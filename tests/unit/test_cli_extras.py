"""Commands run without their package extra (an agent-only install) name the extra in one line and exit 1; the
``client`` extra alone runs the REST client commands. Simulated by blocking the extras' modules in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from latfarm.services.core.extras import install_command

# Modules of the server extra that neither the base install nor the client extra brings.
SERVER_ONLY = [
    "torch",
    "onnx",
    "fastapi",
    "uvicorn",
    "starlette",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "grpc_health",
    "prometheus_client",
    "sqladmin",
    "itsdangerous",
    "jinja2",
    "multipart",
    "scipy",
    "limits",
    "ai_edge_litert",
    "litert_torch",
]
CLIENT = ["httpx", "pydantic_settings"]
CLOSED = "http://127.0.0.1:9"  # nothing listens there


def latfarm_without(blocked: list[str], *args: str) -> subprocess.CompletedProcess:
    """``latfarm ARGS`` in a fresh interpreter where importing any of ``blocked`` fails as if not installed."""
    code = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
        f"sys.argv = ['latfarm', *{list(args)!r}]\n"
        "from latfarm.services.cli import app\n"
        "app()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("command", "args", "extra"),
    [
        ("serve", [], "server"),
        ("migrate", [], "server"),
        ("up", [], "server"),
        ("import", [".", "--format", "help"], "server"),  # values the command line checks: good ones
        ("export model", ["0", "--format", "onnx"], "server"),
        ("export data", ["d", "--format", "csv", "--out", "x.csv"], "server"),
        ("pretrain", ["--data", ".", "--out", "y"], "server"),
        ("eval transfer", ["--data", ".", "--train", "a", "--test", "b", "--json", "o"], "server"),
        ("predict", ["d", "0"], "client"),
        ("measure", ["d", "0"], "client"),
        ("cancel", ["0" * 32], "client"),
        ("adapt", ["d"], "client"),
        ("results", ["0" * 32], "client"),
        ("device add", ["d"], "client"),
        ("device enroll", ["d"], "client"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_command_without_its_extra_names_it_in_one_line(command, args, extra):
    run = latfarm_without(SERVER_ONLY + CLIENT, *command.split(), *args)
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"latfarm {command}: needs the {extra} extra (no module ")
    assert run.stderr.strip().endswith(install_command(extra))  # this checkout: pip install -e '...[extra]'


def test_every_command_but_the_agent_names_its_extra():
    from tests.unit.test_cli_help import COMMANDS

    extras = {" ".join(path): getattr(command, "extra", None) for path, command in COMMANDS if path}
    assert extras.pop("agent") is None and extras.pop("export") is None and extras.pop("eval") is None
    assert extras.pop("device") is None and extras.pop("key") is None
    assert set(extras.values()) == {"server", "client"}, extras


def test_the_client_extra_alone_runs_the_client_commands():
    run = latfarm_without(SERVER_ONLY, "predict", "d", "0", "--server", CLOSED, "--key", "k")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"is the server running at {CLOSED}?" in run.stderr
    run = latfarm_without(SERVER_ONLY, "adapt", "d", "--samples", "2", "--server", CLOSED)  # K checked locally
    assert run.returncode == 2 and "samples must be between 3 and 200, got 2" in run.stderr, run.stderr


BLAS_PROBE = """
import os, sys
seen = []
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_NUM_THREADS"))
        return None
sys.meta_path.insert(0, Probe())
import latfarm.services.cli
print(seen[0] if seen else "numpy not imported")
"""


@pytest.mark.parametrize(("preset", "expected"), [(None, "1"), ("4", "4")])
def test_the_command_sets_one_blas_thread_before_numpy_loads_unless_the_user_chose(preset, expected):
    """``latfarm`` commands run BLAS single-threaded (the setting must precede numpy's import to take effect);
    a user's own OPENBLAS_NUM_THREADS wins."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    out = subprocess.run([sys.executable, "-c", BLAS_PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected, out.stderr
