"""The documentation runs as written: every ``sh`` and ``python`` snippet of README.md, then of ``docs/*.md`` in
name order, each page's in order, against a live ``latfarm up``.

The setup is a newcomer's checkout, offline and within CI time: a wheel built from this checkout (no build
isolation, so nothing is downloaded) is installed with ``--no-deps`` into a fresh virtual environment whose
dependencies come from the development environment (a ``.pth`` line; its editable ``latfarm`` is not loaded, so
``latfarm`` is the wheel's). A temporary folder stands for the checkout: ``.venv`` is that environment,
``latfarm-data`` the running ``latfarm up``'s data folder, ``HOME`` a folder of its own. The snippets run there, each
in a fresh ``bash -eo pipefail`` (``python`` ones with ``.venv/bin/python``) with no ``LATFARM_*`` variable and
no virtual environment active, so what a snippet needs it says itself. Two departures from the text, both
mechanical: the server listens on free ports, substituted for ``:8000`` and ``:50051`` in the text and given to the
client commands' default as ``LATFARM_SERVER``; agents measure with a short protocol (``LATFARM_AGENT_RUNS`` and
friends). Both are documented variables.

Markers, an HTML comment on the line before a fence: ``<!-- snippet: skip (reason) -->`` leaves a snippet out
(listed in the test's output), ``<!-- snippet: device (reason) -->`` runs one that belongs on a second machine in
the background against loopback, stopped at the end; the device's agent-only install is that environment, on its
``PATH`` as ``pip install`` there would put it.
"""

from __future__ import annotations

import os
import re
import signal
import site
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from latfarm.services.client import Client, LatfarmError
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
FENCE = re.compile(r"(?:<!-- snippet: (\w+) \(([^)]*)\) -->\n)?```(\w*)\n(.*?)```", re.S)
QUICK_AGENT = {"LATFARM_AGENT_RUNS": "5", "LATFARM_AGENT_ROUNDS": "2", "LATFARM_AGENT_WARMUP": "1"}
SNIPPET_TIMEOUT_S = 900


@dataclass(frozen=True)
class Snippet:
    """One fenced block of a documentation page (``doc``: its path from the checkout's root)."""

    doc: str
    line: int
    language: str
    code: str
    marker: str | None  # skip | device | None
    reason: str

    @property
    def where(self) -> str:
        """``doc:line`` of the snippet's first line."""
        return f"{self.doc}:{self.line}"


def doc_pages() -> list[str]:
    """README.md, then the pages of ``docs/`` in name order: the order their snippets run in."""
    return ["README.md", *(path.relative_to(ROOT).as_posix() for path in sorted((ROOT / "docs").glob("*.md")))]


def doc_snippets() -> list[Snippet]:
    """The ``sh`` and ``python`` blocks of every page in order (other fences are output or diagrams)."""
    found = []
    for doc in doc_pages():
        text = (ROOT / doc).read_text()
        for match in FENCE.finditer(text):
            marker, reason, language, code = match.groups()
            if language in ("sh", "python"):
                line = text.count("\n", 0, match.start(3)) + 1
                found.append(Snippet(doc, line, language, code, marker, reason or ""))
    return found


def test_doc_snippet_markers_are_known_and_give_reasons():
    for doc in doc_pages():
        languages = {match.group(3) for match in FENCE.finditer((ROOT / doc).read_text())}
        assert languages <= {"", "sh", "python"}, f"{doc}: a shell block fenced as another language would dodge the run"
    snippets = doc_snippets()
    assert len([s for s in snippets if s.doc == "README.md"]) >= 4  # the first hour: predict, measure, a new device
    assert len(snippets) >= 10
    for snippet in snippets:
        assert snippet.marker in (None, "skip", "device"), snippet
        assert snippet.marker is None or snippet.reason.strip(), f"{snippet.where}: a marker needs a reason"


SERVER_UP = re.compile(r"server up: http://127\.0\.0\.1:(\d+) \(agents' gRPC: 127\.0\.0\.1:(\d+);")


def _fresh_environment(tmp: Path) -> Path:
    """``tmp/.venv``: the wheel of this checkout, its dependencies borrowed from the development environment."""
    dist = tmp / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "Deprecat" not in build.stdout + build.stderr, "the build warns about the project's own pyproject"
    (wheel,) = dist.glob("latfarm-*.whl")
    env_dir = tmp / ".venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "latfarm-dev-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = subprocess.run(
        [str(python), "-c", "import latfarm.services; print(latfarm.services.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    assert where.returncode == 0 and where.stdout.startswith(str(env_dir)), where.stdout + where.stderr
    return env_dir


def _environment(tmp: Path) -> dict[str, str]:
    """A newcomer's shell: no LATFARM_* variable, no active virtual environment, a home of its own."""
    dev_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != dev_bin]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATFARM_") and k not in ("VIRTUAL_ENV", "PATH")}
    (tmp / "home").mkdir(exist_ok=True)
    return {**env, "PATH": os.pathsep.join(path), "HOME": str(tmp / "home"), **QUICK_AGENT}


def _logs(tmp: Path, pattern: str) -> str:
    return "\n".join(path.read_text()[-4000:] for path in sorted(tmp.glob(pattern)))


def _wait_active(client: Client, proc: subprocess.Popen, tmp: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"latfarm up exited: {_logs(tmp, 'up.log')}"
        try:
            state = client.device("local")["predictor"]
        except (LatfarmError, OSError):
            state = {}
        if state.get("state") == "active":
            return
        assert state.get("state") != "failed", state
        time.sleep(1)
    raise AssertionError(f"latfarm up: predictor not active after {timeout} s: {state}")


def _run(snippet: Snippet, code: str, tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if snippet.language == "python":
        cmd = [str(tmp / ".venv" / "bin" / "python"), "-c", code]
    else:
        cmd = ["bash", "-eo", "pipefail", "-c", code]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S)


@pytest.mark.timeout(900)  # every doc snippet in turn against one `up`: about 250 s on a loaded 2-core machine
def test_every_doc_snippet_runs_against_a_live_latfarm_up(tmp_path, capsys):
    _fresh_environment(tmp_path)
    env = _environment(tmp_path)
    up = subprocess.Popen(
        [str(tmp_path / ".venv" / "bin" / "latfarm"), "up", "--http-port", "0", "--grpc-port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "up.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    background: list[subprocess.Popen] = []
    ran, skipped = [], []
    try:
        deadline = time.monotonic() + 120
        while not (found := SERVER_UP.search((tmp_path / "up.log").read_text(errors="replace"))):  # ports it picked
            said = (tmp_path / "up.log").read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline and up.poll() is None, f"latfarm up named no server:\n{said}"
            time.sleep(0.5)
        http, grpc = found[1], found[2]
        env = {**env, "LATFARM_SERVER": f"http://127.0.0.1:{http}"}  # for the snippets, not for `latfarm up`
        client = Client(f"http://127.0.0.1:{http}", (tmp_path / "latfarm-data" / "admin.key").read_text().strip())
        _wait_active(client, up, tmp_path, timeout=600)
        for snippet in doc_snippets():
            if snippet.marker == "skip":
                skipped.append(f"{snippet.where} ({snippet.reason})")
                continue
            code = snippet.code.replace(":8000", f":{http}").replace(":50051", f":{grpc}")
            if snippet.marker == "device":
                log = (tmp_path / f"device-{Path(snippet.doc).stem}-{snippet.line}.log").open("w")
                device_path = f"{tmp_path / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
                background.append(
                    subprocess.Popen(
                        ["bash", "-eo", "pipefail", "-c", code],
                        cwd=tmp_path,
                        env={**env, "PATH": device_path},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                time.sleep(5)  # a snippet that fails at once (a typo, a refused token) fails here, not in a later wait
                assert background[-1].poll() is None, f"{snippet.where} exited: {_logs(tmp_path, 'device-*')}"
                ran.append(snippet.where)
                continue
            result = _run(snippet, code, tmp_path, env)
            assert result.returncode == 0, (
                f"{snippet.where} ({snippet.language}) failed with {result.returncode}:\n{code}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}\n"
                f"--- devices\n{_logs(tmp_path, 'device-*.log')}"
            )
            for proc in background:
                assert proc.poll() is None, f"a device snippet exited: {_logs(tmp_path, 'device-*.log')}"
            ran.append(snippet.where)
    finally:
        for proc in [*background, up]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in [*background, up]:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    with capsys.disabled():
        print(f"\ndocumentation snippets run: {ran}; skipped: {skipped}")
    assert len(ran) >= 6 and len(skipped) < len(ran)
