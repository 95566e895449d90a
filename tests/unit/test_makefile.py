"""``make``'s install says what it installs, step by step, instead of minutes of silence."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_install_announces_each_step_and_lets_pip_show_progress(tmp_path):
    venv = tmp_path / "venv"
    plan = subprocess.run(
        ["make", "-n", "-B", f"{venv}/.installed", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True
    )
    assert plan.returncode == 0, plan.stderr
    steps = re.findall(r'echo "==> \[(\d)/(\d)\] ([^"]+)"', plan.stdout)
    assert [(n, m) for n, m, _ in steps] == [("1", "4"), ("2", "4"), ("3", "4"), ("4", "4")], plan.stdout
    assert "torch==" in steps[1][2]
    installs = [line for line in plan.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert len(installs) == 2 and all(" -q" not in line and "--progress-bar on" in line for line in installs)
