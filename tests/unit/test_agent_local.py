"""Agent pieces that need no server: artifact cache, state file, device descriptor, backends."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latfarm.agents.backends import available_backends
from latfarm.agents.cache import ArtifactCache, ArtifactError
from latfarm.agents.descriptor import ClockState, describe
from latfarm.agents.errors import AgentError
from latfarm.agents.main import cpu_ranges, parse_cpus, run_agent
from latfarm.agents.measurement import LOAD, BatchMeasurer, MeasureSettings, ModelResult, ModelTask, summarize
from latfarm.agents.options import AgentOptions
from latfarm.agents.report import MeasuredWith, result_message
from latfarm.agents.state import STATE_FILE, AgentState, load_state, save_state
from latfarm.proto.v1 import agent_pb2
from latfarm.services.cli import app
from tests.agent_models import tiny_tflite

ROOT = Path(__file__).resolve().parents[1]


def _blob(size: int, seed: int) -> tuple[str, bytes]:
    data = bytes([seed % 256]) * size
    return hashlib.sha256(data).hexdigest(), data


def test_cache_verifies_sha256(tmp_path):
    cache = ArtifactCache(tmp_path, max_bytes=10_000)
    digest, data = _blob(100, 1)
    path = cache.put(digest, [data[:50], data[50:]])
    assert path.read_bytes() == data and cache.get(digest) == path
    other, _ = _blob(100, 2)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        cache.put(other, [data])
    assert cache.get(other) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [digest]  # no partial file left behind


def test_cache_evicts_least_recently_used_within_its_bound(tmp_path):
    cache = ArtifactCache(tmp_path, max_bytes=3_000)
    digests = []
    for seed in range(3):
        digest, data = _blob(1_000, seed)
        cache.put(digest, [data])
        digests.append(digest)
    cache.get(digests[0])  # used again: now the newest
    fourth, data = _blob(1_000, 3)
    cache.put(fourth, [data])
    assert cache.size() <= 3_000
    assert cache.get(digests[1]) is None
    assert all(cache.get(d) for d in (digests[0], digests[2], fourth))
    fifth, data = _blob(2_000, 4)
    cache.put(fifth, [data], protect={digests[0]})
    assert cache.get(digests[0]) is not None and cache.get(fifth) is not None and cache.size() <= 3_000
    huge, data = _blob(4_000, 5)
    with pytest.raises(ArtifactError, match="more than the cache bound"):
        cache.put(huge, [data])


def test_state_file_round_trip_and_permissions(tmp_path):
    assert load_state(tmp_path / "agent") is None
    state = AgentState("agent-1", "secret", "pixel")
    path = save_state(tmp_path / "agent", state)
    assert load_state(tmp_path / "agent") == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        load_state(tmp_path / "agent")
    path.write_text(json.dumps({"agent_id": "agent-1", "credential": "secret"}))
    with pytest.raises(ValueError, match="corrupt"):
        load_state(tmp_path / "agent")


def test_state_file_keys_beyond_the_state_are_ignored(tmp_path):
    saved = {"server": "127.0.0.1:1", "agent_id": "agent-1", "credential": "secret", "device": "pixel"}
    (tmp_path / STATE_FILE).write_text(json.dumps(saved))
    assert load_state(tmp_path) == AgentState("agent-1", "secret", "pixel")


class _Backend:
    format, runtime, version, build, device, providers = "onnx", "onnxruntime", "1.0", "b", "CPU", ["CPU"]


def test_one_mapping_from_a_result_to_the_wire():
    settings = MeasureSettings(rounds=2, spread_threshold=0.05)
    measured = MeasuredWith(_Backend(), settings, [0, 2])
    stats = summarize([[1.0, 2.0], [2.0, 3.0]])
    ok = result_message(ModelResult("j1", ok=True, stats=stats, provider="CPU"), "sha", measured)
    assert (ok.job_id, ok.ok, ok.stats.latency_ms, ok.stats.round_medians_ms) == ("j1", True, 1.0, [1.5, 2.5])
    assert (ok.artifact_sha256, ok.runtime, ok.runtime_version, ok.provider) == ("sha", "onnxruntime", "1.0", "CPU")
    assert (ok.threads, list(ok.affinity), ok.settings.rounds, ok.settings.statistic) == (1, [0, 2], 2, "min")
    assert ok.error_class == agent_pb2.ERROR_CLASS_UNSPECIFIED and ok.error_message == ""
    unstable = result_message(ModelResult("j2", ok=True, stats=stats, unstable=True), "sha", measured)
    assert unstable.error_class == agent_pb2.ERROR_CLASS_UNSTABLE and unstable.unstable
    assert unstable.error_message == "round medians spread 50.0% > 5%"
    failed = result_message(ModelResult("j3", error_class=LOAD, error_message="no runtime"))
    assert failed == agent_pb2.Result(
        job_id="j3", ok=False, error_class=agent_pb2.ERROR_CLASS_LOAD, error_message="no runtime"
    )


def test_descriptor_fields():
    import onnxruntime

    descriptor = describe()
    assert descriptor.cpu_model and descriptor.cpu_cores == os.cpu_count()
    assert descriptor.memory_bytes > 0 and descriptor.os and descriptor.os_release and descriptor.machine
    assert descriptor.python == ".".join(map(str, sys.version_info[:3]))
    assert descriptor.runtimes["onnxruntime"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in descriptor.onnx_providers
    assert "onnx" in descriptor.formats
    clock = ClockState.now()
    assert clock.freq_mhz >= 0 and clock.temp_c >= 0


def test_cpu_lists():
    assert parse_cpus("0") == [0] and parse_cpus("2-3,0") == [0, 2, 3] and parse_cpus(None) == []
    assert cpu_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    for bad in ("a-b", "3-2"):
        with pytest.raises(ValueError, match="bad CPU list"):
            parse_cpus(bad)


@pytest.mark.parametrize("affinity", ["9999", "0,9999", "3-2", "x"])
def test_an_affinity_this_process_cannot_take_is_a_usage_error(tmp_path, affinity):
    """Before anything is created or contacted: exit 2, one message naming the CPUs this process may use."""
    result = CliRunner().invoke(
        app,
        ["agent", "--server", "127.0.0.1:1", "--state-dir", str(tmp_path / "s"), "--affinity", affinity],
        env={"COLUMNS": "400", "LATFARM_AGENT_ENROLL": "token"},
    )
    output = " ".join(result.output.replace("│", "").split())
    assert result.exit_code == 2 and "Invalid value for '--affinity'" in output
    if affinity.endswith("9999"):
        assert f"CPU 9999 is not available to this process; it may use {cpu_ranges(os.sched_getaffinity(0))}" in output
    else:
        assert "bad CPU list" in output
    assert not (tmp_path / "s").exists()


def test_unknown_execution_provider_is_refused():
    with pytest.raises(ValueError, match="not available"):
        available_backends("NoSuchExecutionProvider")


def test_litert_backend_measures_a_tflite_model(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is not installed")
    backend = available_backends()["tflite"]
    assert backend.runtime == "litert" and backend.providers == ["xnnpack"]
    settings = MeasureSettings(warmup_runs=1, runs_per_round=5, rounds=2, busy_warmup_s=0.05, spread_threshold=10)
    [result] = BatchMeasurer(backend, settings).measure([ModelTask("t", tiny_tflite(tmp_path / "add.tflite"))])
    assert result.ok and result.provider == "xnnpack" and result.stats.runs == 10
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3 but not really")
    [failed] = BatchMeasurer(backend, settings).measure([ModelTask("b", broken)])
    assert not failed.ok and failed.error_class == "load"


NOBODY = 65534  # the unprivileged uid and gid a root test run drops to: root writes into read-only folders
CHILD_LIMIT_S = 20


def _unprivileged(call: Callable[[], object]) -> str:
    """``call()`` in a forked child that is not root (uid/gid ``NOBODY`` when this process is root): the message of
    the ``AgentError`` it raised, or what else happened."""
    available_backends(None)  # runtimes imported here, while their files are surely readable
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome = "no error"
        try:
            os.close(read)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # pytest-timeout's handler would report into pytest
            signal.alarm(CHILD_LIMIT_S)  # an agent past its start-up checks would retry the server for ever
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            call()
        except AgentError as err:
            outcome = str(err)
        except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the test
            outcome = f"unexpected {type(err).__name__}: {err}"
        finally:
            os.write(write, outcome.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        outcome = answer.read()
    os.waitpid(pid, 0)
    return outcome or f"no answer within {CHILD_LIMIT_S} s: the agent went on past its start-up checks"


@pytest.mark.parametrize(
    ("how", "named"),
    [("under a file", "state folder"), ("read-only cache", "artifact cache"), ("read-only", "state folder")],
)
def test_an_unwritable_state_folder_or_cache_stops_the_agent_at_start_with_one_line(how, named):
    """#18 item 6: the agent checks that it can save its credential and artifacts before it registers or leases
    anything (the server at 127.0.0.1:1 is never called); a root run checks as an unprivileged user."""
    base = Path(tempfile.mkdtemp(prefix="latfarm-agent-"))  # not under tmp_path: its parents are the user's only
    state_dir = base / "file" / "agent" if how == "under a file" else base / "agent"
    if how == "under a file":
        (base / "file").write_text("")
    else:
        (state_dir / "cache").mkdir(parents=True)
    folders = [base, *([] if how == "under a file" else [state_dir, state_dir / "cache"])]
    try:
        for folder in folders:
            folder.chmod(0o755)
            if os.geteuid() == 0:
                os.chown(folder, NOBODY, NOBODY)
        if how != "under a file":
            (state_dir / "cache" if how == "read-only cache" else state_dir).chmod(0o555)
        options = AgentOptions("127.0.0.1:1", "lf_enroll_x", state_dir, once=True)
        message = _unprivileged(lambda: run_agent(options))
        folder = state_dir / "cache" if named == "artifact cache" else state_dir
        assert message.startswith(f"the {named} {folder} is not writable ("), message
        assert message.endswith("fix its permissions or pass another --state-dir") and "\n" not in message
        assert not (state_dir / STATE_FILE).exists()
    finally:
        for folder in folders:
            folder.chmod(0o755)
        shutil.rmtree(base)
