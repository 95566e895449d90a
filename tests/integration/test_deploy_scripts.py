"""The deployment shell scripts parse (``sh -n``); ``tests/unit/test_deploy_files.py`` checks what they say."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT


def test_agent_entrypoint_is_valid_shell():
    subprocess.run(["sh", "-n", str(ROOT / "deploy" / "agent-entrypoint.sh")], check=True)
