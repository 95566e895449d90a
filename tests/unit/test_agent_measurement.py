"""The measurement procedure on real onnxruntime sessions: statistics, failure classes, timeouts, repeatability."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from latfarm.agents.backends.onnx import OnnxBackend
from latfarm.agents.loop import job_settings
from latfarm.agents.measurement import (
    LOAD,
    RUN,
    TIMEOUT,
    WRONG_OUTPUT,
    BatchMeasurer,
    Interrupted,
    MeasureSettings,
    ModelResult,
    ModelTask,
    Watchdog,
    summarize,
    unsteady_share,
)
from latfarm.proto.v1 import agent_pb2
from tests.agent_models import fails_at_run, matmul_chain, nan_output, wrong_batch

QUICK = MeasureSettings(warmup_runs=2, runs_per_round=10, rounds=3, busy_warmup_s=0.1, spread_threshold=10.0)


def test_summarize_takes_the_median_of_round_medians():
    rounds = [[1.0, 2.0, 9.0], [2.0, 3.0, 4.0], [1.0, 1.5, 2.0]]
    stats = summarize(rounds)
    assert (stats.statistic, stats.latency_ms) == ("min", 1.0)  # the default headline: the fastest run
    median = summarize(rounds, "median")
    assert (median.statistic, median.latency_ms) == ("median", 2.0)
    assert stats.round_medians_ms == [2.0, 3.0, 1.5]
    assert stats.median_ms == 2.0
    assert stats.runs == 9
    assert stats.min_ms == 1.0
    assert stats.mean_ms == pytest.approx(25.5 / 9)
    assert stats.round_spread == pytest.approx((3.0 - 1.5) / 2.0)
    assert 4.0 <= stats.p90_ms <= 9.0


def test_batch_statistics_on_real_sessions(tmp_path):
    small = matmul_chain(tmp_path / "small.onnx", depth=2)
    large = matmul_chain(tmp_path / "large.onnx", depth=40, rows=8, width=128)
    tasks = [ModelTask("small", small), ModelTask("large", large)]
    results = {r.key: r for r in BatchMeasurer(OnnxBackend(), QUICK).measure(tasks)}
    for result in results.values():
        assert result.ok and result.error_class is None and not result.unstable
        assert result.provider == "CPUExecutionProvider"
        assert result.session_create_ms > 0 and result.first_inference_ms > 0
        stats = result.stats
        assert stats.runs == QUICK.rounds * QUICK.runs_per_round
        assert len(stats.round_medians_ms) == QUICK.rounds
        assert stats.median_ms == statistics.median(stats.round_medians_ms)
        assert stats.statistic == "min" and stats.latency_ms == stats.min_ms
        assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
        assert stats.std_ms >= 0
    assert results["large"].stats.median_ms > 5 * results["small"].stats.median_ms


def test_failures_are_classified_not_dropped(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    tasks = [
        ModelTask("corrupt", corrupt),
        ModelTask("missing", tmp_path / "missing.onnx"),
        ModelTask("run", fails_at_run(tmp_path / "run.onnx"), [1, 64]),
        ModelTask("batch", wrong_batch(tmp_path / "batch.onnx")),
        ModelTask("nan", nan_output(tmp_path / "nan.onnx")),
        ModelTask("good", matmul_chain(tmp_path / "good.onnx")),
    ]
    results = {r.key: r for r in BatchMeasurer(OnnxBackend(), QUICK).measure(tasks)}
    assert [r.key for r in BatchMeasurer(OnnxBackend(), QUICK).measure(tasks)] == [t.key for t in tasks]
    expected = {"corrupt": LOAD, "missing": LOAD, "run": RUN, "batch": WRONG_OUTPUT, "nan": WRONG_OUTPUT}
    for key, error_class in expected.items():
        assert not results[key].ok and results[key].stats is None
        assert results[key].error_class == error_class, (key, results[key].error_message)
        assert results[key].error_message
    assert "batch size 1" in results["batch"].error_message
    assert "non-finite" in results["nan"].error_message
    assert results["good"].ok and results["good"].stats.runs == 30


def test_a_slow_model_is_cancelled_at_its_time_limit(tmp_path):
    slow = matmul_chain(tmp_path / "slow.onnx", depth=100, rows=256, width=512)  # ~0.2 s+ per inference
    fast = matmul_chain(tmp_path / "fast.onnx")
    settings = MeasureSettings(warmup_runs=5, runs_per_round=50, rounds=5, timeout_s=0.5, busy_warmup_s=0.1)
    start = time.perf_counter()
    results = {
        r.key: r
        for r in BatchMeasurer(OnnxBackend(), settings).measure([ModelTask("slow", slow), ModelTask("fast", fast)])
    }
    elapsed = time.perf_counter() - start
    assert results["slow"].error_class == TIMEOUT and not results["slow"].ok
    assert "0.5 s" in results["slow"].error_message
    assert results["fast"].ok
    assert elapsed < 20  # the full procedure on the slow model would take over a minute


def test_watchdog_reports_a_hang_it_cannot_cancel():
    class Uncancellable:
        provider = "none"

        def cancel(self) -> bool:
            return False

    hung = []
    watchdog = Watchdog(on_hang=hung.append, grace_s=0.1)
    watchdog.arm(Uncancellable(), 0.1, key="job-1")
    time.sleep(0.6)
    assert watchdog.disarm() is True
    assert hung == ["job-1"]
    watchdog.close()


def test_unsteady_results_are_remeasured_then_flagged(tmp_path):
    model = matmul_chain(tmp_path / "m.onnx", depth=8)
    strict = MeasureSettings(
        warmup_runs=1, runs_per_round=5, rounds=3, busy_warmup_s=0.05, spread_threshold=0.0, retry_pause_s=0.3
    )
    start = time.perf_counter()
    [result] = BatchMeasurer(OnnxBackend(), strict).measure([ModelTask("m", model)])
    assert time.perf_counter() - start >= strict.retries * strict.retry_pause_s  # re-measured after a pause
    assert result.ok and result.unstable  # any real spread exceeds a zero threshold, even after the retries
    assert result.stats.round_spread > 0
    [relaxed] = BatchMeasurer(OnnxBackend(), QUICK).measure([ModelTask("m", model)])
    assert relaxed.ok and not relaxed.unstable
    at_once = MeasureSettings(
        warmup_runs=1, runs_per_round=5, rounds=3, busy_warmup_s=0.05, spread_threshold=0.0, retries=0, retry_pause_s=5
    )
    start = time.perf_counter()
    [flagged] = BatchMeasurer(OnnxBackend(), at_once).measure([ModelTask("m", model)])
    assert flagged.unstable and flagged.stats.runs == 15  # flagged without the pause or a second attempt
    assert time.perf_counter() - start < at_once.retry_pause_s
    failed = ModelResult("broken", error_class=LOAD)  # failures do not count either way
    assert unsteady_share([result, flagged, failed]) == 1.0
    assert unsteady_share([result, relaxed, failed]) == 0.5 and unsteady_share([failed]) == 0.0


def test_a_stop_request_interrupts_the_batch(tmp_path):
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        BatchMeasurer(OnnxBackend(), QUICK, stop).measure([ModelTask("m", matmul_chain(tmp_path / "m.onnx"))])


def test_job_settings_override_only_non_zero_values():
    settings = MeasureSettings().override(runs_per_round=7, rounds=0, timeout_s=0.0, statistic="")
    assert settings.runs_per_round == 7
    assert settings.rounds == MeasureSettings().rounds and settings.timeout_s == MeasureSettings().timeout_s
    assert settings.statistic == "min"
    assert MeasureSettings().override(statistic="median").statistic == "median"
    with pytest.raises(ValueError, match="unknown statistic 'mean'"):
        MeasureSettings().override(statistic="mean")
    with pytest.raises(ValueError, match="^warmup_runs must be at least 0, got -1$"):
        MeasureSettings(warmup_runs=-1)
    with pytest.raises(ValueError, match="^timeout_s must be greater than 0, got 0$"):
        MeasureSettings(timeout_s=0.0)


def test_a_jobs_settings_apply_and_bad_ones_are_ignored_with_a_log():
    agent = MeasureSettings(warmup_runs=3, rounds=4)
    logged: list[str] = []
    unset = job_settings(agent, agent_pb2.MeasureSettings(rounds=6), logged.append)
    assert (unset.warmup_runs, unset.rounds) == (3, 6)  # warmup_runs unset: the agent's own
    none = job_settings(agent, agent_pb2.MeasureSettings(warmup_runs=0), logged.append)
    assert (none.warmup_runs, none.rounds) == (0, 4)  # set to 0: no warm-up runs at all
    assert not logged
    assert job_settings(agent, agent_pb2.MeasureSettings(warmup_runs=-2, rounds=6), logged.append) == agent
    assert job_settings(agent, agent_pb2.MeasureSettings(statistic="mean"), logged.append) == agent
    assert "warmup_runs must be at least 0, got -2" in logged[0] and "unknown statistic 'mean'" in logged[1], logged


def test_a_batch_is_measured_in_parts_by_its_warm_up_timing(tmp_path):
    """Parts last ``part_s`` of rounds by each model's mean warm-up inference: results go out part by part (a
    failure before the rounds with the first part); ``part_s`` 0 (or a batch faster than it) is one part."""
    small, large = matmul_chain(tmp_path / "small.onnx", depth=2), matmul_chain(tmp_path / "large.onnx", depth=40)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    tasks = [ModelTask("s1", small), ModelTask("corrupt", corrupt), ModelTask("l1", large), ModelTask("l2", large)]
    whole = [["corrupt", "s1", "l1", "l2"]]
    for part_s, expected in ((1e-9, [["corrupt", "s1"], ["l1"], ["l2"]]), (0.0, whole), (3600.0, whole)):
        parts: list[list[ModelResult]] = []
        results = BatchMeasurer(OnnxBackend(), QUICK, part_s=part_s).measure(tasks, on_part=parts.append)
        assert [[r.key for r in part] for part in parts] == expected
        assert [r.key for r in results] == [t.key for t in tasks]
        assert [r.ok for r in results] == [True, False, True, True]
        assert all(r.stats.runs == QUICK.rounds * QUICK.runs_per_round for r in results if r.ok)
