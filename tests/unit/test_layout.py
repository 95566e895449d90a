"""The architecture rules, read from the source's import statements (``ast``; nothing is imported or run).

- The agent (``latfarm.agents`` and the wire stubs in ``latfarm.proto``) imports neither the server nor the
  predictor, nor any heavy stack of the ``server`` extra: it installs and runs without them.
- ``latfarm.predictor`` never imports ``latfarm.services``.
- ``latfarm.common``, which every part imports, imports no other first-party package and nothing of the server
  stack.
- ``services/store`` and ``services/core`` sit below the domain: they import nothing from ``services/domain``,
  ``services/api`` or ``services/rpc``.
- Every module imports the first-party packages by their installed names (``latfarm.services``, not ``services``).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
OLD_TOP_LEVEL = ("services", "agents", "predictor", "proto")
SERVER_STACK = (
    "latfarm.services",
    "latfarm.predictor",
    "torch",
    "onnx",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "sqladmin",
    "scipy",
    "pydantic_settings",
)
BELOW_THE_DOMAIN = {
    "latfarm.services.store": ("latfarm.services.domain", "latfarm.services.api", "latfarm.services.rpc"),
    "latfarm.services.core": ("latfarm.services.domain", "latfarm.services.api", "latfarm.services.rpc"),
}


@cache
def package_dirs() -> dict[str, Path]:
    """Installed package name -> repository folder, as pyproject's ``package-dir`` maps them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: ROOT / folder for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items()}


@cache
def modules() -> dict[str, Path]:
    """Every first-party module by its installed name (``latfarm.services.domain.queue``), generated stubs aside."""
    found = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """The absolute names ``path`` imports, anywhere in the file (function-level imports included); relative
    imports are resolved against ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # a module or a name in it
            names.add(base)
    return names


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """For each module in ``sources``, the names it imports from ``forbidden`` (only modules with some)."""
    found = {}
    for module, path in modules().items():
        if within(module, sources):
            bad = sorted(name for name in imported_names(module, path) if within(name, forbidden))
            if bad:
                found[module] = bad
    return found


def test_the_agent_imports_neither_the_server_nor_a_heavy_stack():
    assert violations(("latfarm.agents", "latfarm.proto"), SERVER_STACK) == {}


def test_the_predictor_imports_nothing_from_the_services():
    assert violations(("latfarm.predictor",), ("latfarm.services",)) == {}


def test_the_common_basics_import_no_other_part():
    first_party = tuple(name for name in package_dirs() if name != "latfarm.common")
    assert violations(("latfarm.common",), (*first_party, *SERVER_STACK)) == {}


@pytest.mark.parametrize("layer", sorted(BELOW_THE_DOMAIN))
def test_store_and_core_import_nothing_from_the_layers_above(layer):
    assert violations((layer,), BELOW_THE_DOMAIN[layer]) == {}


def test_no_module_imports_the_old_top_level_names():
    folders = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")]
    python_files = [*ROOT.glob("*.py"), *(path for folder in folders for path in folder.rglob("*.py"))]
    old = {}
    for path in python_files:
        names = {n for n in imported_names("", path) if within(n, OLD_TOP_LEVEL)}
        if names:
            old[str(path.relative_to(ROOT))] = sorted(names)
    assert old == {}


def test_the_rules_see_every_package_and_resolve_relative_imports():
    """A guard for the rules above: a wrong path mapping or a misread relative import would make them pass on
    nothing."""
    assert {
        "latfarm.agents.loop",
        "latfarm.common.ranges",
        "latfarm.proto.v1",
        "latfarm.predictor.model",
        "latfarm.services.store.db",
    } <= set(modules())
    route = "latfarm.services.api.routes.predict"
    assert "latfarm.services.api.deps" in imported_names(route, modules()[route])
    app = "latfarm.services.api.app"
    assert "latfarm.services.api.routes.predict" in imported_names(app, modules()[app])
