"""The deployment files agree with the code: docker-compose, Dockerfiles, Kubernetes manifests, systemd, docs.

Docker and Kubernetes cannot run here, so every file is parsed and checked against what the code reads: the
``LATFARM_*`` names, the default ports, the CLI commands and options, the agent's state file.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shlex
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from latfarm.agents.state import STATE_FILE
from latfarm.services.cli import app
from latfarm.services.core.config import ClientSettings, Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENTRYPOINT = DEPLOY / "agent-entrypoint.sh"
UNIT = DEPLOY / "jetson" / "latfarm-agent.service"
DEFAULTS = Settings()
LATFARM_NAME = re.compile(r"\bLATFARM_[A-Z0-9_]+\b")


def code_env_names() -> set[str]:
    """Every ``LATFARM_*`` name the code reads: the declared settings and the agent's own options (``envvar``)."""
    declared = {env_name(name) for settings in (Settings, ClientSettings) for name in settings.model_fields}
    agent = typer.main.get_command(app).commands["agent"]
    return declared | {param.envvar for param in agent.params if getattr(param, "envvar", None)}


def entrypoint_env_names() -> set[str]:
    """The variables the agent entrypoint reads (``$X``, ``${X...}``, ``os.environ["X"]``)."""
    text = ENTRYPOINT.read_text()
    names = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text)) | set(re.findall(r'os\.environ\["([A-Z0-9_]+)"\]', text))
    return names


def cli_options(command: str) -> set[str]:
    click_app = typer.main.get_command(app)
    return {opt for param in click_app.commands[command].params for opt in param.opts}


def agent_flags(command_line: str) -> set[str]:
    """The ``--options`` of a ``latfarm agent`` command line (backslash continuations joined)."""
    joined = command_line.replace("\\\n", " ")
    start = joined.index("latfarm agent")
    return {tok for tok in shlex.split(joined[start:].splitlines()[0], comments=True) if tok.startswith("--")}


def load_k8s() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def server_env(docs: list[dict]) -> dict[str, str]:
    """The environment the server pods get from the ConfigMap and the Secret."""
    return {
        **by_kind(docs, "ConfigMap")["latfarm-config"]["data"],
        **by_kind(docs, "Secret")["latfarm-secrets"]["stringData"],
    }


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return load_k8s()


# --- names and commands the files rely on ---------------------------------------------------------------------


def test_code_reads_the_documented_settings():
    documented = {
        "LATFARM_DATA_DIR",
        "LATFARM_DB_URL",
        "LATFARM_REDIS_URL",
        "LATFARM_HTTP_HOST",
        "LATFARM_HTTP_PORT",
        "LATFARM_GRPC_PORT",
        "LATFARM_ADMIN_KEY",
        "LATFARM_LEASE_SECONDS",
        "LATFARM_HEARTBEAT_INTERVAL_S",
        "LATFARM_MAX_ATTEMPTS",
        "LATFARM_DATASETS_DIR",
    }
    assert documented <= code_env_names()
    readme = (DEPLOY / "README.md").read_text()
    assert set(LATFARM_NAME.findall(readme)) <= code_env_names()
    assert documented <= set(LATFARM_NAME.findall(readme)), "deploy/README.md lists every server setting"
    assert (DEFAULTS.http_port, DEFAULTS.grpc_port) == (8000, 50051)


@pytest.mark.parametrize(
    "path", ["docker-compose.yml", "deploy/k8s", "deploy/Dockerfile.server", "deploy/Dockerfile.agent", "deploy/jetson"]
)
def test_every_latfarm_name_in_deploy_files_is_read_by_the_code(path):
    target = ROOT / path
    files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    used = {name for f in files for name in LATFARM_NAME.findall(f.read_text())}
    unknown = used - code_env_names()
    assert not unknown, f"{path} sets names no code reads: {sorted(unknown)}"


def test_migrate_and_serve_commands_exist():
    commands = typer.main.get_command(app).commands
    assert {"serve", "migrate", "agent"} <= set(commands)
    assert {"--db", "--data-dir"} <= cli_options("migrate")


# --- docker compose and images -------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec(compose):
    import jsonschema

    spec_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    spec = json.loads(spec_file.read_text())
    errors = [
        f"{err.json_path}: {err.message}"
        for err in jsonschema.validators.validator_for(spec)(spec).iter_errors(compose)
    ]
    assert not errors, errors


def test_compose_services_and_ports(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "server", "agent"} <= set(services)
    server = services["server"]
    assert server["command"] == ["latfarm", "serve"]
    assert f"{DEFAULTS.http_port}:{DEFAULTS.http_port}" in server["ports"]
    assert f"{DEFAULTS.grpc_port}:{DEFAULTS.grpc_port}" in server["ports"]
    env = server["environment"]
    assert int(env["LATFARM_HTTP_PORT"]) == DEFAULTS.http_port and int(env["LATFARM_GRPC_PORT"]) == DEFAULTS.grpc_port
    assert "/healthz" in " ".join(server["healthcheck"]["test"])
    assert f":{DEFAULTS.http_port}/healthz" in " ".join(server["healthcheck"]["test"])


def test_compose_server_uses_the_postgres_and_redis_services(compose):
    services = compose["services"]
    env = services["server"]["environment"]
    db = urlsplit(env["LATFARM_DB_URL"])
    pg = services["postgres"]["environment"]
    assert db.scheme == "postgresql+psycopg"
    assert (db.hostname, db.port or 5432) == ("postgres", 5432)
    assert [db.username, db.password, db.path.lstrip("/")] == [pg[f"POSTGRES_{k}"] for k in ("USER", "PASSWORD", "DB")]
    assert urlsplit(env["LATFARM_REDIS_URL"]).hostname == "redis"
    assert services["migrate"]["environment"] == env, "migrate and server must see the same database"


def test_compose_migrations_run_before_the_server(compose):
    services = compose["services"]
    assert services["migrate"]["command"] == ["latfarm", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["server"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["agent"]["depends_on"]["server"]["condition"] == "service_healthy"


def test_compose_agent_enrolls_against_the_server(compose):
    services = compose["services"]
    agent = services["agent"]["environment"]
    assert set(agent) <= entrypoint_env_names(), "every agent variable is one the entrypoint reads"
    assert agent["AGENT_GRPC"] == f"server:{DEFAULTS.grpc_port}"
    assert agent["LATFARM_SERVER"] == f"http://server:{DEFAULTS.http_port}"
    assert agent["LATFARM_API_KEY"] == services["server"]["environment"]["LATFARM_ADMIN_KEY"]
    state_dir = agent["AGENT_STATE_DIR"]
    assert any(v.split(":")[1] == state_dir for v in services["agent"]["volumes"]), "state dir on a volume"
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert named <= set(compose["volumes"])


def test_compose_images_are_built_from_existing_dockerfiles(compose):
    built = {}
    for service in compose["services"].values():
        if "build" in service:
            dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
            assert dockerfile.is_file(), dockerfile
            built[service["image"]] = dockerfile.name
    assert built == {"latfarm-server:0.1.0": "Dockerfile.server", "latfarm-agent:0.1.0": "Dockerfile.agent"}
    for service in compose["services"].values():
        if service.get("image", "").startswith("latfarm-"):
            assert service["image"] in built


def test_server_dockerfile_installs_cpu_torch_first():
    text = (DEPLOY / "Dockerfile.server").read_text()
    torch_at = text.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch_at < text.index("pip install '.[server]'")
    assert re.search(rf"EXPOSE {DEFAULTS.http_port} {DEFAULTS.grpc_port}\b", text)
    assert f"127.0.0.1:{DEFAULTS.http_port}/healthz" in text
    assert re.search(r'CMD \["latfarm", "serve"\]', text)


def test_agent_dockerfile_is_the_base_install():
    lines = (DEPLOY / "Dockerfile.agent").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "pip install /src" in text
    assert "torch" not in text and "[server]" not in text
    assert "COPY deploy/agent-entrypoint.sh /usr/local/bin/latfarm-agent-entrypoint" in text
    assert 'ENTRYPOINT ["latfarm-agent-entrypoint"]' in text


def test_images_get_every_data_file():
    """The images install the package (not editable): every non-Python file the code ships must be package data."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["*"]
    packages = set(setuptools["package-dir"].values())
    shipped = [
        path.relative_to(ROOT)
        for package in packages
        for path in (ROOT / package).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and not path.name.startswith("README")
    ]
    assert shipped, "package data expected (proto, predictor weights, migrations, templates)"
    missing = [str(p) for p in shipped if not any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns)]
    assert not missing, f"not installed by pip (add a pattern to package-data): {missing}"


def test_every_package_folder_is_installed():
    """pyproject lists the packages of the ``latfarm`` namespace by hand: every folder under a mapped folder (code
    or data only, like the admin's templates) must be listed, or the (non-editable) installs of the images miss it."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        ".".join([name, *path.relative_to(ROOT / folder).parts])
        for name, folder in setuptools["package-dir"].items()
        for path in [ROOT / folder, *(ROOT / folder).rglob("*")]
        if path.is_dir() and path.name != "__pycache__"
    }
    assert folders == set(setuptools["packages"])


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "latfarm-data"} <= set(ignored)


def test_agent_entrypoint_is_executable_and_uses_the_agent_interface():
    assert os.access(ENTRYPOINT, os.X_OK)
    text = ENTRYPOINT.read_text()
    assert f'"$AGENT_STATE_DIR/{STATE_FILE}"' in text, "the entrypoint must test the agent's real state file"
    assert agent_flags(text) | {"--enroll", "--name"} <= cli_options("agent")


def test_agent_entrypoint_calls_existing_routes():
    from latfarm.services.api.routes import devices

    routes = {(route.path, method) for route in devices.router.routes for method in route.methods}
    text = ENTRYPOINT.read_text()
    assert 'post("/v1/devices", {"name": device' in text and ("/v1/devices", "POST") in routes
    assert 'post(f"/v1/devices/{device}/enrollments"' in text and ("/v1/devices/{name}/enrollments", "POST") in routes


# --- Kubernetes ----------------------------------------------------------------------------------------------


def test_k8s_objects_present(k8s):
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in k8s}
    assert {
        ("Namespace", "latfarm"),
        ("ConfigMap", "latfarm-config"),
        ("Secret", "latfarm-secrets"),
        ("Job", "latfarm-migrate"),
        ("Deployment", "latfarm-server"),
        ("Deployment", "latfarm-agent"),
        ("Service", "latfarm-http"),
        ("Service", "latfarm-grpc"),
        ("Service", "postgres"),
        ("Service", "redis"),
    } <= kinds
    assert all(doc["metadata"].get("namespace") == "latfarm" for doc in k8s if doc["kind"] != "Namespace")


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_k8s_manifests_match_the_api_schemas(k8s, version):
    """Strict: an unknown or misspelt field, a wrong type or a missing required field fails."""
    import kubernetes_validate

    for doc in k8s:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} is not valid for Kubernetes {version}: {err.message}")


def test_k8s_config_is_what_settings_read(k8s, monkeypatch):
    env = server_env(k8s)
    assert set(env) <= code_env_names()
    for name in [n for n in os.environ if n.startswith("LATFARM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.http_port, settings.grpc_port) == (DEFAULTS.http_port, DEFAULTS.grpc_port)
    assert settings.db_url == env["LATFARM_DB_URL"] and settings.redis_url == env["LATFARM_REDIS_URL"]
    assert settings.admin_key and str(settings.data_dir) == "/data"


def test_k8s_database_and_redis_are_external_services(k8s):
    services = by_kind(k8s, "Service")
    env = server_env(k8s)
    for name, url in [("postgres", env["LATFARM_DB_URL"]), ("redis", env["LATFARM_REDIS_URL"])]:
        parts = urlsplit(url)
        service = services[parts.hostname]
        assert parts.hostname == name and service["spec"]["type"] == "ExternalName"
        assert parts.port in {p["port"] for p in service["spec"]["ports"]}


def test_k8s_migration_job_runs_latfarm_migrate(k8s):
    job = by_kind(k8s, "Job")["latfarm-migrate"]
    (container,) = containers(job)
    assert container["command"] == ["latfarm", "migrate"]
    assert container["image"] == containers(by_kind(k8s, "Deployment")["latfarm-server"])[0]["image"]
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {"latfarm-config", "latfarm-secrets"}


def test_k8s_server_replicas_ports_and_probes(k8s):
    server = by_kind(k8s, "Deployment")["latfarm-server"]
    assert server["spec"]["replicas"] >= 2
    labels = server["spec"]["template"]["metadata"]["labels"]
    assert server["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = containers(server)
    assert container["command"] == ["latfarm", "serve"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": DEFAULTS.http_port, "grpc": DEFAULTS.grpc_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    configmaps, secrets = by_kind(k8s, "ConfigMap"), by_kind(k8s, "Secret")
    for ref in container["envFrom"]:
        kind, target = next(iter(ref.items()))
        assert target["name"] in (configmaps if kind == "configMapRef" else secrets)
    claims = {v["persistentVolumeClaim"]["claimName"] for v in server["spec"]["template"]["spec"]["volumes"]}
    assert claims <= set(by_kind(k8s, "PersistentVolumeClaim"))

    for name, port_name in [("latfarm-http", "http"), ("latfarm-grpc", "grpc")]:
        service = by_kind(k8s, "Service")[name]
        assert service["spec"]["selector"].items() <= labels.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == port_name and port["port"] == ports[port_name]


def test_k8s_images_are_the_compose_images(k8s, compose):
    built = {s["image"] for s in compose["services"].values() if "build" in s}
    images = {c["image"] for doc in k8s if doc["kind"] in ("Deployment", "Job") for c in containers(doc)}
    assert images == built


def test_k8s_agent_talks_to_the_grpc_service(k8s):
    agent = by_kind(k8s, "Deployment")["latfarm-agent"]
    (container,) = containers(agent)
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= entrypoint_env_names()
    host, port = env["AGENT_GRPC"]["value"].split(":")
    grpc = by_kind(k8s, "Service")[host]
    assert int(port) == grpc["spec"]["ports"][0]["port"]
    token = env["AGENT_ENROLL_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["key"] in by_kind(k8s, "Secret")[token["name"]]["stringData"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["AGENT_STATE_DIR"]["value"] in mounts


# --- devices: Jetson (systemd) and Termux --------------------------------------------------------------------


def test_systemd_unit_runs_latfarm_agent():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    exec_start = service["ExecStart"]
    assert re.match(r"^/\S+/bin/latfarm agent ", exec_start)
    assert agent_flags(exec_start) <= cli_options("agent")
    assert f"--state-dir /var/lib/{service['StateDirectory']}" in exec_start
    assert service["User"] and unit["Install"]["WantedBy"] == "multi-user.target"
    env_file = (DEPLOY / "jetson" / "agent.env").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", env_file, flags=re.M))
    assert set(re.findall(r"\$\{?([A-Z_]+)", exec_start)) <= defined
    extra = re.search(r"^AGENT_ARGS=(.*)$", env_file, flags=re.M).group(1)
    assert {t for t in extra.split() if t.startswith("--")} <= cli_options("agent")


@pytest.mark.parametrize("doc", ["deploy/termux.md", "deploy/jetson/README.md", "deploy/README.md"])
def test_documented_agent_commands_use_real_options(doc):
    text = (ROOT / doc).read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if "latfarm agent --" in line]
    assert lines, f"{doc} shows how to run the agent"
    for line in lines:
        assert agent_flags(line) <= cli_options("agent"), line


# A secret given as a command-line value (a key, an enrollment token, or a placeholder for one)
SECRET_ON_COMMAND_LINE = re.compile(r"--(enroll|key)[ =]+[\"']?(\$|lf_|TOKEN\b|KEY\b)")


def test_documented_commands_pass_keys_and_tokens_by_environment():
    """A ``--key`` or ``--enroll`` value shows in ``ps`` to every user of the machine: no command in the docs'
    code blocks passes one (they use LATFARM_API_KEY / LATFARM_AGENT_ENROLL)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(DEPLOY.rglob("*.md"))]
    for doc in docs:
        blocks = re.findall(r"^ *```\w*\n(.*?)^ *```", doc.read_text(), flags=re.M | re.S)
        for line in "\n".join(blocks).splitlines():
            assert not SECRET_ON_COMMAND_LINE.search(line), f"{doc.relative_to(ROOT)}: {line.strip()}"


def test_termux_notes_cover_the_phone_specifics():
    text = (DEPLOY / "termux.md").read_text()
    for needed in ("pkg install python", "python-onnxruntime", "termux-wake-lock", "--cooldown"):
        assert needed in text
