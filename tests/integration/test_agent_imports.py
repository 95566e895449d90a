"""A fresh interpreter that imports every agent module loads no server, torch or ONNX stack (what the static rules in
``tests/unit/test_layout.py`` cannot see: third-party packages pulling in heavy ones)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_agent_imports_no_server_stack():
    modules = [
        f"latfarm.agents.{p.relative_to(ROOT / 'agents').with_suffix('').as_posix().replace('/', '.')}"
        for p in sorted((ROOT / "agents").rglob("*.py"))
        if p.name != "__init__.py"
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = [m for m in ('torch', 'sqlalchemy', 'fastapi', 'latfarm.services', 'onnx') if m in sys.modules]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
